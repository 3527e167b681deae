"""Node Jobs for Kueue: suspended with the queue label and a priority class per kind of node; a preempted node
waits for its Job to be admitted again instead of being retried or duplicated."""

from __future__ import annotations

import copy
import json
from typing import Any

from kube_fakes import RECORDED, Cluster
from test_manifests import job, spec
from test_reconciling import operator, reconcile

from kubescientist.adapters.kube import naming, queueing
from kubescientist.adapters.kube.outcomes import observe

QUEUED = {"queueName": "team-a", "queuePriority": {"search": "explore", "seeds": "final-stats"}}


def test_no_queue_leaves_the_job_running_at_once() -> None:
    run = spec()
    assert queueing.queued(job(run), run, "draft") == job(run)
    assert "suspend" not in job(run)["spec"]


def test_queued_jobs_are_suspended_with_the_queue_and_priority_labels() -> None:
    run = spec(**QUEUED)
    draft = queueing.queued(job(run), run, "draft")
    assert draft["spec"]["suspend"] is True
    assert draft["metadata"]["labels"][naming.QUEUE_LABEL] == "team-a"
    assert draft["metadata"]["labels"][queueing.PRIORITY_LABEL] == "explore"
    assert queueing.queued(job(run), run, "seed")["metadata"]["labels"][queueing.PRIORITY_LABEL] == "final-stats"
    only_search = spec(queueName="team-a", queuePriority={"search": "explore"})
    assert queueing.queued(job(only_search), only_search, "seed")["metadata"]["labels"][
        queueing.PRIORITY_LABEL] == "explore"
    none = spec(queueName="team-a")
    assert queueing.PRIORITY_LABEL not in queueing.queued(job(none), none, "draft")["metadata"]["labels"]


def test_a_pod_failed_by_preemption_of_a_suspended_job_is_not_an_outcome() -> None:
    failed = json.loads((RECORDED / "running.json").read_text())["pods"][0]
    failed = copy.deepcopy(failed)
    failed["status"]["phase"] = "Failed"
    suspended: dict[str, Any] = {"metadata": {"name": "demo-n0000-a1"}, "spec": {"suspend": True}, "status": {}}
    seen = observe(suspended, [failed], seen_running=True)
    assert seen.state == "pending" and "waiting for admission" in seen.message and seen.outcome is None


def test_a_preempted_node_runs_again_in_the_same_job_and_is_not_duplicated() -> None:
    cluster = Cluster(spec=QUEUED)
    reconciler = operator(cluster)
    reconcile(reconciler, cluster)
    (name,) = cluster.jobs()
    created = cluster.jobs()[name]
    assert created["spec"]["suspend"] is True
    assert created["metadata"]["labels"][queueing.PRIORITY_LABEL] == "explore"
    # Kueue admits: unsuspends; the pod runs; then Kueue preempts: suspends again, the pod ends Failed.
    created["spec"]["suspend"] = False
    cluster.start_pods()
    reconcile(reconciler, cluster)
    created["spec"]["suspend"] = True
    pod = cluster.pod_for(name)
    assert pod is not None
    pod["status"]["phase"] = "Failed"
    for _ in range(2):
        reconcile(reconciler, cluster)
    assert list(cluster.jobs()) == [name]
    node = cluster.kube.of(naming.NODES)["demo-n0000"]
    assert node["status"]["phase"] != "Failed" and node["status"]["attempts"] == 1
    # Admitted again: the Job controller makes a new pod, which finishes; the node succeeds, still one Job.
    del cluster.kube.objects[("pods", "ns", pod["metadata"]["name"])]
    created["spec"]["suspend"] = False
    cluster.start_pods()
    cluster.finish(name)
    reconcile(reconciler, cluster)
    node = cluster.kube.of(naming.NODES)["demo-n0000"]
    assert node["status"]["phase"] == "Succeeded" and node["status"]["attempts"] == 1
    assert list(cluster.jobs())[0] == name and f"demo-n0000-a2" not in cluster.jobs()
