"""The local runner: drives the engine on one machine, each node a sandboxed subprocess.

Each node runs as ``python -m experiment_runtime run-node``, the same entrypoint a node's pod runs, so
local mode exercises exactly the data-side code the cluster does. Slots refill the moment a node ends.
Every change to the journal is appended to its log at once (``JournalStore``), so Ctrl-C or a crash loses
no finished node; ``journal.json`` is a whole snapshot, written at checkpoints and at the end.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import yaml

from experiment_runtime import RESULT_FILE, Limits, SandboxError, TemplateError, code_hash, execute, load_result
from experiment_runtime import load_template, prepare_workdir
from kubescientist.adapters import results
from kubescientist.adapters.driving import Driver, Step
from kubescientist.adapters.llm import llm_enabled, template_code
from kubescientist.adapters.local.agent import LocalAgent, resolve_idea
from kubescientist.adapters.local.environment import RequirementsError, node_args
from kubescientist.adapters.local.executors import Executors, RunnerBusy
from kubescientist.adapters.local.files import read_json, write_json
from kubescientist.adapters.local.gates import raise_if_paused
from kubescientist.adapters.local.journal_store import JournalStore
from kubescientist.adapters.local.rundir import RunDir
from kubescientist.adapters.templates import search_space_of
from kubescientist.adapters.manifest import ManifestError, load_run, validate_object
from kubescientist.agent.errors import AgentError
from kubescientist.core.engine import Engine
from kubescientist.core.journal import Details, Event, Journal, Node, Outcome
from kubescientist.core.proposer import OfflineProposer
from kubescientist.core.quantity import parse_quantity
from kubescientist.core.searchspace import SearchSpace
from kubescientist.core.spec import ResearchRun, run_spec_from_dict
from kubescientist.core.summary import summarize

EXECUTOR_GRACE_SECONDS = 30.0
"""How long past a node's deadline the runner waits for its executor before declaring it lost."""


class RunError(Exception):
    """The run cannot start or go on; the message says why and what to do."""


class Reporter(Protocol):
    def started(self, run: ResearchRun, run_dir: RunDir, engine: Engine) -> None: ...
    def node_started(self, node: Node, engine: Engine) -> None: ...
    def node_finished(self, node: Node, engine: Engine) -> None: ...
    def event(self, event: Event, engine: Engine) -> None: ...
    def finished(self, summary: dict[str, Any], engine: Engine) -> None: ...


class SilentReporter:
    """Reports nothing: a run embedded in other code (tests, a notebook) reads its journal instead."""

    def started(self, run: ResearchRun, run_dir: RunDir, engine: Engine) -> None: ...
    def node_started(self, node: Node, engine: Engine) -> None: ...
    def node_finished(self, node: Node, engine: Engine) -> None: ...
    def event(self, event: Event, engine: Engine) -> None: ...
    def finished(self, summary: dict[str, Any], engine: Engine) -> None: ...


@dataclasses.dataclass
class _Running:
    node: Node
    """The node being executed."""
    process: subprocess.Popen[bytes]
    """Its executor process (``run-node``), leader of its own process group."""
    started: float
    """When it was launched, on the runner's clock."""


class LocalRunner:
    def __init__(self, manifest: pathlib.Path, workdir: pathlib.Path, reporter: Reporter, *,
                 resume: bool = False, clock: Callable[[], float] = time.monotonic) -> None:
        """``clock``: monotonic seconds (the run's wall-clock budget and each node's wall time count on it)."""
        self.reporter = reporter
        run, valid = load_run(manifest)
        self.run_dir = RunDir(workdir.resolve() / run.name)
        self.store = JournalStore(self.run_dir.root)
        if resume:
            if not self.store.exists():
                raise RunError(f"{self.run_dir.root}: nothing to resume (no journal.json); run without --resume")
            # The run goes on with the spec it started with; a later edit of the manifest does not apply.
            valid = validate_object("ResearchRun", yaml.safe_load(self.run_dir.manifest.read_text()))
            run = ResearchRun(run.name, run.namespace, run_spec_from_dict(valid["spec"]))
            state = read_json(self.run_dir.state)
            self.template_root = pathlib.Path(state["template"]) if state.get("template") else None
            self.elapsed_before = float(state.get("elapsedSeconds", 0.0))
            journal = self.store.load() or Journal()
        else:
            if self.run_dir.root.exists() and any(self.run_dir.root.iterdir()):
                raise RunError(f"{self.run_dir.root} already holds a run: pass --resume to continue it, or "
                               "choose another --workdir")
            self.template_root = self._resolve_template(run, manifest)
            self.elapsed_before = 0.0
            journal = Journal()
        try:  # checked offline too: the CRD promises that a run with an unknown idea fails at start
            idea = resolve_idea(run.spec, manifest.parent)
        except AgentError as exc:
            raise RunError(f"{manifest}: {exc}") from None
        self.run = run
        self.spec = run.spec
        self.space = SearchSpace()
        if self.template_root is not None:
            try:
                template = load_template(self.template_root)
            except TemplateError as exc:
                raise RunError(f"spec.template.path: {exc}") from None
            self.space = search_space_of(template)
        try:  # the run's packages, variables and datasets: a problem here is the run's, before any node runs
            self.node_args = node_args(run.spec, self.template_root, manifest.parent)
        except RequirementsError as exc:
            raise RunError(f"configuration error: {exc}") from None
        # '=' joins each to its flag: an argument that itself starts with '--' must not read as an option.
        self.node_args += [f"--program-arg={arg}" for arg in (run.spec.template.args if run.spec.template else ())]
        self.proposer = OfflineProposer(self.space, run.spec.seed)
        self.agent: LocalAgent | None = None
        if llm_enabled(run.spec):
            try:
                code = template_code(self.template_root, self.space, self.spec.template.args if self.spec.template
                                     else ()) if self.template_root else None
                self.agent = LocalAgent(run.spec, idea, self.run_dir, code, resume=resume)
            except AgentError as exc:
                raise RunError(f"spec.llm: {exc}") from None
        # With an LLM, it judges each stage's best (and whether a stage met its goal early).
        self.engine = Engine(run.spec, journal, judged=self.agent is not None)
        self.driver = Driver(self.engine, self.proposer, self.agent, prepare=self._prepare)
        self._code_dirs: dict[str, pathlib.Path] = {}
        self._events_seen = len(journal.events)
        if not resume:
            self.run_dir.root.mkdir(parents=True, exist_ok=True)
            self.run_dir.manifest.write_text(yaml.safe_dump(valid, sort_keys=False))
            if run.spec.idea.inline is None:  # the paper's title and framing, offline too
                write_json(self.run_dir.idea, {
                    "name": idea.name, "title": idea.title, "hypothesis": idea.hypothesis,
                    "description": idea.description or idea.abstract, "experiments": list(idea.experiments)})
        self.sandbox_warning = self._probe_sandbox()
        try:  # one runner per run; what a crashed runner left running is stopped before any node runs again
            self.executors = Executors.claim(self.run_dir.root)
        except RunnerBusy as exc:
            raise RunError(str(exc)) from None
        # Only now, with any leftover executor stopped, is a node's result.json final.
        self._adopted = self._finished_before_restart() if resume else []
        if resume:
            self.engine.requeue_running(keep={node_id for node_id, _ in self._adopted})
        self._done: queue.Queue[_Running] = queue.Queue()
        self._running: dict[str, _Running] = {}
        self.clock = clock
        self._clock_start = clock()

    def _probe_sandbox(self) -> str | None:
        """Whether node programs can run as the unprivileged sandbox user; the reason if not.

        As root the executor drops each program to uid ``nobody`` so that its process limit holds. That
        user must reach this interpreter and its packages: a virtualenv under a private home (``/root``
        is 0700) is out of its reach. Then programs run as root, without a process limit, and the run
        says so rather than failing every node.
        """
        if os.geteuid() != 0:
            return None
        probe = self.run_dir.root / ".sandbox-probe"
        probe.mkdir(exist_ok=True)
        limits = Limits(deadline_seconds=60)
        try:
            prepare_workdir(probe, limits)
            result = execute([sys.executable, "-c", "import experiment_runtime"], probe, {}, limits)
            problem = None if result.exit_code == 0 else result.stderr.strip().splitlines()[-1:]
            reason = None if problem is None else f"{sys.executable} fails as uid {limits.sandbox_uid}: {problem}"
        except (SandboxError, OSError) as exc:
            reason = str(exc)
        finally:
            shutil.rmtree(probe, ignore_errors=True)
        if reason is None:
            return None
        return (f"node programs run as root with no process limit: the sandbox user cannot run this interpreter "
                f"({reason}); install kubescientist in a virtualenv others may read, under a directory others "
                "may traverse (make demo does)")

    @staticmethod
    def _resolve_template(run: ResearchRun, manifest: pathlib.Path) -> pathlib.Path | None:
        ref = run.spec.template
        if ref is None:
            if llm_enabled(run.spec):
                return None  # template-free: the LLM writes each program
            raise RunError(f"{manifest}: spec.template: absent, so the run is template-free and needs an LLM to "
                           "write code; set spec.llm (baseURL, models), or spec.template.path to run offline")
        if ref.path is None:
            raise RunError(f"{manifest}: spec.template: only a local path works in local mode "
                           "(configMapRef and s3 are for in-cluster runs)")
        root = (manifest.parent / ref.path).resolve()
        if not root.is_dir():
            raise RunError(f"{manifest}: spec.template.path: {root} is not a folder")
        return root

    # -- the loop -------------------------------------------------------------------------------------

    def elapsed(self) -> float:
        return self.elapsed_before + self.clock() - self._clock_start

    def execute(self) -> dict[str, Any]:
        """Run the search to its end; returns the summary. Ctrl-C stops cleanly and keeps everything."""
        self.reporter.started(self.run, self.run_dir, self.engine)
        self._save()
        try:
            self._carry_out(self.driver.step(self._adopted, self.elapsed()))
            while not self.engine.done:
                if not self._running:
                    raise_if_paused(self.engine, self.run_dir.root)
                    raise RunError("the engine has nothing to run and is not done (suspended?)")
                entry = self._done.get()
                del self._running[entry.node.id]
                outcome = self._outcome(entry, self.run_dir.node(entry.node.id))
                self._carry_out(self.driver.step([(entry.node.id, outcome)], self.elapsed()))
        except BaseException as exc:
            self._stop_all()
            self._save()
            self.store.snapshot(self.engine.journal)
            self._summary(ended_by=f"{type(exc).__name__}: {exc}".rstrip(": "))  # agrees with the journal
            raise
        finally:
            self.executors.close()
            if self.agent is not None:
                self.agent.close()
        self.store.snapshot(self.engine.journal)
        summary = self._summary()
        self.reporter.finished(summary, self.engine)
        return summary

    def _carry_out(self, step: Step) -> None:
        """Save what the step decided (before any process it implies starts), then launch and report."""
        self._save()
        for node, _ in step.finished:
            self.reporter.node_finished(node, self.engine)
        for node in step.launches:
            self._launch(node)
            self.reporter.node_started(node, self.engine)
        self._report_events()

    def _prepare(self, node: Node) -> None:
        """Write a node's config (and program, if LLM-written) and hash its code, before it starts."""
        node_dir = self.run_dir.node(node.id)
        node_dir.mkdir(parents=True, exist_ok=True)
        config = {"seed": node.config.seed, "params": node.config.params, "variant": node.config.variant,
                  "ablation": node.config.ablation}
        write_json(node_dir / "config.json", config)
        code_dir = self.template_root
        if node.config.code is not None:
            assert self.agent is not None, "LLM-written code without an LLM"
            code_dir = self.agent.program(node, self.template_root)
        assert code_dir is not None, "a template-free node without code"
        node.code_hash = code_hash(code_dir, config)
        self._code_dirs[node.id] = code_dir

    def _launch(self, node: Node) -> None:
        node_dir = self.run_dir.node(node.id)
        # A result left by an earlier attempt must not pass for this one's after a crash (see _finished_before_restart).
        (node_dir / RESULT_FILE).unlink(missing_ok=True)
        resources = self.spec.resources
        command = [sys.executable, "-m", "experiment_runtime", "run-node", "--code", str(self._code_dirs.pop(node.id)),
                   "--node-dir", str(node_dir), "--config", str(node_dir / "config.json"),
                   "--deadline", str(resources.deadline_seconds),
                   "--memory", str(int(parse_quantity(resources.memory)))]
        command += self.node_args
        if self.sandbox_warning:
            command.append("--keep-root")
        process = self.executors.launch(node.id, command, node_dir / "executor.log",
                                        cpus=float(parse_quantity(resources.cpu)), network=resources.network)
        entry = _Running(node, process, self.clock())
        self._running[node.id] = entry
        threading.Thread(target=self._wait, args=(entry,), daemon=True, name=f"wait-{node.id}").start()

    def _wait(self, entry: _Running) -> None:
        try:
            entry.process.wait(timeout=self.spec.resources.deadline_seconds + EXECUTOR_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(entry.process.pid, signal.SIGKILL)
            entry.process.wait()
        self.executors.finished(entry.node.id)
        self._done.put(entry)

    def _finished_before_restart(self) -> list[tuple[str, Outcome]]:
        """Nodes whose executor wrote its result before the previous runner died, with their outcomes: they
        finished, so they are folded in, never run again."""
        found = []
        for node in self.engine.journal.unfinished():
            if node.status != "running":
                continue
            try:
                result = load_result(self.run_dir.node(node.id))
            except (OSError, ValueError, KeyError):
                continue  # it never finished: it runs again
            found.append((node.id, results.outcome(result, Details(adopted=True))))
        return found

    def _outcome(self, entry: _Running, node_dir: pathlib.Path) -> Outcome:
        wall = Details(wall_seconds=round(self.clock() - entry.started, 3))
        try:
            result = load_result(node_dir)
        except (OSError, ValueError, KeyError) as exc:
            log = (node_dir / "executor.log").read_text(errors="replace")[-2000:]
            return results.infrastructure(
                f"executor exited {entry.process.returncode} without a result ({exc}): {log}", wall)
        return results.outcome(result, wall)

    def _stop_all(self) -> None:
        """Stop every executor; each kills its program's process group on SIGTERM."""
        for entry in self._running.values():
            try:
                os.killpg(entry.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for entry in self._running.values():
            try:
                entry.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(entry.process.pid, signal.SIGKILL)

    def _report_events(self) -> None:
        for event in self.engine.journal.events[self._events_seen:]:
            self.reporter.event(event, self.engine)
        self._events_seen = len(self.engine.journal.events)

    def _save(self) -> None:
        self.store.save(self.engine.journal)
        write_json(self.run_dir.state, {"template": str(self.template_root) if self.template_root else None,
                                        "elapsedSeconds": self.elapsed()})
        if self.agent is not None:
            self.agent.save()

    def _summary(self, ended_by: str | None = None) -> dict[str, Any]:
        """Write summary.json; ``ended_by`` names what stopped the loop early (Ctrl-C, an error)."""
        summary = summarize(self.spec, self.engine.journal, self.agent.accounts() if self.agent else None)
        if ended_by is not None:
            summary["endedBy"] = ended_by
        nodes = self.engine.journal.nodes.values()
        summary = {
            "run": self.run.name,
            "runDir": str(self.run_dir.root),
            "template": str(self.template_root) if self.template_root else None,
            **summary,
            "sandbox": {"processLimit": self.sandbox_warning is None, "warning": self.sandbox_warning,
                        **self.executors.protections.to_json()},
            "timings": {
                "wallSeconds": round(self.elapsed(), 3),
                "nodeSeconds": round(sum((n.outcome.duration_seconds or 0.0) for n in nodes if n.outcome), 3),
                "executorOverheadSeconds": round(sum(n.outcome.details.overhead_seconds or 0.0
                                                     for n in nodes if n.outcome), 3),
            },
        }
        if self.agent is not None:
            summary["llm"] = self.agent.accounts()
        write_json(self.run_dir.summary, summary)
        return summary


def describe(summary: dict[str, Any]) -> str:
    """One line on the best result, for the end of a run."""
    best = summary.get("best")
    if not best:
        return f"no working node: {summary.get('message')}"
    seeds = best.get("seeds")
    metric = summary["objective"]["metric"]
    if seeds and seeds["n"] > 1:
        return (f"best node {best['node']} (stage {best['stage']}): {metric} = {seeds['mean']:.4g} "
                f"± {seeds['stderr']:.2g} (mean ± s.e. over {seeds['n']} seeds)")
    return f"best node {best['node']} (stage {best['stage']}): {metric} = {best['metric']:.4g}"


__all__ = ["LocalRunner", "RunError", "ManifestError", "Reporter", "describe"]
