"""A stage gate on the real control plane: the run pauses after its gated stage with the condition
AwaitingApproval naming the stage's best node, keeps waiting across an operator SIGKILL and restart (nothing
new starts), and goes on to the end once the stage is approved in spec.approvedGates."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from kubelet_harness import KubeletHarness
from test_operator import OperatorProcess, apply_file, get, harness, operator, research_run, wait_phase

pytestmark = pytest.mark.e2e

__all__ = ["harness", "operator"]  # fixtures shared with the operator tests


def _gate(cluster: Any, namespace: str, name: str) -> dict[str, Any]:
    run = get(cluster, "researchrun", namespace, name)
    return next((c for c in (run.get("status") or {}).get("conditions") or () if c["type"] == "AwaitingApproval"),
                {})


def test_a_gated_run_pauses_across_a_restart_until_approved(
        cluster: Any, restricted_namespace: str, operator: OperatorProcess, harness: KubeletHarness,
        tmp_path: Path) -> None:
    namespace, name = restricted_namespace, "gated"
    apply_file(cluster, research_run(name, namespace, cluster, gates=["initial"], writeup={"enabled": False},
                                     review={"enabled": False}), tmp_path)
    cluster.wait_for("the gate's condition", lambda: _gate(cluster, namespace, name).get("status") == "True", 240)
    gate = _gate(cluster, namespace, name)
    assert gate["reason"] == "StageGate" and "stage initial ended" in gate["message"]
    assert "best node n0000 val_r2=" in gate["message"]
    items = get(cluster, "experimentnodes", namespace)["items"]
    nodes = sorted(n["metadata"]["name"] for n in items)
    # The first working node and its seed re-evaluation (spec.seeds: 1), nothing of the next stage.
    assert {n["spec"]["stage"] for n in items} == {"initial"} and f"{name}-n0000" in nodes, nodes

    operator.kill()
    operator.start()
    time.sleep(3 * 5)  # three resync periods of the restarted operator
    run = get(cluster, "researchrun", namespace, name)
    assert run["status"]["phase"] == "Searching" and _gate(cluster, namespace, name)["status"] == "True"
    assert sorted(n["metadata"]["name"] for n in get(cluster, "experimentnodes", namespace)["items"]) == nodes

    cluster.kubectl("patch", "researchrun", name, "-n", namespace, "--type=merge", "-p",
                    '{"spec": {"approvedGates": ["initial"]}}')
    run = wait_phase(cluster, operator, harness, namespace, name, ("Succeeded", "Failed"), timeout=300)
    assert run["status"]["phase"] == "Succeeded", json.dumps(run["status"], indent=1) + "\n" + operator.tail()
    assert _gate(cluster, namespace, name)["status"] == "False"
    stages = {n["spec"]["stage"] for n in get(cluster, "experimentnodes", namespace)["items"]}
    assert stages == {"initial", "tuning", "research", "ablation"} and operator.starts == 2
