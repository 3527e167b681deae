"""Collecting what a finished program left in its out_dir.

The runner may be root while the program was not, so nothing here follows a symbolic link the
program made: otherwise a `plot.png -> /root/.ssh/id_rsa` link would be copied out as a plot.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

MAX_PLOTS = 32
"""Plots kept per node (the first in path order); an ExperimentNode lists at most this many."""


def collect_plots(out_dir: Path, dest: Path) -> list[str]:
    """Copies every regular `*.png` under `out_dir` to `dest`, keeping relative paths; returns them."""
    if not _real_dir(out_dir):
        return []
    found: list[str] = []
    for current, dirnames, filenames in os.walk(out_dir):
        # os.walk does not descend into linked directories; sorting makes the kept subset stable.
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(current) / name
            if name.lower().endswith(".png") and stat.S_ISREG(path.lstat().st_mode):
                found.append(path.relative_to(out_dir).as_posix())
    kept = sorted(found)[:MAX_PLOTS]
    for relative in kept:
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out_dir / relative, target, follow_symlinks=False)
    return kept


def _real_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(path.lstat().st_mode)
    except OSError:
        return False
