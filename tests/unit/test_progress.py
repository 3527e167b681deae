"""The terminal display: what each node tried, the best by seed mean, an ETA, a full bar, 80 columns, no
escape codes from node output."""

from __future__ import annotations

import io
import re
import pathlib
import sys

from rich.console import Console

from kubescientist.adapters.local.progress import RichReporter, eta_seconds, remaining_nodes
from kubescientist.adapters.local.rundir import RunDir
from kubescientist.core.engine import Engine
from kubescientist.core.spec import ResearchRun

sys.path.insert(0, str(pathlib.Path(__file__).parent / "core"))
from simulate import spec  # noqa: E402
from test_summary_stats import lucky_journal  # noqa: E402


def test_the_display_names_what_nodes_tried_and_the_best_by_seed_mean(tmp_path: pathlib.Path) -> None:
    journal = lucky_journal()
    journal.nodes["n0004"].outcome.reason = "Traceback\x1b[2J\x1b]0;pwned\x07 boom\r"  # type: ignore[union-attr]
    engine = Engine(spec(), journal)
    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=True, color_system=None)
    reporter = RichReporter(console)
    reporter.started(ResearchRun("lucky", "default", spec()), RunDir(tmp_path / "lucky"), engine)
    for node in journal.nodes.values():
        reporter.node_finished(node, engine)
    reporter.finished({}, engine)
    text = out.getvalue()
    assert "\x1b[2J" not in text and "\x07" not in text and "\\x1b[2J" in text
    # rich's own cursor movements are not the node's: drop them before measuring the lines.
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    lines = [line for line in shown.replace("\r", "\n").splitlines() if line.strip()]
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    assert any(line.startswith("n0003 tuning   tune    lr=0.003") and "0.7277" in line for line in lines)
    assert any(line.startswith("n0007 research variant variant rope") for line in lines)
    assert any(line.startswith("n0010 ablation ablate  ablation no_wd") for line in lines)
    assert "best n0007 acc = 0.700 ± 0.006 (n=3)" in text
    assert "13/13" in text  # the bar ends full


def test_eta_comes_from_the_remaining_budget_and_observed_durations() -> None:
    run = spec()
    engine = Engine(run, lucky_journal())
    engine.journal.phase = "searching"
    for record in engine.journal.stages[2:]:
        record.status, record.best, record.seed_nodes = "waiting", None, []
    # research and ablation: 4 nodes each less the one each made already, and 2 seed re-runs each.
    assert remaining_nodes(run, engine) == (4 - 1) + 2 + (4 - 1) + 2
    # Every node so far took 2 s; two run in parallel.
    assert eta_seconds(run, engine, elapsed=0.0) == 10 * 2.0 / run.search.parallelism
    assert eta_seconds(spec(budget={"wallClockSeconds": 60}), engine, elapsed=55.0) == 5.0
