"""An AI Scientist v1 template's `plot.py`, run after its experiment, and the figures it draws.

v1 templates plot from the work dir: `plot.py` reads `run_*/final_info.json` (`run_0` being the run
of the unchanged experiment) and saves its figures in the current folder. A node has one run, in
`run/`, so `run_0` is linked to it for the plot and removed afterwards (it is not code). The plot runs
in the same sandbox, limits and scratch space as the experiment; a failing plot costs the node its
figures, not its result: what it printed is kept in `plot.txt`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from experiment_runtime.artifacts import MAX_PLOTS, collect_plots
from experiment_runtime.sandbox import Execution

V1_RUN_NAME = "run_0"
LOG = "plot.txt"
"""The plot's exit status and output, in the node dir."""


def run_plot(plot_script: str, work: Path, out_dir: str, node_dir: Path, python: str,
             execute: Callable[[list[str]], Execution]) -> list[str]:
    """Runs `plot_script` in `work` through `execute` and copies the PNGs it drew to `<node_dir>/plots/`.

    Returns their paths relative to `plots/`. Figures already in the work dir before the plot (the
    template's own files) are not collected.
    """
    link = work / V1_RUN_NAME
    linked = not os.path.lexists(link)
    if linked:
        link.symlink_to(out_dir)
    before = set(_pngs(work))
    try:
        execution = execute([python, plot_script])
    finally:
        if linked:
            link.unlink(missing_ok=True)
    status = f"exit code {execution.exit_code}" if execution.signal is None else f"signal {execution.signal}"
    if execution.killed_reason is not None:
        status += f" ({execution.killed_reason})"
    (node_dir / LOG).write_text(f"{plot_script}: {status}\n--- stdout\n{execution.stdout}\n--- stderr\n"
                                f"{execution.stderr}", encoding="utf-8")
    drawn = [name for name in _pngs(work) if name not in before]
    if not drawn:
        return []
    # collect_plots keeps only real PNGs (no links), so it reads from a folder holding just the new ones.
    staging = work / ".plots"
    staging.mkdir(exist_ok=True)
    for name in drawn[:MAX_PLOTS]:
        os.replace(work / name, staging / name)
    try:
        return collect_plots(staging, node_dir / "plots")
    finally:
        for name in drawn[:MAX_PLOTS]:
            os.replace(staging / name, work / name)
        staging.rmdir()


def _pngs(work: Path) -> list[str]:
    """The PNG files at the top of the work dir (where v1 plot scripts save their figures)."""
    return sorted(entry.name for entry in os.scandir(work)
                  if entry.name.lower().endswith(".png") and entry.is_file(follow_symlinks=False))
