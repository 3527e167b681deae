"""The CRDs on a real apiserver: accepted and served, the quickstart applies, invalid runs are refused with the
field named (OpenAPI and CEL rules evaluated by the apiserver itself), kubectl's views (printer columns,
category, explain) work, and an ExperimentNode's spec cannot be edited."""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from cluster import Cluster

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "examples" / "quickstart.yaml"
CODE_HASH = "sha256:" + "0" * 64


def quickstart() -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load(QUICKSTART.read_text())
    return manifest


def test_crds_are_accepted_and_established(cluster: Cluster, kubescientist_crds: list[str]) -> None:
    for name in kubescientist_crds:
        crd = cluster.kubectl_json("get", name)
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions.get("Established") == "True" and conditions.get("NamesAccepted") == "True", conditions
    resources = cluster.kubectl("api-resources", "--api-group=kubescientist.io", "-o", "name").stdout.split()
    assert sorted(resources) == ["experimentnodes.kubescientist.io", "researchcampaigns.kubescientist.io",
                                 "researchruns.kubescientist.io"]


def test_quickstart_applies(cluster: Cluster, kubescientist_crds: list[str], namespace: str) -> None:
    out = cluster.kubectl("apply", "-n", namespace, "-f", str(QUICKSTART)).stdout
    assert "researchrun.kubescientist.io/quickstart created" in out
    run = cluster.kubectl_json("get", "researchrun", "quickstart", "-n", namespace)
    # Schema defaults are applied by the apiserver.
    assert run["spec"]["search"]["debugProbability"] == 0.5
    assert [s["name"] for s in run["spec"]["stages"]] == ["initial", "tuning", "research", "ablation"]


def _two_idea_sources(m: dict[str, Any]) -> None:
    m["spec"]["idea"]["configMapRef"] = {"name": "ideas"}


def _zero_nodes_in_research(m: dict[str, Any]) -> None:
    m["spec"]["stages"][2]["maxNodes"] = 0


def _secret_variable(m: dict[str, Any]) -> None:
    m["spec"]["runtime"] = {"env": [{"name": "OPENAI_API_KEY", "value": "x"}]}


def _dataset_outside_mnt(m: dict[str, Any]) -> None:
    m["spec"]["datasets"] = [{"name": "d", "persistentVolumeClaim": {"claimName": "c"}, "mountPath": "/mnt/a/../etc"}]


def _gpu_type_without_gpus(m: dict[str, Any]) -> None:
    m["spec"]["resources"] = {"gpus": 0, "gpuType": "NVIDIA-H100-80GB-HBM3"}


def _zero_shm(m: dict[str, Any]) -> None:
    m["spec"]["runtime"] = {"shmSize": "0"}


def _program_args_setting_out_dir(m: dict[str, Any]) -> None:
    m["spec"]["template"]["args"] = ["--device", "cpu", "--out_dir=/tmp"]


def _stages_out_of_order(m: dict[str, Any]) -> None:
    stages = m["spec"]["stages"]
    stages[1], stages[2] = stages[2], stages[1]


@pytest.mark.parametrize(
    ("mutate", "field", "message"),
    [
        (_zero_nodes_in_research, "spec.stages[2].maxNodes", "greater than or equal to 1"),
        (_two_idea_sources, "spec.idea", "idea must set exactly one of inline, ideasFile or configMapRef"),
        (_stages_out_of_order, "spec.stages",
         "stages must be named initial, tuning, research, ablation, in this order"),
        (_secret_variable, "spec.runtime.env[0].name", "looks like a secret"),
        (_dataset_outside_mnt, "spec.datasets[0].mountPath", "mountPath must not contain . or .. segments"),
        (_gpu_type_without_gpus, "spec.resources.gpuType", "needs resources.gpus greater than zero"),
        (_zero_shm, "spec.runtime.shmSize", "runtime.shmSize must be a positive quantity"),
        (_program_args_setting_out_dir, "spec.template.args",
         "template.args must not set --out_dir or --config; the runner sets them"),
    ],
    ids=["maxNodes-0", "two-idea-sources", "stage-order", "secret-env", "dataset-dotdot", "gpu-type-without-gpus",
         "shm-zero", "args-out-dir"],
)
def test_invalid_researchrun_is_refused_naming_the_field(
    cluster: Cluster, kubescientist_crds: list[str], namespace: str,
    mutate: Callable[[dict[str, Any]], None], field: str, message: str,
) -> None:
    manifest = copy.deepcopy(quickstart())
    mutate(manifest)
    result = cluster.kubectl("create", "-n", namespace, "-f", "-", input=yaml.safe_dump(manifest), check=False)
    assert result.returncode != 0, result.stdout
    assert "is invalid" in result.stderr and f"{field}:" in result.stderr and message in result.stderr, result.stderr
    assert cluster.kubectl("get", "researchrun", "quickstart", "-n", namespace, check=False).returncode != 0


def experiment_node(name: str, run: str = "quickstart") -> dict[str, Any]:
    return {
        "apiVersion": "kubescientist.io/v1alpha1",
        "kind": "ExperimentNode",
        "metadata": {"name": name},
        "spec": {"run": run, "stage": "initial", "action": "draft", "code": {"hash": CODE_HASH},
                 "reason": "first draft from the template"},
    }


def test_printer_columns_and_category(cluster: Cluster, kubescientist_crds: list[str], namespace: str) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", str(QUICKSTART))
    cluster.apply(experiment_node("quickstart-draft-0"), namespace)
    header = cluster.kubectl("get", "rr", "-n", namespace).stdout.splitlines()[0].split()
    assert header == ["NAME", "PHASE", "STAGE", "DONE", "TOTAL", "BEST", "AGE"]
    wide = cluster.kubectl("get", "rr", "-n", namespace, "-o", "wide").stdout.splitlines()[0].split()
    assert wide[-4:] == ["METRIC", "BEST-NODE", "QUEUED", "MESSAGE"]
    en_header = cluster.kubectl("get", "en", "-n", namespace).stdout.splitlines()[0].split()
    assert en_header == ["NAME", "RUN", "STAGE", "ACTION", "PHASE", "METRIC", "AGE"]

    listed = cluster.kubectl("get", "kubescientist", "-n", namespace, "-o", "name").stdout.split()
    assert sorted(listed) == ["experimentnode.kubescientist.io/quickstart-draft-0",
                              "researchrun.kubescientist.io/quickstart"]


def test_explain_shows_field_descriptions(cluster: Cluster, kubescientist_crds: list[str]) -> None:
    # The CRD's schema reaches the published OpenAPI a moment after it is Established.
    deadline = time.monotonic() + 30
    while True:
        result = cluster.kubectl("explain", "researchrun.spec.search", check=False)
        if result.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert result.returncode == 0, result.stderr
    text = re.sub(r"\s+", " ", result.stdout)
    assert "How the best-first tree search expands nodes." in text
    for fld in ("parallelism", "drafts", "debugProbability", "maxDebugDepth"):
        assert re.search(rf"^\s+{fld}\s+<(integer|number)>", result.stdout, re.MULTILINE), result.stdout
    assert "Most ExperimentNodes of this run executing at once" in text


def test_experimentnode_spec_is_immutable(cluster: Cluster, kubescientist_crds: list[str], namespace: str) -> None:
    cluster.apply(experiment_node("quickstart-draft-0"), namespace)
    edit = cluster.kubectl("patch", "experimentnode", "quickstart-draft-0", "-n", namespace, "--type=merge",
                           "-p", '{"spec": {"reason": "rewritten history"}}', check=False)
    assert edit.returncode != 0
    assert "ExperimentNode spec is immutable" in edit.stderr, edit.stderr
    node = cluster.kubectl_json("get", "experimentnode", "quickstart-draft-0", "-n", namespace)
    assert node["spec"]["reason"] == "first draft from the template"

    # The status, written by the operator, stays writable.
    cluster.kubectl("patch", "experimentnode", "quickstart-draft-0", "-n", namespace, "--subresource=status",
                    "--type=merge", "-p", '{"status": {"phase": "Running"}}')
    assert cluster.kubectl_json("get", "en", "quickstart-draft-0", "-n", namespace)["status"]["phase"] == "Running"
