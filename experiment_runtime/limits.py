"""The resource limits one node's program runs under.

Limits are enforced by the kernel where the machine allows it (a control group for memory, processes
and CPU; a tmpfs for disk and inodes; namespaces for files, processes and network), by rlimits set
in the child before it execs (file size, process count, no core dumps; address space where there is
no control group), and by the parent while it waits (wall-clock deadline, disk use, bounded output
capture). See `experiment_runtime.sandbox`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB

NOBODY = 65534


@dataclass(frozen=True)
class Limits:
    """What one run of a node's program may use; every field has a safe default except time."""

    deadline_seconds: float = 600.0
    """Wall-clock seconds from spawn; on expiry the whole process tree gets SIGTERM, then SIGKILL."""

    memory_bytes: int | None = None
    """Memory of the whole process tree (its control group), or None for no limit.

    Where no control group can be made (not root), RLIMIT_AS (virtual address space) per process
    instead: a weaker bound, and address space is not memory (the PyTorch CUDA wheel maps several
    GiB at import). Files in a tmpfs scratch space are memory too, and count here.
    """

    max_file_bytes: int = GIB
    """RLIMIT_FSIZE: the largest regular file the program may write (pipes are not counted)."""

    max_processes: int = 256
    """Processes and threads the program may add (RLIMIT_NPROC, which Linux counts per user).

    The rlimit is set to the tasks the sandbox user already has plus this many. The kernel never
    applies RLIMIT_NPROC to root, so a runner that is root drops the program to `sandbox_uid`.
    Sandboxes that share a uid share the count; give concurrent sandboxes distinct uids when their
    process budgets must be independent.
    """

    max_output_bytes: int = MIB
    """Bytes kept per output stream: the head and the tail, the middle replaced by a marker line."""

    max_disk_bytes: int = 2 * GIB
    """Total disk use of the work dir, polled while the program runs; exceeding it kills it."""

    shm_bytes: int | None = None
    """Size of the program's /dev/shm as a tmpfs of its own, outside the disk quota; None keeps /dev/shm a
    folder of the node's scratch space, under `max_disk_bytes` with the work dir and /tmp.

    A sized /dev/shm is memory, as in a pod (a memory-medium emptyDir): its pages are charged to the
    writer's control group, so they count against `memory_bytes`, and the kernel refuses writes past
    the size (ENOSPC). Only with namespaces: without them the program shares the host's /dev/shm.
    """

    kill_grace_seconds: float = 2.0
    """Time between SIGTERM and SIGKILL when the deadline passes."""

    sandbox_uid: int = NOBODY
    """Uid the program runs as when the runner is root; ignored (the runner's own uid) otherwise."""

    sandbox_gid: int = NOBODY
    """Gid the program runs as when the runner is root; supplementary groups are cleared."""

    max_inodes: int = 65_536
    """Files and folders the node may create in its scratch space (a tmpfs limit; only where root)."""

    max_kept_bytes: int = 256 * MIB
    """Bytes of the work dir copied out of the scratch space when the program ends (code, outputs)."""

    cpus: float | None = None
    """CPU share of the node's control group (1.0 = one CPU's worth when CPUs are contended)."""

    network: bool = False
    """Give the program the host's network. False: a network namespace with loopback only."""

    isolate: bool = True
    """Run the program in namespaces of its own (bubblewrap) where the machine allows it."""

    use_cgroup: bool = True
    """Give the program a control group of its own where the machine allows it (root)."""

    own_uid: bool = False
    """`sandbox_uid` is the node's alone (leased by `run_node`); recorded in the protections."""

    drop_privileges: bool = True
    """When the runner is root, run the program as `sandbox_uid`. False keeps root, and with it no
    process limit (Linux ignores RLIMIT_NPROC for root): only for a root runner whose interpreter the
    sandbox user cannot reach, and only knowingly."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.deadline_seconds) and self.deadline_seconds > 0):
            raise ValueError(f"deadline_seconds: must be a positive number, got {self.deadline_seconds}")
        if not (math.isfinite(self.kill_grace_seconds) and self.kill_grace_seconds >= 0):
            raise ValueError(f"kill_grace_seconds: must be >= 0, got {self.kill_grace_seconds}")
        positive = {
            "max_file_bytes": self.max_file_bytes,
            "max_processes": self.max_processes,
            "max_output_bytes": self.max_output_bytes,
            "max_disk_bytes": self.max_disk_bytes,
            "max_inodes": self.max_inodes,
            "max_kept_bytes": self.max_kept_bytes,
        }
        if self.shm_bytes is not None:
            positive["shm_bytes"] = self.shm_bytes
        if self.memory_bytes is not None:
            positive["memory_bytes"] = self.memory_bytes
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"{name}: must be >= 1, got {value}")
        if self.cpus is not None and not (math.isfinite(self.cpus) and self.cpus > 0):
            raise ValueError(f"cpus: must be a positive number, got {self.cpus}")
        for name, value in {"sandbox_uid": self.sandbox_uid, "sandbox_gid": self.sandbox_gid}.items():
            # Dropping to uid 0 would leave RLIMIT_NPROC unenforced while looking sandboxed.
            if value < 1:
                raise ValueError(f"{name}: must be an unprivileged id (>= 1), got {value}")


def max_file_bytes_for(max_disk_bytes: int) -> int:
    """The file size limit that goes with a disk quota given by the run: no smaller than the quota, so that a
    run given more disk may also write files as large (a dataset cache, a checkpoint) past the default 1 GiB."""
    return max(Limits.max_file_bytes, max_disk_bytes)
