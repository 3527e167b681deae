"""spec.runtime.ephemeralStorage and shmSize in the local sandbox: the disk quota and a /dev/shm of its own.

The ephemeralStorage test goes through the arguments the local runner derives from a validated manifest
and the ``run-node`` command line, so that the spec reaches the quota the same way as in a run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from runtime_helpers import native_template

from experiment_runtime import Limits, run_node
from experiment_runtime.__main__ import main
from kubescientist.adapters.local.environment import storage_args
from kubescientist.adapters.manifest import validate_object
from kubescientist.core.spec import RunSpec, run_spec_from_dict

pytestmark = pytest.mark.root_only("the tmpfs scratch and the namespaces under test need a root runner here")

MIB = 1024 * 1024
CONFIG = {"seed": 0, "params": {}}

# Writes 24 MiB into the work dir, then waits long enough for the quota poll to see it.
FILL_WORK_DIR = """
with open("fill.bin", "wb") as f:
    for _ in range(24):
        f.write(os.urandom(MIB))
time.sleep(3)
write_metrics()
"""


def _spec(**runtime: str) -> RunSpec:
    run = validate_object("ResearchRun", {
        "apiVersion": "kubescientist.io/v1alpha1", "kind": "ResearchRun", "metadata": {"name": "disk"},
        "spec": {"idea": {"inline": {"title": "t"}}, "objective": {"metric": "val_acc"}, "runtime": runtime}})
    return run_spec_from_dict(run["spec"])


def _run_cli(work_root: Path, name: str, python: str, body: str, extra: list[str],
             capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    code = native_template(work_root / name, body)
    config = work_root / name / "config.json"
    config.write_text(json.dumps(CONFIG))
    status = main(["run-node", "--code", str(code), "--node-dir", str(work_root / name / "node"), "--config",
                   str(config), "--deadline", "30", "--python", python,
                   "--termination-log", str(work_root / "absent"), *extra])
    assert status == 0
    printed: dict[str, object] = json.loads(capsys.readouterr().out)
    return printed


def test_ephemeral_storage_of_the_spec_is_the_nodes_disk_quota(work_root: Path, python: str,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    body = "MIB = 1 << 20\n" + FILL_WORK_DIR
    (work_root / "default").mkdir()
    (work_root / "small").mkdir()
    # Without the field, today's 2 GiB quota: 24 MiB is fine.
    assert storage_args(_spec()) == []
    default = _run_cli(work_root, "default", python, body, storage_args(_spec()), capsys)
    assert default["status"] == "succeeded", default["buggy_reason"]

    args = storage_args(_spec(ephemeralStorage="16Mi"))
    assert args == ["--max-disk-bytes", str(16 * MIB), "--max-file-bytes", str(1024 * MIB)]
    # More disk than the default 1 GiB file size limit allows files as large.
    assert storage_args(_spec(ephemeralStorage="20Gi"))[2:] == ["--max-file-bytes", str(20 * 1024 * MIB)]
    small = _run_cli(work_root, "small", python, body, args, capsys)
    assert small["status"] == "killed"
    assert small["buggy_reason"] == f"wrote more than {16 * MIB} bytes to disk (work dir, /tmp and /dev/shm)"
    assert isinstance(small["duration_seconds"], float) and small["duration_seconds"] < 10


def test_shm_size_is_a_tmpfs_of_its_own_outside_the_disk_quota(work_root: Path, python: str) -> None:
    # /dev/shm of 32 MiB beside a 16 MiB disk: 24 MiB fit in /dev/shm, which the disk quota does not count,
    # and the kernel refuses what goes past 32 MiB.
    body = """
st = os.statvfs("/dev/shm")
print("shm size", st.f_blocks * st.f_frsize)
written = 0
try:
    with open("/dev/shm/batch", "wb") as f:
        for _ in range(48):
            f.write(b"x" * (1 << 20)); f.flush()
            written += 1 << 20
            if written == 24 << 20:
                print("wrote 24 MiB", flush=True)
                time.sleep(1)  # long enough for the disk quota poll to look
except OSError as err:
    print("refused after", written, err.errno, flush=True)
write_metrics()
"""
    assert storage_args(_spec(shmSize="32Mi")) == ["--shm-bytes", str(32 * MIB)]
    code = native_template(work_root, body)
    result = run_node(code, work_root / "node", CONFIG,
                      Limits(deadline_seconds=30, max_disk_bytes=16 * MIB, shm_bytes=32 * MIB), python=python)
    stdout = (work_root / "node" / "stdout.txt").read_text()
    assert result.status == "succeeded", (result.buggy_reason, stdout)
    assert f"shm size {32 * MIB}" in stdout and "wrote 24 MiB" in stdout
    refused = int(stdout.split("refused after ")[1].split()[0])
    assert 30 * MIB <= refused <= 32 * MIB and stdout.rstrip().endswith(" 28")  # ENOSPC
    assert result.protections["namespaces"] is True


def test_a_full_shm_is_named_as_such_not_as_the_disk(work_root: Path, python: str) -> None:
    body = """
with open("/dev/shm/batch", "wb") as f:
    while True:
        f.write(b"x" * (1 << 20)); f.flush()
"""
    code = native_template(work_root, body)
    result = run_node(code, work_root / "node", CONFIG,
                      Limits(deadline_seconds=30, max_disk_bytes=64 * MIB, shm_bytes=8 * MIB), python=python)
    assert result.status == "failed"
    assert result.buggy_reason is not None
    assert result.buggy_reason.startswith(f"/dev/shm is full: it holds {8 * MIB} bytes (spec.runtime.shmSize): ")
    assert "No space left on device" in result.buggy_reason


def test_shm_counts_against_the_memory_limit(work_root: Path, python: str) -> None:
    # As in a pod, where a memory-medium emptyDir counts against the container's memory: 96 MiB of
    # /dev/shm under a 64 MiB memory limit ends the node for memory, not silently.
    body = """
with open("/dev/shm/batch", "wb") as f:
    for _ in range(96):
        f.write(b"x" * (1 << 20)); f.flush()
print("LEAK wrote 96 MiB", flush=True)
write_metrics()
"""
    code = native_template(work_root, body)
    result = run_node(code, work_root / "node", CONFIG,
                      Limits(deadline_seconds=30, memory_bytes=64 * MIB, shm_bytes=256 * MIB), python=python)
    if not result.protections["cgroup"]:
        pytest.skip("no control group here: memory is bounded per process, and /dev/shm pages are no process's")
    assert result.status == "killed", (result.buggy_reason, (work_root / "node" / "stdout.txt").read_text())
    assert result.buggy_reason == f"killed for exceeding the memory limit of {64 * MIB} bytes (all its processes)"
