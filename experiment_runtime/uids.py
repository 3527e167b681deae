"""A uid of its own for each running node, so that nodes cannot signal, trace or read each other.

A uid is leased by holding an exclusive lock on its file in `LEASE_DIR`; the kernel releases the lock
when the holder dies, however it dies, so a crashed executor never strands a uid. A uid that still has
processes (an orphan of a dead executor) is skipped rather than shared.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import psutil

LEASE_DIR = Path("/run/kubescientist/uids")
FIRST_UID = 200_000
"""Far above the ids distributions give to people and services, below the ranges of subuid files."""
POOL_SIZE = 10_000


class NoFreeUid(Exception):
    """Every uid of the pool is leased or still has processes."""


@contextlib.contextmanager
def lease() -> Iterator[int]:
    """Holds a free uid of the pool for the duration of the block (root only: the lease dir is root's)."""
    LEASE_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
    busy = _uids_with_processes()
    for uid in range(FIRST_UID, FIRST_UID + POOL_SIZE):
        if uid in busy:
            continue
        fd = os.open(LEASE_DIR / str(uid), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        try:
            yield uid
        finally:
            os.close(fd)
        return
    raise NoFreeUid(f"all {POOL_SIZE} sandbox uids from {FIRST_UID} are in use")


def _uids_with_processes() -> set[int]:
    found: set[int] = set()
    for proc in psutil.process_iter(["uids"]):
        uids = proc.info["uids"]
        if uids is not None:
            found.add(uids.real)
    return found
