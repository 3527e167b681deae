"""Kueue for real: two ResearchRuns share a ClusterQueue whose GPU quota is below their combined parallelism.

Kueue (built from the Go module proxy, tests/e2e/kueue.py) runs against the real control plane; a
ResourceFlavor stands for the fake GPU nodes, a ClusterQueue holds 10 GPUs, a LocalQueue in the runs'
namespace points at it. Each run wants 2 nodes at once of 5 GPUs each (20 GPUs together): Kueue must
admit at most two node Jobs at a time, and both runs must still finish. Node pods are really run by the
kubelet harness on kwok's GPU nodes.
"""

from __future__ import annotations

import datetime
import json
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import kueue as kueue_manager
from kubelet_harness import KubeletHarness
from test_operator import GPUS_PER_NODE_POD, apply_file, get, operator, research_run, say  # noqa: F401 (fixture)

pytestmark = pytest.mark.kueue

GPU_QUOTA = 10
QUEUE = "research"


@pytest.fixture
def kueue(cluster: Any, tmp_path: Path) -> Iterator[kueue_manager.KueueProcess]:
    if not kueue_manager.binary().is_file():
        pytest.skip(f"Kueue is not built yet: python tests/e2e/kueue.py (or make e2e) builds it into "
                    f"{kueue_manager.BIN_DIR}")
    process = kueue_manager.KueueProcess(cluster, tmp_path / "kueue")
    process.start()
    try:
        yield process
    finally:
        process.stop()


def queues(cluster: Any, namespace: str) -> None:
    cluster.apply([
        {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ResourceFlavor", "metadata": {"name": "fake-gpu"},
         "spec": {"nodeLabels": {"nvidia.com/gpu.present": "true"}}},
        {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ClusterQueue", "metadata": {"name": f"{namespace}-cq"},
         "spec": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                  "resourceGroups": [{"coveredResources": ["cpu", "memory", "nvidia.com/gpu"],
                                      "flavors": [{"name": "fake-gpu", "resources": [
                                          {"name": "cpu", "nominalQuota": "16"},
                                          {"name": "memory", "nominalQuota": "32Gi"},
                                          {"name": "nvidia.com/gpu", "nominalQuota": GPU_QUOTA}]}]}]}},
        {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue",
         "metadata": {"name": QUEUE, "namespace": namespace}, "spec": {"clusterQueue": f"{namespace}-cq"}},
    ])


def _stamp(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class AdmissionWatch:
    """Polls the namespace's Workloads: the most GPUs admitted at once, and each Workload's admission latency."""

    def __init__(self, cluster: Any, namespace: str) -> None:
        self.cluster, self.namespace = cluster, namespace
        self.peak_gpus = 0
        self.latencies: dict[str, float] = {}
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                self._poll()
            except Exception as err:  # noqa: BLE001 - a failed poll is retried, and reported if they all fail
                self.errors.append(repr(err))
            time.sleep(0.3)

    def _poll(self) -> None:
        admitted = 0
        for workload in get(self.cluster, "workloads.kueue.x-k8s.io", self.namespace)["items"]:
            status = workload.get("status") or {}
            conditions = {c["type"]: c for c in status.get("conditions") or []}
            ok = conditions.get("Admitted", {}).get("status") == "True"
            done = conditions.get("Finished", {}).get("status") == "True"
            if ok and not done:
                # What Kueue charged against the ClusterQueue for this workload.
                for assignment in (status.get("admission") or {}).get("podSetAssignments") or []:
                    admitted += int((assignment.get("resourceUsage") or {}).get("nvidia.com/gpu", 0))
            if ok and workload["metadata"]["name"] not in self.latencies:
                self.latencies[workload["metadata"]["name"]] = (
                    _stamp(conditions["Admitted"]["lastTransitionTime"]) - _stamp(workload["metadata"]["creationTimestamp"]))
        self.peak_gpus = max(self.peak_gpus, admitted)


KUEUE_NO_QUOTA = "insufficient unused quota for nvidia.com/gpu"
"""What Kueue says on a Workload that waits for GPUs of the ClusterQueue."""


class QueuedSeen:
    """What the runs' and nodes' statuses said about waiting for admission, over the test's polls."""

    def __init__(self) -> None:
        self.most = 0
        """The most nodes one run's status counted as waiting for admission at once."""
        self.run_message = ""
        """A True Queued condition's message of a run, once seen."""
        self.node_message = ""
        """A queued ExperimentNode's message that carried Kueue's reason, once seen."""
        self.seconds = 0.0
        """How long (between polls) some run's status showed nodes waiting."""
        self.since: float | None = None
        """When the previous poll saw nodes waiting (None: it did not)."""

    def look(self, runs: Any, nodes: Any) -> None:
        now, waited = time.monotonic(), False
        for run in runs:
            status = run.get("status") or {}
            count = (status.get("nodes") or {}).get("waitingForAdmission") or 0
            condition = next((c for c in status.get("conditions") or () if c["type"] == "Queued"), {})
            if count and condition.get("status") == "True":
                waited = True
                self.most = max(self.most, count)
                if KUEUE_NO_QUOTA in condition.get("message", ""):
                    self.run_message = condition["message"]
        for node in nodes:
            message = (node.get("status") or {}).get("message") or ""
            if message.startswith("queued") and KUEUE_NO_QUOTA in message:
                self.node_message = message
        if waited and self.since is not None:
            self.seconds += now - self.since
        self.since = now if waited else None


def test_two_runs_share_a_gpu_quota_smaller_than_their_parallelism(
        cluster: Any, restricted_namespace: str, kueue: kueue_manager.KueueProcess, operator: Any,
        tmp_path: Path) -> None:
    namespace = restricted_namespace
    queues(cluster, namespace)
    watch = AdmissionWatch(cluster, namespace)
    watch.thread.start()
    started = time.monotonic()
    with KubeletHarness(cluster.kubeconfig, [namespace], parallel=4, hold_seconds=1.0) as harness:
        for name in ("alpha", "beta"):
            apply_file(cluster, research_run(name, namespace, cluster, queueName=QUEUE,
                                             writeup={"enabled": False}, review={"enabled": False}), tmp_path)
        deadline = time.monotonic() + 420
        phases: dict[str, str] = {}
        queued = QueuedSeen()
        while time.monotonic() < deadline:
            runs_now = {r["metadata"]["name"]: r for r in get(cluster, "researchruns", namespace)["items"]}
            phases = {n: runs_now.get(n, {}).get("status", {}).get("phase", "") for n in ("alpha", "beta")}
            queued.look(runs_now.values(), get(cluster, "experimentnodes", namespace)["items"])
            if all(p in ("Succeeded", "Failed") for p in phases.values()):
                break
            time.sleep(0.5)
        watch.stop.set()
        watch.thread.join(timeout=10)
        assert phases == {"alpha": "Succeeded", "beta": "Succeeded"}, (
            f"{phases}\nkueue:\n{kueue.tail()}\noperator:\n{operator.tail()}\nharness: {harness.errors}")
        runs = [r for r in harness.runs.values() if r.labels.get("kubescientist.io/role") == "node"]
    elapsed = time.monotonic() - started

    # Never more GPUs admitted than the quota, and never more node pods running at once than it holds.
    assert 0 < watch.peak_gpus <= GPU_QUOTA, watch.errors[-3:]
    most_at_once = max(sum(1 for b in runs if b.started <= a.started < b.finished) for a in runs)
    assert most_at_once * GPUS_PER_NODE_POD <= GPU_QUOTA
    # Every node Job went through Kueue, once: one Workload per Job, no node run twice.
    jobs = get(cluster, "jobs", namespace, selector="kubescientist.io/role=node")["items"]
    assert all(j["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == QUEUE for j in jobs)
    nodes = get(cluster, "experimentnodes", namespace)["items"]
    assert len(jobs) == len(nodes) == len(runs) and all(n["status"]["attempts"] == 1 for n in nodes)
    latencies = sorted(watch.latencies.values())
    assert len(latencies) == len(jobs)
    # While the quota was exhausted, a run's status counted its waiting nodes with Kueue's own message, and
    # the waiting node said the same; once all was admitted and done, nothing waits.
    assert queued.most >= 1 and KUEUE_NO_QUOTA in queued.run_message, (queued.most, queued.run_message)
    assert KUEUE_NO_QUOTA in queued.node_message, queued.node_message
    for name in ("alpha", "beta"):
        status = get(cluster, "researchrun", namespace, name)["status"]
        condition = next(c for c in status["conditions"] if c["type"] == "Queued")
        assert status["nodes"]["waitingForAdmission"] == 0 and condition["status"] == "False", status
    say(f"[e2e kueue] run status while the quota was exhausted: at most {queued.most} node(s) waiting for admission "
        f"in one run, seen for {queued.seconds:.1f}s of polls: {queued.run_message!r}")
    say(f"[e2e kueue] 2 runs, {len(nodes)} nodes, {GPU_QUOTA}-GPU quota for 20 GPUs of parallelism: both Succeeded in "
        f"{elapsed:.0f}s; peak admitted GPUs {watch.peak_gpus}; admission latency (Workload created -> Admitted, 1 s "
        f"resolution) median {statistics.median(latencies):.0f}s, max {max(latencies):.0f}s over {len(latencies)}")
    print(json.dumps({"peakGpus": watch.peak_gpus, "latencies": latencies}))


def test_a_higher_priority_run_preempts_an_exploratory_node_which_runs_again(
        cluster: Any, restricted_namespace: str, kueue: kueue_manager.KueueProcess, operator: Any,
        tmp_path: Path) -> None:
    namespace = restricted_namespace
    queues(cluster, namespace)
    cluster.kubectl("patch", "clusterqueue", f"{namespace}-cq", "--type=merge", "-p",
                    json.dumps({"spec": {"preemption": {"withinClusterQueue": "LowerPriority"}}}))
    cluster.apply([{"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "WorkloadPriorityClass",
                    "metadata": {"name": name}, "value": value}
                   for name, value in (("ks-explore", 10), ("ks-urgent", 1000))])
    small = [{"name": n, "maxNodes": 1} for n in ("initial", "tuning", "research", "ablation")]
    with KubeletHarness(cluster.kubeconfig, [namespace], parallel=4, hold_seconds=20.0) as harness:
        # Two drafts at once: the low run alone fills the 10-GPU quota.
        apply_file(cluster, research_run("low", namespace, cluster, queueName=QUEUE,
                                         stages=[{"name": "initial", "maxNodes": 2}, *small[1:]],
                                         search={"parallelism": 2, "drafts": 2}, seeds=0,
                                         queuePriority={"search": "ks-explore"},
                                         writeup={"enabled": False}, review={"enabled": False}), tmp_path)
        try:
            cluster.wait_for("two low-priority nodes running", lambda: sum(
                1 for r in harness.runs.values() if r.labels.get("kubescientist.io/run") == "low" and r.started) >= 2,
                120)
        except Exception as err:
            workloads = get(cluster, "workloads.kueue.x-k8s.io", namespace)["items"]
            jobs = get(cluster, "jobs", namespace)["items"]
            pytest.fail(f"{err}\nworkloads: {json.dumps([w.get('status') for w in workloads])[:3000]}\n"
                        f"jobs: {json.dumps([(j['metadata']['name'], j['metadata']['labels'], j['spec'].get('suspend')) for j in jobs])}\n"
                        f"operator: {operator.tail(40)}\nharness: {harness.errors}")
        apply_file(cluster, research_run("high", namespace, cluster, queueName=QUEUE, stages=small, seeds=0,
                                         search={"parallelism": 2, "drafts": 1},
                                         queuePriority={"search": "ks-urgent"},
                                         writeup={"enabled": False}, review={"enabled": False}), tmp_path)

        def preempted() -> bool:
            for workload in get(cluster, "workloads.kueue.x-k8s.io", namespace)["items"]:
                for c in workload.get("status", {}).get("conditions", []):
                    if c["type"] in ("Evicted", "Preempted") and c["status"] == "True":
                        return True
            return False

        cluster.wait_for("Kueue to preempt a low-priority workload", preempted, 120)
        low: dict[str, Any] = {}

        def low_waits() -> bool:
            low.update(get(cluster, "researchrun", namespace, "low").get("status") or {})
            condition = next((c for c in low.get("conditions") or () if c["type"] == "Queued"), {})
            told = "Preempted" in condition.get("message", "") or KUEUE_NO_QUOTA in condition.get("message", "")
            return condition.get("status") == "True" and told and \
                (low.get("nodes") or {}).get("waitingForAdmission", 0) >= 1

        # The preempted node waits to be admitted again, and its run says so in Kueue's words (from the pass
        # after Kueue wrote them on the Workload: a pass right after the preemption may not have them yet).
        cluster.wait_for("the low run to count its preempted node as waiting for admission", low_waits, 60)
        why = next(c for c in low["conditions"] if c["type"] == "Queued")["message"]
        assert "Preempted" in why or KUEUE_NO_QUOTA in why, why
        say(f"[e2e kueue] preempted run's status: {low['nodes']['waitingForAdmission']} waiting: {why!r}")
        deadline = time.monotonic() + 420
        phases: dict[str, str] = {}
        while time.monotonic() < deadline:
            phases = {n: get(cluster, "researchrun", namespace, n).get("status", {}).get("phase", "")
                      for n in ("low", "high")}
            if all(p in ("Succeeded", "Failed") for p in phases.values()):
                break
            time.sleep(1)
        assert phases == {"low": "Succeeded", "high": "Succeeded"}, (
            f"{phases}\nkueue:\n{kueue.tail()}\noperator:\n{operator.tail()}\nharness: {harness.errors}")
        runs = list(harness.runs.values())
    # The preempted node ran again in the same Job (two containers for one Job), and finished; nothing duplicated.
    per_job: dict[str, int] = {}
    for run in runs:
        per_job[run.labels.get("batch.kubernetes.io/job-name", "")] = per_job.get(
            run.labels.get("batch.kubernetes.io/job-name", ""), 0) + 1
    rerun = [job for job, count in per_job.items() if count > 1]
    assert rerun and all(job.startswith("low-") for job in rerun), per_job
    nodes = get(cluster, "experimentnodes", namespace)["items"]
    jobs = get(cluster, "jobs", namespace, selector="kubescientist.io/role=node")["items"]
    assert len(jobs) == len(nodes) and all(n["status"]["attempts"] == 1 for n in nodes)
    assert all(n["status"]["phase"] == "Succeeded" for n in nodes), [n["status"] for n in nodes]
    say(f"[e2e kueue] preemption: {len(rerun)} low-priority node(s) preempted and re-run in the same Job; "
        f"{len(nodes)} nodes, {len(jobs)} Jobs")
