"""The test cluster behaves like a GPU cluster: the real scheduler places GPU pods on the fake GPU nodes and
accounts for their GPUs, Jobs finish (through kwok, or through the harness playing the kubelet), PodSecurity
is enforced, and the S3 server speaks signed S3."""

from __future__ import annotations

import datetime
import io
import time
import urllib.request
from typing import Any

import pytest

from cluster import (
    EXIT_CODE_ANNOTATION,
    GPU_NODE_LABEL,
    GPU_RESOURCE,
    GPU_TOLERATION,
    HARNESS_KUBELET_LABEL,
    Cluster,
    read_versions,
)

pytestmark = pytest.mark.e2e

IMAGE = "registry.example/kubescientist/node-runtime:e2e"  # never pulled: kwok runs nothing


def pod_spec(gpus: int) -> dict[str, Any]:
    """A pod spec that asks for `gpus` GPUs the way the operator's node Jobs do."""
    return {
        "restartPolicy": "Never",
        "nodeSelector": {GPU_NODE_LABEL[0]: GPU_NODE_LABEL[1]},
        "tolerations": [GPU_TOLERATION],
        "terminationGracePeriodSeconds": 1,
        "containers": [{
            "name": "program",
            "image": IMAGE,
            "command": ["python", "experiment.py"],
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"},
                          "limits": {"cpu": "100m", "memory": "64Mi", GPU_RESOURCE: str(gpus)}},
        }],
    }


def job(name: str, gpus: int, labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {"metadata": {"labels": labels or {}, "annotations": annotations or {}},
                         "spec": pod_spec(gpus)},
        },
    }


def bare_pod(name: str, gpus: int, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}},
            "spec": pod_spec(gpus)}


def job_condition(cluster: Cluster, namespace: str, name: str) -> str | None:
    """The Job's terminal condition type (Complete or Failed) once it has one."""
    conditions = cluster.kubectl_json("get", "job", name, "-n", namespace).get("status", {}).get("conditions", [])
    for c in conditions:
        if c["type"] in ("Complete", "Failed") and c["status"] == "True":
            return str(c["type"])
    return None


def job_pods(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    pods = cluster.kubectl_json("get", "pods", "-n", namespace, "-l", f"job-name={name}")
    items: list[dict[str, Any]] = pods["items"]
    return items


def pod(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = cluster.kubectl_json("get", "pod", name, "-n", namespace)
    return result


def unschedulable_message(p: dict[str, Any]) -> str | None:
    for c in p.get("status", {}).get("conditions", []):
        if c["type"] == "PodScheduled" and c["status"] == "False" and c.get("reason") == "Unschedulable":
            return str(c.get("message", ""))
    return None


def test_client_tools_match_the_server(cluster: Cluster) -> None:
    pins = read_versions()
    versions = cluster.kubectl_json("version")
    assert versions["serverVersion"]["gitVersion"] == pins["K8S"]  # build.sh stamps the version in
    client_minor = versions["clientVersion"]["minor"]
    assert client_minor == versions["serverVersion"]["minor"], versions  # no version skew warning
    assert cluster.helm("version", "--short").stdout.startswith("v4.")
    assert cluster.helm("list", "--all-namespaces").returncode == 0  # helm reaches the apiserver


def test_gpu_job_is_scheduled_on_a_gpu_node_and_completes(cluster: Cluster, namespace: str) -> None:
    start = time.monotonic()
    cluster.apply(job("one-gpu", 1), namespace)
    cluster.wait_for("Job one-gpu Complete", lambda: job_condition(cluster, namespace, "one-gpu") is not None, 60)
    assert job_condition(cluster, namespace, "one-gpu") == "Complete"
    print(f"1-GPU Job complete {time.monotonic() - start:.1f}s after creation")

    [p] = job_pods(cluster, namespace, "one-gpu")
    assert p["spec"]["nodeName"] in cluster.gpu_nodes
    assert p["spec"]["schedulerName"] == "default-scheduler"
    assert p["status"]["phase"] == "Succeeded"
    [status] = p["status"]["containerStatuses"]
    assert status["state"]["terminated"]["exitCode"] == 0
    events = cluster.kubectl_json("get", "events", "-n", namespace,
                                  "--field-selector", f"involvedObject.name={p['metadata']['name']},reason=Scheduled")
    assert any(p["spec"]["nodeName"] in e["message"] for e in events["items"]), events

    # Deleting the Job garbage-collects its pod: needs kwok's pod-delete stage (no kubelet confirms it).
    cluster.kubectl("delete", "job", "one-gpu", "-n", namespace, "--cascade=foreground", "--wait=true", timeout=60)
    cluster.wait_for("pods of Job one-gpu deleted", lambda: not job_pods(cluster, namespace, "one-gpu"), 30)


def test_pod_asking_more_gpus_than_any_node_has_stays_pending(cluster: Cluster, namespace: str) -> None:
    cluster.apply(bare_pod("nine-gpus", 9), namespace)
    cluster.wait_for("nine-gpus marked Unschedulable",
                     lambda: unschedulable_message(pod(cluster, namespace, "nine-gpus")) is not None, 30)
    p = pod(cluster, namespace, "nine-gpus")
    message = unschedulable_message(p)
    assert message is not None and f"Insufficient {GPU_RESOURCE}" in message, message
    assert p["status"]["phase"] == "Pending" and not p["spec"].get("nodeName")


def test_gpus_are_accounted_and_freed_when_the_harness_finishes_a_pod(cluster: Cluster, namespace: str) -> None:
    """Fill every GPU with harness-kubelet pods (kwok never ends those), see one more GPU pod wait, end one."""
    harness = {HARNESS_KUBELET_LABEL: "true"}
    holders = [f"holder-{i}" for i in range(len(cluster.gpu_nodes))]
    cluster.apply([bare_pod(name, 8, harness) for name in holders], namespace)
    cluster.wait_for("all GPU holders Running",
                     lambda: all(pod(cluster, namespace, n)["status"].get("phase") == "Running" for n in holders), 60)
    assert {pod(cluster, namespace, n)["spec"]["nodeName"] for n in holders} == set(cluster.gpu_nodes)

    cluster.apply(bare_pod("waiting", 1), namespace)
    cluster.wait_for("pod waiting marked Unschedulable",
                     lambda: unschedulable_message(pod(cluster, namespace, "waiting")) is not None, 30)
    assert f"Insufficient {GPU_RESOURCE}" in (unschedulable_message(pod(cluster, namespace, "waiting")) or "")

    finished = cluster.finish_pod(namespace, holders[0], exit_code=0, message="metrics.json written")
    assert finished["status"]["phase"] == "Succeeded"
    cluster.wait_for("pod waiting scheduled onto the freed GPUs",
                     lambda: pod(cluster, namespace, "waiting")["spec"].get("nodeName") is not None, 60)
    assert pod(cluster, namespace, "waiting")["spec"]["nodeName"] == finished["spec"]["nodeName"]
    assert pod(cluster, namespace, holders[1])["status"]["phase"] == "Running"  # kwok leaves it alone


def test_harness_kubelet_reports_the_exit_code_and_termination_message(cluster: Cluster, namespace: str) -> None:
    cluster.apply(job("harness-run", 1, labels={HARNESS_KUBELET_LABEL: "true"}), namespace)

    def running() -> bool:
        return [p["status"].get("phase") for p in job_pods(cluster, namespace, "harness-run")] == ["Running"]

    cluster.wait_for("harness-run pod Running", running, 60)
    time.sleep(3)  # kwok ends ordinary Job pods after 1 s; this one must stay Running until the harness ends it
    [p] = job_pods(cluster, namespace, "harness-run")
    assert p["status"]["phase"] == "Running"
    assert job_condition(cluster, namespace, "harness-run") is None

    cluster.finish_pod(namespace, p["metadata"]["name"], exit_code=3, message="Traceback: boom")
    cluster.wait_for("Job harness-run Failed", lambda: job_condition(cluster, namespace, "harness-run") is not None, 60)
    assert job_condition(cluster, namespace, "harness-run") == "Failed"
    [p] = job_pods(cluster, namespace, "harness-run")
    terminated = p["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["message"], p["status"]["phase"]) == (3, "Traceback: boom", "Failed")


def test_kwok_fails_a_job_pod_with_the_annotated_exit_code(cluster: Cluster, namespace: str) -> None:
    cluster.apply(job("crashes", 1, annotations={EXIT_CODE_ANNOTATION: "2"}), namespace)
    cluster.wait_for("Job crashes finished", lambda: job_condition(cluster, namespace, "crashes") is not None, 60)
    assert job_condition(cluster, namespace, "crashes") == "Failed"
    [p] = job_pods(cluster, namespace, "crashes")
    assert p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 2


def test_restricted_namespace_enforces_pod_security(cluster: Cluster, restricted_namespace: str) -> None:
    privileged = bare_pod("privileged", 0)
    privileged["spec"]["containers"][0]["securityContext"] = {"privileged": True}
    refused = cluster.apply(privileged, restricted_namespace, check=False)
    assert refused.returncode != 0 and "violates PodSecurity" in refused.stderr, refused.stderr

    compliant = bare_pod("compliant", 0)
    compliant["spec"]["securityContext"] = {"runAsNonRoot": True, "runAsUser": 1000,
                                            "seccompProfile": {"type": "RuntimeDefault"}}
    compliant["spec"]["containers"][0]["securityContext"] = {"allowPrivilegeEscalation": False,
                                                             "capabilities": {"drop": ["ALL"]}}
    cluster.apply(compliant, restricted_namespace)


def test_s3_put_get_and_presigned_url(cluster: Cluster) -> None:
    minio = pytest.importorskip("minio", reason="pip install minio into the test venv")
    from minio.error import S3Error
    s3 = cluster.s3
    client = minio.Minio(s3.host, access_key=s3.access_key, secret_key=s3.secret_key, secure=False, region=s3.region)
    assert client.bucket_exists(s3.bucket)
    body = b'{"datasets": {"mod97": {"val_acc": {"final": 0.97}}}}'
    client.put_object(s3.bucket, "runs/smoke/metrics.json", io.BytesIO(body), len(body),
                      content_type="application/json")
    response = client.get_object(s3.bucket, "runs/smoke/metrics.json")
    try:
        assert response.read() == body
    finally:
        response.close()
        response.release_conn()

    url = client.presigned_get_object(s3.bucket, "runs/smoke/metrics.json", expires=datetime.timedelta(minutes=5))
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.read() == body

    wrong = minio.Minio(s3.host, access_key=s3.access_key, secret_key="not-the-secret", secure=False, region=s3.region)
    with pytest.raises(S3Error):
        wrong.get_object(s3.bucket, "runs/smoke/metrics.json")
