"""Disk use of a node: its scratch space (a tmpfs of its own where possible) and what it allocates."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
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


_MS_NOSUID = 0x2
_MS_NODEV = 0x4
_MS_REC = 0x4000
_MS_PRIVATE = 1 << 18
_MNT_DETACH = 0x2
_CLONE_NEWNS = 0x00020000
_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class Scratch:
    """A node's writable space: its work dir, its /tmp and its /dev/shm, under one quota."""

    root: Path
    """The mount point (or plain folder) holding `work`, `tmp` and `shm`."""

    tmpfs: bool
    """True when `root` is a tmpfs of its own: the kernel enforces size and inodes, and counts
    blocks of files deleted while open."""

    unavailable_reason: str | None
    """Why `root` is a plain folder, when it is."""

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def shm(self) -> Path:
        return self.root / "shm"

    def usage(self) -> tuple[int, int | None]:
        """Bytes in use and inodes left (None when there is no inode limit)."""
        if not self.tmpfs:
            return disk_usage(self.root), None
        st = os.statvfs(self.root)
        return (st.f_blocks - st.f_bfree) * st.f_frsize, st.f_ffree


@contextlib.contextmanager
def scratch(root: Path, max_bytes: int, max_inodes: int, uid: int, gid: int) -> Iterator[Scratch]:
    """A fresh scratch space at `root`, owned by `uid`; unmounted and deleted when the block ends.

    A tmpfs where this process may mount one (root), a plain folder otherwise.
    """
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    options = f"size={max_bytes},nr_inodes={max_inodes},mode=0700,uid={uid},gid={gid}"
    reason = _mount("tmpfs", root, "tmpfs", _MS_NOSUID | _MS_NODEV, options)
    try:
        for sub in ("work", "tmp", "shm"):
            (root / sub).mkdir()
            os.chown(root / sub, uid, gid)
            (root / sub).chmod(0o1777 if sub != "work" else 0o700)
        os.chown(root, uid, gid)
        yield Scratch(root, reason is None, reason)
    finally:
        if reason is None:
            _libc.umount2(str(root).encode(), _MNT_DETACH)
        shutil.rmtree(root, ignore_errors=True)


def private_mount_namespace() -> str | None:
    """Moves this (single-threaded) process into a mount namespace of its own, so that the mounts it
    makes vanish when it dies, however it dies; returns why not, when it cannot (not root)."""
    if _libc.unshare(_CLONE_NEWNS) != 0:
        return os.strerror(ctypes.get_errno())
    if _libc.mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
        return os.strerror(ctypes.get_errno())
    return None


def _mount(source: str, target: Path, fstype: str, flags: int, options: str) -> str | None:
    if os.geteuid() != 0:
        return "not root"
    if _libc.mount(source.encode(), str(target).encode(), fstype.encode(), flags, options.encode()) != 0:
        return f"mount: {os.strerror(ctypes.get_errno())}"
    return None
