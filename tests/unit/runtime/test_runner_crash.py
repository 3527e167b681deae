"""SIGKILL of `kubescientist run` in the middle of nodes, then `--resume`, several times over.

After each kill no process of the old run may survive (so a resumed node never runs beside its orphan),
a second runner on the same run is refused, and at the end every node finished before a kill keeps its
result untouched (it never ran again).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from kubescientist.adapters.local.executors import Executors, RunnerBusy

ROOT = Path(__file__).resolve().parents[3]
KILLS = 3
"""Runner kills in one test, each at a later point of the run."""

PROGRAM = """\
import argparse, json, os, time
parser = argparse.ArgumentParser()
parser.add_argument("--out_dir")
parser.add_argument("--config")
args = parser.parse_args()
config = json.load(open(args.config))
os.makedirs(args.out_dir, exist_ok=True)
time.sleep(1.5)
value = 0.5 + 0.01 * config["seed"] + 0.1 * config["params"]["lr"]
doc = {"datasets": {"toy": {"acc": {"final": value, "direction": "maximize"}}}}
json.dump(doc, open(os.path.join(args.out_dir, "metrics.json"), "w"))
"""

TEMPLATE = """\
apiVersion: kubescientist.io/v1alpha1
kind: ExperimentTemplate
name: slow-toy
description: sleeps, then reports
entrypoint: experiment.py
searchSpace:
  hyperparameters:
    lr: {type: float, low: 0.001, high: 0.1, log: true, default: 0.01}
"""


@pytest.fixture
def manifest(work_root: Path) -> Path:
    template = work_root / "template"
    template.mkdir()
    (template / "kubescientist.yaml").write_text(TEMPLATE)
    (template / "experiment.py").write_text(PROGRAM)
    doc = {
        "apiVersion": "kubescientist.io/v1alpha1", "kind": "ResearchRun", "metadata": {"name": "crash"},
        "spec": {
            "idea": {"inline": {"title": "crash and resume"}},
            "template": {"path": str(template)},
            "objective": {"metric": "acc", "direction": "maximize"},
            "stages": [{"name": n, "maxNodes": b} for n, b in
                       zip(("initial", "tuning", "research", "ablation"), (1, 4, 1, 1))],
            "search": {"parallelism": 2, "drafts": 1},
            "resources": {"deadlineSeconds": 60, "memory": "1Gi"},
            "seeds": 1, "seed": 0,
            "writeup": {"enabled": False}, "review": {"enabled": False},
        },
    }
    path = work_root / "crash.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _cli(manifest: Path, workdir: Path, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'operator'}:{ROOT}"}
    return subprocess.Popen([sys.executable, "-m", "kubescientist", "run", str(manifest), "--workdir", str(workdir),
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)


def _of_run(run_dir: Path) -> list[psutil.Process]:
    """Live processes that belong to the run: its executors (argv) and their programs (environment)."""
    mark = str(run_dir)
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if mark in " ".join(proc.cmdline()) or mark in proc.environ().get("KUBESCIENTIST_CONFIG", ""):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _programs_running(run_dir: Path) -> int:
    running = 0
    for proc in _of_run(run_dir):
        try:  # it may have exited since it was listed
            command = proc.cmdline()
        except psutil.Error:
            continue
        running += "experiment.py" in " ".join(command) and command[0] != "bwrap"
    return running


def _finished(run_dir: Path) -> dict[str, str]:
    """Node -> its result.json text, for every node with a result."""
    return {p.parent.name: p.read_text() for p in run_dir.glob("nodes/*/result.json")}


def test_sigkill_then_resume_never_runs_a_node_twice(work_root: Path, manifest: Path) -> None:
    workdir = work_root / "runs"
    run_dir = workdir / "crash"
    kept: dict[str, str] = {}
    for kill in range(KILLS):
        runner = _cli(manifest, workdir, *(["--resume"] if kill else []))
        # Kill while a node's program runs, after one more node has finished than at the last kill.
        give_up_at = time.monotonic() + 120
        while time.monotonic() < give_up_at and runner.poll() is None:
            if len(_finished(run_dir)) > len(kept) and _programs_running(run_dir) > 0:
                break
            time.sleep(0.05)
        assert runner.poll() is None, f"the run ended before kill {kill}: {runner.communicate()[0]}"
        running = _programs_running(run_dir)
        assert running > 0
        runner.kill()
        runner.communicate(timeout=30)

        # Nothing of the old run survives it: no executor, no program, however deep.
        give_up_at = time.monotonic() + 5
        while _of_run(run_dir) and time.monotonic() < give_up_at:
            time.sleep(0.05)
        assert _of_run(run_dir) == [], [p.cmdline() for p in _of_run(run_dir)]
        for node, record in kept.items():
            assert _finished(run_dir)[node] == record, f"{node} ran again"
        kept = _finished(run_dir)

    final = _cli(manifest, workdir, "--resume")
    output = final.communicate(timeout=300)[0]
    assert final.returncode == 0, output
    journal = json.loads((run_dir / "journal.json").read_text())
    assert journal["phase"] == "succeeded"
    assert all(n["status"] == "succeeded" for n in journal["nodes"].values())
    results = _finished(run_dir)
    for node, record in kept.items():
        assert results[node] == record, f"{node} ran again"  # finished before a kill: never re-run
    assert not list((run_dir / "executors").glob("*.json"))
    summary = json.loads((run_dir / "summary.json").read_text())
    if os.geteuid() == 0:
        assert summary["sandbox"]["missing"] == [] and summary["sandbox"]["cgroup"]


def test_a_second_runner_on_one_run_is_refused(work_root: Path) -> None:
    first = Executors.claim(work_root)
    try:
        with pytest.raises(RunnerBusy, match=f"another kubescientist run \\(pid {os.getpid()}\\)"):
            Executors.claim(work_root)
    finally:
        first.close()
    Executors.claim(work_root).close()  # free again once the first let go


def test_a_leftover_executor_is_stopped_before_its_node_runs_again(work_root: Path) -> None:
    # An executor that outlived its runner (here: a process that ignores its parent's death), with a child.
    leftover = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time; "
                                 "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
                                 "time.sleep(60)"], start_new_session=True)
    try:
        (work_root / "executors").mkdir()
        record = {"pid": leftover.pid, "created": psutil.Process(leftover.pid).create_time(), "node": "n0003"}
        (work_root / "executors" / "n0003.json").write_text(json.dumps(record))
        time.sleep(0.3)
        child = psutil.Process(leftover.pid).children()[0]

        executors = Executors.claim(work_root)
        executors.close()

        assert leftover.wait(timeout=10) == -signal.SIGKILL
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
        assert not (work_root / "executors" / "n0003.json").exists()
    finally:
        leftover.kill()
        leftover.wait()


def test_a_recorded_pid_now_used_by_another_process_is_left_alone(work_root: Path) -> None:
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (work_root / "executors").mkdir()
        record = {"pid": bystander.pid, "created": psutil.Process(bystander.pid).create_time() - 100, "node": "n0001"}
        (work_root / "executors" / "n0001.json").write_text(json.dumps(record))

        Executors.claim(work_root).close()

        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
