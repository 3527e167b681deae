"""The sandbox: scrubbed environment, limits, deadline, and no process left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import psutil
import pytest
from runtime_helpers import workdir

from experiment_runtime import Limits, SandboxError, execute, prepare_workdir, processes
from experiment_runtime.capture import BoundedCapture


def _marked() -> dict[str, str]:
    """An environment variable that every process of one program inherits (setsid and fork included)."""
    return {"KS_TEST_MARK": uuid.uuid4().hex}


def _survivors(mark: dict[str, str]) -> list[int]:
    """Host pids of live processes carrying `mark` (pids inside the sandbox are its own namespace's)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and proc.environ().get("KS_TEST_MARK") == mark["KS_TEST_MARK"]:
                found.append(proc.pid)
        except psutil.Error:
            continue
    return found


def test_environment_is_scrubbed(work_root: Path, python: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-value")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-test-secret-value")
    limits = Limits(deadline_seconds=10)
    work = workdir(work_root, limits)
    program = "import json, os; print(json.dumps(dict(os.environ)))"

    run = execute([python, "-c", program], work, {"MY_SETTING": "on"}, limits)

    assert run.exit_code == 0, run.stderr
    seen = json.loads(run.stdout)
    assert "OPENAI_API_KEY" not in seen and "AWS_SECRET_ACCESS_KEY" not in seen
    assert "secret-value" not in run.stdout
    assert seen["MY_SETTING"] == "on"
    assert seen["HOME"] == str(work)
    assert seen["PYTHONUNBUFFERED"] == "1"
    assert int(seen["OMP_NUM_THREADS"]) >= 1


def test_root_runner_drops_to_sandbox_user(work_root: Path, python: str) -> None:
    limits = Limits(deadline_seconds=10)
    work = workdir(work_root, limits)

    run = execute([python, "-c", "import os; print(os.getuid(), os.getgid(), os.getgroups())"], work, {}, limits)

    expected_uid = limits.sandbox_uid if os.geteuid() == 0 else os.getuid()
    assert run.uid == expected_uid
    uid, gid, groups = run.stdout.split(maxsplit=2)
    assert int(uid) == expected_uid
    if os.geteuid() == 0:
        assert int(gid) == limits.sandbox_gid
        assert groups.strip() == "[]"


@pytest.mark.root_only("only a root runner drops to the sandbox user")
def test_a_uid_without_a_passwd_entry_works(work_root: Path, python: str) -> None:
    limits = Limits(deadline_seconds=10, sandbox_uid=54321, sandbox_gid=54321)
    work = workdir(work_root, limits)

    run = execute([python, "-c", "import getpass, os; print(os.getuid(), getpass.getuser())"], work, {}, limits)

    assert run.exit_code == 0, run.stderr
    assert run.stdout.split() == ["54321", "uid54321"]


@pytest.mark.root_only("only a root runner drops to the sandbox user")
def test_unreachable_work_dir_is_a_clear_error(work_root: Path, python: str) -> None:
    private = work_root / "private"
    private.mkdir(mode=0o700)
    private.chmod(0o700)
    work = private / "work"
    work.mkdir()
    limits = Limits(deadline_seconds=10)

    with pytest.raises(SandboxError, match=r"private: mode 0700 does not let the sandbox uid 65534 reach"):
        prepare_workdir(work, limits)


@pytest.mark.root_only("only a root runner drops to the sandbox user")
def test_unprepared_work_dir_is_a_clear_error(work_root: Path, python: str) -> None:
    work = work_root / "work"
    work.mkdir()

    with pytest.raises(SandboxError, match="not the sandbox uid 65534; call prepare_workdir"):
        execute([python, "-c", "pass"], work, {}, Limits(deadline_seconds=10))


def test_deadline_kills_the_tree_including_a_setsid_grandchild(work_root: Path, python: str) -> None:
    limits = Limits(deadline_seconds=1.0, kill_grace_seconds=0.5)
    work = workdir(work_root, limits)
    grandchild = "import os, time; os.setsid(); open('grandchild.pid', 'w').write(str(os.getpid())); time.sleep(60)"
    program = f"import subprocess, time; subprocess.Popen([{python!r}, '-c', {grandchild!r}]); time.sleep(60)"
    started = time.monotonic()

    mark = _marked()
    run = execute([python, "-c", program], work, mark, limits)

    elapsed = time.monotonic() - started
    assert run.timed_out and run.killed_reason == "deadline"
    assert run.signal in (signal.SIGTERM, signal.SIGKILL)
    assert run.exit_code is None
    assert 1.0 <= run.duration_seconds < 1.0 + 0.5 + 1.0
    assert elapsed < 1.0 + 0.5 + 2.0
    assert (work / "grandchild.pid").exists()
    assert _survivors(mark) == []


def test_sigterm_ignoring_program_gets_sigkill_after_grace(work_root: Path, python: str) -> None:
    limits = Limits(deadline_seconds=0.5, kill_grace_seconds=0.5)
    work = workdir(work_root, limits)
    program = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"

    run = execute([python, "-c", program], work, {}, limits)

    assert run.timed_out
    assert run.signal == signal.SIGKILL
    assert run.duration_seconds < 0.5 + 0.5 + 1.0


def test_kill_sandbox_leaves_the_leader_for_its_parent_to_reap(python: str) -> None:
    # A leader with much memory mapped is still running while it unmaps it after SIGKILL; a killer
    # that reaped it then took the exit status the supervisor's own wait4() needs (a CI failure).
    program = "import time; b = bytearray(1 << 29); b[::4096] = b'x' * (len(b) // 4096); print(flush=True); time.sleep(60)"
    for _ in range(4):
        leader = subprocess.Popen([python, "-c", program], start_new_session=True, stdout=subprocess.PIPE)
        assert leader.stdout is not None
        leader.stdout.readline()

        processes.kill_sandbox(leader.pid, "no-token", os.getuid())

        _, status, _ = os.wait4(leader.pid, 0)
        leader.returncode = os.waitstatus_to_exitcode(status)
        leader.stdout.close()
        assert leader.returncode == -signal.SIGKILL


def test_daemon_left_behind_by_a_finished_program_is_killed(work_root: Path, python: str) -> None:
    limits = Limits(deadline_seconds=10)
    work = workdir(work_root, limits)
    # Double fork + setsid: the daemon is neither in the program's group or session nor its descendant.
    program = """
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        open("daemon.pid", "w").write(str(os.getpid()))
        time.sleep(60)
    os._exit(0)
while not os.path.exists("daemon.pid"):
    time.sleep(0.01)
"""

    mark = _marked()
    run = execute([python, "-c", program], work, mark, limits)

    assert run.exit_code == 0, run.stderr
    assert not run.timed_out
    assert (work / "daemon.pid").exists()
    assert _survivors(mark) == []


def test_output_is_bounded_but_counted(work_root: Path, python: str) -> None:
    limits = Limits(deadline_seconds=20, max_output_bytes=64 * 1024)
    work = workdir(work_root, limits)
    program = """
import sys
out = sys.stdout.buffer
out.write(b"HEAD\\n")
line = b"x" * 99 + b"\\n"
for _ in range(20 * 1000 * 1000 // 100 - 1):
    out.write(line)
out.write(b"TAIL\\n")
sys.stderr.write("done\\n")
"""

    run = execute([python, "-c", program], work, {}, limits)

    assert run.exit_code == 0, run.stderr
    assert run.stdout_bytes == 20 * 1000 * 1000 - 100 + 10
    assert run.stdout_truncated and not run.stderr_truncated
    assert run.stdout.startswith("HEAD\n") and run.stdout.endswith("TAIL\n")
    dropped = run.stdout_bytes - 64 * 1024
    assert f"[... {dropped} bytes dropped ...]" in run.stdout
    assert len(run.stdout.encode()) < 64 * 1024 + 100
    assert run.stderr == "done\n" and run.stderr_bytes == 5


def test_fork_bomb_is_limited_and_cleaned_up(work_root: Path, python: str) -> None:
    limits = Limits(deadline_seconds=20, max_processes=32)
    work = workdir(work_root, limits)
    program = """
import os, time
children = []
try:
    for _ in range(10000):
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        children.append(pid)
finally:
    open("children.txt", "w").write(" ".join(map(str, children)))
"""

    mark = _marked()
    run = execute([python, "-c", program], work, mark, limits)

    assert run.exit_code == 1
    assert "BlockingIOError" in run.stderr and "Resource temporarily unavailable" in run.stderr
    children = [int(pid) for pid in (work / "children.txt").read_text().split()]
    assert 0 < len(children) <= 32
    assert _survivors(mark) == []


def test_memory_limit_stops_an_allocation(work_root: Path, python: str) -> None:
    limits = Limits(deadline_seconds=10, memory_bytes=256 * 1024 * 1024)
    work = workdir(work_root, limits)

    run = execute([python, "-c", "block = bytearray(1024 * 1024 * 1024)"], work, {}, limits)

    if run.protections.cgroup:  # the whole tree's memory: the kernel's OOM killer ends it
        assert run.oom_killed and run.signal == signal.SIGKILL
    else:  # address space per process: the allocation fails
        assert run.exit_code == 1
        assert run.stderr.strip().splitlines()[-1] == "MemoryError"


def test_file_size_limit(work_root: Path, python: str) -> None:
    limits = Limits(deadline_seconds=10, max_file_bytes=1024 * 1024)
    work = workdir(work_root, limits)

    run = execute([python, "-c", "open('big.bin', 'wb').write(b'x' * 4 * 1024 * 1024)"], work, {}, limits)

    assert run.exit_code == 1
    assert "File too large" in run.stderr
    assert (work / "big.bin").stat().st_size <= 1024 * 1024


def test_disk_quota_kills_a_program_writing_many_small_files(work_root: Path, python: str) -> None:
    limits = Limits(deadline_seconds=20, max_disk_bytes=2 * 1024 * 1024)
    work = workdir(work_root, limits)
    program = """
import time
for i in range(64):
    with open(f"chunk{i}.bin", "wb") as f:
        f.write(b"x" * 256 * 1024)
time.sleep(60)
"""

    run = execute([python, "-c", program], work, {}, limits)

    assert run.killed_reason == "disk_quota"
    assert not run.timed_out
    assert run.signal == signal.SIGKILL
    assert run.peak_disk_bytes > 2 * 1024 * 1024
    assert run.duration_seconds < 5


def test_missing_executable_is_a_sandbox_error(work_root: Path) -> None:
    limits = Limits(deadline_seconds=10)
    work = workdir(work_root, limits)

    with pytest.raises(SandboxError, match="cannot start '/nonexistent/python'"):
        execute(["/nonexistent/python"], work, {}, limits)


def test_bounded_capture_keeps_head_and_tail() -> None:
    capture = BoundedCapture(10)
    for chunk in (b"abc", b"defgh", b"ijklmnop", b"qrst"):
        capture.feed(chunk)

    assert capture.total_bytes == 20
    assert capture.truncated
    assert capture.text() == "abcde\n[... 10 bytes dropped ...]\npqrst"


def test_bounded_capture_under_the_limit_is_verbatim() -> None:
    capture = BoundedCapture(10)
    capture.feed(b"hello")
    capture.feed(b"12345")

    assert not capture.truncated
    assert capture.text() == "hello12345"


def test_limits_reject_nonsense() -> None:
    with pytest.raises(ValueError, match="deadline_seconds"):
        Limits(deadline_seconds=0)
    with pytest.raises(ValueError, match="memory_bytes"):
        Limits(memory_bytes=0)
    with pytest.raises(ValueError, match="sandbox_uid: must be an unprivileged id"):
        Limits(sandbox_uid=0)
