"""Read-only folders a node's program sees besides its work dir: its virtualenv and its datasets.

bubblewrap starts as the node's unprivileged uid and opens every source path as that uid, so a source
the uid cannot reach (a virtualenv cached under /root, which is 0700) cannot be bound directly; an fd
opened by root does not help either (bwrap resolves it back to the path). A root executor therefore
first bind-mounts such a source, read-only, onto a folder of the node dir in its own private mount
namespace (`experiment_runtime.disk.private_mount_namespace`), where the uid can reach it; the mount
vanishes with the executor, however it ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_MS_RDONLY = 0x1
_MS_REMOUNT = 0x20
_MS_BIND = 0x1000
_MS_REC = 0x4000
_MNT_DETACH = 0x2
_libc = ctypes.CDLL(None, use_errno=True)

STAGING = ".mounts"
"""Folder of the node dir under which a root executor stages what the sandbox uid cannot reach."""


@dataclass(frozen=True)
class Bind:
    """One folder bound read-only into the program's namespaces."""

    source: Path
    """The folder on this machine."""

    target: Path
    """Where the program sees it (absolute)."""


def virtualenv_of(python: str) -> Path | None:
    """The virtualenv `python` belongs to (the folder holding pyvenv.cfg), or None."""
    root = Path(python).parent.parent
    return root if (root / "pyvenv.cfg").is_file() else None


def reachable(path: Path, uid: int, gid: int) -> bool:
    """Whether `uid` (no supplementary groups) may traverse every folder down to `path` and read it."""
    if uid == os.getuid():
        return os.access(path, os.R_OK | os.X_OK)
    for folder in [*reversed(path.resolve().parents), path.resolve()]:
        try:
            st = folder.stat()
        except OSError:
            return False
        if st.st_uid == uid:
            bits = stat.S_IXUSR
        else:
            bits = stat.S_IXGRP if st.st_gid == gid else stat.S_IXOTH
        if not st.st_mode & bits:
            return False
    return True


@contextlib.contextmanager
def staged(binds: tuple[Bind, ...], node_dir: Path, uid: int, gid: int) -> Iterator[tuple[Bind, ...]]:
    """`binds` with each source the sandbox uid cannot reach replaced by a read-only mount it can reach.

    Raises OSError when such a source must be staged but cannot be (not root: then the program runs as
    the runner, who reaches what it named, so this does not happen for a runner's own folders).
    """
    mounted: list[Path] = []
    result: list[Bind] = []
    try:
        for index, bind in enumerate(binds):
            if not bind.source.is_dir():
                raise OSError(f"{bind.source}: no such folder (to be seen read-only at {bind.target})")
            if reachable(bind.source, uid, gid):
                result.append(bind)
                continue
            stage = node_dir.resolve() / STAGING / str(index)
            stage.mkdir(parents=True, exist_ok=True)
            (node_dir / STAGING).chmod(0o755)
            _bind_read_only(bind.source, stage)
            mounted.append(stage)
            # A virtualenv bound at its own path keeps working at the staged one only if it is relocatable,
            # which `uv venv --relocatable` makes it: the target follows the stage when it was the source.
            target = stage if bind.target == bind.source else bind.target
            result.append(Bind(stage, target))
        yield tuple(result)
    finally:
        for stage in reversed(mounted):
            _libc.umount2(str(stage).encode(), _MNT_DETACH)
        if mounted:
            with contextlib.suppress(OSError):
                for stage in mounted:
                    stage.rmdir()
                (node_dir / STAGING).rmdir()


def _bind_read_only(source: Path, target: Path) -> None:
    if os.geteuid() != 0:
        raise OSError(f"{source}: the sandbox uid cannot reach it and only root can bind it where it can")
    if _libc.mount(str(source).encode(), str(target).encode(), None, _MS_BIND | _MS_REC, None) != 0:
        raise OSError(f"{source}: cannot bind it for the sandbox: {os.strerror(ctypes.get_errno())}")
    flags = _MS_BIND | _MS_REMOUNT | _MS_RDONLY | _MS_REC
    if _libc.mount(None, str(target).encode(), None, flags, None) != 0:
        error = os.strerror(ctypes.get_errno())
        _libc.umount2(str(target).encode(), _MNT_DETACH)
        raise OSError(f"{source}: cannot make its bind read-only: {error}")
