"""Finding and ending every process a sandboxed program started.

A program's processes are recognised by any of: its session, its process group, an environment
token the sandbox gave it, or descent from the program. The session and group alone are not enough,
because any process may call setsid(); the token survives setsid and double forks, and is only lost
by a process that execs with a fresh environment on purpose.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

import psutil

TOKEN_VARIABLE = "KUBESCIENTIST_SANDBOX_TOKEN"


def count_user_tasks(uid: int) -> int:
    """Tasks (threads included) whose real uid is `uid`: what Linux counts against RLIMIT_NPROC."""
    total = 0
    for proc in psutil.process_iter(["uids", "num_threads"]):
        uids = proc.info["uids"]
        if uids is not None and uids.real == uid:
            total += proc.info["num_threads"] or 1
    return total


def sandbox_processes(leader_pid: int, token: str, uid: int) -> list[psutil.Process]:
    """Processes of uid `uid` that belong to the sandbox whose first process was `leader_pid`.

    The caller must not have reaped the leader yet, so that its pid still names this sandbox.
    """
    try:
        descendants = {child.pid for child in psutil.Process(leader_pid).children(recursive=True)}
    except psutil.Error:
        descendants = set()  # the leader has exited: its orphans are found by session, group or token
    found = []
    for proc in psutil.process_iter(["uids"]):
        uids = proc.info["uids"]
        if uids is not None and uids.real == uid and _belongs(proc, leader_pid, token, descendants):
            found.append(proc)
    return found


def _belongs(proc: psutil.Process, leader_pid: int, token: str, descendants: set[int]) -> bool:
    if proc.pid == leader_pid or proc.pid in descendants:
        return True
    try:
        if leader_pid in (os.getsid(proc.pid), os.getpgid(proc.pid)):
            return True
        return bool(proc.environ().get(TOKEN_VARIABLE) == token)
    except (OSError, psutil.Error):
        return False


def signal_sandbox(
    leader_pid: int, token: str, uid: int, sig: signal.Signals, exclude: frozenset[int] | set[int] = frozenset()
) -> None:
    """Sends `sig` to the sandbox's process group and to every process of it found one by one,
    except the processes in `exclude` (a wrapper that would end the others at once)."""
    # The group may be empty already; members that left it are still found below.
    if leader_pid not in exclude:
        with contextlib.suppress(OSError):
            os.killpg(leader_pid, sig)
    for proc in sandbox_processes(leader_pid, token, uid):
        if proc.pid not in exclude:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(sig)


def kill_sandbox(leader_pid: int, token: str, uid: int, timeout: float = 5.0) -> None:
    """SIGKILLs the sandbox until nothing of it is left, or `timeout` seconds have passed.

    Repeated because a process that is forking while we scan can create a child the scan missed.
    Zombies count as gone: they hold no resources but a pid and are reaped by their parent or init.
    """
    give_up_at = time.monotonic() + timeout
    while True:
        signal_sandbox(leader_pid, token, uid, signal.SIGKILL)
        alive = [p for p in sandbox_processes(leader_pid, token, uid) if _running(p)]
        if not alive or time.monotonic() >= give_up_at:
            return
        # Not psutil.wait_procs: it reaps our own children, and the caller must reap the leader itself
        # to learn its exit status (a leader still unmapping its memory is not a zombie yet).
        time.sleep(0.05)


def _running(proc: psutil.Process) -> bool:
    try:
        return bool(proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False
