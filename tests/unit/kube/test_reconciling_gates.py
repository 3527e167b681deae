"""A stage gate in the cluster, against the in-memory API and object store: the run pauses after the gated
stage with the condition AwaitingApproval naming its best node, a restarted operator (nothing in memory)
still waits and starts nothing, and an approval in the spec lets the run finish."""

from __future__ import annotations

from kube_fakes import Cluster
from kubescientist.adapters.kube import naming
from test_reconciling import drive, journal, operator, reconcile


def _conditions(cluster: Cluster) -> dict[str, dict[str, str]]:
    return {c["type"]: c for c in cluster.run["status"]["conditions"]}


def _settle(cluster: Cluster, reconciler: object, passes: int = 20) -> None:
    for _ in range(passes):
        reconcile(reconciler, cluster)  # type: ignore[arg-type]
        cluster.start_pods()
        reconcile(reconciler, cluster)  # type: ignore[arg-type]
        cluster.finish_all()


def test_a_gate_pauses_the_run_across_a_restart_until_approved() -> None:
    cluster = Cluster({"gates": ["initial"]})
    _settle(cluster, operator(cluster))
    status = cluster.run["status"]
    gate = _conditions(cluster)["AwaitingApproval"]
    assert status["phase"] == "Searching" and gate["status"] == "True" and gate["reason"] == "StageGate"
    assert "stage initial ended" in gate["message"] and "best node n0000 val_r2=" in gate["message"]
    assert status["message"].startswith("awaiting approval: stage initial ended")
    jobs = set(cluster.jobs())
    assert [s["status"] for s in journal(cluster)["stages"]] == ["done", "waiting", "waiting", "waiting"]

    restarted = operator(cluster)  # a new operator process: the pause is in the stored journal
    _settle(cluster, restarted, passes=3)
    assert set(cluster.jobs()) == jobs and _conditions(cluster)["AwaitingApproval"]["status"] == "True"

    run = cluster.kube.objects[(naming.RUNS, "ns", "demo")]
    run["spec"]["approvedGates"] = ["initial"]
    run["metadata"]["generation"] = 2
    assert drive(cluster, restarted)["phase"] == "Succeeded"
    gate = _conditions(cluster)["AwaitingApproval"]
    assert gate["status"] == "False" and gate["reason"] == "NotWaiting"
    assert journal(cluster)["stages"][1]["root"] == "n0000"


def test_runs_without_gates_have_no_approval_condition() -> None:
    cluster = Cluster()
    drive(cluster, operator(cluster))
    assert "AwaitingApproval" not in _conditions(cluster)
