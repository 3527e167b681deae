"""A node's control group: joined before exec, killed as a whole, removed after, swept when left behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from experiment_runtime import cgroups

pytestmark = pytest.mark.root_only("creating control groups needs root")


def _join(group: cgroups.NodeCgroup) -> None:
    for path in group.procs_files:
        with open(path, "w") as f:
            f.write(str(os.getpid()))


def test_the_whole_group_is_killed_and_removed() -> None:
    group = cgroups.create(f"node-test-{os.getpid()}", 64 << 20, 16, 0.5)
    # A process that re-parents a grandchild to init: the group still holds, and kills, both.
    program = "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\nelse:\n    time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", program], preexec_fn=lambda: _join(group))
    try:
        give_up_at = time.monotonic() + 10
        while len(group.pids()) < 2 and time.monotonic() < give_up_at:
            time.sleep(0.02)
        assert len(group.pids()) == 2

        assert group.kill()
        assert group.pids() == set()
        group.remove()
        assert not any(d.exists() for d in group.dirs)
    finally:
        proc.kill()
        proc.wait()


def test_an_empty_group_left_by_a_killed_executor_is_swept(monkeypatch: pytest.MonkeyPatch) -> None:
    left = cgroups.create(f"node-left-{os.getpid()}", None, 16, None)  # never removed, as after a SIGKILL
    monkeypatch.setattr(cgroups, "STALE_SECONDS", -1.0)

    fresh = cgroups.create(f"node-fresh-{os.getpid()}", None, 16, None)

    assert not any(d.exists() for d in left.dirs)
    assert all(d.exists() for d in fresh.dirs)
    fresh.remove()


def test_unavailable_reason_is_none_where_groups_can_be_made() -> None:
    assert cgroups.unavailable_reason() is None
