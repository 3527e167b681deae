"""A stage gate in local mode, through the real CLI: the run pauses after the gated stage with its best node
named, keeps everything, refuses an approval of a stage that is not gated, and after `kubescientist approve`
continues with --resume to the end, its next stage rooted on the gated stage's best."""

from __future__ import annotations

import json

import pytest

from harness import GROKKING, cli, load, manifest

pytestmark = pytest.mark.slow


def test_gated_run_pauses_then_continues_after_approval(tmp_path, write_manifest):
    path = write_manifest(manifest("gated", GROKKING, metric="val_accuracy", budgets=(1, 1, 1, 1), seeds=0,
                                   gates=["initial"], writeup={"enabled": False}, review={"enabled": False}))
    workdir = tmp_path / "runs"
    run_dir = workdir / "gated"
    paused = cli("run", str(path), "--workdir", str(workdir))
    assert paused.returncode == 3, paused.stdout + paused.stderr
    said = " ".join(paused.stdout.split())
    assert "paused" in said and "stage initial ended" in said and "best node n0000 val_accuracy=" in said
    assert f"kubescientist approve {run_dir} initial" in said
    journal = load(run_dir / "journal.json")
    assert [s["status"] for s in journal["stages"]] == ["done", "waiting", "waiting", "waiting"]
    assert list(journal["nodes"]) == ["n0000"] and journal["nodes"]["n0000"]["status"] == "succeeded"

    # Resuming without approval pauses again, starting nothing.
    again = cli("run", str(path), "--workdir", str(workdir), "--resume")
    assert again.returncode == 3 and list(load(run_dir / "journal.json")["nodes"]) == ["n0000"]

    refused = cli("approve", str(run_dir), "tuning")
    assert refused.returncode == 2 and "spec.approvedGates: approvedGates may only name stages listed in gates" \
        in refused.stderr
    approved = cli("approve", str(run_dir), "initial")
    assert approved.returncode == 0 and "stage initial of gated approved" in approved.stdout
    done = cli("run", str(path), "--workdir", str(workdir), "--resume")
    assert done.returncode == 0, done.stdout + done.stderr
    journal = load(run_dir / "journal.json")
    assert journal["phase"] == "succeeded" and len(journal["nodes"]) == 4
    assert journal["stages"][1]["root"] == "n0000"
    kinds = [e["kind"] for e in journal["events"]]
    assert kinds.index("gate-waiting") < kinds.index("gate-approved")
    assert json.loads((run_dir / "summary.json").read_text())["phase"] == "succeeded"
