"""A ResearchCampaign on one machine: each approved idea becomes a local ResearchRun, one after another.

The folder ``<workdir>/<campaign>/`` holds the validated campaign (``campaign.yaml``), the ideas and what
became of them (``campaign.json``), one run folder per idea under its deterministic run name, and
``campaign.html``. The decisions are the core's (``next_step``); this module observes the run folders,
acts on the step, and records. Runs share the machine: one runs at a time here, with the parallelism of its
own spec, which keeps every campaign within its maxConcurrentRuns. With spec.topic, each round's ideas come
from the LLM of runTemplate.llm, told each earlier run's review score, weaknesses and results.

Manual approval reads the manifest's spec.approval (re-read on ``--resume``, so an approval is an edit of
the manifest, as in Git) and an approvals file (one idea name a line, ``-name`` rejects); with a terminal,
the user is asked.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import importlib.resources
import pathlib
from typing import Any, Callable

import jinja2
import yaml

from kubescientist.adapters.campaign_manifest import load_campaign, validate_campaign
from kubescientist.adapters.local.files import read_json_object, write_json
from kubescientist.adapters.manifest import ManifestError, apply_defaults, crd_schema
from kubescientist.agent.config import from_settings
from kubescientist.agent.errors import AgentError
from kubescientist.agent.ideas import Ideator, Topic, parse_topic
from kubescientist.agent.literature import OfflineCorpus, source_from_env
from kubescientist.agent.llm import LLMClient
from kubescientist.core.campaign import (
    CampaignIdea, CampaignSpec, IdeaRecord, RunReport, Step, Usage, campaign_spec_from_dict, ideas_from_entries,
    ideation_feedback, leaderboard, next_step, run_name, run_spec, state_of, status)
from kubescientist.core.spec import run_spec_from_dict


class CampaignStopped(Exception):
    """The campaign cannot go on without the user (approval); the message says what to do."""


class RunFailed(Exception):
    """A run of the campaign could not run to its end (bad template, a failed start); the campaign goes on."""


RunExecutor = Callable[[pathlib.Path, pathlib.Path, bool], None]
"""Runs one ResearchRun manifest (path, workdir, resume) to its end (search, paper, review) in
``workdir/<name>``; raises ``RunFailed`` when the run cannot run."""


@dataclasses.dataclass(frozen=True)
class CampaignDir:
    root: pathlib.Path
    """``<workdir>/<campaign-name>``."""

    @property
    def manifest(self) -> pathlib.Path:
        """The validated campaign manifest the campaign runs with."""
        return self.root / "campaign.yaml"

    @property
    def state(self) -> pathlib.Path:
        """The ideas and the campaign's status."""
        return self.root / "campaign.json"

    @property
    def html(self) -> pathlib.Path:
        """The index of every run."""
        return self.root / "campaign.html"

    def run_manifest(self, run: str) -> pathlib.Path:
        """The ResearchRun manifest written for one idea."""
        return self.root / "manifests" / f"{run}.yaml"

    def run(self, run: str) -> pathlib.Path:
        """A run's folder."""
        return self.root / run


def read_approvals(path: pathlib.Path) -> tuple[list[str], list[str]]:
    """An approvals file: one idea name a line; ``-name`` rejects it; ``#`` starts a comment."""
    approved, rejected = [], []
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read the approvals file: {exc.strerror}") from None
    for line in lines:
        name = line.split("#", 1)[0].strip()
        if name.startswith("-"):
            rejected.append(name[1:].strip())
        elif name:
            approved.append(name)
    return approved, rejected


def run_report(idea: str, run: str, folder: pathlib.Path) -> RunReport | None:
    """What a finished run folder says (None while it has no summary): phase, best metric, review score and
    weaknesses, LLM use."""
    summary = read_json_object(folder / "summary.json")
    if summary is None:
        return None
    best = summary.get("best") or {}
    seeds = best.get("seeds") or {}
    metric = seeds.get("mean") if seeds.get("n", 0) > 1 else best.get("metric")
    review = read_json_object(folder / "review.json") or {}
    form = review.get("review") or {}
    total = (summary.get("llm") or {}).get("total") or {}
    llm = read_json_object(folder / "llm.json") or {}
    total = (llm.get("total") if isinstance(llm.get("total"), dict) else None) or total
    return RunReport(
        idea=idea, run=run, phase="succeeded" if summary.get("phase") == "succeeded" else "failed",
        score=float(review["overall"]) if isinstance(review.get("overall"), (int, float)) else None,
        decision=str(review.get("decision") or ""),
        weaknesses=tuple(str(w) for w in form.get("Weaknesses") or ()),
        metric=float(metric) if isinstance(metric, (int, float)) else None,
        message=str(summary.get("message") or ""),
        tokens=int(total.get("promptTokens", 0)) + int(total.get("completionTokens", 0)),
        usd=float(total.get("usd", 0.0)))


class LocalCampaign:
    def __init__(self, manifest: pathlib.Path, workdir: pathlib.Path, execute: RunExecutor, *,
                 resume: bool = False, approvals: pathlib.Path | None = None,
                 ask: Callable[[CampaignIdea], bool | None] | None = None,
                 say: Callable[[str], None] = print) -> None:
        self.source = manifest
        self.name, self.spec, self.valid = load_campaign(manifest)
        self.folder = CampaignDir(workdir.resolve() / self.name)
        self.execute, self.ask, self.say = execute, ask, say
        if resume and not self.folder.state.is_file():
            raise CampaignStopped(f"{self.folder.root}: nothing to resume (no {self.folder.state.name}); run without "
                                  "--resume")
        if not resume and self.folder.root.exists() and any(self.folder.root.iterdir()):
            raise CampaignStopped(f"{self.folder.root} already holds a campaign: pass --resume to continue it, or "
                                  "choose another --workdir")
        saved = (read_json_object(self.folder.state) or {}) if resume else {}
        self.ideas: list[IdeaRecord] = self._load_ideas() if resume else []
        self.failures: dict[str, str] = dict(saved.get("failures", {}))
        """Why a run could not run, by idea: such a run has no summary to tell."""
        self.decided: dict[str, list[str]] = {"approved": list(saved.get("decided", {}).get("approved", [])),
                                              "rejected": list(saved.get("decided", {}).get("rejected", []))}
        """Approvals given by file or prompt (the manifest's own are re-read each time): kept across resumes."""
        used = saved.get("ideationUsed") or {}
        self.ideation_used = Usage(tokens=int(used.get("tokens", 0)), usd=float(used.get("usd", 0.0)))
        """The LLM use of ideation, which counts against the campaign budget."""
        self.feedback: dict[str, str] = dict(saved.get("feedback", {}))
        """What each round's ideation was told about the earlier rounds, by round."""
        if approvals is not None:
            self.decided["approved"] += read_approvals(approvals)[0]
            self.decided["rejected"] += read_approvals(approvals)[1]
        if any(self.decided.values()):
            self._add_approvals(self.decided["approved"], self.decided["rejected"])
        self.folder.root.mkdir(parents=True, exist_ok=True)
        self.folder.manifest.write_text(yaml.safe_dump(self.valid, sort_keys=False))

    def _add_approvals(self, approved: list[str], rejected: list[str]) -> None:
        spec = dict(self.valid["spec"])
        approval = dict(spec.get("approval") or {})
        approval["approved"] = list(dict.fromkeys([*approval.get("approved", []), *approved]))
        approval["rejected"] = list(dict.fromkeys([*approval.get("rejected", []), *rejected]))
        spec["approval"] = approval
        self._revalidate(spec)

    def _revalidate(self, spec: dict[str, Any]) -> None:
        """Check the campaign again with a changed spec (approvals): names must be ideas it has."""
        obj = {**self.valid, "spec": spec}
        self.valid = validate_campaign(obj, known_ideas=[r.idea.name for r in self.ideas])
        self.spec = campaign_spec_from_dict(self.valid["spec"])

    def _load_ideas(self) -> list[IdeaRecord]:
        data = read_json_object(self.folder.state) or {}
        return [IdeaRecord(CampaignIdea(name=i["name"], title=i["title"], hypothesis=i.get("hypothesis", ""),
                                        description=i.get("description", ""), round=int(i.get("round", 1))),
                           dropped=i.get("dropped", "")) for i in data.get("ideaList", [])]

    def _propose(self, round_: int) -> None:
        """The ideas of a round: the fixed list, or (with spec.topic) the LLM's, told what earlier rounds found."""
        if self.spec.open_ended:
            self._ideate(round_)
        elif self.valid["spec"].get("ideas", {}).get("inline") is None:
            raise CampaignStopped("spec.ideas: only spec.ideas.inline works in local mode (configMapRef and "
                                  "seedIdeas are read in a cluster)")
        else:
            self.ideas = [IdeaRecord(dataclasses.replace(i, round=round_)) for i in self.spec.ideas]
        if self.spec.approval == "manual":
            self._revalidate(dict(self.valid["spec"]))  # approvals of unknown names fail here, naming them

    def _ideate(self, round_: int) -> None:
        if self.spec.topic is None:
            raise CampaignStopped("spec.topic: only spec.topic.inline works in local mode (configMapRef is read "
                                  "in a cluster)")
        feedback = ideation_feedback(self.ideas, self.reports())
        earlier = [{"name": r.idea.name, "title": r.idea.title, "shortHypothesis": r.idea.hypothesis}
                   for r in self.ideas]
        try:
            entries, used = ideate(self.spec, parse_topic(self.spec.topic, "spec.topic.inline"), feedback, earlier)
        except AgentError as exc:
            raise CampaignStopped(f"ideation of round {round_}: {exc}") from None
        made = ideas_from_entries(entries, round=round_, taken=[r.idea.name for r in self.ideas])
        for entry, idea in zip(entries, made):
            verdict = entry.get("novelty") or {}
            dropped = f"not novel: {verdict.get('reason', '')}" if self.spec.novelty_check \
                and verdict.get("verdict") == "not novel" else ""
            self.ideas.append(IdeaRecord(idea, dropped=dropped[:1024]))
        self.ideation_used = Usage(tokens=self.ideation_used.tokens + used.tokens,
                                   usd=self.ideation_used.usd + used.usd)
        self.feedback[str(round_)] = feedback

    def reports(self) -> dict[str, RunReport]:
        """Each idea's run as its folder shows it: finished (its summary), started (folder only) or none."""
        out = {}
        for record in self.ideas:
            run = run_name(self.name, record.idea.name)
            folder = self.folder.run(run)
            report = run_report(record.idea.name, run, folder)
            if report is None and record.idea.name in self.failures:
                report = RunReport(idea=record.idea.name, run=run, phase="failed",
                                   message=self.failures[record.idea.name])
            elif report is None and folder.is_dir():
                report = RunReport(idea=record.idea.name, run=run, phase="running")
            if report is not None:
                out[record.idea.name] = report
        return out

    def step(self) -> Step:
        return next_step(self.spec, self.ideas, self.reports(), ideation_used=self.ideation_used)

    def execute_all(self) -> Step:
        """Run the campaign until it ends or waits for an approval the user has not given."""
        while True:
            step = self.step()
            self._save(step)
            if step.ideate is not None:
                self._propose(step.ideate)
                self.say(f"round {step.ideate}: {len(self.ideas)} idea(s): "
                         + ", ".join(r.idea.name for r in self.ideas))
                continue
            if step.phase == "AwaitingApproval":
                if self._ask_user():
                    continue
                raise CampaignStopped(f"{step.message}; in the manifest {self.source}, or one name a line in a file "
                                      f"given with --approvals; then continue with --resume")
            # A run left unfinished by an interruption is resumed before anything new starts.
            unfinished = [r for r in self.reports().values() if r.phase == "running"]
            if unfinished:
                self._run(unfinished[0].idea, unfinished[0].run, resume=True)
                continue
            if not step.start:
                self.say(f"campaign {self.name}: {step.phase}: {step.message}")
                return step
            idea = step.start[0]
            run = run_name(self.name, idea.name)
            self._write_run_manifest(run, idea)
            self.say(f"idea {idea.name}: run {run}")
            self._run(idea.name, run, resume=False)

    def _ask_user(self) -> bool:
        """Asks about each proposed idea; True when anything was decided."""
        if self.ask is None:
            return False
        reports = self.reports()
        approved, rejected = [], []
        for record in self.ideas:
            if state_of(self.spec, record, reports.get(record.idea.name)) != "Proposed":
                continue
            answer = self.ask(record.idea)
            if answer is True:
                approved.append(record.idea.name)
            elif answer is False:
                rejected.append(record.idea.name)
        if approved or rejected:
            self.decided["approved"] += approved
            self.decided["rejected"] += rejected
            self._add_approvals(approved, rejected)
            self.folder.manifest.write_text(yaml.safe_dump(self.valid, sort_keys=False))
        return bool(approved or rejected)

    def _write_run_manifest(self, run: str, idea: CampaignIdea) -> None:
        spec = run_spec(self.valid["spec"]["runTemplate"], idea)
        template = spec.get("template") or {}
        if template.get("path"):
            # Relative to the campaign manifest's folder, as in a run manifest; made absolute for the run's.
            spec["template"] = {**template, "path": str((self.source.parent / template["path"]).resolve())}
        manifest = {"apiVersion": "kubescientist.io/v1alpha1", "kind": "ResearchRun",
                    "metadata": {"name": run, "labels": {"kubescientist.io/campaign": self.name,
                                                         "kubescientist.io/idea": idea.name}},
                    "spec": spec}
        path = self.folder.run_manifest(run)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(manifest, sort_keys=False))

    def _run(self, idea: str, run: str, resume: bool) -> None:
        try:
            self.execute(self.folder.run_manifest(run), self.folder.root, resume)
        except RunFailed as exc:
            self.failures[idea] = str(exc)
            self.say(f"run {run} failed: {exc}")
        self._save(self.step())

    def _save(self, step: Step) -> None:
        reports = self.reports()
        direction = self.valid["spec"]["runTemplate"]["objective"].get("direction", "maximize")
        write_json(self.folder.state, {
            "campaign": self.name,
            "status": status(self.spec, step, self.ideas, reports, direction=direction,
                             ideation_used=self.ideation_used),
            "ideaList": [{**dataclasses.asdict(r.idea), "dropped": r.dropped} for r in self.ideas],
            "failures": self.failures,
            "decided": self.decided,
            "ideationUsed": {"tokens": self.ideation_used.tokens, "usd": self.ideation_used.usd},
            "feedback": self.feedback,
        })
        self.folder.html.write_text(campaign_page(self.folder, self.name, self.spec, self.ideas, reports, step,
                                                  direction))


def ideate(spec: CampaignSpec, topic: Topic, feedback: str,
           earlier: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], Usage]:
    """One round's ideas by the LLM of runTemplate.llm (its key from the environment, as for a local run)."""
    template = apply_defaults(crd_schema("ResearchRun")["properties"]["spec"],
                              copy.deepcopy(run_spec(spec.run_template, CampaignIdea("ideation", "ideation"))))
    config = from_settings(run_spec_from_dict(template).llm)

    async def go() -> tuple[list[dict[str, Any]], Usage]:
        client = LLMClient(config)
        source = OfflineCorpus([]) if spec.literature == "offline" else source_from_env(spec.literature)
        try:
            made = await Ideator(client, source, reflections=spec.reflections, novelty_check=spec.novelty_check) \
                .generate(topic, spec.ideas_per_round, earlier, feedback=feedback)
        finally:
            await client.aclose()
            await source.aclose()
        total = client.ledger.to_dict()["total"]
        return made, Usage(tokens=int(total["promptTokens"]) + int(total["completionTokens"]), usd=float(total["usd"]))

    return asyncio.run(go())


def campaign_page(folder: CampaignDir, name: str, spec: CampaignSpec, ideas: list[IdeaRecord],
                  reports: dict[str, RunReport], step: Step, direction: str) -> str:
    """campaign.html: every idea with its run's status, best metric, review, and links to the run's tree,
    paper and review where they exist (relative links, so the folder can be moved or served)."""
    rows = []
    for record in ideas:
        report = reports.get(record.idea.name)
        run = run_name(name, record.idea.name)
        links = {}
        for label, rel in (("tree", "tree.html"), ("paper", "paper/paper.pdf"), ("review", "review.json"),
                           ("summary", "summary.json")):
            if (folder.run(run) / rel).is_file():
                links[label] = f"{run}/{rel}"
        state = status(spec, step, [record], {record.idea.name: report} if report else {})["ideas"][0]["state"]
        rows.append({"idea": record.idea, "run": run if report else "", "state": state, "report": report,
                     "links": links, "dropped": record.dropped})
    board = leaderboard(list(reports.values()), "minimize" if direction == "minimize" else "maximize")
    metric = spec.run_template.get("objective", {}).get("metric", "metric")
    template = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string(
        importlib.resources.files("kubescientist").joinpath("adapters/local/campaign.html.j2").read_text())
    return template.render(name=name, phase=step.phase, message=step.message, rows=rows, board=board,
                           metric=metric, round=step.round, rounds=spec.rounds,
                           max_concurrent=spec.max_concurrent_runs)


__all__ = ["CampaignDir", "CampaignStopped", "RunFailed", "LocalCampaign", "campaign_page", "read_approvals", "run_report"]
