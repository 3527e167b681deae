"""The local runner's LLM side: the proposer, node reviews, plot feedback, the accounts and the agent's log;
and the writeup and review of a finished run (``PaperAgent``).

The runner is synchronous; the agent is async. One event loop (``asyncio.Runner``) serves every call, so
the openai client's connections are reused. Node outputs are read here and handed to the agent as text.
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
import shutil
from typing import Any, Coroutine, Mapping, Sequence, TypeVar

from kubescientist.adapters.llm import MAX_PLOT_BYTES, OUTPUT_TAIL_BYTES, AgentCalls
from kubescientist.adapters.local.files import read_json, write_json
from kubescientist.adapters.local.rundir import RunDir
from kubescientist.agent.config import from_settings
from kubescientist.agent.context import Idea, NodeOutput, ResearchContext, TemplateCode
from kubescientist.agent.errors import AgentError, ConfigError
from kubescientist.agent.ideas import find_idea, load_ideas
from kubescientist.agent.llm import LLMClient
from kubescientist.agent.program import program_files
from kubescientist.agent.proposer import LLMProposer
from kubescientist.agent.reviewing import DEFAULT_REFLECTIONS, review_team
from kubescientist.agent.roles import Role
from kubescientist.agent.writeup import LLMLatexFixer, LLMSectionWriter
from kubescientist.core.journal import Node, Outcome
from kubescientist.core.spec import RunSpec
from kubescientist.paper import PaperResult, Reference, awrite_paper
from kubescientist.review import ReviewReport, areview

def resolve_idea(spec: RunSpec, manifest_dir: pathlib.Path) -> Idea:
    """The run's idea; an ideas file that cannot be read, or has no entry of the name, is an AgentError
    naming the field (``spec.idea.ideasFile.path`` or ``.name``) and, for a name, the names there are."""
    if spec.idea.inline is not None:
        return Idea.from_inline(spec.idea.inline)
    if spec.idea.ideas_file is not None:
        path, name = spec.idea.ideas_file
        file = (manifest_dir / path).resolve()
        try:
            text = file.read_text()
        except OSError as exc:
            raise AgentError(f"spec.idea.ideasFile.path: {file}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise AgentError(f"spec.idea.ideasFile.path: {file}: not a text file") from None
        try:
            entries = load_ideas(text, str(file))
        except AgentError as exc:
            raise AgentError(f"spec.idea.ideasFile.path: {exc}") from None
        try:
            return find_idea(entries, name, str(file))
        except (AgentError, ValueError) as exc:
            raise AgentError(f"spec.idea.ideasFile.name: {exc}") from None
    raise AgentError("spec.idea: only inline ideas and ideasFile work in local mode "
                     "(configMapRef is for in-cluster runs)")


def _tail(path: pathlib.Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - OUTPUT_TAIL_BYTES))
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


T = TypeVar("T")


def _agent_log(path: pathlib.Path) -> logging.Handler:
    """The agent's log lines, appended to the run's ``llm.log``."""
    handler = logging.FileHandler(path, delay=True)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("kubescientist.agent")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return handler


class LocalAgent(AgentCalls):
    def __init__(self, spec: RunSpec, idea: Idea, run_dir: RunDir,
                 template: TemplateCode | None, *, resume: bool) -> None:
        self.spec = spec
        self.run_dir = run_dir
        self.template = template
        self.client = LLMClient(from_settings(spec.llm))
        self.ledger = self.client.ledger
        self.goal_checked = {}
        self._earlier: list[Any] = []
        """The calls of the run before a resume (the ledger holds their sums, not the calls)."""
        if resume and run_dir.llm_calls.exists():
            saved = read_json(run_dir.llm_calls)
            self.ledger.restore(saved.get("accounts", {}))
            self.goal_checked = {str(k): int(v) for k, v in (saved.get("goalChecked") or {}).items()}
            self._earlier = list(saved.get("calls", []))
        self.ledger.on_record = lambda _call: self.save()
        context = ResearchContext.from_spec(spec, idea, template)
        self.proposer = LLMProposer(self.client, context, self.output)
        self._loop = asyncio.Runner()
        # Opened on the first record: the run folder may not exist yet.
        self._log = _agent_log(run_dir.llm_log)

    def close(self) -> None:
        self._loop.run(self.client.aclose())
        self._loop.close()
        logging.getLogger("kubescientist.agent").removeHandler(self._log)
        self._log.close()

    def output(self, node_id: str) -> NodeOutput:
        folder = self.run_dir.node(node_id)
        plots = []
        for png in sorted((folder / "plots").rglob("*.png")) if (folder / "plots").is_dir() else ():
            if png.stat().st_size <= MAX_PLOT_BYTES:
                plots.append((str(png.relative_to(folder / "plots")), png.read_bytes()))
        return NodeOutput(stdout=_tail(folder / "stdout.txt"), stderr=_tail(folder / "stderr.txt"), plots=plots)

    def review(self, node: Node, outcome: Outcome) -> Outcome:
        return self.reviewed(node, outcome, self.output(node.id))

    def program(self, node: Node, template_root: pathlib.Path | None) -> pathlib.Path:
        """Write an LLM-written node's program folder; returns it."""
        folder = self.run_dir.program(node.id)
        shutil.rmtree(folder, ignore_errors=True)
        if template_root is not None:
            shutil.copytree(template_root, folder)
        else:
            folder.mkdir(parents=True)
        for name, text in program_files(node.config, self.template, self.proposer.ctx.idea.title).items():
            (folder / name).write_text(text)
        return folder

    def save(self) -> None:
        """Write the accounts and every call to ``llm.json`` (after each call, and by the runner)."""
        write_json(self.run_dir.llm_calls, {"accounts": self.ledger.to_dict(), "goalChecked": self.goal_checked,
                                            "calls": self._earlier + [c.to_dict() for c in self.ledger.calls]})

    def accounts(self) -> Mapping[str, Any]:
        return self.ledger.to_dict()


class PaperAgent:
    """The LLM side of a run's writeup and review: the paper's sections and LaTeX fixes by the ``writeup``
    model, the review ensemble and area chair by the ``review`` model.

    It continues the run's accounts: ``llm.json`` is read back (as on resume), so the caps of ``spec.llm``
    hold across search, writeup and review, and ``save`` writes every call, the search's and its own, back
    with the accounts (and into ``summary.json``). The search's ``LocalAgent`` is closed with its loop when
    the search ends, and ``kubescientist writeup``/``review`` run without one: both open this instead.
    A role without a model (``spec.llm.models.writeup``/``review``, else ``$KUBESCIENTIST_LLM_MODEL``)
    stays offline.
    """

    def __init__(self, spec: RunSpec, run_dir: RunDir) -> None:
        self.spec = spec
        self.run_dir = run_dir
        self.client = LLMClient(from_settings(spec.llm))
        self._earlier: list[Any] = []
        if run_dir.llm_calls.exists():
            saved = read_json(run_dir.llm_calls)
            self.client.ledger.restore(saved.get("accounts", {}))
            self._earlier = list(saved.get("calls", []))
        self._loop = asyncio.Runner()
        self._log = _agent_log(run_dir.llm_log)
        self.client.ledger.on_record = lambda _call: self.save()

    def model(self, role: Role) -> str | None:
        try:
            return self.client.config.model_for(role)
        except ConfigError:
            return None

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return self._loop.run(work)

    def write_paper(self, *, literature: Sequence[Reference] = (), page_limit: int = 8) -> PaperResult:
        """The run's paper, written by the ``writeup`` model (sections the model cannot write are written
        offline, and the paper says which); offline when the role has no model."""
        if self.model("writeup") is None:
            return self.run(awrite_paper(self.run_dir.root, literature=literature, page_limit=page_limit))
        return self.run(awrite_paper(self.run_dir.root, writer=LLMSectionWriter(self.client),
                                     fixer=LLMLatexFixer(self.client), literature=literature,
                                     page_limit=page_limit))

    def review(self, target: pathlib.Path | None = None, *, reflections: int = DEFAULT_REFLECTIONS,
               page_limit: int | None = None) -> ReviewReport:
        """The review of the run's paper (or ``target``) by ``spec.reviewers`` model reviewers and an area
        chair. Raises ``AgentError`` when the model cannot finish it (the caller falls back to the rubric)."""
        if self.model("review") is None:
            raise ConfigError("spec.llm.models.review: no review model")
        reviewers, chair = review_team(self.client, max(1, self.spec.reviewers))
        return self.run(areview(target or self.run_dir.root, reviewers=reviewers, chair=chair,
                                reflections=reflections, page_limit=page_limit))

    def save(self) -> dict[str, Any]:
        """Write the accounts and every call to ``llm.json`` and the accounts into ``summary.json``."""
        accounts = self.client.ledger.to_dict()
        write_json(self.run_dir.llm_calls, {"accounts": accounts,
                                            "calls": self._earlier + [c.to_dict() for c in self.client.ledger.calls]})
        if self.run_dir.summary.exists():
            write_json(self.run_dir.summary, {**read_json(self.run_dir.summary), "llm": accounts})
        return accounts

    def close(self) -> None:
        self._loop.run(self.client.aclose())
        self._loop.close()
        logging.getLogger("kubescientist.agent").removeHandler(self._log)
        self._log.close()


__all__ = ["LocalAgent", "PaperAgent", "resolve_idea"]
