"""A test run that dies (SIGKILL) while its real node runs pods leaves nothing behind once the next real node
has started and stopped: no container, no shim, no kubelet mount, and the kernel settings the kubelet changed
are back at the values from before the first run.

Run with `make e2e-real` (KUBESCIENTIST_E2E_REAL_NODE=1); skipped otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import realnode
from test_real_node import NODE_IMAGE

pytestmark = [pytest.mark.real_node,
              pytest.mark.root_only("the kubelet manages cgroups, mounts and pod networks")]

E2E = Path(__file__).resolve().parent
MARK = "kubescientist-crash-test-sleeper"
# The run that crashes: its own cluster and real node, one pod that sleeps, then SIGKILL to itself.
CRASHING_RUN = f"""
import json, os, signal, sys
from pathlib import Path
sys.path[:0] = [{str(E2E / "cluster")!r}, {str(E2E)!r}]
import cluster, realnode
from test_real_node import pod
c = cluster.up(Path(sys.argv[1]), gpu_nodes=1, pod_network=realnode.host_ip(), die_with_parent=True)
node = realnode.start(c)
node.import_image({NODE_IMAGE!r})
c.create_namespace("crash")
c.apply(pod("sleeper", {NODE_IMAGE!r}, ["python", "-c", "import time; time.sleep(900)  # {MARK}"]),
        namespace="crash")
c.wait_for("the sleeper running", lambda: c.kubectl_json("get", "pod", "sleeper", "-n", "crash")
           .get("status", {{}}).get("phase") == "Running", 120)
print(json.dumps({{"containers": node.ctr("containers", "ls", "-q").stdout.split(),
                  "mount": str(realnode.KUBELET_ROOT)}}), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def sleeper_pids() -> list[int]:
    out = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and MARK.encode() in (proc / "cmdline").read_bytes():
                out.append(int(proc.name))
        except OSError:
            continue
    return out


def test_a_crashed_run_leaves_nothing_behind_after_the_next_node(cluster: Any, tmp_path: Path) -> None:
    if not realnode.REAL_NODE_ENV:
        pytest.skip("real-node tests run with KUBESCIENTIST_E2E_REAL_NODE=1 (make e2e-real)")
    sysctls = {key: (Path("/proc/sys") / key).read_text().strip() for key in realnode.KUBELET_SYSCTLS}
    proc = subprocess.run([sys.executable, "-c", CRASHING_RUN, str(tmp_path / "crashed")], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.returncode == -9, proc.stdout[-2000:] + proc.stderr[-3000:]
    left = json.loads(proc.stdout.strip().splitlines()[-1])
    # What a crash leaves: the container still runs (its shim outlives containerd), the kubelet's settings and
    # its root mount stay.
    assert sleeper_pids(), "the crashed run's container should still run"
    assert left["mount"] in Path("/proc/mounts").read_text()
    assert (Path("/proc/sys") / "vm/overcommit_memory").read_text().strip() == "1"

    node = realnode.start(cluster)
    try:
        assert not set(left["containers"]) & set(node.ctr("containers", "ls", "-q").stdout.split())
        deadline = time.monotonic() + 10
        while sleeper_pids() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not sleeper_pids(), "the crashed run's container survived the next node's start"
    finally:
        realnode.stop(node)
    assert left["mount"] not in Path("/proc/mounts").read_text()
    assert {key: (Path("/proc/sys") / key).read_text().strip() for key in realnode.KUBELET_SYSCTLS} == sysctls
    assert not realnode.STATE_ROOT.joinpath("containerd.sock").exists()
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    assert 'name: \\"kubescientist\\"' not in rules and "KUBE-" not in rules, rules
