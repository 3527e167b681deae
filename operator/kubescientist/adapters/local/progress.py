"""Live progress of a local run in the terminal (rich), or plain log lines when not on a terminal."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from kubescientist.adapters.local.rundir import RunDir
from kubescientist.core.engine import Engine
from kubescientist.core.journal import Event, Node
from kubescientist.core.spec import ResearchRun
from kubescientist.core.summary import node_counts


class RichReporter:
    """A progress bar over the node budget with a status line, and one log line per finished node."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self.progress = Progress(
            TextColumn("[bold]{task.fields[stage]:<9}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
            console=self.console, transient=False,
        )
        self.task: TaskID | None = None
        self.metric = "metric"

    def started(self, run: ResearchRun, run_dir: RunDir, engine: Engine) -> None:
        self.metric = run.spec.objective.metric
        budget = sum(s.max_nodes for s in run.spec.stages) + run.spec.seeds * len(run.spec.stages)
        self.console.print(f"[bold]{run.name}[/]: {len(run.spec.stages)} stages, up to {budget} nodes, "
                           f"{run.spec.search.parallelism} in parallel -> {run_dir.root}")
        self.progress.start()
        self.task = self.progress.add_task("search", total=budget, **self._fields(engine))
        self._update(engine)

    def _fields(self, engine: Engine) -> dict[str, Any]:
        counts = node_counts(engine.journal.nodes.values())
        stage = engine.current_stage()
        best = engine.best()
        best_text = f"{self.metric}={best.metric:.4g} ({best.id})" if best and best.metric is not None else "-"
        return {
            "stage": stage.name if stage else "seeds" if engine.journal.phase == "searching" else "done",
            "status": f"running {counts['running']}  good {counts['succeeded']}  buggy {counts['buggy']}  "
                      f"failed {counts['failed']}  best {best_text}",
        }

    def _update(self, engine: Engine) -> None:
        if self.task is None:
            return
        finished = sum(1 for n in engine.journal.nodes.values() if n.status in ("succeeded", "buggy", "failed"))
        self.progress.update(self.task, completed=finished, **self._fields(engine))

    def node_started(self, node: Node, engine: Engine) -> None:
        self._update(engine)

    def node_finished(self, node: Node, engine: Engine) -> None:
        took = f"{node.outcome.duration_seconds:.1f}s" if node.outcome and node.outcome.duration_seconds else ""
        if node.status == "succeeded":
            mark, detail = "[green]ok[/]", f"{self.metric}={node.metric:.4g}"
        else:
            reason = (node.outcome.reason if node.outcome else None) or ""
            mark = "[red]buggy[/]" if node.status == "buggy" else f"[yellow]{node.status}[/]"
            detail = escape(reason[:120])
        self.progress.console.print(f"{node.id} {node.stage:<8} {node.action:<7} {mark} {detail} {took}",
                                    highlight=False, markup=True)
        self._update(engine)

    def event(self, event: Event, engine: Engine) -> None:
        if event.kind in ("stage-started", "stage-ended", "budget", "run-ended"):
            self.progress.console.print(f"[cyan]* {event.message}[/]", highlight=False)
        self._update(engine)

    def finished(self, summary: dict[str, Any], engine: Engine) -> None:
        self._update(engine)
        self.progress.stop()
