"""`kubectl scientist` on the real control plane: kubectl finds `kubectl-scientist` on PATH and runs it.

A ResearchRun and a few ExperimentNodes are created by hand with the statuses the operator would write
(no operator runs here), their artefacts put in the cluster's real S3 server; then `tree`, `logs`,
`paper`, `suspend` and `resume` are run through kubectl. With KUBESCIENTIST_RECORD=1 the objects, as the
apiserver returned them, are saved to tests/fixtures/kubectl_plugin/ for the plugin's unit tests.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import minio
import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "kubectl_plugin"
RUN = "momentum"
PDF = b"%PDF-1.5\n% a stand-in paper\n%%EOF\n"


def plugin_dir(tmp_path: Path) -> Path:
    """A folder with an executable `kubectl-scientist`: the installed console script, else a shim that runs
    the same entry point from this checkout (the package may not be installed in the test interpreter)."""
    installed = Path(sys.executable).with_name("kubectl-scientist")
    if installed.exists():
        return installed.parent
    folder = tmp_path / "plugin-bin"
    folder.mkdir(exist_ok=True)
    shim = folder / "kubectl-scientist"
    shim.write_text(f"#!/bin/sh\nexec {sys.executable} -c "
                    "'from kubescientist.adapters.kubectl_plugin import main; main()' \"$@\"\n")
    shim.chmod(0o755)
    return folder


def kubectl_scientist(cluster: Any, tmp_path: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = cluster.env()
    # kubectl passes no global flags to plugins (it refuses flags before a plugin's name): KUBECONFIG it is.
    env["PATH"] = os.pathsep.join([str(plugin_dir(tmp_path)), env["PATH"]])
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "operator"), str(REPO), env.get("PYTHONPATH", "")])
    proc = subprocess.run([str(cluster.tools.kubectl), "scientist", *args], capture_output=True, text=True,
                          timeout=60, env=env)
    if check:
        assert proc.returncode == 0, f"kubectl scientist {' '.join(args)}: exit {proc.returncode}\n{proc.stderr}"
    return proc


def node(name: str, parent: str | None, stage: str, action: str, seed: int = 0) -> dict[str, Any]:
    spec: dict[str, Any] = {"run": RUN, "stage": stage, "action": action,
                            "code": {"hash": "sha256:" + "0" * 64, "uri": "s3://kubescientist/e2e/code/x.tar.gz"},
                            "config": {"seed": seed, "params": {"lr": 0.01}}, "reason": f"{action} by hand"}
    if parent:
        spec["parent"] = f"{RUN}-{parent}"
    if action == "variant":
        spec["config"]["variant"] = "nesterov"  # the CRD's CEL rule: a variant node names its variant
    return {"apiVersion": "kubescientist.io/v1alpha1", "kind": "ExperimentNode",
            "metadata": {"name": f"{RUN}-{name}",
                         "labels": {"app.kubernetes.io/managed-by": "kubescientist", "kubescientist.io/run": RUN,
                                    "kubescientist.io/node": name, "kubescientist.io/role": "node"}},
            "spec": spec}


def node_status(phase: str, artifacts: str, metric: float | None = None, reason: str | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "attempts": 1, "buggy": phase == "Buggy",
                              "jobName": "unused", "message": reason or phase.lower(),
                              "artifacts": {"uri": artifacts, "stdout": "stdout.txt", "stderr": "stderr.txt",
                                            "plots": []}}
    if phase in ("Succeeded", "Buggy", "Failed"):
        status["durationSeconds"] = 4.2
    if metric is not None:
        status["metric"] = metric
        status["metrics"] = {"linear": {"val_r2": metric}}
    if phase == "Buggy":
        status["buggyReason"] = reason
    return status


@pytest.fixture
def research(cluster: Any, namespace: str, kubescientist_crds: list[str]) -> dict[str, str]:
    """The run, its nodes and statuses, and the artefacts in S3; returns node name -> artefact prefix."""
    bucket, prefix = cluster.s3.bucket, f"e2e-plugin/runs/{namespace}/{RUN}"
    s3 = minio.Minio(cluster.s3.host, access_key=cluster.s3.access_key, secret_key=cluster.s3.secret_key,
                     secure=False, region=cluster.s3.region)

    def put(key: str, data: bytes) -> None:
        s3.put_object(bucket, key, io.BytesIO(data), len(data))

    cluster.apply([
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3-credentials", "namespace": namespace},
         "stringData": {"AWS_ACCESS_KEY_ID": cluster.s3.access_key, "AWS_SECRET_ACCESS_KEY": cluster.s3.secret_key}},
        {"apiVersion": "kubescientist.io/v1alpha1", "kind": "ResearchRun",
         "metadata": {"name": RUN, "namespace": namespace},
         "spec": {"idea": {"inline": {"title": "Momentum on a line", "hypothesis": "Momentum fits better."}},
                  "objective": {"metric": "val_r2", "direction": "maximize"},
                  "storage": {"s3": {"endpoint": cluster.s3.endpoint, "bucket": bucket, "prefix": "e2e-plugin",
                                     "secretRef": {"name": "s3-credentials"}}}}},
    ], namespace=namespace)
    plan = [("n0000", None, "initial", "draft", "Succeeded", 0.62, None),
            ("n0001", "n0000", "tuning", "tune", "Succeeded", 0.91, None),
            ("n0002", "n0000", "tuning", "tune", "Buggy", None,
             "Traceback (most recent call last):\nZeroDivisionError: division by zero"),
            ("n0003", "n0001", "tuning", "seed", "Failed", None, "pod evicted: node lost"),
            ("n0004", "n0001", "research", "variant", "Running", None, "running on kwok-gpu-0")]
    artifacts: dict[str, str] = {}
    for name, parent, stage, action, phase, metric, reason in plan:
        obj = node(name, parent, stage, action, seed=1 if action == "seed" else 0)
        cluster.apply(obj, namespace=namespace)
        folder = f"{prefix}/nodes/{name}/attempt-1"
        artifacts[f"{RUN}-{name}"] = folder
        put(f"{folder}/stdout.txt", f"stdout of {name}\nval_r2={metric}\n".encode())
        put(f"{folder}/stderr.txt", f"stderr of {name}\n".encode())
        cluster.kubectl("patch", "experimentnode", f"{RUN}-{name}", "-n", namespace, "--subresource=status",
                        "--type=merge", "-p", json.dumps({"status": node_status(
                            phase, f"s3://{bucket}/{folder}/", metric, reason)}))
    put(f"{prefix}/paper/paper.pdf", PDF)
    cluster.kubectl("patch", "researchrun", RUN, "-n", namespace, "--subresource=status", "--type=merge", "-p",
                    json.dumps({"status": {
                        "phase": "Searching", "stage": "research", "observedGeneration": 1,
                        "nodes": {"total": 5, "pending": 0, "running": 1, "succeeded": 2, "buggy": 1, "failed": 1},
                        "bestNode": {"name": f"{RUN}-n0001", "stage": "tuning", "metric": 0.91, "seeds": 1},
                        "paper": {"uri": f"s3://{bucket}/{prefix}/paper/paper.pdf"},
                        "message": "searching (research)"}}))
    if os.environ.get("KUBESCIENTIST_RECORD") == "1":
        _record(cluster, namespace)
    return artifacts


def _record(cluster: Any, namespace: str) -> None:
    """Save the objects as the apiserver returns them (managedFields dropped: noise), for the unit tests."""
    def clean(obj: dict[str, Any]) -> dict[str, Any]:
        obj["metadata"].pop("managedFields", None)
        obj["metadata"].get("annotations", {}).pop("kubectl.kubernetes.io/last-applied-configuration", None)
        return obj

    run = clean(cluster.kubectl_json("get", "researchrun", RUN, "-n", namespace))
    nodes = [clean(n) for n in cluster.kubectl_json("get", "experimentnodes", "-n", namespace,
                                                    "-l", f"kubescientist.io/run={RUN}")["items"]]
    FIXTURES.mkdir(parents=True, exist_ok=True)
    (FIXTURES / "tree.json").write_text(json.dumps(
        {"how": "tests/e2e/test_plugin.py with KUBESCIENTIST_RECORD=1: created by hand on the e2e apiserver",
         "run": run, "nodes": nodes}, indent=1, sort_keys=True) + "\n")


def test_tree_shows_the_search_tree(cluster: Any, namespace: str, research: dict[str, str], tmp_path: Path) -> None:
    out = kubectl_scientist(cluster, tmp_path, "tree", RUN, "-n", namespace).stdout
    lines = out.splitlines()
    assert lines[0].startswith(f"ResearchRun {RUN} Searching stage=research")
    assert "best momentum-n0001 = 0.91" in lines[0] and "(5 nodes)" in lines[0]
    by_id = {match.group(): line for line in lines[1:] if (match := re.search(r"\bn\d{4}\b", line))}
    assert sorted(by_id) == ["n0000", "n0001", "n0002", "n0003", "n0004"], out
    assert "draft [initial]" in by_id["n0000"] and "val_r2=0.62" in by_id["n0000"]
    assert "★ best" in by_id["n0001"] and "val_r2=0.91" in by_id["n0001"]
    assert "buggy: ZeroDivisionError: division by zero" in by_id["n0002"]
    assert "failed: pod evicted" in by_id["n0003"] and "seed=1" in by_id["n0003"]
    assert "variant [research]" in by_id["n0004"]
    # Indentation follows the tree: n0001 under n0000, n0003 and n0004 under n0001.
    indent = {node_id: line.index(node_id) for node_id, line in by_id.items()}
    assert indent["n0001"] == indent["n0002"] > indent["n0000"]
    assert indent["n0003"] == indent["n0004"] > indent["n0001"]
    # The namespace from the kubeconfig context when -n is absent: the run is not in "default".
    missing = kubectl_scientist(cluster, tmp_path, "tree", RUN, check=False)
    assert missing.returncode == 1 and "not found in namespace default" in missing.stderr


def test_logs_come_from_object_storage(cluster: Any, namespace: str, research: dict[str, str],
                                       tmp_path: Path) -> None:
    out = kubectl_scientist(cluster, tmp_path, "logs", f"{RUN}-n0001", "-n", namespace).stdout
    assert out == "stdout of n0001\nval_r2=0.91\n"
    err = kubectl_scientist(cluster, tmp_path, "logs", f"{RUN}-n0002", "--stderr", "-n", namespace).stdout
    assert err == "stderr of n0002\n"


def test_paper_is_downloaded(cluster: Any, namespace: str, research: dict[str, str], tmp_path: Path) -> None:
    target = tmp_path / "paper.pdf"
    kubectl_scientist(cluster, tmp_path, "paper", RUN, "-n", namespace, "-o", str(target))
    assert target.read_bytes() == PDF


def test_suspend_and_resume_flip_spec_suspend(cluster: Any, namespace: str, research: dict[str, str],
                                              tmp_path: Path) -> None:
    def suspended() -> Any:
        return cluster.kubectl_json("get", "researchrun", RUN, "-n", namespace)["spec"].get("suspend")

    assert not suspended()
    out = kubectl_scientist(cluster, tmp_path, "suspend", RUN, "-n", namespace).stdout
    assert "suspended" in out and suspended() is True
    kubectl_scientist(cluster, tmp_path, "resume", RUN, "-n", namespace)
    assert suspended() is False
    # The plugin shows in kubectl's own plugin list.
    env = {**cluster.env(), "PATH": os.pathsep.join([str(plugin_dir(tmp_path)), cluster.env()["PATH"]])}
    listing = subprocess.run([str(cluster.tools.kubectl), "plugin", "list"], capture_output=True, text=True,
                             env=env, timeout=30)
    assert "kubectl-scientist" in listing.stdout
    assert shutil.which("kubectl-scientist", path=env["PATH"])
