"""The objects the operator creates: node Jobs fit PSS restricted, carry explicit labels, pass scheduling through."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kubescientist.adapters.kube import manifests, naming
from kubescientist.adapters.kube.config import Settings, from_env
from kubescientist.adapters.manifest import validate_object
from kubescientist.core.journal import Node, NodeConfig
from kubescientist.core.spec import RunSpec, run_spec_from_dict

OWNER = manifests.node_owner("demo-n0003", "node-uid")


def spec(**overrides: Any) -> RunSpec:
    run = validate_object("ResearchRun", {
        "apiVersion": "kubescientist.io/v1alpha1", "kind": "ResearchRun",
        "metadata": {"name": "demo", "labels": {"app.kubernetes.io/instance": "argo-app", "team": "x"}},
        "spec": {"idea": {"inline": {"title": "t"}}, "objective": {"metric": "acc"}, **overrides}})
    return run_spec_from_dict(run["spec"])


def node(**config: Any) -> Node:
    return Node(id="n0003", seq=3, stage="research", action="variant", parent="n0001",
                config=NodeConfig(seed=7, params={"lr": 0.1, "momentum": 0.5}, **config), reason="r" * 3000,
                status="running", attempts=2)


def job(run_spec: RunSpec, settings: Settings = Settings()) -> dict[str, Any]:
    return manifests.node_job("demo", "ns", OWNER, run_spec, node(variant="momentum"), 2, settings,
                              "https://s3/code?sig", "ab" * 32, {"result.json": "https://s3/put?sig"})


def test_node_job_shape() -> None:
    obj = job(spec(resources={"gpus": 2, "cpu": "2", "memory": "8Gi", "deadlineSeconds": 300}))
    assert obj["metadata"]["name"] == "demo-n0003-a2"
    assert obj["metadata"]["ownerReferences"] == [OWNER.reference()]
    assert obj["metadata"]["ownerReferences"][0]["controller"] is True
    assert obj["spec"]["backoffLimit"] == 0
    assert obj["spec"]["activeDeadlineSeconds"] == 300 + Settings().deadline_margin_seconds
    container = obj["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"] == {"requests": {"cpu": "2", "memory": "8Gi"},
                                      "limits": {"cpu": "2", "memory": "8Gi", "nvidia.com/gpu": "2"}}
    args = container["args"]
    assert container["command"] == ["python"] and args[:3] == ["-m", "experiment_runtime", "pod"]
    assert json.loads(args[args.index("--config-json") + 1]) == {
        "seed": 7, "params": {"lr": 0.1, "momentum": 0.5}, "variant": "momentum", "ablation": None}
    assert args[args.index("--deadline") + 1] == "300" and "result.json=https://s3/put?sig" in args


def test_no_gpu_limit_without_gpus() -> None:
    container = job(spec())["spec"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in container["resources"]["limits"]


def test_pod_fits_pod_security_restricted() -> None:
    pod = job(spec())["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsUser"] != 0
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False and security["capabilities"] == {"drop": ["ALL"]}
    assert security["readOnlyRootFilesystem"] is True and security["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False and pod["restartPolicy"] == "Never"
    # Scratch space only as emptyDirs; no Secret anywhere, not even through env.
    assert all(set(v) == {"name", "emptyDir"} for v in pod["volumes"])
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/work", "/tmp"}
    assert all(set(e) == {"name", "value"} for e in container["env"])
    assert "secret" not in json.dumps(pod).lower()


def test_labels_are_explicit_never_the_runs() -> None:
    obj = job(spec(queueName="gpu-queue"), Settings(pod_labels={"team-policy": "ml"}))
    labels = {naming.MANAGED_BY_LABEL: "kubescientist", naming.RUN_LABEL: "demo", naming.ROLE_LABEL: "node",
              naming.NODE_LABEL: "n0003", naming.ATTEMPT_LABEL: "2"}
    assert obj["metadata"]["labels"] == {**labels, "kueue.x-k8s.io/queue-name": "gpu-queue"}
    assert obj["spec"]["template"]["metadata"]["labels"] == {**labels, "team-policy": "ml"}
    assert "argo-app" not in json.dumps(obj)


def test_scheduling_passes_through() -> None:
    tolerations = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    pod = job(spec(nodeSelector={"nvidia.com/gpu.product": "H100"}, tolerations=tolerations,
                   priorityClassName="research"))["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "H100"}
    assert pod["tolerations"] == tolerations and pod["priorityClassName"] == "research"
    bare = job(spec())["spec"]["template"]["spec"]
    assert not {"nodeSelector", "tolerations", "priorityClassName"} & set(bare)


def test_gpu_type_and_memory_are_a_required_node_affinity_of_node_pods_only() -> None:
    run = spec(resources={"gpus": 1, "gpuType": "NVIDIA-H100-80GB-HBM3", "gpuMemory": "40Gi"},
               nodeSelector={"pool": "gpu"})
    pod = job(run)["spec"]["template"]["spec"]
    assert pod["affinity"] == {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-H100-80GB-HBM3"]},
            # At least 40960 MiB: Gt is strict.
            {"key": "nvidia.com/gpu.memory", "operator": "Gt", "values": ["40959"]}]}]}}}
    assert pod["nodeSelector"] == {"pool": "gpu"}
    # A decimal quantity rounds up to whole MiB: 40G is 38146.97 MiB, so at least 38147.
    memory_only = job(spec(resources={"gpus": 1, "gpuMemory": "40G"}))["spec"]["template"]["spec"]["affinity"]
    (term,) = memory_only["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term["matchExpressions"] == [{"key": "nvidia.com/gpu.memory", "operator": "Gt", "values": ["38146"]}]
    assert "affinity" not in job(spec(resources={"gpus": 1}))["spec"]["template"]["spec"]
    publish = manifests.publish_job("demo", "ns", manifests.run_owner("demo", "u"), run, "review", Settings(),
                                    "https://records", {})
    assert "affinity" not in publish["spec"]["template"]["spec"]
    # The ExperimentNode records them, and its CRD accepts them.
    node_obj = manifests.experiment_node("demo", "ns", manifests.run_owner("demo", "u"), run,
                                         node(variant="momentum"), "sha256:" + "ab" * 32, "s3://b/c")
    resources = validate_object("ExperimentNode", node_obj)["spec"]["resources"]
    assert (resources["gpuType"], resources["gpuMemory"]) == ("NVIDIA-H100-80GB-HBM3", "40Gi")


def test_experiment_node_is_valid_against_its_crd() -> None:
    obj = manifests.experiment_node("demo", "ns", manifests.run_owner("demo", "run-uid"), spec(), node(variant="v1"),
                                    "sha256:" + "ab" * 32, "s3://b/code/ab.tar.gz")
    valid = validate_object("ExperimentNode", obj)
    assert valid["spec"]["parent"] == "demo-n0001" and len(valid["spec"]["reason"]) == 2000
    assert obj["metadata"]["labels"][naming.NODE_LABEL] == "n0003"
    draft = Node(id="n0000", seq=0, stage="initial", action="draft", parent=None, config=NodeConfig(seed=0),
                 reason="first")
    assert "parent" not in validate_object("ExperimentNode", manifests.experiment_node(
        "demo", "ns", manifests.run_owner("demo", "u"), spec(), draft, "sha256:" + "00" * 32, "s3://b/c"))["spec"]


def test_publish_job_runs_the_publishing_entrypoint() -> None:
    obj = manifests.publish_job("demo", "ns", manifests.run_owner("demo", "u"), spec(), "review", Settings(),
                                "https://records", {"review.json": "https://put"}, ["--paper-url", "https://paper"])
    container = obj["spec"]["template"]["spec"]["containers"][0]
    assert obj["metadata"]["name"] == "demo-review" and obj["metadata"]["labels"][naming.ROLE_LABEL] == "review"
    assert container["args"][:3] == ["-m", "kubescientist.adapters.kube.publishing", "review"]
    assert "review.json=https://put" in container["args"] and "--paper-url" in container["args"]
    assert obj["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


@pytest.mark.parametrize("run", ["demo", "a" * 63])
def test_names_fit_their_limits(run: str) -> None:
    name = naming.job_name(run, "n0123", 3)
    assert len(name) <= 63 and name.endswith("-n0123-a3")
    assert naming.job_name(run, "n0123", 3) == name  # deterministic
    assert len(naming.stage_job_name(run, "writeup")) <= 63
    assert naming.node_id_of(run, naming.node_name(run, "n0042")) == "n0042"
    assert naming.node_id_of(run, f"{run}-writeup") is None


def test_long_run_names_stay_distinct() -> None:
    assert naming.job_name("a" * 62 + "b", "n0001", 1) != naming.job_name("a" * 62 + "c", "n0001", 1)


def test_settings_from_env() -> None:
    settings = from_env({"KUBESCIENTIST_NODE_IMAGE": "reg/img:1", "KUBESCIENTIST_RESYNC_SECONDS": "2.5",
                         "KUBESCIENTIST_POD_LABELS": '{"a": "b"}', "KUBESCIENTIST_DEADLINE_MARGIN_SECONDS": "30"})
    assert settings.node_image == "reg/img:1" and settings.resync_seconds == 2.5
    assert settings.pod_labels == {"a": "b"} and settings.deadline_margin_seconds == 30
    assert settings.image_for_publishing == "reg/img:1"
    with pytest.raises(ValueError, match="POD_LABELS"):
        from_env({"KUBESCIENTIST_POD_LABELS": "[1]"})
