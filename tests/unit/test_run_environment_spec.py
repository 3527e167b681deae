"""spec.runtime and spec.datasets: validation naming the field, the model, and the local virtualenv cache."""

from __future__ import annotations

import copy
import dataclasses
import pathlib
import subprocess
import sys
from typing import Any

import pytest

from kubescientist.adapters.local import environment, gpus
from kubescientist.adapters.local.environment import RequirementsError, prepare, read_requirements
from kubescientist.adapters.manifest import ManifestError, validate_object
from kubescientist.core.spec import Dataset, Runtime, run_spec_from_dict

BASE: dict[str, Any] = {
    "apiVersion": "kubescientist.io/v1alpha1", "kind": "ResearchRun", "metadata": {"name": "env"},
    "spec": {"idea": {"inline": {"title": "t"}}, "objective": {"metric": "acc"}},
}


def run(**spec: Any) -> dict[str, Any]:
    obj = copy.deepcopy(BASE)
    obj["spec"].update(spec)
    return validate_object("ResearchRun", obj)


def problems(**spec: Any) -> str:
    with pytest.raises(ManifestError) as caught:
        run(**spec)
    return str(caught.value)


def test_runtime_and_datasets_become_the_model_with_defaults() -> None:
    valid = run(runtime={"image": "registry.example/vision:1", "imagePullPolicy": "IfNotPresent",
                         "requirements": ["scipy>=1.11", "scikit-learn[alldeps]==1.5,<2"],
                         "env": [{"name": "MODE", "value": "fast"}]},
                datasets=[{"name": "mnist", "persistentVolumeClaim": {"claimName": "mnist-data"}},
                          {"name": "cifar", "s3": {"uri": "s3://data-bucket/cifar/"}, "mountPath": "/mnt/c"}])
    spec = run_spec_from_dict(valid["spec"])
    assert spec.runtime == Runtime(image="registry.example/vision:1", image_pull_policy="IfNotPresent",
                                   requirements=("scipy>=1.11", "scikit-learn[alldeps]==1.5,<2"),
                                   env=(("MODE", "fast"),))
    assert spec.datasets == (Dataset(name="mnist", mount_path="/mnt/datasets/mnist", claim_name="mnist-data"),
                             Dataset(name="cifar", mount_path="/mnt/c", s3_uri="s3://data-bucket/cifar/",
                                     max_bytes="10Gi"))
    assert run_spec_from_dict(run()["spec"]).runtime == Runtime()


@pytest.mark.parametrize("name", ["OPENAI_API_KEY", "HF_TOKEN", "DB_PASSWORD", "aws_secret_access_key"])
def test_secret_looking_variable_names_are_refused(name: str) -> None:
    assert f"spec.runtime.env[0].name: looks like a secret" in problems(runtime={"env": [{"name": name,
                                                                                          "value": "x"}]})


@pytest.mark.parametrize("value", ["sk-abc123", "AKIAABCDEFGHIJKLMNOP", "ghp_0123456789", "-----BEGIN RSA KEY"])
def test_secret_looking_variable_values_are_refused(value: str) -> None:
    assert "spec.runtime.env[0].value: looks like a secret" in problems(runtime={"env": [{"name": "X",
                                                                                        "value": value}]})


def test_duplicate_variables_and_overlapping_datasets_are_named() -> None:
    text = problems(runtime={"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]},
                    datasets=[{"name": "a", "path": "a"}, {"name": "a", "path": "b", "mountPath": "/mnt/x"},
                              {"name": "c", "path": "c", "mountPath": "/mnt/x/inner"}])
    assert "spec.runtime.env[1].name: duplicate variable 'A'" in text
    assert "spec.datasets[1].name: duplicate dataset 'a'" in text
    assert "spec.datasets[2].mountPath: /mnt/x/inner overlaps dataset 'a' at /mnt/x" in text


@pytest.mark.parametrize("dataset, message", [
    ({"name": "a"}, "spec.datasets[0]: a dataset needs persistentVolumeClaim, configMap or s3"),
    ({"name": "a", "s3": {"uri": "s3://bkt/p"}, "persistentVolumeClaim": {"claimName": "c"}},
     "spec.datasets[0]: a dataset is one of a persistentVolumeClaim, a configMap or an s3 prefix, not several"),
    ({"name": "a", "configMap": {"name": "labels"}, "persistentVolumeClaim": {"claimName": "c"}},
     "spec.datasets[0]: a dataset is one of a persistentVolumeClaim, a configMap or an s3 prefix, not several"),
    ({"name": "a", "configMap": {"name": "Labels_1"}}, "spec.datasets[0].configMap.name: must match"),
    ({"name": "a", "configMap": {}}, "spec.datasets[0].configMap.name: required field is missing"),
    ({"name": "a", "path": "p", "mountPath": "/data/a"}, "spec.datasets[0].mountPath: must match"),
    ({"name": "a", "path": "p", "mountPath": "/mnt/a/../etc"}, "spec.datasets[0].mountPath: mountPath must not"),
    ({"name": "a", "s3": {"uri": "s3://bkt/p", "maxSize": "0"}}, "spec.datasets[0].s3.maxSize: maxSize must be"),
    ({"name": "a", "s3": {"uri": "http://bkt/p"}}, "spec.datasets[0].s3.uri: must match"),
])
def test_bad_datasets_name_the_field(dataset: dict[str, Any], message: str) -> None:
    assert message in problems(datasets=[dataset])


@pytest.mark.parametrize("requirement", ["git+https://example.com/x.git", "-r other.txt", "pkg; python_version<'3'",
                                         "x @ file:///tmp/x"])
def test_requirements_with_urls_options_or_markers_are_refused(requirement: str) -> None:
    assert "spec.runtime.requirements[0]: must match" in problems(runtime={"requirements": [requirement]})


def test_requirements_file_is_read_without_comments_and_merged(tmp_path: pathlib.Path) -> None:
    (tmp_path / "requirements.txt").write_text("# packages\nnumpy  # arrays\n\nscipy>=1.10\n")
    assert read_requirements(tmp_path, ("scipy>=1.10", "pandas")) == ("numpy", "scipy>=1.10", "pandas")
    assert read_requirements(None, ("pandas",)) == ("pandas",)
    (tmp_path / "requirements.txt").write_text("numpy\n-e .\n")
    with pytest.raises(RequirementsError, match=r"requirements.txt: line 2: '-e \.'"):
        read_requirements(tmp_path, ())


def test_no_requirements_means_the_runners_interpreter(tmp_path: pathlib.Path) -> None:
    env = prepare((), tmp_path)
    assert env.python == sys.executable and env.cached and not list(tmp_path.iterdir())


def test_installer_output_names_the_failing_requirement() -> None:
    output = "× No solution found: Because no_such.pkg was not found in the package registry"
    assert environment._mentioned("No-Such-Pkg>=1", output)
    assert not environment._mentioned("such-pkg", output)
    assert not environment._mentioned("numpy", output)


def test_virtualenv_is_built_once_per_requirements_and_runs_them(tmp_path: pathlib.Path) -> None:
    # A tiny pure-Python package from the index, so that the build is quick.
    built = prepare(("six",), tmp_path)
    assert not built.cached
    hit = prepare(("six",), tmp_path)
    assert hit.cached and hit.python == built.python and hit.seconds < 0.5
    done = subprocess.run([hit.python, "-c", "import six, sys; print(sys.prefix)"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == str(pathlib.Path(hit.python).parent.parent)
    # Another set of requirements, another virtualenv; the runner's own packages are not in it.
    other = prepare(("six", "idna"), tmp_path)
    assert other.python != built.python
    assert subprocess.run([built.python, "-c", "import yaml"], capture_output=True).returncode != 0


def test_shm_ephemeral_storage_gpu_selectors_and_config_map_datasets_become_the_model() -> None:
    valid = run(runtime={"shmSize": "2Gi", "ephemeralStorage": "20Gi"},
                resources={"gpus": 1, "gpuType": "NVIDIA-H100-80GB-HBM3", "gpuMemory": "40Gi"},
                datasets=[{"name": "labels", "configMap": {"name": "label-map"}, "path": "labels"}])
    spec = run_spec_from_dict(valid["spec"])
    assert spec.runtime == Runtime(shm_size="2Gi", ephemeral_storage="20Gi")
    assert (spec.resources.gpu_type, spec.resources.gpu_memory) == ("NVIDIA-H100-80GB-HBM3", "40Gi")
    assert spec.datasets == (Dataset(name="labels", mount_path="/mnt/datasets/labels", config_map="label-map",
                                     path="labels"),)
    # Absent, nothing changes: today's defaults hold.
    bare = run_spec_from_dict(run()["spec"])
    assert bare.runtime.shm_size is None and bare.runtime.ephemeral_storage is None
    assert bare.resources.gpu_type is None and bare.resources.gpu_memory is None


@pytest.mark.parametrize("spec, message", [
    ({"runtime": {"shmSize": "0"}}, "spec.runtime.shmSize: runtime.shmSize must be a positive quantity"),
    ({"runtime": {"shmSize": "lots"}}, "spec.runtime.shmSize: runtime.shmSize must be a positive quantity"),
    ({"runtime": {"shmSize": "2Ei"}}, "spec.runtime.shmSize: '2Ei' is out of range: must be from 1Mi to 1Ti"),
    ({"runtime": {"ephemeralStorage": "-1Gi"}},
     "spec.runtime.ephemeralStorage: runtime.ephemeralStorage must be a positive quantity"),
    ({"runtime": {"ephemeralStorage": "100"}},
     "spec.runtime.ephemeralStorage: '100' is out of range: must be from 1Mi to 1Pi"),
    ({"resources": {"gpuType": "NVIDIA-A100"}},
     "spec.resources.gpuType: resources.gpuType selects a GPU model, so it needs resources.gpus greater than zero"),
    ({"resources": {"gpus": 0, "gpuMemory": "40Gi"}},
     "spec.resources.gpuMemory: resources.gpuMemory selects GPUs by memory, so it needs resources.gpus"),
    ({"resources": {"gpus": 1, "gpuMemory": "forty"}},
     "spec.resources.gpuMemory: resources.gpuMemory must be a positive quantity"),
    ({"resources": {"gpus": 1, "gpuType": "NVIDIA H100"}}, "spec.resources.gpuType: must match"),
])
def test_bad_storage_and_gpu_selectors_name_the_field(spec: dict[str, Any], message: str) -> None:
    assert message in problems(**spec)


def test_gpu_selectors_locally_are_a_notice_never_a_failure() -> None:
    resources = run_spec_from_dict(run(resources={"gpus": 1, "gpuType": "NVIDIA-H100-80GB-HBM3",
                                                  "gpuMemory": "80Gi"})["spec"]).resources
    found = gpus.parse("NVIDIA H100 80GB HBM3, 81559\nNVIDIA A10G, 23028\n")
    assert found == [gpus.Gpu("NVIDIA-H100-80GB-HBM3", 81559), gpus.Gpu("NVIDIA-A10G", 23028)]
    assert gpus.notice(dataclasses.replace(resources, gpu_memory="79Gi"), found[:1], None) is None
    # 80Gi is 81920 MiB, and an 80 GB H100 reports 81559 (as the node label does in a cluster).
    text = gpus.notice(resources, found[:1], None)
    assert text is not None and "they have at most 81559 MiB (less than 81920 MiB)" in text
    text = gpus.notice(resources, found[1:], None)
    assert text is not None and "its GPUs are NVIDIA-A10G" in text and "at most 23028 MiB (less than 81920" in text
    text = gpus.notice(resources, [], "nvidia-smi not found")
    assert text == ("spec.resources gpuType=NVIDIA-H100-80GB-HBM3 and gpuMemory=80Gi select GPU nodes in a cluster; "
                    "this machine has no GPU (nvidia-smi not found), so they are ignored here and the nodes run "
                    "without one")
    assert gpus.notice(run_spec_from_dict(run()["spec"]).resources, [], "nvidia-smi not found") is None
