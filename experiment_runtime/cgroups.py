"""One control group per node: memory for the whole process tree, a process limit, a CPU share, one kill.

Processes join the group before the program execs, and every process they start is born in it, so
nothing escapes the limits or the kill by re-parenting, setsid() or a clean environment.

cgroup v1 (a hierarchy per controller) and v2 (one unified tree) are both handled. On v1 the group
is created under this process's own group in each hierarchy, so the limits of whoever runs us still
apply above it. Needs write access to the cgroup filesystem (root); `create` returns None otherwise
and says why through `unavailable_reason`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
_V1_CONTROLLERS = ("memory", "pids", "cpu")
_CPU_SHARES_PER_CPU = 1024
_CPU_WEIGHT_PER_CPU = 100
STALE_SECONDS = 60.0
"""An empty node group this old belongs to no starting executor: it is left from a killed one."""


@dataclass(frozen=True)
class NodeCgroup:
    """The node's group in each controller: where its processes are counted and killed."""

    dirs: tuple[Path, ...]
    """The group's directory in every hierarchy it was created in (one on v2)."""

    unified: bool
    """True on cgroup v2."""

    @property
    def procs_files(self) -> tuple[str, ...]:
        """The files a process writes its pid to, to join the group."""
        return tuple(str(d / "cgroup.procs") for d in self.dirs)

    def pids(self) -> set[int]:
        found: set[int] = set()
        for d in self.dirs:
            with contextlib.suppress(OSError, ValueError):
                found |= {int(line) for line in (d / "cgroup.procs").read_text().split()}
        return found

    def signal(self, sig: signal.Signals) -> None:
        for pid in self.pids():
            with contextlib.suppress(OSError):
                os.kill(pid, sig)

    def kill(self, timeout: float = 5.0) -> bool:
        """SIGKILLs every process of the group until it is empty; True when it emptied in time."""
        if self.unified:
            with contextlib.suppress(OSError):
                (self.dirs[0] / "cgroup.kill").write_text("1")
        give_up_at = time.monotonic() + timeout
        while self.pids():
            # Repeated: a process forking while we read the list may add one we did not see.
            self.signal(signal.SIGKILL)
            if time.monotonic() >= give_up_at:
                return False
            time.sleep(0.02)
        return True

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process of the group for exceeding its memory limit."""
        if self.unified:
            return _counter(self.dirs[0] / "memory.events", "oom_kill") > 0
        memory = self._dir("memory")
        if memory is None:
            return False
        return _counter(memory / "memory.oom_control", "oom_kill") > 0

    def pids_exhausted(self) -> bool:
        """Whether a fork or clone of the group was refused by its process limit."""
        d = self.dirs[0] if self.unified else self._dir("pids")
        return d is not None and _counter(d / "pids.events", "max") > 0

    def peak_memory(self) -> int:
        if self.unified:
            return _read_int(self.dirs[0] / "memory.peak")
        memory = self._dir("memory")
        return 0 if memory is None else _read_int(memory / "memory.max_usage_in_bytes")

    def remove(self) -> None:
        """Kills what is left and deletes the group (a group with processes cannot be removed)."""
        self.kill()
        for d in self.dirs:
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)  # the last process is still exiting

    def _dir(self, controller: str) -> Path | None:
        return next((d for d in self.dirs if d.is_relative_to(ROOT / controller)), None)


def create(name: str, memory_bytes: int | None, max_processes: int, cpus: float | None) -> NodeCgroup:
    """Creates the node's group with its limits; raises OSError when the machine does not allow it.

    First removes the empty groups an executor killed outright (SIGKILL) could not remove itself.
    """
    if (ROOT / "cgroup.controllers").exists():
        _sweep([ROOT / "kubescientist"])
        return _create_v2(name, memory_bytes, max_processes, cpus)
    own = _own_groups()
    _sweep([ROOT / c / own.get(c, "").lstrip("/") / "kubescientist" for c in _V1_CONTROLLERS])
    return _create_v1(name, memory_bytes, max_processes, cpus)


def _sweep(parents: list[Path]) -> None:
    """Deletes empty node groups older than `STALE_SECONDS` (younger ones may be waiting for their process).

    The kernel refuses to delete a group that still has processes, so a running node's group survives this.
    """
    now = time.time()
    for parent in parents:
        try:
            children = list(parent.glob("node-*"))
        except OSError:
            continue
        for d in children:
            with contextlib.suppress(OSError):
                if now - d.stat().st_mtime > STALE_SECONDS and not (d / "cgroup.procs").read_text().strip():
                    d.rmdir()


def unavailable_reason() -> str | None:
    """Why no group can be made here, or None when one can (a real attempt, removed at once)."""
    try:
        create(f"probe-{os.getpid()}", 1 << 30, 16, 1.0).remove()
    except OSError as err:
        return f"no cgroup ({err.strerror or err}: {getattr(err, 'filename', '') or ROOT})"
    return None


def _create_v1(name: str, memory_bytes: int | None, max_processes: int, cpus: float | None) -> NodeCgroup:
    own = _own_groups()
    dirs: list[Path] = []
    try:
        for controller in _V1_CONTROLLERS:
            d = ROOT / controller / own.get(controller, "").lstrip("/") / "kubescientist" / name
            d.mkdir(parents=True, exist_ok=True)
            dirs.append(d)
            if controller == "memory" and memory_bytes is not None:
                (d / "memory.limit_in_bytes").write_text(str(memory_bytes))
                # Without swap accounting the file is absent and there is no swap to escape to.
                with contextlib.suppress(FileNotFoundError):
                    (d / "memory.memsw.limit_in_bytes").write_text(str(memory_bytes))
            elif controller == "pids":
                (d / "pids.max").write_text(str(max_processes))
            elif controller == "cpu" and cpus is not None:
                (d / "cpu.shares").write_text(str(max(2, round(cpus * _CPU_SHARES_PER_CPU))))
    except OSError:
        NodeCgroup(tuple(dirs), unified=False).remove()
        raise
    return NodeCgroup(tuple(dirs), unified=False)


def _create_v2(name: str, memory_bytes: int | None, max_processes: int, cpus: float | None) -> NodeCgroup:
    parent = ROOT / "kubescientist"
    parent.mkdir(exist_ok=True)
    for d in (ROOT, parent):
        (d / "cgroup.subtree_control").write_text("+memory +pids +cpu")
    d = parent / name
    d.mkdir(exist_ok=True)
    group = NodeCgroup((d,), unified=True)
    try:
        if memory_bytes is not None:
            (d / "memory.max").write_text(str(memory_bytes))
            with contextlib.suppress(FileNotFoundError):
                (d / "memory.swap.max").write_text("0")
        (d / "pids.max").write_text(str(max_processes))
        if cpus is not None:
            (d / "cpu.weight").write_text(str(min(10000, max(1, round(cpus * _CPU_WEIGHT_PER_CPU)))))
    except OSError:
        group.remove()
        raise
    return group


def _own_groups() -> dict[str, str]:
    """This process's group path in each v1 controller, from /proc/self/cgroup."""
    groups: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(","):
            groups[controller] = path
    return groups


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def _counter(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0
