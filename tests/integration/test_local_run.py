"""A small ResearchRun end to end on the real PyTorch template, on CPU, through the real CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from harness import GROKKING, ROOT, cli, load, manifest

pytestmark = pytest.mark.slow


def test_grokking_run_end_to_end(tmp_path, write_manifest):
    path = write_manifest(manifest("grok", GROKKING, metric="val_accuracy", budgets=(1, 2, 1, 1), seeds=1))
    result = cli("run", str(path), "--workdir", str(tmp_path / "runs"))
    assert result.returncode == 0, result.stdout + result.stderr
    run_dir = tmp_path / "runs" / "grok"
    assert "best node" in result.stdout

    journal = load(run_dir / "journal.json")
    nodes = journal["nodes"]
    assert journal["phase"] == "succeeded"
    assert [s["name"] for s in journal["stages"]] == ["initial", "tuning", "research", "ablation"]
    assert all(s["status"] == "done" for s in journal["stages"])
    actions = {n["action"] for n in nodes.values()}
    assert {"draft", "tune", "variant", "ablate", "seed"} <= actions
    for node in nodes.values():
        assert node["reason"], node["id"]
        assert node["code_hash"].startswith("sha256:")
        assert node["status"] in ("succeeded", "buggy")
        folder = run_dir / "nodes" / node["id"]
        for name in ("config.json", "stdout.txt", "stderr.txt", "result.json"):
            assert (folder / name).exists(), f"{node['id']}/{name}"
    draft = nodes["n0000"]
    assert draft["status"] == "succeeded"
    # The tiny transformer really learns: far above chance (1/p) on held-out pairs.
    assert draft["outcome"]["metric"] > 0.5
    assert list((run_dir / "nodes" / "n0000" / "plots").glob("*.png"))
    # Each later stage is rooted at the previous stage's best node.
    stages = journal["stages"]
    for before, after in zip(stages, stages[1:]):
        assert after["root"] == before["best"]

    summary = load(run_dir / "summary.json")
    assert summary["best"]["node"] in nodes
    seeded = [s for s in summary["stages"] if s["seeds"] and s["seeds"]["n"] == 2]
    assert seeded, "at least one stage best was re-evaluated with a second seed"
    for stage in seeded:
        values = stage["seeds"]["values"]
        assert abs(stage["seeds"]["mean"] - sum(values) / len(values)) < 1e-12
    assert summary["timings"]["wallSeconds"] > 0

    tree = cli("tree", str(run_dir))
    assert tree.returncode == 0 and "n0000" in tree.stdout
    assert "<script" in (run_dir / "tree.html").read_text()


def test_interrupt_then_resume_loses_nothing(tmp_path, write_manifest):
    path = write_manifest(manifest("resumable", GROKKING, metric="val_accuracy", budgets=(1, 3, 1, 1), seeds=1))
    workdir = tmp_path / "runs"
    run_dir = workdir / "resumable"
    process = subprocess.Popen([sys.executable, "-m", "kubescientist", "run", str(path), "--workdir", str(workdir)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    # Interrupt once two nodes have finished and others are running.
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if len(list(run_dir.glob("nodes/*/result.json"))) >= 2:
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 130, output
    assert "--resume" in output

    interrupted = load(run_dir / "journal.json")
    finished = {i: n for i, n in interrupted["nodes"].items() if n["status"] in ("succeeded", "buggy")}
    assert finished
    stamps = {i: os.stat(run_dir / "nodes" / i / "result.json").st_mtime_ns for i in finished}

    again = cli("run", str(path), "--workdir", str(workdir))
    assert again.returncode == 2 and "--resume" in again.stdout  # refuses to overwrite a run

    resumed = cli("run", str(path), "--workdir", str(workdir), "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    journal = load(run_dir / "journal.json")
    assert journal["phase"] == "succeeded"
    for node_id, before in finished.items():
        after = journal["nodes"][node_id]
        assert after["attempts"] == before["attempts"] == 1, node_id  # not run again
        assert after["outcome"] == before["outcome"]
        assert os.stat(run_dir / "nodes" / node_id / "result.json").st_mtime_ns == stamps[node_id]
    assert len(journal["nodes"]) == len(set(journal["nodes"]))
