"""Collecting what a finished program left in its out_dir.

The runner may be root while the program was not, so nothing here follows a symbolic link the
program made: otherwise a `plot.png -> /root/.ssh/id_rsa` link would be copied out as a plot.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path
from typing import BinaryIO

MAX_PLOTS = 32
"""Plots kept per node (the first in path order); an ExperimentNode lists at most this many."""

MAX_PLOT_BYTES = 20 * 1024 * 1024
"""A larger "plot" is not kept: a figure for a paper is far smaller."""

MAX_KEPT_FILES = 4096
"""Files of a work dir kept after its node ran (an inode flood is not copied back)."""

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IHDR = b"IHDR"


def collect_plots(out_dir: Path, dest: Path) -> list[str]:
    """Copies every real PNG under `out_dir` to `dest`, keeping relative paths; returns them.

    Real: a regular file (not a link) named `*.png`, at most `MAX_PLOT_BYTES`, starting with the PNG
    signature and its IHDR chunk. Anything else named like a plot is left where it is.
    """
    if not _real_dir(out_dir):
        return []
    found: list[str] = []
    for current, dirnames, filenames in os.walk(out_dir):
        # os.walk does not descend into linked directories; sorting makes the kept subset stable.
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(current) / name
            if name.lower().endswith(".png") and _is_png(path):
                found.append(path.relative_to(out_dir).as_posix())
    kept = sorted(found)[:MAX_PLOTS]
    for relative in kept:
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        _copy_regular(out_dir / relative, target)
    return kept


def _is_png(path: Path) -> bool:
    try:
        st = path.lstat()
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_PLOT_BYTES:
            return False
        with _open_regular(path) as f:
            head = f.read(16)
    except OSError:
        return False
    return head[:8] == PNG_SIGNATURE and head[12:16] == _IHDR


def _open_regular(path: Path) -> BinaryIO:
    """Opens `path` for reading unless it is (or has since become) a link."""
    return os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb")


def _copy_regular(src: Path, dest: Path) -> None:
    # O_NOFOLLOW and a size bound on the open file: a swap for a link or a growing file after the check does nothing.
    with _open_regular(src) as f, open(dest, "wb") as out:
        out.write(f.read(MAX_PLOT_BYTES + 1)[:MAX_PLOT_BYTES])


def _real_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(path.lstat().st_mode)
    except OSError:
        return False


def keep_tree(src: Path, dest: Path, max_bytes: int, max_file_bytes: int | None = None,
              max_files: int = MAX_KEPT_FILES) -> list[str]:
    """Copies the tree `src` to `dest` (links as links, never followed) while the copied bytes stay within
    `max_bytes` and files within `max_files`, skipping files over `max_file_bytes`; returns the relative
    paths of the regular files left out (at most `max_files` of them are named)."""
    dropped: list[str] = []
    budget = max_bytes
    files = 0
    for current, dirnames, filenames in os.walk(src):
        dirnames.sort()
        here = Path(current)
        target_dir = dest / here.relative_to(src)
        target_dir.mkdir(parents=True, exist_ok=True)
        for name in sorted(filenames) + [d for d in dirnames if (here / d).is_symlink()]:
            path = here / name
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(path), target_dir / name)
            elif stat.S_ISREG(st.st_mode):
                too_big = st.st_size > budget or (max_file_bytes is not None and st.st_size > max_file_bytes)
                if too_big or files >= max_files:
                    if len(dropped) < max_files:
                        dropped.append(path.relative_to(src).as_posix())
                    continue
                budget -= st.st_size
                files += 1
                shutil.copyfile(path, target_dir / name, follow_symlinks=False)
    return dropped
