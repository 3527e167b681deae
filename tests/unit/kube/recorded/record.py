"""Record the Job and pod objects the outcome tests classify, from the real e2e control plane.

    python tests/unit/kube/recorded/record.py --cluster-dir DIR     # a cluster started with cluster.py up

Each case creates a node Job exactly as the operator builds it (``manifests.node_job``, in a namespace
enforcing PSS ``restricted``), drives it to an end the way the cluster would, and writes
``<case>.json`` = ``{"job": ..., "pods": [...], "how": ...}`` with managedFields stripped. Everything the
Job controller, the scheduler, the eviction API and admission do is real; what a kubelet would report
(container states, OOM kills, image pull errors) is written into the pod status with the same status
patch a kubelet sends, as the e2e harness does. ``how`` says which was which.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[4]
sys.path[:0] = [str(REPO / "operator"), str(REPO), str(REPO / "tests" / "e2e" / "cluster")]

import cluster as control_plane  # noqa: E402

from kubescientist.adapters.kube import manifests  # noqa: E402
from kubescientist.adapters.kube.config import Settings  # noqa: E402
from kubescientist.adapters.manifest import validate_object  # noqa: E402
from kubescientist.core.journal import Node, NodeConfig  # noqa: E402
from kubescientist.core.spec import run_spec_from_dict  # noqa: E402

HERE = Path(__file__).resolve().parent
HARNESS = {"kubescientist.io/harness-kubelet": "true"}
SUCCESS = ('{"status":"succeeded","buggy":false,"buggyReason":null,"durationSeconds":0.118,'
           '"codeHash":"sha256:' + "ab" * 32 + '","metrics":{"linear":{"val_r2":0.9931},"shifted":{"val_r2":0.9795}}}')
BUGGY = ('{"status":"failed","buggy":true,"buggyReason":"exit code 1: RuntimeError: params.fail is set: failing on '
         'purpose","durationSeconds":0.05,"codeHash":"sha256:' + "cd" * 32 + '","metrics":null}')
RUNTIME_ERROR = '{"status":"error","message":"cannot run node: download of the code: HTTP 403 Forbidden"}'


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Recorder:
    def __init__(self, cluster: control_plane.Cluster, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace
        run = validate_object("ResearchRun", {
            "apiVersion": "kubescientist.io/v1alpha1", "kind": "ResearchRun", "metadata": {"name": "rec"},
            "spec": {"idea": {"inline": {"title": "t"}}, "objective": {"metric": "val_r2"},
                     "resources": {"gpus": 1, "cpu": "500m", "memory": "256Mi", "deadlineSeconds": 30}}})
        self.spec = run_spec_from_dict(run["spec"])

    def job(self, case: str, deadline: int | None = None, node_selector: dict[str, str] | None = None,
            harness: bool = True) -> str:
        node = Node(id="n0000", seq=0, stage="initial", action="draft", parent=None, config=NodeConfig(seed=0),
                    reason="recorded", status="running", attempts=1)
        settings = Settings(node_image="registry.invalid/kubescientist/node:rec", pod_labels=HARNESS if harness else {})
        job = manifests.node_job(f"rec-{case}", self.namespace, manifests.Owner("v1", "ConfigMap", "owner", "x"),
                                 self.spec, node, 1, settings, "https://s3.invalid/code", "sha256:" + "00" * 32,
                                 {"result.json": "https://s3.invalid/put"})
        job["metadata"]["ownerReferences"] = []
        if deadline is not None:
            job["spec"]["activeDeadlineSeconds"] = deadline
        if node_selector is not None:
            job["spec"]["template"]["spec"]["nodeSelector"] = node_selector
        self.cluster.apply(job)
        return str(job["metadata"]["name"])

    def pods(self, job: str) -> list[dict[str, Any]]:
        return list(self.cluster.kubectl_json("get", "pods", "-n", self.namespace, "-l",
                                              f"batch.kubernetes.io/job-name={job}")["items"])

    def wait(self, what: str, check: Any, timeout: float = 60) -> None:
        self.cluster.wait_for(what, check, timeout)

    def running_pod(self, job: str) -> str:
        self.wait(f"{job} pod running", lambda: any(p["status"].get("phase") == "Running" for p in self.pods(job)))
        return str(self.pods(job)[0]["metadata"]["name"])

    def patch_status(self, pod: str, status: dict[str, Any]) -> None:
        self.cluster.kubectl("patch", "pod", pod, "-n", self.namespace, "--subresource=status", "--type=merge",
                             "-p", json.dumps({"status": status}))

    def terminate(self, pod: str, exit_code: int, message: str, reason: str, phase: str) -> None:
        body = self.cluster.kubectl_json("get", "pod", pod, "-n", self.namespace)
        started = body["status"].get("startTime", now())
        state = {"terminated": {"exitCode": exit_code, "reason": reason, "startedAt": started, "finishedAt": now(),
                                **({"message": message} if message else {})}}
        self.patch_status(pod, {"phase": phase, "containerStatuses": [{
            "name": "node", "image": body["spec"]["containers"][0]["image"], "imageID": "harness://node",
            "containerID": "harness://node", "ready": False, "started": False, "restartCount": 0, "state": state}]})

    def job_condition(self, job: str, kind: str) -> bool:
        obj = self.cluster.kubectl_json("get", "job", job, "-n", self.namespace)
        return any(c["type"] == kind and c["status"] == "True" for c in obj["status"].get("conditions") or ())

    def save(self, case: str, job: str, how: str) -> None:
        obj = self.cluster.kubectl_json("get", "job", job, "-n", self.namespace)
        pods = self.pods(job)
        for item in (obj, *pods):
            item["metadata"].pop("managedFields", None)
        (HERE / f"{case}.json").write_text(json.dumps({"how": how, "job": obj, "pods": pods}, indent=1) + "\n")
        print(f"recorded {case}: job conditions {[c['type'] for c in obj['status'].get('conditions') or []]}, "
              f"{len(pods)} pod(s)")


def record(cluster: control_plane.Cluster) -> None:
    namespace = cluster.create_restricted_namespace(f"record-{int(time.time())}")
    r = Recorder(cluster, namespace)
    try:
        for case, code, message, reason, phase, how in (
            ("succeeded", 0, SUCCESS, "Completed", "Succeeded", "the runtime's message of a good node"),
            ("buggy", 0, BUGGY, "Completed", "Succeeded", "the runtime's message of a crashed program"),
            ("runtime-error", 1, RUNTIME_ERROR, "Error", "Failed", "the runtime could not fetch the code"),
            ("oom-killed", 137, "", "OOMKilled", "Failed", "the container was OOM-killed (no message)"),
            ("crashed-no-message", 2, "Traceback (most recent call last):\nModuleNotFoundError: No module named 'psutil'",
             "Error", "Failed", "the runtime crashed before writing a message; the log tail is the message"),
        ):
            job = r.job(case)
            pod = r.running_pod(job)
            r.terminate(pod, code, message, reason, phase)
            r.wait(f"{job} finished", lambda: r.job_condition(job, "Complete") or r.job_condition(job, "Failed"))
            r.save(case, job, f"pod Running (kwok), then terminated as a kubelet would report: {how}; "
                              "the Job controller reacted")

        job = r.job("evicted")
        pod = r.running_pod(job)
        cluster.kubectl("create", "-n", namespace, "-f", "-", "--raw",
                        f"/api/v1/namespaces/{namespace}/pods/{pod}/eviction", input=json.dumps(
                            {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod}}), check=False)
        r.wait(f"{job} failed", lambda: r.job_condition(job, "Failed"))
        r.save("evicted", job, "real Eviction API call on the running pod; kwok removed the deleted pod")

        job = r.job("preempted")
        pod = r.running_pod(job)
        r.patch_status(pod, {"conditions": [{"type": "DisruptionTarget", "status": "True",
                                             "reason": "PreemptionByScheduler", "lastTransitionTime": now(),
                                             "message": "Preempted in order to admit critical pod"}]})
        r.terminate(pod, 137, "", "Error", "Failed")
        r.wait(f"{job} failed", lambda: r.job_condition(job, "Failed"))
        r.save("preempted", job, "DisruptionTarget condition (as the scheduler sets it) then killed (as a kubelet)")

        job = r.job("node-lost")
        pod = r.running_pod(job)
        cluster.kubectl("delete", "pod", pod, "-n", namespace, "--grace-period=0", "--force", check=False)
        r.wait(f"{job} failed", lambda: r.job_condition(job, "Failed"))
        r.save("node-lost", job, "pod force-deleted (as pod GC does for a lost node); the Job failed with no pod")

        job = r.job("deadline", deadline=3)
        r.running_pod(job)
        r.wait(f"{job} deadline", lambda: r.job_condition(job, "Failed"), timeout=90)
        r.save("deadline", job, "real Job activeDeadlineSeconds=3 on a running pod; the Job controller killed it")

        job = r.job("deadline-unscheduled", deadline=3, node_selector={"no-such-label": "x"})
        r.wait(f"{job} deadline", lambda: r.job_condition(job, "Failed"), timeout=90)
        r.save("deadline-unscheduled", job, "real deadline on a pod the real scheduler could not place")

        job = r.job("unschedulable", node_selector={"no-such-label": "x"})
        r.wait(f"{job} unschedulable", lambda: any(
            c.get("reason") == "Unschedulable" for p in r.pods(job) for c in p["status"].get("conditions") or ()))
        r.save("unschedulable", job, "real scheduler: no node matches the nodeSelector")

        job = r.job("running")
        r.running_pod(job)
        r.save("running", job, "pod Running (kwok's pod-ready stage)")

        job = r.job("image-pull", node_selector={"no-such-label": "x"})
        r.wait(f"{job} pod", lambda: bool(r.pods(job)))
        pod = r.pods(job)[0]["metadata"]["name"]
        r.patch_status(pod, {"containerStatuses": [{
            "name": "node", "image": "registry.invalid/kubescientist/node:rec", "imageID": "", "ready": False,
            "started": False, "restartCount": 0, "state": {"waiting": {"reason": "ImagePullBackOff", "message":
            'Back-off pulling image "registry.invalid/kubescientist/node:rec": ErrImagePull: failed to resolve '
            'reference: no such host'}}}]})
        r.save("image-pull", job, "pending pod with the waiting state a kubelet reports for a failed pull")
    finally:
        cluster.delete_namespace(namespace)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cluster-dir", type=Path, required=True)
    args = parser.parse_args()
    record(control_plane.load(args.cluster_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
