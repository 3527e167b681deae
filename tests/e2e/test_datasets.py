"""Datasets on the real control plane: a missing PersistentVolumeClaim stalls the run naming it; once it
exists, node pods mount it read-only and fetch an object-storage dataset from the real S3 server through
presigned URLs in an init container (the pods are admitted under Pod Security ``restricted``).

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


def _stalled_message(cluster: Any, namespace: str, name: str) -> str:
    run = get(cluster, "researchrun", namespace, name)
    conditions = {c["type"]: c for c in run.get("status", {}).get("conditions", [])}
    stalled = conditions.get("Stalled", {})
    return str(stalled.get("message", "")) if stalled.get("status") == "True" else ""


def test_missing_claim_stalls_then_node_pods_mount_both_datasets_read_only(
        cluster: Any, restricted_namespace: str, operator: Any, tmp_path: Path) -> None:
    namespace, name = restricted_namespace, "datasets"
    s3 = s3_client(cluster)
    prefix = f"e2e-datasets/{namespace}/points/"
    files = {"values.txt": b"1\n2\n6\n", "nested/labels.txt": b"a\nb\n"}
    for path, data in files.items():
        s3.put_object(cluster.s3.bucket, prefix + path, io.BytesIO(data), len(data))
    datasets = [{"name": "claimed", "persistentVolumeClaim": {"claimName": CLAIM}},
                {"name": "points", "s3": {"uri": f"s3://{cluster.s3.bucket}/{prefix}", "maxSize": "1Mi"}}]
    apply_file(cluster, research_run(name, namespace, cluster, datasets=datasets,
                                     runtime={"env": [{"name": "MODE", "value": "e2e"}]},
                                     writeup={"enabled": False}, review={"enabled": False}), tmp_path)

    cluster.wait_for("the run stalled on its missing claim", lambda: CLAIM in _stalled_message(cluster, namespace,
                                                                                               name), 60)
    message = _stalled_message(cluster, namespace, name)
    assert f"spec.datasets[0] (claimed): PersistentVolumeClaim '{CLAIM}' not found in namespace {namespace}" in message
    assert not get(cluster, "jobs", namespace)["items"]

    created = time.monotonic()
    cluster.apply([{"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "metadata": {"name": CLAIM, "namespace": namespace},
                    "spec": {"accessModes": ["ReadOnlyMany"], "resources": {"requests": {"storage": "1Mi"}}}}])
    cluster.wait_for("the first node Job", lambda: bool(get(cluster, "jobs", namespace,
                                                            selector="kubescientist.io/role=node")["items"]), 60)
    unstalled = time.monotonic() - created
    assert not _stalled_message(cluster, namespace, name)
    job = get(cluster, "job", namespace, f"{name}-n0000-a1")
    pod_spec = job["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    assert volumes["dataset-claimed"]["persistentVolumeClaim"] == {"claimName": CLAIM, "readOnly": True}
    assert volumes["dataset-points"]["emptyDir"] == {"sizeLimit": "1Mi"}
    container = pod_spec["containers"][0]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["dataset-claimed"]["mountPath"] == "/mnt/datasets/claimed" and mounts["dataset-claimed"]["readOnly"]
    assert mounts["dataset-points"]["mountPath"] == "/mnt/datasets/points" and mounts["dataset-points"]["readOnly"]
    args = container["args"]
    assert args[args.index("--env") + 1] == "MODE=e2e"
    assert [args[i + 1] for i, a in enumerate(args) if a == "--dataset"] == ["/mnt/datasets/claimed",
                                                                             "/mnt/datasets/points"]
    (fetcher,) = pod_spec["initContainers"]
    assert fetcher["securityContext"]["readOnlyRootFilesystem"] is True and "env" not in fetcher

    # The Job's pod passes Pod Security restricted admission, init container included.
    cluster.wait_for("the node pod", lambda: bool(get(cluster, "pods", namespace,
                                                      selector=f"job-name={name}-n0000-a1")["items"]), 60)

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
    print(f"[e2e datasets] claim created -> first node Job in {unstalled:.2f}s", file=sys.__stderr__)
