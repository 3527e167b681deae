"""A ResearchRun's datasets in a real pod: the program reads a PersistentVolumeClaim, an object-storage prefix and a
ConfigMap, cannot write any of them, and gets the /dev/shm that spec.runtime.shmSize asks for.

The run's one node is a pod of the node-runtime image on the real node (containerd + kubelet, `make e2e-real`):
the claim is bound to a `local` PersistentVolume, a folder of this machine pre-filled with a CSV; the object
prefix is fetched from the test S3 server by the pod's init container. The template (tests/fixtures/
dataset_probe_template) reports what it read, the errno of each write it tried, and the size of /dev/shm as
metrics, which the operator copies into the ExperimentNode's status: the values asserted here can only come
from a program that read the files. Its folders and objects are given writable permissions, so that a refused
write (EROFS) is the read-only mount's doing, not the files' modes.
"""

from __future__ import annotations

import errno
import io
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

import realnode
from test_operator import REPO, OperatorProcess, apply_file, get, research_run, s3_client
from test_real_node import node_image, terminated  # noqa: F401 (fixture)

pytestmark = [pytest.mark.real_node,
              pytest.mark.root_only("the kubelet manages cgroups, mounts and pod networks")]

TEMPLATE = REPO / "tests" / "fixtures" / "dataset_probe_template"
CLAIM = "points-claim"
CONFIG_MAP = "label-map"
SHM_SIZE, SHM_BYTES = "96Mi", 96 << 20
CSV = "x,y\n1,2.5\n2,4.0\n3,6.0\n"
"""The claim's points.csv: its y column sums to 12.5."""
OBJECTS = {"values.txt": b"1\n2\n6\n", "nested/scale.txt": b"0.5\n"}
"""The object-storage dataset: values sum to 9, the nested object holds 0.5."""
LABELS = {"labels.txt": "cat\ndog\nemu\n", "scale": "7.25\n"}


def _claim_on_the_real_node(namespace: str, folder: Path) -> list[dict[str, Any]]:
    """A `local` PersistentVolume on the real node (its nodeAffinity brings the pod there), bound beforehand to
    the claim the run names."""
    volume = f"{namespace}-{CLAIM}"[:253]
    return [{"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": volume},
             "spec": {"capacity": {"storage": "1Mi"}, "accessModes": ["ReadOnlyMany"], "storageClassName": "",
                      "persistentVolumeReclaimPolicy": "Retain", "local": {"path": str(folder)},
                      "claimRef": {"namespace": namespace, "name": CLAIM},
                      "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                          {"key": realnode.REAL_NODE_LABEL[0], "operator": "In",
                           "values": [realnode.REAL_NODE_LABEL[1]]}]}]}}}},
            {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": CLAIM, "namespace": namespace},
             "spec": {"accessModes": ["ReadOnlyMany"], "storageClassName": "", "volumeName": volume,
                      "resources": {"requests": {"storage": "1Mi"}}}}]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_real_pod_reads_its_datasets_cannot_write_them_and_gets_its_shm(
        cluster: Any, restricted_namespace: str, node_image: str, kubescientist_crds: list[str],  # noqa: F811
        tmp_path: Path) -> None:
    namespace, name = restricted_namespace, "datasets"
    started = time.monotonic()
    # The volume's folder: the pod's uid (65532) must reach it, and may write it as far as modes go.
    folder = Path(tempfile.mkdtemp(prefix="ks-e2e-claim-"))
    folder.chmod(0o777)
    (folder / "points.csv").write_text(CSV)
    (folder / "points.csv").chmod(0o666)
    s3 = s3_client(cluster)
    prefix = f"e2e-real-datasets/{namespace}/fetched/"
    for path, data in OBJECTS.items():
        s3.put_object(cluster.s3.bucket, prefix + path, io.BytesIO(data), len(data))
    manifests = _claim_on_the_real_node(namespace, folder)
    cluster.apply([
        *manifests,
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": CONFIG_MAP, "namespace": namespace},
         "data": LABELS},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3-credentials", "namespace": namespace},
         "stringData": {"AWS_ACCESS_KEY_ID": cluster.s3.access_key, "AWS_SECRET_ACCESS_KEY": cluster.s3.secret_key}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "template", "namespace": namespace},
         "data": {p.name: p.read_text() for p in sorted(TEMPLATE.iterdir()) if p.is_file()}},
    ])
    operator = OperatorProcess(cluster, namespace, tmp_path / "operator.log")
    operator.env = {"KUBESCIENTIST_NODE_IMAGE": node_image, "KUBESCIENTIST_POD_LABELS": "{}"}
    operator.start()
    try:
        run = research_run(
            name, namespace, cluster, objective={"metric": "value", "direction": "maximize"},
            stages=[{"name": stage, "maxNodes": 1} for stage in ("initial", "tuning", "research", "ablation")],
            search={"parallelism": 1, "drafts": 1}, seeds=0,
            writeup={"enabled": False}, review={"enabled": False},
            resources={"gpus": 0, "cpu": "500m", "memory": "512Mi", "deadlineSeconds": 120},
            nodeSelector={realnode.REAL_NODE_LABEL[0]: realnode.REAL_NODE_LABEL[1]},
            tolerations=[realnode.REAL_NODE_TOLERATION],
            runtime={"shmSize": SHM_SIZE},
            datasets=[{"name": "claimed", "persistentVolumeClaim": {"claimName": CLAIM}},
                      {"name": "fetched", "s3": {"uri": f"s3://{cluster.s3.bucket}/{prefix}", "maxSize": "1Mi"}},
                      {"name": "labels", "configMap": {"name": CONFIG_MAP}}])
        applied = time.monotonic()
        apply_file(cluster, run, tmp_path)
        status: dict[str, Any] = {}
        while time.monotonic() < applied + 300:
            status = get(cluster, "researchrun", namespace, name).get("status", {})
            if status.get("phase") in ("Succeeded", "Failed"):
                break
            time.sleep(1)
        ran = time.monotonic() - applied
        assert status.get("phase") == "Succeeded", json.dumps(status, indent=1) + "\n" + operator.tail()

        (node,) = get(cluster, "experimentnodes", namespace)["items"]
        assert node["status"]["phase"] == "Succeeded", node["status"]
        metrics = node["status"]["metrics"]
        # What the program read: only the files' contents give these numbers.
        assert metrics["claimed"]["value"] == 12.5
        assert metrics["fetched"]["value"] == 9.0 and metrics["fetched"]["nested"] == 0.5
        assert metrics["labels"]["value"] == 7.25 and metrics["labels"]["count"] == 3.0
        # What it could not do: create a file in any dataset, or append to one. Modes allowed both in the
        # claim's folder and the fetched volume (its files are the pod uid's own), so the read-only mount refused.
        for dataset in ("claimed", "fetched", "labels"):
            assert metrics[dataset]["write_refused"] == 1.0, metrics
            assert metrics[dataset]["create_errno"] == errno.EROFS, metrics
        assert metrics["claimed"]["append_errno"] == metrics["fetched"]["append_errno"] == errno.EROFS, metrics
        # The ConfigMap's files are root's, mode 0644: permissions or the mount, either refuses.
        assert metrics["labels"]["append_errno"] in (errno.EROFS, errno.EACCES), metrics
        # /dev/shm: the memory emptyDir of shmSize, sized by the kubelet, and usable.
        assert metrics["runtime"]["shm_bytes"] == SHM_BYTES and metrics["runtime"]["shm_written"] == 1.0, metrics

        (pod,) = get(cluster, "pods", namespace, selector="kubescientist.io/role=node")["items"]
        assert pod["spec"]["nodeName"] == realnode.NODE_NAME
        state = terminated(pod)
        assert state is not None and state["exitCode"] == 0, state
        (fetcher,) = pod["status"]["initContainerStatuses"]
        assert fetcher["state"]["terminated"]["exitCode"] == 0, fetcher

        # Nothing changed where the data lives.
        assert _snapshot(folder) == {"points.csv": CSV.encode()}
        stored = {o.object_name[len(prefix):]: s3.get_object(cluster.s3.bucket, o.object_name).read()
                  for o in s3.list_objects(cluster.s3.bucket, prefix, recursive=True)}
        assert stored == OBJECTS
        print(f"[real node] datasets run Succeeded {ran:.1f}s after it was applied "
              f"({time.monotonic() - started:.1f}s with the data's set-up): {json.dumps(metrics)}")
    finally:
        cluster.kubectl("delete", "researchruns", "--all", "-n", namespace, "--timeout=60s", check=False, timeout=90)
        operator.stop()
        cluster.kubectl("delete", "persistentvolume", manifests[0]["metadata"]["name"], "--ignore-not-found",
                        "--wait=false", check=False)
        shutil.rmtree(folder, ignore_errors=True)
