"""Live progress of a local run in the terminal (rich), or plain log lines when not on a terminal.

Fits 80 columns: the bar, the running nodes and the counts are three lines; node lines are fixed-width columns
with what each node tried. Everything a node printed is escaped before it reaches the console.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.text import Text

from kubescientist.adapters.local.rundir import RunDir
from kubescientist.core.engine import Engine
from kubescientist.core.journal import FINISHED, Event, Node
from kubescientist.core.printable import printable
from kubescientist.core.spec import RunSpec
from kubescientist.core.stats import fmt_stats, plain
from kubescientist.core.summary import change_of, node_counts, node_seed_stats

CHANGE_WIDTH = 26
"""Columns for what a node tried in its log line (the line stays within 80 columns)."""


def remaining_nodes(spec: RunSpec, engine: Engine) -> int:
    """Nodes still to be created, at most: unused stage budgets and seed re-runs, capped by the run's budget."""
    journal = engine.journal
    if journal.phase != "searching":
        return 0
    left = 0
    for record in journal.stages:
        if record.status in ("waiting", "searching"):
            created = sum(1 for _ in journal.in_stage(record.name))
            left += 0 if record.goal_met else max(0, spec.stage(record.name).max_nodes - created)
        if record.status in ("waiting", "searching", "judging", "done"):
            left += max(0, spec.seeds - len(record.seed_nodes))
    if spec.budget.max_total_nodes is not None:
        left = min(left, max(0, spec.budget.max_total_nodes - len(journal.nodes)))
    return left


def eta_seconds(spec: RunSpec, engine: Engine, elapsed: float) -> float | None:
    """Remaining time from the observed node durations and the remaining budget; None before any node ended."""
    durations = [n.outcome.duration_seconds for n in engine.journal.nodes.values()
                 if n.outcome is not None and n.outcome.duration_seconds]
    if not durations:
        return None
    running = sum(1 for n in engine.journal.nodes.values() if n.status == "running")
    work = (remaining_nodes(spec, engine) + running) * (sum(durations) / len(durations))
    eta = work / max(1, spec.search.parallelism)
    if spec.budget.wall_clock_seconds is not None:
        eta = min(eta, max(0.0, spec.budget.wall_clock_seconds - elapsed))
    return eta


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "-:--:--"
    whole = int(round(seconds))
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def best_text(engine: Engine, metric: str) -> str:
    """The run's best as everywhere else: by seed mean, with ± s.e. and n (or "single run")."""
    best = engine.best()
    if best is None:
        return "best -"
    return f"best {best.id} {metric} = {fmt_stats(node_seed_stats(engine.journal, best), best.metric)}"


def node_line(node: Node, engine: Engine) -> str:
    """One finished node in fixed columns (markup-escaped): id, stage, action, what it tried, outcome, time."""
    change = printable(change_of(node, engine.journal))
    if len(change) > CHANGE_WIDTH:
        change = change[:CHANGE_WIDTH - 1] + "…"
    took = f"{node.outcome.duration_seconds:5.1f}s" if node.outcome and node.outcome.duration_seconds else ""
    if node.status == "succeeded":
        mark, value = "[green]ok   [/]", plain(node.metric) if node.metric is not None else "-"
    elif node.outcome is not None and node.outcome.details.status == "timeout":
        mark, value = "[red]timeout[/]", ""
    else:
        mark, value = ("[red]buggy[/]" if node.status == "buggy" else "[yellow]fail [/]"), ""
    return (f"{node.id} {node.stage:<8} {node.action:<7} {escape(change):<{CHANGE_WIDTH}} {mark} "
            f"{value:>8} {took}").rstrip()


class RichReporter:
    """A progress bar over the node budget with an ETA, the running nodes, the counts and the best by seed mean,
    and one log line per finished node."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self.progress = Progress(
            TextColumn("[bold]{task.fields[stage]:<9}"), BarColumn(bar_width=None), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("ETA {task.fields[eta]}"),
            console=self.console, transient=False, expand=True,
        )
        self.live = Live(console=self.console, transient=False, refresh_per_second=4)
        self.task: TaskID | None = None
        self.metric = "metric"
        self.spec: RunSpec | None = None
        self.started_at = time.monotonic()

    def started(self, run: Any, run_dir: RunDir, engine: Engine) -> None:
        self.metric, self.spec = run.spec.objective.metric, run.spec
        self.started_at = time.monotonic()
        budget = sum(s.max_nodes for s in run.spec.stages) + run.spec.seeds * len(run.spec.stages)
        self.console.print(f"[bold]{escape(run.name)}[/]: {len(run.spec.stages)} stages, up to {budget} nodes, "
                           f"{run.spec.search.parallelism} in parallel -> {escape(str(run_dir.root))}",
                           highlight=False)
        self.task = self.progress.add_task("search", total=budget, stage="", eta=clock(None))
        self.live.start()
        self._update(engine)

    def _view(self, engine: Engine) -> RenderableType:
        width = max(20, self.console.width)
        running = [n for n in engine.journal.nodes.values() if n.status == "running"]
        tries = " · ".join(f"{n.id} {printable(change_of(n, engine.journal))}" for n in running) or "-"
        counts = node_counts(engine.journal.nodes.values())
        status = (f"good {counts['succeeded']}  buggy {counts['buggy']}  failed {counts['failed']}  "
                  f"{printable(best_text(engine, self.metric))}")
        return Group(self.progress, Text(f"running  {tries}"[:width], no_wrap=True, overflow="ellipsis"),
                     Text(status[:width], no_wrap=True, overflow="ellipsis"))

    def _update(self, engine: Engine, *, final: bool = False) -> None:
        if self.task is None or self.spec is None:
            return
        journal = engine.journal
        finished = sum(1 for n in journal.nodes.values() if n.status in FINISHED)
        unfinished = len(journal.nodes) - finished
        # The total is what ran plus what may still run, so the bar ends full when the run ends.
        total = finished if final else finished + unfinished + remaining_nodes(self.spec, engine)
        stage = engine.current_stage()
        name = stage.name if stage else "seeds" if journal.phase == "searching" else "done"
        eta = 0.0 if final else eta_seconds(self.spec, engine, time.monotonic() - self.started_at)
        self.progress.update(self.task, completed=finished, total=max(total, 1), stage=name, eta=clock(eta))
        self.live.update(self._view(engine), refresh=True)

    def node_started(self, node: Node, engine: Engine) -> None:
        self._update(engine)

    def node_finished(self, node: Node, engine: Engine) -> None:
        self.live.console.print(node_line(node, engine), highlight=False, markup=True)
        if node.status != "succeeded":
            reason = printable((node.outcome.reason if node.outcome else None) or "no reason recorded")
            limit = max(20, self.console.width - 8)
            self.live.console.print("        " + escape(reason[:limit]), highlight=False, style="dim")
        self._update(engine)

    def event(self, event: Event, engine: Engine) -> None:
        if event.kind in ("stage-started", "stage-ended", "budget", "run-ended"):
            self.live.console.print(f"[cyan]* {escape(printable(event.message))}[/]", highlight=False)
        self._update(engine)

    def finished(self, summary: dict[str, Any], engine: Engine) -> None:
        self._update(engine, final=True)
        self.live.stop()
        if not self.console.is_terminal:
            self.console.line()  # the last view ends without a newline when it is not redrawn in place
