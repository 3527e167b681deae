"""Datasets and the node environment on the real control plane: a missing PersistentVolumeClaim or ConfigMap
stalls the run naming it; once they exist, node pods mount them read-only and fetch an object-storage dataset
from the real S3 server through presigned URLs in an init container; they get a sized /dev/shm, an
ephemeral-storage limit, and a GPU node affinity that the real scheduler honours (the pods are admitted
under Pod Security ``restricted``).

kwok's fake nodes run no programs, so what the program reads is checked locally (tests/integration/
test_run_environment.py); here the manifests and conditions are checked, and the init container's own
command is run against the cluster's S3 server with the arguments the operator wrote.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from test_operator import REPO, apply_file, get, operator, research_run, s3_client  # noqa: F401 (fixture)

CLAIM = "points-claim"
CONFIG_MAP = "label-map"
GPU_PRODUCT = "NVIDIA-H100-80GB-HBM3"
GPU_LABELS = ({"nvidia.com/gpu.product": GPU_PRODUCT, "nvidia.com/gpu.memory": "81559"},
              {"nvidia.com/gpu.product": "NVIDIA-A10G", "nvidia.com/gpu.memory": "23028"})
"""What NVIDIA GPU feature discovery would label the two fake GPU nodes with: only the first fits the run."""


def _label_gpu_nodes(cluster: Any) -> list[str]:
    nodes = sorted(n["metadata"]["name"] for n in cluster.kubectl_json(
        "get", "nodes", "-l", "nvidia.com/gpu.present=true")["items"])[:len(GPU_LABELS)]
    for node, labels in zip(nodes, GPU_LABELS):
        cluster.kubectl("label", "node", node, "--overwrite", *(f"{k}={v}" for k, v in labels.items()))
    return nodes


def _unlabel_gpu_nodes(cluster: Any, nodes: list[str]) -> None:
    for node in nodes:
        cluster.kubectl("label", "node", node, *(f"{k}-" for k in GPU_LABELS[0]))


def _stalled_message(cluster: Any, namespace: str, name: str) -> str:
    run = get(cluster, "researchrun", namespace, name)
    conditions = {c["type"]: c for c in run.get("status", {}).get("conditions", [])}
    stalled = conditions.get("Stalled", {})
    return str(stalled.get("message", "")) if stalled.get("status") == "True" else ""


def test_missing_claim_or_config_map_stalls_then_node_pods_get_datasets_shm_disk_and_gpus(
        cluster: Any, restricted_namespace: str, operator: Any, tmp_path: Path) -> None:
    namespace, name = restricted_namespace, "datasets"
    s3 = s3_client(cluster)
    prefix = f"e2e-datasets/{namespace}/points/"
    files = {"values.txt": b"1\n2\n6\n", "nested/labels.txt": b"a\nb\n"}
    for path, data in files.items():
        s3.put_object(cluster.s3.bucket, prefix + path, io.BytesIO(data), len(data))
    datasets = [{"name": "claimed", "persistentVolumeClaim": {"claimName": CLAIM}},
                {"name": "points", "s3": {"uri": f"s3://{cluster.s3.bucket}/{prefix}", "maxSize": "1Mi"}},
                {"name": "labels", "configMap": {"name": CONFIG_MAP}}]
    manifest = research_run(name, namespace, cluster, datasets=datasets,
                            runtime={"env": [{"name": "MODE", "value": "e2e"}], "shmSize": "1Gi",
                                     "ephemeralStorage": "4Gi"},
                            writeup={"enabled": False}, review={"enabled": False})
    # 79Gi: an 80 GB card reports 81559 MiB, under 80Gi.
    manifest["spec"]["resources"].update(gpuType=GPU_PRODUCT, gpuMemory="79Gi")
    gpu_nodes = _label_gpu_nodes(cluster)
    try:
        apply_file(cluster, manifest, tmp_path)
        _stall_then_mount(cluster, namespace, name, files, gpu_nodes[0], tmp_path)
    finally:
        _unlabel_gpu_nodes(cluster, gpu_nodes)
        cluster.kubectl("delete", "persistentvolume", _volume_name(namespace), "--ignore-not-found", "--wait=false")


def _volume_name(namespace: str) -> str:
    return f"{namespace}-{CLAIM}"[:253]


def _claim_and_its_volume(namespace: str) -> list[dict[str, Any]]:
    """The claim, and a volume bound to it beforehand: the scheduler places no pod with an unbound claim.
    (kwok's nodes mount nothing, so the hostPath is never used.)"""
    return [{"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": _volume_name(namespace)},
             "spec": {"capacity": {"storage": "1Mi"}, "accessModes": ["ReadOnlyMany"], "storageClassName": "",
                      "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": "/nonexistent-e2e-data"},
                      "claimRef": {"namespace": namespace, "name": CLAIM}}},
            {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": CLAIM, "namespace": namespace},
             "spec": {"accessModes": ["ReadOnlyMany"], "storageClassName": "", "volumeName": _volume_name(namespace),
                      "resources": {"requests": {"storage": "1Mi"}}}}]


def _stall_then_mount(cluster: Any, namespace: str, name: str, files: dict[str, bytes], gpu_node: str,
                      tmp_path: Path) -> None:
    cluster.wait_for("the run stalled on its missing claim and ConfigMap",
                     lambda: CLAIM in _stalled_message(cluster, namespace, name), 60)
    message = _stalled_message(cluster, namespace, name)
    assert f"spec.datasets[0] (claimed): PersistentVolumeClaim '{CLAIM}' not found in namespace {namespace}" in message
    assert f"spec.datasets[2] (labels): ConfigMap '{CONFIG_MAP}' not found in namespace {namespace}" in message
    assert not get(cluster, "jobs", namespace)["items"]

    cluster.apply(_claim_and_its_volume(namespace))
    cluster.wait_for("the run stalled on its ConfigMap alone",
                     lambda: CLAIM not in (m := _stalled_message(cluster, namespace, name)) and CONFIG_MAP in m, 60)
    assert not get(cluster, "jobs", namespace)["items"]

    created = time.monotonic()
    cluster.apply([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": CONFIG_MAP, "namespace": namespace},
                    "data": {"labels.txt": "cat\ndog\n"}}])
    cluster.wait_for("the first node Job", lambda: bool(get(cluster, "jobs", namespace,
                                                            selector="kubescientist.io/role=node")["items"]), 60)
    unstalled = time.monotonic() - created
    assert not _stalled_message(cluster, namespace, name)
    job = get(cluster, "job", namespace, f"{name}-n0000-a1")
    pod_spec = job["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    assert volumes["dataset-claimed"]["persistentVolumeClaim"] == {"claimName": CLAIM, "readOnly": True}
    assert volumes["dataset-points"]["emptyDir"] == {"sizeLimit": "1Mi"}
    assert volumes["dataset-labels"]["configMap"]["name"] == CONFIG_MAP
    # /dev/shm in memory, sized; the scratch emptyDirs sized by ephemeralStorage.
    assert volumes["shm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "1Gi"}
    assert volumes["work"]["emptyDir"] == {"sizeLimit": "4Gi"} and volumes["tmp"]["emptyDir"] == {"sizeLimit": "4Gi"}
    container = pod_spec["containers"][0]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["dataset-claimed"]["mountPath"] == "/mnt/datasets/claimed" and mounts["dataset-claimed"]["readOnly"]
    assert mounts["dataset-points"]["mountPath"] == "/mnt/datasets/points" and mounts["dataset-points"]["readOnly"]
    assert mounts["dataset-labels"]["mountPath"] == "/mnt/datasets/labels" and mounts["dataset-labels"]["readOnly"]
    assert mounts["shm"]["mountPath"] == "/dev/shm"
    # The container's disk: 4Gi for the program plus the 1Mi the object-storage dataset may fill.
    disk = str((4 << 30) + (1 << 20))
    assert container["resources"]["requests"]["ephemeral-storage"] == disk
    assert container["resources"]["limits"]["ephemeral-storage"] == disk
    args = container["args"]
    assert args[args.index("--env") + 1] == "MODE=e2e"
    assert args[args.index("--max-disk-bytes") + 1] == str(4 << 30)
    assert args[args.index("--shm-bytes") + 1] == str(1 << 30)
    assert [args[i + 1] for i, a in enumerate(args) if a == "--dataset"] == ["/mnt/datasets/claimed",
                                                                             "/mnt/datasets/points",
                                                                             "/mnt/datasets/labels"]
    (term,) = pod_spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"]
    assert term["matchExpressions"] == [
        {"key": "nvidia.com/gpu.product", "operator": "In", "values": [GPU_PRODUCT]},
        {"key": "nvidia.com/gpu.memory", "operator": "Gt", "values": [str(79 * 1024 - 1)]}]
    (fetcher,) = pod_spec["initContainers"]
    assert fetcher["securityContext"]["readOnlyRootFilesystem"] is True and "env" not in fetcher

    # The Job's pod passes Pod Security restricted admission, init container and volumes included, and the
    # real scheduler puts it on the one GPU node whose labels match.
    def scheduled() -> str:
        pods = get(cluster, "pods", namespace, selector=f"job-name={name}-n0000-a1")["items"]
        return str(pods[0]["spec"].get("nodeName") or "") if pods else ""
    cluster.wait_for("the node pod, scheduled", lambda: bool(scheduled()), 60)
    assert scheduled() == gpu_node

    # The init container's command, with the operator's presigned URLs, fetches the data from the real S3 server.
    dest = tmp_path / "points"
    fetch_args = fetcher["args"]
    fetch_args[fetch_args.index("--dest") + 1] = str(dest)
    done = subprocess.run([sys.executable, *fetch_args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert {p.relative_to(dest).as_posix(): p.read_bytes() for p in dest.rglob("*") if p.is_file()} == files
    objects = json.loads(fetch_args[fetch_args.index("--objects-json") + 1])
    assert all("X-Amz-Signature" in o["url"] for o in objects)
    print(f"[e2e datasets] ConfigMap created -> first node Job in {unstalled:.2f}s", file=sys.__stderr__)
