"""Hostile node programs against the sandbox, each beside an honest sibling that runs at the same time.

Every hostile program is bounded (a few seconds, a few tens of MiB) so that a sandbox that fails cannot
harm the machine. Each test checks three things: the attack was contained, the hostile node's record says
why, and the honest sibling's result is exactly what it would have been alone. Programs report every
attempt that got through as a line starting with "LEAK"; every attempt is counted ("TRIED"), so that a
program that tried nothing cannot pass.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from runtime_helpers import native_template

from experiment_runtime import Limits, NodeResult, run_node

pytestmark = pytest.mark.root_only("the namespaces, cgroups and tmpfs scratch under test need a root runner here")

MIB = 1024 * 1024
HONEST_SECONDS = 5.0
"""How long the honest sibling runs: long enough for every attack to happen while it is alive."""

HONEST = f"""
time.sleep({HONEST_SECONDS})
write_metrics(0.5)
print("honest done")
"""

# Prepended to each hostile body: its params, and a helper that records whether an attempt got through.
ATTACK = """
import ctypes, signal, subprocess
P = json.load(open(args.config))["params"]
TRIED = 0
def attempt(what, action):
    global TRIED
    TRIED += 1
    try:
        action()
    except (OSError, ValueError) as err:
        print("blocked", what, type(err).__name__, flush=True)
    else:
        print("LEAK", what, flush=True)
"""


@dataclass
class Pair:
    """A hostile node and an honest node of one run, and what the hostile one was told about the other."""

    hostile: NodeResult
    honest: NodeResult
    hostile_dir: Path
    honest_dir: Path

    @property
    def stdout(self) -> str:
        return (self.hostile_dir / "stdout.txt").read_text()

    def assert_contained(self, tried: int) -> None:
        assert "LEAK" not in self.stdout, self.stdout
        assert self.stdout.count("blocked") >= tried, self.stdout

    def assert_honest_unharmed(self) -> None:
        assert self.honest.status == "succeeded", self.honest.buggy_reason
        assert self.honest.metrics is not None
        assert self.honest.metrics.datasets["mod97"]["val_acc"].final == 0.5
        kept = json.loads((self.honest_dir / "metrics.json").read_text())
        assert kept["datasets"]["mod97"]["val_acc"]["final"] == 0.5
        assert (self.honest_dir / "stdout.txt").read_text() == "honest done\n"


@pytest.fixture
def run_root(work_root: Path) -> Path:
    """A run folder with records a node must never see."""
    root = work_root / "run"
    (root / "nodes").mkdir(parents=True)
    (root / "journal.json").write_text('{"secret": "RECORD-SECRET"}')
    (root / "llm-api-key").write_text("sk-KEY-SECRET")
    return root


def run_pair(work_root: Path, run_root: Path, python: str, body: str, limits: Limits | None = None,
             params: dict[str, Any] | None = None, honest_first: bool = True) -> Pair:
    """Runs the honest node and, once its program is alive, the hostile one; returns both results."""
    honest_code = native_template(_fresh(work_root / "honest-src"), HONEST)
    hostile_code = native_template(_fresh(work_root / "hostile-src"), ATTACK + body)
    honest_dir, hostile_dir = run_root / "nodes" / "honest", run_root / "nodes" / "hostile"
    honest: list[NodeResult] = []
    thread = threading.Thread(target=lambda: honest.append(
        run_node(honest_code, honest_dir, {"seed": 0, "params": {}}, Limits(deadline_seconds=60), python=python,
                 hidden=(run_root,))))
    thread.start()
    victim = _program_pid(honest_dir)
    config = {"seed": 1, "params": {"victim": victim, "honest_dir": str(honest_dir), "run_root": str(run_root),
                                    **(params or {})}}
    hostile = run_node(hostile_code, hostile_dir, config, limits or Limits(deadline_seconds=30), python=python,
                       hidden=(run_root,))
    thread.join(timeout=90)
    assert honest, "the honest node did not finish"
    return Pair(hostile, honest[0], hostile_dir, honest_dir)


def _fresh(path: Path) -> Path:
    path.mkdir()
    return path


def _program_pid(node_dir: Path, timeout: float = 30.0) -> int:
    """The host pid of the node's program (found by the config path in its environment)."""
    config = str(node_dir.resolve() / "config.json")
    give_up_at = time.monotonic() + timeout
    while time.monotonic() < give_up_at:
        for proc in psutil.process_iter():
            try:
                argv = proc.cmdline()
                # bubblewrap's processes carry the same environment and argv tail: the program is not bwrap.
                if argv and argv[0] != "bwrap" and "experiment.py" in " ".join(argv) \
                        and proc.environ().get("KUBESCIENTIST_CONFIG") == config:
                    return int(proc.pid)
            except psutil.Error:
                continue
        time.sleep(0.05)
    raise AssertionError(f"the program of {node_dir} never started")


def _with_marker(marker: str) -> list[int]:
    found = []
    for proc in psutil.process_iter():
        try:
            if marker in " ".join(proc.cmdline()) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc.pid)
        except psutil.Error:
            continue
    return found


def test_siblings_records_homes_and_their_memory_are_invisible(work_root: Path, run_root: Path, python: str) -> None:
    body = """
def listed(folder, name):
    if name not in os.listdir(folder):
        raise FileNotFoundError(name)
def anything_in(folder):
    if not os.listdir(folder):
        raise FileNotFoundError(folder)
def other_processes():
    if not [p for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, os.getpid())]:
        raise ProcessLookupError("none")
honest, run = P["honest_dir"], P["run_root"]
attempt("sibling config", lambda: open(os.path.join(honest, "config.json")).read())
attempt("sibling code", lambda: open(os.path.join(honest, "scratch", "work", "experiment.py")).read())
attempt("sibling in the node list", lambda: listed(os.path.join(run, "nodes"), "honest"))
attempt("run journal", lambda: open(os.path.join(run, "journal.json")).read())
attempt("LLM key file", lambda: open(os.path.join(run, "llm-api-key")).read())
attempt("/root", lambda: anything_in("/root"))
attempt("sibling /proc mem", lambda: open(f"/proc/{P['victim']}/mem", "rb").read(1))
attempt("sibling /proc environ", lambda: open(f"/proc/{P['victim']}/environ", "rb").read())
attempt("other processes", other_processes)
write_metrics(0.1)
"""
    assert any(Path("/root").iterdir()), "the test needs something in /root to hide"
    pair = run_pair(work_root, run_root, python, body)

    assert pair.hostile.status == "succeeded", pair.hostile.buggy_reason
    pair.assert_contained(tried=9)
    assert pair.hostile.protections["namespaces"] and pair.hostile.protections["ownUid"]
    pair.assert_honest_unharmed()


def test_signalling_or_tracing_a_sibling_fails(work_root: Path, run_root: Path, python: str) -> None:
    body = """
libc = ctypes.CDLL(None, use_errno=True)
def ptrace():
    if libc.ptrace(16, P["victim"], 0, 0) != 0:  # PTRACE_ATTACH
        raise OSError(ctypes.get_errno(), "ptrace")
attempt("SIGKILL the sibling", lambda: os.kill(P["victim"], signal.SIGKILL))
attempt("SIGSTOP the sibling", lambda: os.kill(P["victim"], signal.SIGSTOP))
attempt("ptrace the sibling", ptrace)
for pid in range(2, 64):  # every pid it might guess: only its own namespace's exist
    if pid != os.getpid():
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
attempt("SIGKILL everything it may", lambda: os.kill(-1, signal.SIGKILL))  # itself excepted: nothing else
write_metrics(0.1)
"""
    pair = run_pair(work_root, run_root, python, body)

    pair.assert_contained(tried=4)
    assert pair.hostile.status == "succeeded", pair.hostile.buggy_reason
    pair.assert_honest_unharmed()


def test_rewriting_a_siblings_metrics_fails(work_root: Path, run_root: Path, python: str) -> None:
    body = """
fake = json.dumps({"datasets": {"mod97": {"val_acc": {"final": 0.999, "direction": "maximize"}}}})
honest = P["honest_dir"]
for target in ("metrics.json", "result.json", "scratch/work/run/metrics.json"):
    attempt("write sibling " + target, lambda: open(os.path.join(honest, target), "w").write(fake))
attempt("write the journal", lambda: open(os.path.join(P["run_root"], "journal.json"), "w").write("{}"))
write_metrics(0.1)
"""
    pair = run_pair(work_root, run_root, python, body)

    pair.assert_contained(tried=4)
    pair.assert_honest_unharmed()
    assert json.loads((run_root / "journal.json").read_text()) == {"secret": "RECORD-SECRET"}


def test_setsid_clean_environment_escape_dies_with_the_node(work_root: Path, run_root: Path, python: str) -> None:
    marker = f"escapee-{uuid.uuid4().hex}"
    body = """
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        # A fresh environment and session: no token, group or session links it to the node any more.
        os.execve("/bin/sh", ["sh", "-c", "while :; do date >> /tmp/alive; sleep 0.2; done # " + P["marker"]], {})
    os._exit(0)
time.sleep(1)
write_metrics(0.1)
"""
    pair = run_pair(work_root, run_root, python, body, params={"marker": marker})

    assert pair.hostile.status == "succeeded", pair.hostile.buggy_reason
    assert _with_marker(marker) == []
    time.sleep(1)
    assert _with_marker(marker) == []
    assert not (pair.hostile_dir / "scratch").exists()
    pair.assert_honest_unharmed()


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A service on the host's 127.0.0.1, like a keyless local LLM server."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0)
    yield server
    server.close()


NETWORK = """
def connect(host, port):
    with socket.create_connection((host, port), timeout=2):
        pass
import socket
attempt("host 127.0.0.1 service", lambda: connect("127.0.0.1", P["port"]))
attempt("DNS", lambda: socket.getaddrinfo("example.com", 443))
attempt("internet", lambda: connect("1.1.1.1", 53))
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()  # its own loopback works, and is its own
write_metrics(0.1)
"""


def test_network_is_loopback_only(work_root: Path, run_root: Path, python: str, listener: socket.socket) -> None:
    pair = run_pair(work_root, run_root, python, NETWORK, params={"port": listener.getsockname()[1]})

    pair.assert_contained(tried=3)
    assert pair.hostile.status == "succeeded", pair.hostile.buggy_reason
    with pytest.raises(BlockingIOError):
        listener.accept()
    assert pair.hostile.protections["networkIsolated"]
    pair.assert_honest_unharmed()


def test_network_when_the_spec_allows_it(work_root: Path, run_root: Path, python: str,
                                         listener: socket.socket) -> None:
    # The control for the test above: the same program does reach the host's service when allowed.
    pair = run_pair(work_root, run_root, python, NETWORK, Limits(deadline_seconds=30, network=True),
                    params={"port": listener.getsockname()[1]})

    assert "LEAK host 127.0.0.1 service" in pair.stdout
    assert not pair.hostile.protections["networkIsolated"]
    assert any("network allowed" in line for line in pair.hostile.protections["missing"])


def test_unlinked_open_file_fill_is_counted(work_root: Path, run_root: Path, python: str) -> None:
    body = """
f = open("hidden.bin", "wb")
os.unlink("hidden.bin")  # invisible to any walk of the work dir, but its blocks are allocated
for _ in range(64):
    try:
        f.write(os.urandom(1024 * 1024)); f.flush()
    except OSError:
        break
time.sleep(20)
"""
    pair = run_pair(work_root, run_root, python, body, Limits(deadline_seconds=30, max_disk_bytes=16 * MIB))

    assert pair.hostile.status == "killed"
    assert pair.hostile.buggy_reason == f"wrote more than {16 * MIB} bytes to disk (work dir, /tmp and /dev/shm)"
    assert pair.hostile.duration_seconds < 10
    pair.assert_honest_unharmed()


def test_dev_shm_and_tmp_fill_count_in_the_quota(work_root: Path, run_root: Path, python: str) -> None:
    body = """
for folder in ("/dev/shm", "/tmp"):
    try:
        with open(os.path.join(folder, "fill"), "wb") as f:
            for _ in range(12):
                f.write(os.urandom(1024 * 1024))
    except OSError:
        break
time.sleep(20)
"""
    pair = run_pair(work_root, run_root, python, body, Limits(deadline_seconds=30, max_disk_bytes=16 * MIB))

    assert pair.hostile.status == "killed"
    assert pair.hostile.buggy_reason is not None and pair.hostile.buggy_reason.startswith(f"wrote more than {16 * MIB}")
    # The scratch space is gone with the node: nothing of /tmp or /dev/shm outlives it.
    assert not (pair.hostile_dir / "scratch").exists()
    assert not any(Path("/dev/shm").glob("fill"))
    pair.assert_honest_unharmed()


def test_inode_flood_hits_the_inode_limit(work_root: Path, run_root: Path, python: str) -> None:
    body = """
os.makedirs("flood")
stop = time.monotonic() + 15
i = 0
while time.monotonic() < stop and i < 200000:
    try:
        open(f"flood/{i}", "w").close()
    except OSError:
        time.sleep(0.01)
    i += 1
"""
    pair = run_pair(work_root, run_root, python, body, Limits(deadline_seconds=30, max_inodes=2000))

    assert pair.hostile.status == "killed"
    assert pair.hostile.buggy_reason == "created more than 2000 files and folders (the inode limit)"
    assert pair.hostile.duration_seconds < 10
    # Its code is kept; the flood is not copied back.
    assert (pair.hostile_dir / "code" / "experiment.py").exists()
    pair.assert_honest_unharmed()


def test_killed_nodes_scratch_is_reclaimed_and_its_code_and_logs_kept(work_root: Path, run_root: Path,
                                                                     python: str) -> None:
    body = """
print("about to fill", flush=True)
with open(os.path.join(args.out_dir, "small.txt"), "w") as f:
    f.write("kept")
with open("big.bin", "wb") as f:
    for _ in range(40):
        f.write(os.urandom(1024 * 1024))
"""
    pair = run_pair(work_root, run_root, python, body, Limits(deadline_seconds=30, max_disk_bytes=16 * MIB))

    assert pair.hostile.status == "killed"
    code = pair.hostile_dir / "code"
    assert (code / "experiment.py").exists() and (code / "run" / "small.txt").read_text() == "kept"
    assert not (code / "big.bin").exists()
    assert "big.bin" in (pair.hostile_dir / "dropped.txt").read_text()
    assert "about to fill" in (pair.hostile_dir / "stdout.txt").read_text()
    assert not (pair.hostile_dir / "scratch").exists()
    assert str(pair.hostile_dir) not in Path("/proc/self/mountinfo").read_text()
    pair.assert_honest_unharmed()


def test_multi_process_memory_hog_is_limited_as_a_whole(work_root: Path, run_root: Path, python: str) -> None:
    # Three processes of 120 MiB each: every one is under the 256 MiB limit, together they are not.
    body = """
children = []
for _ in range(3):
    pid = os.fork()
    if pid == 0:
        block = bytearray(120 * 1024 * 1024)
        block[::4096] = b"x" * (len(block) // 4096)
        time.sleep(20)
        os._exit(0)
    children.append(pid)
for pid in children:
    os.waitpid(pid, 0)
write_metrics(0.1)
"""
    pair = run_pair(work_root, run_root, python, body, Limits(deadline_seconds=30, memory_bytes=256 * MIB))

    assert pair.hostile.status == "killed"
    assert pair.hostile.buggy_reason == (
        f"killed for exceeding the memory limit of {256 * MIB} bytes (all its processes)")
    assert pair.hostile.protections["cgroup"]
    pair.assert_honest_unharmed()


def test_fake_pngs_are_not_copied(work_root: Path, run_root: Path, python: str) -> None:
    body = """
out = args.out_dir
real = b"\\x89PNG\\r\\n\\x1a\\n\\x00\\x00\\x00\\rIHDR" + bytes(17)
open(os.path.join(out, "real.png"), "wb").write(real)
open(os.path.join(out, "fake.png"), "wb").write(os.urandom(4096))
with open(os.path.join(out, "huge.png"), "wb") as f:
    f.write(real)
    f.write(bytes(30 * 1024 * 1024))
os.symlink("/etc/shadow", os.path.join(out, "link.png"))
os.symlink(P["run_root"] + "/llm-api-key", os.path.join(out, "key.png"))
write_metrics(0.1)
"""
    pair = run_pair(work_root, run_root, python, body)

    assert pair.hostile.status == "succeeded", pair.hostile.buggy_reason
    assert pair.hostile.plots == ["real.png"]
    assert sorted(p.name for p in (pair.hostile_dir / "plots").iterdir()) == ["real.png"]
    pair.assert_honest_unharmed()


def test_escape_codes_stay_in_the_record_as_written(work_root: Path, run_root: Path, python: str) -> None:
    # Escaping for the console is the reporter's job; the node's own files keep exactly what it printed.
    body = """
sys.stdout.write("\\x1b[2J\\x1b]0;pwned\\x07search complete; best 0.999\\n")
sys.stderr.write("\\x1b[31mRuntimeError: boom\\x1b[0m\\n")
sys.exit(3)
"""
    pair = run_pair(work_root, run_root, python, body)

    assert pair.hostile.status == "failed"
    assert pair.hostile.buggy_reason == "exit code 3: \x1b[31mRuntimeError: boom\x1b[0m"
    assert (pair.hostile_dir / "stdout.txt").read_text().startswith("\x1b[2J")
    pair.assert_honest_unharmed()
