"""A run brings its own environment locally: packages in a cached virtualenv, variables, read-only datasets.

The packages come from the package index through uv (the first run of a set of requirements builds its
virtualenv under ~/.cache/kubescientist/venvs, later runs reuse it).
"""

from __future__ import annotations

import pathlib
import shutil
import tempfile
from collections.abc import Iterator

import pytest

from harness import ROOT, cli, load, manifest

SCIPY_TEMPLATE = ROOT / "tests" / "fixtures" / "v1_scipy_template"
DATASET_TEMPLATE = ROOT / "tests" / "fixtures" / "v1_dataset_template"


def said(result) -> str:
    """What the CLI printed, on both streams, with the console's line wrapping undone."""
    return " ".join((result.stdout + result.stderr).split())


@pytest.fixture
def workdir() -> Iterator[pathlib.Path]:
    """Run folders the sandbox uid can traverse (pytest's own tmp dirs are 0700 under root)."""
    root = pathlib.Path(tempfile.mkdtemp(prefix="ks-runenv-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_v1_template_with_requirements_runs_in_its_virtualenv_and_plots(workdir, write_manifest):
    before = {p.name: p.read_bytes() for p in SCIPY_TEMPLATE.iterdir() if p.is_file()}
    path = write_manifest(manifest("scipyrun", SCIPY_TEMPLATE, metric="r2", budgets=(1, 1, 1, 1), seeds=1))
    result = cli("run", str(path), "--workdir", str(workdir))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "virtualenv" in result.stderr and "numpy, scipy>=1.10, matplotlib" in result.stderr
    run_dir = workdir / "scipyrun"
    node = run_dir / "nodes" / "n0000"
    assert load(node / "result.json")["status"] == "succeeded"
    # scipy's fit really ran: the metrics are the fitted r2 of both datasets.
    metrics = load(node / "metrics.json")["datasets"]
    assert set(metrics) == {"slow", "fast"} and all(0.5 < m["r2"]["final"] <= 1.0 for m in metrics.values())
    # plot.py ran after the experiment, in the sandbox, and its figures are the node's plots.
    assert sorted(p.name for p in (node / "plots").iterdir()) == ["r2_by_dataset.png", "rmse_by_dataset.png"]
    assert load(node / "result.json")["plots"] == ["r2_by_dataset.png", "rmse_by_dataset.png"]
    assert (node / "plot.txt").read_text().startswith("plot.py: exit code 0")
    assert not (node / "code" / "run_0").exists()  # the v1 link for the plot is not code
    # ...and they reach the paper.
    tex = (run_dir / "paper" / "paper.tex").read_text()
    assert "figures/program-n0000-0.png" in tex
    assert (run_dir / "paper" / "figures" / "program-n0000-0.png").read_bytes() == \
        (node / "plots" / "r2_by_dataset.png").read_bytes()
    assert {p.name: p.read_bytes() for p in SCIPY_TEMPLATE.iterdir() if p.is_file()} == before

    # A second run with the same requirements finds the virtualenv ready.
    again = write_manifest(manifest("scipyagain", SCIPY_TEMPLATE, metric="r2", budgets=(1, 1, 1, 1), seeds=0,
                                    writeup={"enabled": False}, review={"enabled": False}))
    result = cli("run", str(again), "--workdir", str(workdir))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "environment: cached virtualenv" in result.stderr


def test_missing_requirement_is_a_configuration_error_of_the_run(workdir, write_manifest, tmp_path):
    template = tmp_path / "template"
    shutil.copytree(SCIPY_TEMPLATE, template)
    (template / "requirements.txt").write_text("numpy\nkubescientist-no-such-package-4711>=1.0\n")
    path = write_manifest(manifest("missingreq", template, metric="r2", budgets=(2, 1, 1, 1), seeds=1))
    result = cli("run", str(path), "--workdir", str(workdir))
    assert result.returncode != 0
    assert "configuration error: cannot install the requirement kubescientist-no-such-package-4711>=1.0" in said(result)
    assert "Traceback" not in said(result)
    # No node ran, so none is buggy and none is debugged.
    assert not (workdir / "missingreq" / "nodes").exists()


def test_requirements_file_with_options_names_the_line(workdir, write_manifest, tmp_path):
    template = tmp_path / "template"
    shutil.copytree(SCIPY_TEMPLATE, template)
    (template / "requirements.txt").write_text("numpy\n--index-url http://example.invalid/simple\n")
    path = write_manifest(manifest("badreq", template, metric="r2", budgets=(2, 1, 1, 1), seeds=1))
    result = cli("run", str(path), "--workdir", str(workdir))
    assert result.returncode != 0
    assert "requirements.txt: line 2: '--index-url" in said(result) and "Traceback" not in said(result)


def test_dataset_is_read_only_in_the_sandbox_and_env_reaches_the_program(workdir, write_manifest, tmp_path):
    # tmp_path is 0700 under root: the executor stages it where the sandbox uid can reach it.
    data = tmp_path / "points"
    data.mkdir()
    (data / "values.txt").write_text("1\n2\n6\n")
    path = write_manifest(manifest(
        "dataset", DATASET_TEMPLATE, metric="mean", budgets=(1, 1, 1, 1), seeds=0,
        writeup={"enabled": False}, review={"enabled": False},
        runtime={"env": [{"name": "GREETING", "value": "hello"}], "shmSize": "64Mi", "ephemeralStorage": "256Mi"},
        # GPU selectors choose cluster nodes; here they are told about, never a failure.
        resources={"gpus": 1, "gpuType": "NVIDIA-H100-80GB-HBM3", "gpuMemory": "80Gi"},
        datasets=[{"name": "points", "path": str(data)}]))
    result = cli("run", str(path), "--workdir", str(workdir))
    assert result.returncode == 0, result.stdout + result.stderr
    assert ("notice: spec.resources gpuType=NVIDIA-H100-80GB-HBM3 and gpuMemory=80Gi select GPU nodes in a "
            "cluster; this machine") in said(result)
    node = workdir / "dataset" / "nodes" / "n0000"
    assert load(node / "result.json")["status"] == "succeeded", (node / "stderr.txt").read_text()
    means = load(node / "metrics.json")["datasets"]["points"]
    assert means["mean"]["final"] == 3.0
    assert means["writable"]["final"] == 0.0 and "read-only" in (node / "stdout.txt").read_text()
    assert means["greeting"]["final"] == 1.0
    assert (data / "values.txt").read_text() == "1\n2\n6\n"


@pytest.mark.parametrize("source", [{"persistentVolumeClaim": {"claimName": "points"}},
                                    {"configMap": {"name": "points"}}])
def test_cluster_only_dataset_is_refused_locally(workdir, write_manifest, source):
    path = write_manifest(manifest(
        "clusteronly", DATASET_TEMPLATE, metric="mean", budgets=(1, 1, 1, 1), seeds=0,
        datasets=[{"name": "points", **source}]))
    result = cli("run", str(path), "--workdir", str(workdir))
    assert result.returncode != 0
    (kind,) = source
    assert f"spec.datasets[0] (points): a {kind} dataset exists only in a cluster" in said(result)
