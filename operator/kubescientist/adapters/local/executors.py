"""The local runner's executors: one runner per run, executors that die with it, none left from before.

- A lock (``runner.lock`` in the run folder, held while the runner lives; the kernel drops it when the
  runner dies, however it dies) refuses a second runner on the same run.
- Each executor gets SIGKILL when its runner dies (the parent-death signal), and its program dies with
  it (the sandbox ties both together), so nothing of a killed run goes on writing.
- A record per running executor (``executors/<node>.json``: pid and start time) lets the next runner
  find and stop an executor that outlived its runner anyway (one started in the instant the runner
  died, before the death signal was armed) before it runs that node again.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
from typing import IO

import psutil

from experiment_runtime import Limits
from experiment_runtime.isolation import Protections
from experiment_runtime.sandbox import probe

LOCK_FILE = "runner.lock"
RECORDS = "executors"

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


class RunnerBusy(Exception):
    """Another runner holds the run."""


class Executors:
    """The executors of one run folder, for the one runner that holds its lock."""

    def __init__(self, run_root: pathlib.Path) -> None:
        self.root = run_root
        self.records = run_root / RECORDS
        self._lock: IO[bytes] | None = None
        self.protections = protections()
        """What the run's node programs run under here; `missing` is printed once when the run starts."""

    @classmethod
    def claim(cls, run_root: pathlib.Path) -> Executors:
        """Takes the run's lock and stops whatever executor an earlier runner of it left behind."""
        executors = cls(run_root)
        run_root.mkdir(parents=True, exist_ok=True)
        lock = open(run_root / LOCK_FILE, "a+b")  # noqa: SIM115 - held for the runner's lifetime
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().decode(errors="replace").strip() or "another process"
            lock.close()
            raise RunnerBusy(f"{run_root}: another kubescientist run (pid {holder}) is running this run; stop it "
                             "before resuming") from None
        lock.truncate(0)
        lock.write(str(os.getpid()).encode())
        lock.flush()
        executors._lock = lock
        executors.stop_leftovers()
        for line in executors.protections.missing:
            print(f"sandbox: {line}", file=sys.stderr)
        return executors

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def launch(self, node_id: str, command: list[str], log_path: pathlib.Path, *, cpus: float | None,
               network: bool) -> subprocess.Popen[bytes]:
        """Starts the executor `command` (``run-node ...``) for `node_id`, hiding the run's records from its
        program, and records it until `finished`."""
        command = [*command, "--hide", str(self.root)]
        if cpus is not None:
            command += ["--cpus", f"{cpus:g}"]
        if network:
            command.append("--network")
        runner = os.getpid()
        with open(log_path, "wb") as log:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True, preexec_fn=lambda: _die_with(runner))
        self.records.mkdir(exist_ok=True)
        record = {"pid": process.pid, "created": _created(process.pid), "node": node_id}
        (self.records / f"{node_id}.json").write_text(json.dumps(record))
        return process

    def finished(self, node_id: str) -> None:
        (self.records / f"{node_id}.json").unlink(missing_ok=True)

    def stop_leftovers(self) -> list[str]:
        """Kills every recorded executor still alive, with its whole sandbox; returns their nodes."""
        stopped = []
        for path in sorted(self.records.glob("*.json")) if self.records.is_dir() else []:
            try:
                record = json.loads(path.read_text())
                pid, created = int(record["pid"]), float(record["created"])
            except (OSError, ValueError, KeyError, TypeError):
                path.unlink(missing_ok=True)
                continue
            if _created(pid) == created:  # the same process, not a later one with a reused pid
                _kill_tree(pid)
                stopped.append(str(record.get("node", path.stem)))
            path.unlink(missing_ok=True)
        return stopped


def protections() -> Protections:
    """What a node's program will run under on this machine, as this user."""
    return probe(Limits())


def _die_with(runner: int) -> None:
    """In the executor before exec: SIGKILL when the runner dies; exit now if it died already."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != runner:
        os._exit(1)


def _created(pid: int) -> float | None:
    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def _kill_tree(pid: int, timeout: float = 10.0) -> None:
    """SIGKILLs an executor and its descendants, and waits until they are gone; its program's namespace and
    cgroup end with them."""
    try:
        leader = psutil.Process(pid)
        tree = [leader, *leader.children(recursive=True)]
    except psutil.Error:
        return
    for proc in tree:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)
    # Polled, not psutil.wait_procs: that would reap a child of ours and take the exit status from its owner.
    give_up_at = time.monotonic() + timeout
    while any(_alive(p) for p in tree) and time.monotonic() < give_up_at:
        time.sleep(0.05)


def _alive(proc: psutil.Process) -> bool:
    try:
        return bool(proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


__all__ = ["Executors", "RunnerBusy", "protections"]
