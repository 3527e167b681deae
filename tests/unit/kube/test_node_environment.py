"""spec.runtime and spec.datasets in node Jobs: image, variables, /dev/shm, disk, read-only dataset volumes; a
missing claim or ConfigMap stalls."""

from __future__ import annotations

import json
from typing import Any

from kube_fakes import Cluster
from test_manifests import job, spec
from test_reconciling import operator, reconcile

from kubescientist.adapters.kube import node_environment
from kubescientist.adapters.kube.config import Settings

DATASETS = [{"name": "mnist", "persistentVolumeClaim": {"claimName": "mnist-data"}},
            {"name": "cifar", "s3": {"uri": "s3://data/cifar/", "maxSize": "1Gi"}, "mountPath": "/mnt/c"}]
OBJECTS = {"cifar": [{"path": "train/a.bin", "size": 3, "url": "https://s3.test/data/cifar/train/a.bin?sig"}]}


def pod_of(obj: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = obj["spec"]["template"]["spec"]
    return pod


def test_runtime_image_pull_policy_and_variables_reach_the_node_pod() -> None:
    run = spec(runtime={"image": "registry.example/vision:2", "imagePullPolicy": "Always",
                        "env": [{"name": "MODE", "value": "fast"}]})
    container = pod_of(node_environment.apply(job(run), run, Settings(), {}))["containers"][0]
    assert container["image"] == "registry.example/vision:2" and container["imagePullPolicy"] == "Always"
    args = container["args"]
    assert args[args.index("--env") + 1] == "MODE=fast"
    # To the program through the runtime, not as the container's own environment.
    assert "MODE" not in {e["name"] for e in container["env"]}


def test_no_runtime_leaves_the_job_as_it_was() -> None:
    run = spec()
    assert node_environment.apply(job(run), run, Settings(), {}) == job(run)


def test_datasets_are_read_only_volumes_and_the_s3_one_is_fetched_first() -> None:
    run = spec(datasets=DATASETS)
    pod = pod_of(node_environment.apply(job(run), run, Settings(python="python3"), OBJECTS))
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["dataset-mnist"] == {"name": "dataset-mnist",
                                        "persistentVolumeClaim": {"claimName": "mnist-data", "readOnly": True}}
    assert volumes["dataset-cifar"] == {"name": "dataset-cifar", "emptyDir": {"sizeLimit": "1Gi"}}
    container = pod["containers"][0]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["dataset-mnist"] == {"name": "dataset-mnist", "mountPath": "/mnt/datasets/mnist", "readOnly": True}
    assert mounts["dataset-cifar"] == {"name": "dataset-cifar", "mountPath": "/mnt/c", "readOnly": True}
    args = container["args"]
    assert [args[i + 1] for i, a in enumerate(args) if a == "--dataset"] == ["/mnt/datasets/mnist", "/mnt/c"]
    (fetcher,) = pod["initContainers"]
    assert fetcher["command"] == ["python3"] and fetcher["image"] == container["image"]
    assert fetcher["args"][:8] == ["-m", "experiment_runtime", "fetch-dataset", "--dest", "/mnt/c",
                                   "--max-bytes", str(1 << 30), "--objects-json"]
    assert json.loads(fetcher["args"][8]) == OBJECTS["cifar"]
    assert fetcher["volumeMounts"] == [{"name": "dataset-cifar", "mountPath": "/mnt/c"}]
    # The fetcher is as locked down as the node container (PSS restricted), and holds no credential.
    assert fetcher["securityContext"] == container["securityContext"]
    assert "env" not in fetcher


def test_missing_claim_stalls_the_run_naming_it_and_creating_it_lets_the_run_go_on() -> None:
    cluster = Cluster(spec={"datasets": DATASETS[:1]})
    reconciler = operator(cluster)
    reconcile(reconciler, cluster)
    status = cluster.run["status"]
    stalled = {c["type"]: c for c in status["conditions"]}["Stalled"]
    assert stalled["status"] == "True"
    assert "spec.datasets[0] (mnist): PersistentVolumeClaim 'mnist-data' not found in namespace ns" in stalled["message"]
    assert not cluster.jobs()
    cluster.kube.put("persistentvolumeclaims", {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                                "metadata": {"name": "mnist-data", "namespace": "ns"}})
    reconcile(reconciler, cluster)
    assert cluster.run["status"]["phase"] == "Searching"
    (created,) = cluster.jobs().values()
    assert {"name": "dataset-mnist", "persistentVolumeClaim": {"claimName": "mnist-data", "readOnly": True}} \
        in pod_of(created)["volumes"]


def test_s3_dataset_objects_are_listed_and_presigned_for_each_node_job() -> None:
    cluster = Cluster(spec={"datasets": DATASETS[1:]})
    cluster.s3["data/cifar/train/a.bin"] = b"abc"
    cluster.s3["data/other/x"] = b"no"
    reconciler = operator(cluster)
    reconcile(reconciler, cluster)
    (created,) = cluster.jobs().values()
    (fetcher,) = pod_of(created)["initContainers"]
    assert json.loads(fetcher["args"][-1]) == [
        {"path": "train/a.bin", "size": 3, "url": "https://s3.test/data/cifar/train/a.bin?X-Amz-Signature=get"}]


def test_path_only_dataset_is_a_stall_in_a_cluster() -> None:
    cluster = Cluster(spec={"datasets": [{"name": "local", "path": "data"}]})
    reconcile(operator(cluster), cluster)
    assert "spec.datasets[0] (local): only a local path is given" in cluster.run["status"]["message"]


def test_image_lacking_a_requirement_fails_the_run_with_no_buggy_node_and_no_retry() -> None:
    cluster = Cluster(spec={"runtime": {"requirements": ["scipy>=1.11"]}})
    reconciler = operator(cluster)
    reconcile(reconciler, cluster)
    cluster.start_pods()
    (job_name,) = cluster.jobs()
    args = pod_of(cluster.jobs()[job_name])["containers"][0]["args"]
    assert args[args.index("--requirement") + 1] == "scipy>=1.11"
    text = ("configuration error: the node image lacks the requirement(s) scipy>=1.11 (not installed) (from the "
            "template's requirements.txt or spec.runtime.requirements); build an image FROM it with "
            "`RUN pip install 'scipy>=1.11'` and set spec.runtime.image to it")
    cluster.finish(job_name, json.dumps({"status": "error", "configuration": True, "message": text}), exit_code=1)
    for _ in range(3):
        reconcile(reconciler, cluster)
    status = cluster.run["status"]
    assert status["phase"] == "Failed" and "lacks the requirement(s) scipy>=1.11" in status["message"]
    assert list(cluster.jobs()) == [job_name]  # not retried, nothing debugged
    nodes = cluster.kube.of("experimentnodes")
    assert [n["status"]["phase"] for n in nodes.values()] == ["Failed"]


def test_shm_size_is_a_memory_volume_at_dev_shm_and_the_runtimes_shm() -> None:
    run = spec(runtime={"shmSize": "2Gi"})
    pod = pod_of(node_environment.apply(job(run), run, Settings(), {}))
    assert {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}} in pod["volumes"]
    container = pod["containers"][0]
    assert {"name": "shm", "mountPath": "/dev/shm"} in container["volumeMounts"]
    args = container["args"]
    assert args[args.index("--shm-bytes") + 1] == str(2 << 30)
    # Without it, the container runtime's /dev/shm as before.
    bare = pod_of(node_environment.apply(job(spec()), spec(), Settings(), {}))
    assert "shm" not in {v["name"] for v in bare["volumes"]} and "--shm-bytes" not in bare["containers"][0]["args"]


def test_ephemeral_storage_sizes_the_container_its_scratch_and_the_runtimes_quota() -> None:
    run = spec(runtime={"ephemeralStorage": "20Gi"})
    pod = pod_of(node_environment.apply(job(run), run, Settings(), {}))
    container = pod["containers"][0]
    assert container["resources"]["requests"]["ephemeral-storage"] == "20Gi"
    assert container["resources"]["limits"]["ephemeral-storage"] == "20Gi"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["work"]["emptyDir"] == {"sizeLimit": "20Gi"} and volumes["tmp"]["emptyDir"] == {"sizeLimit": "20Gi"}
    args = container["args"]
    assert args[args.index("--max-disk-bytes") + 1] == str(20 << 30)
    bare = pod_of(node_environment.apply(job(spec()), spec(), Settings(), {}))
    assert "ephemeral-storage" not in bare["containers"][0]["resources"]["limits"]
    assert all(v["emptyDir"] == {} for v in bare["volumes"]) and "--max-disk-bytes" not in bare["containers"][0]["args"]


def test_ephemeral_storage_limit_leaves_room_for_fetched_datasets() -> None:
    # The kubelet counts the dataset emptyDir against the pod's limit; the program's quota stays 20Gi.
    run = spec(runtime={"ephemeralStorage": "20Gi"}, datasets=DATASETS)
    pod = pod_of(node_environment.apply(job(run), run, Settings(), OBJECTS))
    container = pod["containers"][0]
    assert container["resources"]["limits"]["ephemeral-storage"] == str((20 << 30) + (1 << 30))
    assert {v["name"]: v for v in pod["volumes"]}["work"]["emptyDir"] == {"sizeLimit": "20Gi"}
    assert container["args"][container["args"].index("--max-disk-bytes") + 1] == str(20 << 30)


def test_config_map_dataset_is_a_read_only_volume() -> None:
    run = spec(datasets=[{"name": "labels", "configMap": {"name": "label-map"}, "mountPath": "/mnt/labels"}])
    pod = pod_of(node_environment.apply(job(run), run, Settings(), {}))
    assert {"name": "dataset-labels", "configMap": {"name": "label-map"}} in pod["volumes"]
    container = pod["containers"][0]
    assert {"name": "dataset-labels", "mountPath": "/mnt/labels", "readOnly": True} in container["volumeMounts"]
    args = container["args"]
    assert args[args.index("--dataset") + 1] == "/mnt/labels" and "initContainers" not in pod


def test_missing_config_map_stalls_the_run_naming_it_and_creating_it_lets_the_run_go_on() -> None:
    cluster = Cluster(spec={"datasets": [{"name": "labels", "configMap": {"name": "label-map"}}]})
    reconciler = operator(cluster)
    reconcile(reconciler, cluster)
    stalled = {c["type"]: c for c in cluster.run["status"]["conditions"]}["Stalled"]
    assert stalled["status"] == "True"
    assert "spec.datasets[0] (labels): ConfigMap 'label-map' not found in namespace ns" in stalled["message"]
    assert not cluster.jobs()
    cluster.kube.put("configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                                    "metadata": {"name": "label-map", "namespace": "ns"}, "data": {"a.txt": "1"}})
    reconcile(reconciler, cluster)
    assert cluster.run["status"]["phase"] == "Searching"
    (created,) = cluster.jobs().values()
    assert {"name": "dataset-labels", "configMap": {"name": "label-map"}} in pod_of(created)["volumes"]
