"""Disk use of a directory tree, as the disk sees it."""

from __future__ import annotations

import os
from pathlib import Path


def disk_usage(root: Path) -> int:
    """Bytes allocated under `root`: blocks, not apparent sizes, each inode once, links not followed.

    Blocks rather than sizes because the quota protects the disk: a sparse file costs little and a
    hard link costs nothing. Entries that vanish or cannot be read while the program runs are skipped.
    """
    seen: set[tuple[int, int]] = set()
    total = 0
    stack = [str(root)]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen:
                continue
            seen.add(key)
            total += st.st_blocks * 512
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
    return total
