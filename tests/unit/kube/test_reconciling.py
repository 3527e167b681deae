"""The reconciler against an in-memory API and object store: the search runs, and crashes at every
write-ahead point lose nothing and duplicate nothing."""

from __future__ import annotations

import copy
import datetime
import json
from typing import Any

import pytest

from kube_fakes import Cluster, RECORDED
from kubescientist.adapters.kube.journal_store import read_journal
from kubescientist.adapters.kube import naming
from kubescientist.adapters.kube.config import Settings
from kubescientist.adapters.kube.reconciling import Children, Reconciler

SETTINGS = Settings(node_image="img:test")


def operator(cluster: Cluster) -> Reconciler:
    """A fresh operator process: nothing in memory, same API and object store."""
    moment = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    return Reconciler(cluster.kube, SETTINGS, store_factory=cluster.store, clock=lambda: moment)


def reconcile(reconciler: Reconciler, cluster: Cluster) -> float:
    return reconciler.reconcile(cluster.run, cluster.kube.indexed(cluster.name))


def drive(cluster: Cluster, reconciler: Reconciler, passes: int = 60) -> dict[str, Any]:
    """Reconcile, start pods, finish them, until the run ends."""
    for _ in range(passes):
        reconcile(reconciler, cluster)
        status = cluster.run.get("status", {})
        if status.get("phase") in ("Succeeded", "Failed"):
            return status
        cluster.start_pods()
        reconcile(reconciler, cluster)
        cluster.finish_all()
    pytest.fail(f"run did not end: {cluster.run.get('status')}")


def journal(cluster: Cluster) -> dict[str, Any]:
    found = read_journal(cluster.s3.get, "runs/ns/demo/")
    assert found is not None, "no journal saved"
    return found[0].to_dict()


def assert_no_duplicates(cluster: Cluster) -> None:
    nodes = cluster.kube.of(naming.NODES)
    jobs = cluster.jobs()
    expected = {f"demo-{n['metadata']['labels'][naming.NODE_LABEL]}-a{a}"
                for n in nodes.values() for a in range(1, n["status"]["attempts"] + 1)}
    assert set(jobs) == expected
    assert len(cluster.kube.creates) == len(set(cluster.kube.creates))
    assert sorted(f"demo-{i}" for i in journal(cluster)["nodes"]) == sorted(nodes)


def test_a_run_goes_through_the_four_stages() -> None:
    cluster = Cluster()
    status = drive(cluster, operator(cluster))
    assert status["phase"] == "Succeeded" and status["stage"] == "ablation"
    nodes = cluster.kube.of(naming.NODES)
    assert {n["spec"]["stage"] for n in nodes.values()} == {"initial", "tuning", "research", "ablation"}
    assert all(n["status"]["phase"] == "Succeeded" for n in nodes.values())
    assert status["nodes"]["total"] == len(nodes) and status["bestNode"]["seeds"] == 2
    assert_no_duplicates(cluster)
    reasons = [reason for _, reason, _ in cluster.kube.events]
    assert reasons.count("NodeSucceeded") == len(nodes) and "StageEnded" in reasons and "SearchEnded" in reasons


def test_parallelism_bounds_the_jobs_running_at_once() -> None:
    cluster = Cluster()
    reconciler = operator(cluster)
    reconcile(reconciler, cluster)
    assert len(cluster.jobs()) == 1  # one draft; the initial stage has nothing else to do until it ends
    cluster.start_pods()
    cluster.finish_all()
    reconcile(reconciler, cluster)
    running = [j for j in cluster.jobs() if cluster.pod_for(j) is None]
    assert len(running) == 2


def test_a_pass_with_nothing_to_do_writes_nothing() -> None:
    cluster = Cluster()
    reconciler = operator(cluster)
    reconcile(reconciler, cluster)
    cluster.start_pods()
    reconcile(reconciler, cluster)
    before = (len(cluster.kube.patches), len(cluster.kube.creates), dict(cluster.s3))
    reconcile(reconciler, cluster)
    assert (len(cluster.kube.patches), len(cluster.kube.creates), dict(cluster.s3)) == before


def test_restart_reattaches_running_nodes_and_folds_jobs_that_ended_meanwhile() -> None:
    cluster = Cluster()
    first = operator(cluster)
    reconcile(first, cluster)
    cluster.start_pods()
    reconcile(first, cluster)
    cluster.finish_all()  # the node ends while no operator runs
    second = operator(cluster)
    reconcile(second, cluster)
    assert journal(cluster)["nodes"]["n0000"]["status"] == "succeeded"
    assert journal(cluster)["nodes"]["n0000"]["attempts"] == 1
    assert "demo-n0000-a2" not in cluster.jobs()
    status = drive(cluster, second)
    assert status["phase"] == "Succeeded"
    assert_no_duplicates(cluster)


def test_crash_after_commit_before_the_experiment_node_exists() -> None:
    cluster = Cluster()
    cluster.kube.fail_create.add("ExperimentNode")
    with pytest.raises(RuntimeError, match="killed"):
        reconcile(operator(cluster), cluster)
    assert "n0000" in journal(cluster)["nodes"] and not cluster.kube.of(naming.NODES)
    reconciler = operator(cluster)
    reconcile(reconciler, cluster)
    assert set(cluster.kube.of(naming.NODES)) == {"demo-n0000"} and set(cluster.jobs()) == {"demo-n0000-a1"}
    assert drive(cluster, reconciler)["phase"] == "Succeeded"
    assert_no_duplicates(cluster)


def test_crash_after_the_attempt_is_saved_before_its_job_exists() -> None:
    cluster = Cluster()
    cluster.kube.fail_create.add("Job")
    with pytest.raises(RuntimeError, match="killed"):
        reconcile(operator(cluster), cluster)
    saved = journal(cluster)["nodes"]["n0000"]
    assert saved["status"] == "running" and saved["attempts"] == 1 and not cluster.jobs()
    reconciler = operator(cluster)
    reconcile(reconciler, cluster)
    # The same attempt's Job, not a second attempt.
    assert set(cluster.jobs()) == {"demo-n0000-a1"}
    assert journal(cluster)["nodes"]["n0000"]["attempts"] == 1
    assert drive(cluster, reconciler)["phase"] == "Succeeded"
    assert_no_duplicates(cluster)


def test_crash_in_the_middle_of_every_pass() -> None:
    """Kill the operator before every other create of a whole run: it still ends, with no duplicate."""
    cluster = Cluster()
    reconciler = operator(cluster)
    for turn in range(200):
        if turn % 2 == 0:
            cluster.kube.fail_create.add("Job" if turn % 4 == 0 else "ExperimentNode")
        try:
            reconcile(reconciler, cluster)
        except RuntimeError:
            reconciler = operator(cluster)
            continue
        if cluster.run["status"].get("phase") == "Succeeded":
            break
        cluster.start_pods()
        cluster.finish_all()
    assert cluster.run["status"]["phase"] == "Succeeded"
    assert_no_duplicates(cluster)


def test_the_api_wins_when_a_node_status_is_ahead_of_the_journal() -> None:
    cluster = Cluster()
    reconciler = operator(cluster)
    reconcile(reconciler, cluster)
    saved = dict(cluster.s3)
    cluster.start_pods()
    reconcile(reconciler, cluster)
    cluster.finish_all()
    reconcile(reconciler, cluster)
    node = cluster.kube.of(naming.NODES)["demo-n0000"]
    assert node["status"]["phase"] == "Succeeded"
    # Object storage lost the last journal writes, and the Job went away: only the API remembers the result.
    cluster.s3.clear()
    cluster.s3.update(saved)
    for name in [n for n in cluster.jobs() if n != "demo-n0000-a1"]:
        del cluster.kube.objects[("jobs", "ns", name)]
    del cluster.kube.objects[("jobs", "ns", "demo-n0000-a1")]
    for key in [k for k in cluster.kube.objects if k[0] == "pods"]:
        del cluster.kube.objects[key]
    restarted = operator(cluster)
    reconcile(restarted, cluster)
    adopted = journal(cluster)["nodes"]["n0000"]
    assert adopted["status"] == "succeeded" and adopted["outcome"]["details"]["adopted"] is True
    assert "demo-n0000-a1" not in cluster.jobs() and "demo-n0000-a2" not in cluster.jobs()


def test_infrastructure_failures_are_retried_with_a_new_job_then_fail() -> None:
    cluster = Cluster()
    reconciler = operator(cluster)
    evicted = json.loads((RECORDED / "preempted.json").read_text())["pods"][0]
    for attempt in (1, 2, 3):
        reconcile(reconciler, cluster)
        job = f"demo-n0000-a{attempt}"
        assert job in cluster.jobs()
        cluster.start_pods()
        pod = cluster.pod_for(job)
        pod["status"] = copy.deepcopy(evicted["status"])
    reconcile(reconciler, cluster)
    node = cluster.kube.of(naming.NODES)["demo-n0000"]["status"]
    assert node["phase"] == "Failed" and node["attempts"] == 3 and "PreemptionByScheduler" in node["message"]
    assert ("Warning", "NodeRetried") in {(k, r) for k, r, _ in cluster.kube.events}


def test_buggy_and_oom_nodes_are_buggy() -> None:
    cluster = Cluster({"search": {"parallelism": 1, "drafts": 1, "debugProbability": 0.0, "maxDebugDepth": 0}})
    reconciler = operator(cluster)
    reconcile(reconciler, cluster)
    cluster.start_pods()
    cluster.finish("demo-n0000-a1", "", exit_code=137, reason="OOMKilled")
    reconcile(reconciler, cluster)
    node = cluster.kube.of(naming.NODES)["demo-n0000"]["status"]
    assert node["phase"] == "Buggy" and node["buggy"] is True and "out of memory" in node["buggyReason"]
    assert "1Gi" in node["buggyReason"]


def test_suspend_starts_nothing_and_resume_continues() -> None:
    cluster = Cluster()
    reconciler = operator(cluster)
    reconcile(reconciler, cluster)
    cluster.start_pods()
    cluster.kube.objects[(naming.RUNS, "ns", "demo")]["spec"]["suspend"] = True
    cluster.kube.objects[(naming.RUNS, "ns", "demo")]["metadata"]["generation"] = 2
    cluster.finish_all()
    reconcile(reconciler, cluster)
    reconcile(reconciler, cluster)
    status = cluster.run["status"]
    assert status["phase"] == "Suspended" and set(cluster.jobs()) == {"demo-n0000-a1"}
    assert status["observedGeneration"] == 2
    assert {c["type"]: c["reason"] for c in status["conditions"]}["Searching"] == "Suspended"
    cluster.kube.objects[(naming.RUNS, "ns", "demo")]["spec"]["suspend"] = False
    assert drive(cluster, reconciler)["phase"] == "Succeeded"


def test_image_pull_failure_stalls_the_run_with_a_clear_message() -> None:
    cluster = Cluster()
    reconciler = operator(cluster)
    reconcile(reconciler, cluster)
    cluster.start_pods()
    pod = cluster.pod_for("demo-n0000-a1")
    pod["status"] = copy.deepcopy(json.loads((RECORDED / "image-pull.json").read_text())["pods"][0]["status"])
    reconcile(reconciler, cluster)
    status = cluster.run["status"]
    stalled = {c["type"]: c for c in status["conditions"]}["Stalled"]
    assert stalled["status"] == "True" and "cannot pull image" in stalled["message"]
    assert "demo-n0000" in stalled["message"] and status["message"].startswith("stalled: ")


def test_missing_storage_secret_stalls_and_recovers() -> None:
    cluster = Cluster()
    secret = cluster.kube.objects.pop(("secrets", "ns", "s3"))
    reconciler = operator(cluster)
    reconcile(reconciler, cluster)
    status = cluster.run["status"]
    assert status["phase"] == "Pending" and "no Secret s3" in status["message"]
    cluster.kube.objects[("secrets", "ns", "s3")] = secret
    reconcile(reconciler, cluster)
    assert cluster.run["status"]["phase"] == "Searching"


def test_a_new_run_with_an_old_name_does_not_inherit_its_journal() -> None:
    cluster = Cluster()
    drive(cluster, operator(cluster))
    for key in [k for k in cluster.kube.objects if k[0] in (naming.NODES, "jobs", "pods")]:
        del cluster.kube.objects[key]
    run = cluster.kube.objects[(naming.RUNS, "ns", "demo")]
    run["metadata"]["uid"] = "another-uid"
    run.pop("status")
    reconcile(operator(cluster), cluster)
    assert list(journal(cluster)["nodes"]) == ["n0000"] and cluster.run["status"]["phase"] == "Searching"


def test_run_status_stays_bounded_however_large_the_tree() -> None:
    sizes = []
    for budget in (2, 12):
        cluster = Cluster({"stages": [{"name": "initial", "maxNodes": 1}, {"name": "tuning", "maxNodes": budget},
                                      {"name": "research", "maxNodes": 1}, {"name": "ablation", "maxNodes": 1}]})
        drive(cluster, operator(cluster))
        sizes.append(len(json.dumps(cluster.run["status"])))
    assert abs(sizes[1] - sizes[0]) < 200


def test_writeup_and_review_jobs_follow_the_search() -> None:
    cluster = Cluster({"writeup": {"enabled": True}, "review": {"enabled": True, "reviewers": 1}})
    reconciler = operator(cluster)
    for _ in range(40):
        reconcile(reconciler, cluster)
        if "demo-writeup" in cluster.jobs():
            break
        cluster.start_pods()
        reconcile(reconciler, cluster)
        cluster.finish_all()
    assert cluster.run["status"]["phase"] == "WritingUp"
    assert {"runs/ns/demo/records.tar.gz", "runs/ns/demo/summary.json", "runs/ns/demo/run.yaml"} <= set(cluster.s3)
    writeup = cluster.jobs()["demo-writeup"]
    args = writeup["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:4] == ["-m", "kubescientist.adapters.kube.publishing", "writeup", "--records-url"]
    cluster.start_pods()
    cluster.finish("demo-writeup", '{"status":"succeeded","message":"paper written: 4 pages","pages":4}')
    reconcile(reconciler, cluster)
    assert cluster.run["status"]["phase"] == "Reviewing" and "demo-review" in cluster.jobs()
    cluster.start_pods()
    cluster.finish("demo-review", '{"status":"succeeded","message":"review: Reject","decision":"Reject","overall":4}')
    reconcile(reconciler, cluster)
    status = cluster.run["status"]
    assert status["phase"] == "Succeeded"
    assert status["paper"]["uri"] == "s3://b/runs/ns/demo/paper/paper.pdf"
    assert status["review"] == {"uri": "s3://b/runs/ns/demo/review.json", "decision": "Reject", "overall": 4}
    # A restart after the end re-creates nothing.
    creates = len(cluster.kube.creates)
    reconcile(operator(cluster), cluster)
    assert len(cluster.kube.creates) == creates and cluster.run["status"]["phase"] == "Succeeded"


def test_a_failed_writeup_fails_the_run_with_the_reason() -> None:
    cluster = Cluster({"writeup": {"enabled": True}, "review": {"enabled": False}})
    reconciler = operator(cluster)
    for _ in range(40):
        reconcile(reconciler, cluster)
        if "demo-writeup" in cluster.jobs():
            break
        cluster.start_pods()
        reconcile(reconciler, cluster)
        cluster.finish_all()
    cluster.start_pods()
    cluster.finish("demo-writeup", '{"status":"error","message":"writeup failed: ToolMissing: pdflatex"}', exit_code=1)
    reconcile(reconciler, cluster)
    status = cluster.run["status"]
    assert status["phase"] == "Failed" and "pdflatex" in status["message"]
    assert {c["type"]: c["reason"] for c in status["conditions"]}["Failed"] == "WriteupFailed"


def test_an_experiment_node_deleted_by_hand_comes_back() -> None:
    from kubescientist.adapters.kube.clients import ApiError

    cluster = Cluster()
    reconciler = operator(cluster)
    reconcile(reconciler, cluster)
    cluster.start_pods()
    del cluster.kube.objects[(naming.NODES, "ns", "demo-n0000")]
    real_patch = cluster.kube.patch_status

    def patch(api_version: str, plural: str, namespace: str, name: str, status: Any) -> None:
        if (plural, namespace, name) not in cluster.kube.objects:
            raise ApiError(404, "not found")
        real_patch(api_version, plural, namespace, name, status)

    cluster.kube.patch_status = patch  # type: ignore[method-assign]
    cluster.finish_all()
    reconcile(reconciler, cluster)
    reconcile(reconciler, cluster)
    assert "demo-n0000" in cluster.kube.of(naming.NODES)
    assert drive(cluster, reconciler)["phase"] == "Succeeded"


# -- scaling: watch indexes instead of lists, TTL on folded Jobs, settled statuses, sub-second reaction ------

def children(cluster: Cluster, seen: dict[str, float] | None = None) -> Children:
    """What the operator's Job and pod indexes hold for the run (pods finished carry when they were seen so)."""
    pods = []
    for pod in cluster.kube.of("pods").values():
        pod = copy.deepcopy(pod)
        if seen is not None and pod["metadata"]["name"] in seen:
            pod["seenFinished"] = seen[pod["metadata"]["name"]]
        pods.append(pod)
    return Children(jobs=[copy.deepcopy(j) for j in cluster.jobs().values()], pods=pods)


def test_passes_work_from_the_indexes_without_listing() -> None:
    cluster = Cluster()
    reconciler = operator(cluster)
    for _ in range(40):
        reconciler.reconcile(cluster.run, cluster.kube.indexed(cluster.name), children(cluster))
        if cluster.run.get("status", {}).get("phase") == "Succeeded":
            break
        cluster.start_pods()
        cluster.finish_all()
    assert cluster.run["status"]["phase"] == "Succeeded"
    # One list of ExperimentNodes when the run's state is loaded; never a list of Jobs or pods.
    assert cluster.kube.lists == [naming.NODES]


def test_folded_jobs_get_a_ttl_and_running_ones_do_not() -> None:
    cluster = Cluster()
    reconciler = operator(cluster)
    reconcile(reconciler, cluster)
    cluster.start_pods()
    reconcile(reconciler, cluster)
    (first,) = cluster.jobs()
    assert "ttlSecondsAfterFinished" not in cluster.jobs()[first]["spec"]  # running: its outcome is not saved
    cluster.finish(first)
    reconcile(reconciler, cluster)
    assert cluster.jobs()[first]["spec"]["ttlSecondsAfterFinished"] == SETTINGS.finished_job_ttl_seconds
    assert journal(cluster)["nodes"]["n0000"]["status"] == "succeeded"  # saved before the TTL was set
    assert all("ttlSecondsAfterFinished" not in j["spec"] for n, j in cluster.jobs().items() if n != first)
    # Once: a later pass does not write it again.
    patches = len(cluster.kube.patches)
    reconcile(reconciler, cluster)
    assert ("jobs", first) not in cluster.kube.patches[patches:]


def test_a_pass_with_nothing_new_writes_nothing() -> None:
    cluster = Cluster()
    reconciler = operator(cluster)
    drive(cluster, reconciler)
    writes = (len(cluster.kube.patches), len(cluster.kube.creates), len(cluster.kube.events))
    for _ in range(3):
        reconcile(reconciler, cluster)
    assert (len(cluster.kube.patches), len(cluster.kube.creates), len(cluster.kube.events)) == writes
    assert set(reconciler.runs[("ns", "demo")].settled) == set(cluster.kube.of(naming.NODES))


def test_a_settled_node_deleted_by_hand_is_created_again() -> None:
    cluster = Cluster()
    reconciler = operator(cluster)
    drive(cluster, reconciler)
    del cluster.kube.objects[(naming.NODES, "ns", "demo-n0000")]
    reconcile(reconciler, cluster)
    reconcile(reconciler, cluster)
    again = cluster.kube.of(naming.NODES)["demo-n0000"]
    assert again["status"]["phase"] == "Succeeded"


def test_reaction_is_timed_from_when_the_watch_saw_the_pod_finish() -> None:
    from kubescientist.adapters import metrics

    cluster = Cluster()
    moment = datetime.datetime(2026, 1, 1, 0, 5, tzinfo=datetime.timezone.utc)
    reconciler = Reconciler(cluster.kube, SETTINGS, store_factory=cluster.store, clock=lambda: moment)
    reconciler.reconcile(cluster.run, cluster.kube.indexed(cluster.name), children(cluster))
    cluster.start_pods()
    (first,) = cluster.jobs()
    cluster.finish(first)
    before = metrics.METRICS.reaction.collect()[0]
    count = next(s.value for s in before.samples if s.name.endswith("_count"))
    total = next(s.value for s in before.samples if s.name.endswith("_sum"))
    seen = {f"{first}-x": moment.timestamp() - 0.25}
    reconciler.reconcile(cluster.run, cluster.kube.indexed(cluster.name), children(cluster, seen))
    after = metrics.METRICS.reaction.collect()[0]
    assert next(s.value for s in after.samples if s.name.endswith("_count")) == count + 1
    assert next(s.value for s in after.samples if s.name.endswith("_sum")) - total == pytest.approx(0.25)


def test_a_job_created_before_the_watch_shows_it_is_not_created_again() -> None:
    cluster = Cluster()
    reconciler = operator(cluster)
    posts: list[str] = []
    create = cluster.kube.create

    def counting(obj: Any) -> dict[str, Any]:
        if obj["kind"] == "Job":
            posts.append(obj["metadata"]["name"])
        return create(obj)

    cluster.kube.create = counting  # type: ignore[method-assign]
    empty = Children(jobs=[], pods=[])  # the Job watch has not delivered the new Job yet
    reconciler.reconcile(cluster.run, cluster.kube.indexed(cluster.name), empty)
    reconciler.reconcile(cluster.run, cluster.kube.indexed(cluster.name), empty)
    assert posts == ["demo-n0000-a1"]
    node = cluster.kube.of(naming.NODES)["demo-n0000"]
    assert node["status"]["phase"] == "Pending" and "no Job" not in node["status"]["message"]
    reconciler.reconcile(cluster.run, cluster.kube.indexed(cluster.name), children(cluster))
    assert not reconciler.runs[("ns", "demo")].unseen_jobs  # the watch has it: forgotten


def test_status_writes_behind_the_pass_reach_the_api_and_a_failed_one_is_made_again() -> None:
    import concurrent.futures

    cluster = Cluster()
    moment = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    with concurrent.futures.ThreadPoolExecutor(4) as lanes:
        reconciler = Reconciler(cluster.kube, SETTINGS, store_factory=cluster.store, clock=lambda: moment,
                                lanes=lanes)
        patch_status = cluster.kube.patch_status
        failures = ["demo-n0000"]

        def flaky(api_version: str, plural: str, namespace: str, name: str, status: Any) -> None:
            if name in failures:
                failures.remove(name)
                raise RuntimeError("the API server is overloaded")
            patch_status(api_version, plural, namespace, name, status)

        cluster.kube.patch_status = flaky  # type: ignore[method-assign]
        reconcile(reconciler, cluster)
        reconciler.outboxes[("ns", "demo")].drain()
        assert "status" not in cluster.kube.of(naming.NODES)["demo-n0000"]  # the patch failed
        with pytest.raises(RuntimeError, match="overloaded"):
            reconcile(reconciler, cluster)  # the next pass undoes what it assumed and says why it failed
        reconcile(reconciler, cluster)
        reconciler.outboxes[("ns", "demo")].drain()
        assert cluster.kube.of(naming.NODES)["demo-n0000"]["status"]["phase"] == "Pending"
        for _ in range(60):
            if cluster.run.get("status", {}).get("phase") == "Succeeded":
                break
            cluster.start_pods()
            cluster.finish_all()
            reconcile(reconciler, cluster)
            reconciler.outboxes[("ns", "demo")].drain()
        assert cluster.run["status"]["phase"] == "Succeeded"
        assert all(n["status"]["phase"] == "Succeeded" for n in cluster.kube.of(naming.NODES).values())
