"""A queued run says how many of its nodes wait for admission and why, in Kueue's words (its Workloads'
conditions); the Workloads are listed once per pass, only while some node Job waits."""

from __future__ import annotations

from typing import Any

from kube_fakes import Cluster
from test_queueing import QUEUED
from test_reconciling import operator, reconcile

from kubescientist.adapters.kube import admission, naming
from kubescientist.adapters.kube.clients import ApiError
from kubescientist.adapters.kube.outcomes import observe

NO_GPUS = ("couldn't assign flavors to pod set main: insufficient unused quota for nvidia.com/gpu in flavor "
           "fake-gpu, 5 more needed")
PREEMPTED = "Preempted to accommodate a workload (UID: 1, JobUID: 2) due to prioritization in the ClusterQueue"


def workload(job_uid: str, **conditions: tuple[str, str]) -> dict[str, Any]:
    """A Workload as Kueue keeps it for the Job of that uid, with conditions type=(status, message)."""
    return {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "Workload",
            "metadata": {"name": f"job-{job_uid}", "namespace": "ns", "labels": {admission.JOB_UID_LABEL: job_uid}},
            "status": {"conditions": [{"type": kind, "status": status, "reason": "Pending", "message": message}
                                      for kind, (status, message) in conditions.items()]}}


def test_kueues_reason_is_the_message_of_its_false_quota_or_admission_condition() -> None:
    assert admission.reason(workload("a", QuotaReserved=("False", NO_GPUS))) == NO_GPUS
    checks = workload("a", QuotaReserved=("True", "Quota reserved in ClusterQueue cq"),
                      Admitted=("False", "The workload has not all checks ready"))
    assert admission.reason(checks) == "The workload has not all checks ready"
    assert admission.reason(workload("a", QuotaReserved=("True", "reserved"), Admitted=("True", "admitted"))) is None
    assert admission.reason({"metadata": {}}) is None
    assert admission.reasons_by_job([workload("a", QuotaReserved=("False", NO_GPUS)), workload("b")]) == {"a": NO_GPUS}


def test_the_run_shows_the_count_and_kueues_most_frequent_reason() -> None:
    assert admission.waiting([]) == admission.Waiting(0, "")
    assert admission.waiting([None, None]) == admission.Waiting(2, admission.UNKNOWN)
    assert admission.waiting([NO_GPUS, None, NO_GPUS]) == admission.Waiting(
        3, f"{NO_GPUS} (and 1 waiting for another reason)")
    # A tie is broken the same way every pass (sorted), so the status does not flip between passes.
    assert admission.waiting([PREEMPTED, NO_GPUS]).message == admission.waiting([NO_GPUS, PREEMPTED]).message


def test_the_selector_names_each_waiting_job_once_and_is_bounded() -> None:
    assert admission.selector([]) is None
    assert admission.selector(["b", "a", "b"]) == f"{admission.JOB_UID_LABEL} in (a,b)"
    many = admission.selector(f"uid-{i:04d}" for i in range(500))
    assert many is not None and many.count(",") == admission.MAX_LISTED - 1


def test_a_suspended_job_is_observed_as_queued_with_kueues_reason() -> None:
    job = {"metadata": {"name": "demo-n0000-a1", "uid": "u"}, "spec": {"suspend": True}, "status": {}}
    seen = observe(job, [], waits_because=NO_GPUS)
    assert seen.queued and seen.state == "pending" and seen.message.endswith(NO_GPUS)
    assert admission.UNKNOWN in observe(job, []).message
    complete = {**job, "status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    assert not admission.suspended(complete) and not observe(complete, []).queued


def test_a_queued_run_counts_its_waiting_nodes_with_kueues_message_until_admitted() -> None:
    cluster = Cluster(spec=QUEUED)
    reconciler = operator(cluster)
    reconcile(reconciler, cluster)
    (job_name,) = cluster.jobs()
    job = cluster.jobs()[job_name]
    cluster.kube.put("workloads", workload(job["metadata"]["uid"], QuotaReserved=("False", NO_GPUS)))
    cluster.kube.put("workloads", workload("another-runs-job", QuotaReserved=("False", PREEMPTED)))
    cluster.kube.lists.clear()
    reconcile(reconciler, cluster)
    status = cluster.run["status"]
    assert status["nodes"]["waitingForAdmission"] == 1 and status["nodes"]["pending"] + status["nodes"]["running"] == 1
    queued = next(c for c in status["conditions"] if c["type"] == "Queued")
    assert queued["status"] == "True" and queued["reason"] == "WaitingForAdmission"
    assert queued["message"] == f"1 node waits for admission (Kueue): {NO_GPUS}"
    assert NO_GPUS in status["message"]
    node = cluster.kube.of(naming.NODES)["demo-n0000"]["status"]
    assert node["phase"] == "Pending" and node["message"].endswith(NO_GPUS)
    assert cluster.kube.lists.count("workloads") == 1  # one list per pass, not one get per node
    assert waiting_gauge() == 1

    # Admitted: Kueue unsuspends the Job; nothing waits, and no Workload is listed any more.
    job["spec"]["suspend"] = False
    cluster.kube.lists.clear()
    reconcile(reconciler, cluster)
    status = cluster.run["status"]
    assert status["nodes"]["waitingForAdmission"] == 0
    queued = next(c for c in status["conditions"] if c["type"] == "Queued")
    assert queued["status"] == "False" and queued["reason"] == "NoneWaiting"
    assert "workloads" not in cluster.kube.lists
    assert waiting_gauge() == 0


def waiting_gauge() -> float | None:
    from kubescientist.adapters import metrics
    return metrics.METRICS.registry.get_sample_value("kubescientist_run_nodes_waiting_for_admission",
                                                     {"namespace": "ns", "run": "demo"})


def test_without_kueues_api_a_queued_node_waits_with_a_generic_message() -> None:
    cluster = Cluster(spec=QUEUED)
    reconciler = operator(cluster)
    listing = cluster.kube.list

    def no_kueue(api_version: str, plural: str, namespace: str, selector: str) -> list[dict[str, Any]]:
        if plural == "workloads":
            raise ApiError(404, "the server could not find the requested resource")
        return listing(api_version, plural, namespace, selector)

    cluster.kube.list = no_kueue  # type: ignore[method-assign]
    for _ in range(2):
        reconcile(reconciler, cluster)
    status = cluster.run["status"]
    assert status["nodes"]["waitingForAdmission"] == 1
    assert next(c for c in status["conditions"] if c["type"] == "Queued")["message"].endswith(admission.UNKNOWN)


def test_a_run_without_a_queue_has_no_queued_condition_and_lists_no_workloads() -> None:
    cluster = Cluster()
    reconciler = operator(cluster)
    for _ in range(2):
        reconcile(reconciler, cluster)
    status = cluster.run["status"]
    assert "waitingForAdmission" not in status["nodes"]
    assert all(c["type"] != "Queued" for c in status["conditions"])
    assert "workloads" not in cluster.kube.lists
