"""The operator on the real control plane: `kubectl apply` a ResearchRun and the cluster does the research.

The operator runs as a subprocess (``python -m kubescientist.adapters.kube``) with the cluster's admin
kubeconfig; node pods are scheduled by the real scheduler onto kwok's fake GPU nodes and really executed
by the kubelet harness (tests/e2e/kubelet_harness.py); results, code, the paper and its review go
through the cluster's real S3 server. Namespaces enforce Pod Security ``restricted``, so every pod the
operator creates is admitted only if its spec complies.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import minio
import pytest
import yaml

from kubelet_harness import HARNESS_LABEL, ContainerRun, KubeletHarness

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "tests" / "fixtures" / "native_template"
LATEX = shutil.which("pdflatex") is not None
"""The writeup pod compiles LaTeX; where there is none, the run is checked without writeup and review."""
GPUS_PER_NODE_POD = 5
"""More than half a fake node's 8 GPUs: two node pods can only run at once on different machines."""


def say(message: str) -> None:
    print(message, file=sys.__stderr__, flush=True)


def _die_with_parent() -> None:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class OperatorProcess:
    """The operator as a subprocess serving one namespace; SIGKILL-able and restartable."""

    def __init__(self, cluster: Any, namespace: str, log: Path) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.env: dict[str, str] = {}
        """Settings over the defaults below (test_real_node.py runs its nodes from a real image)."""

    def start(self) -> None:
        env = {**self.cluster.env(), "PYTHONPATH": os.pathsep.join([str(REPO / "operator"), str(REPO)]),
               "KUBESCIENTIST_POD_LABELS": json.dumps({HARNESS_LABEL: "true"}),
               "KUBESCIENTIST_NODE_IMAGE": "registry.example/kubescientist/node-runtime:e2e",
               "KUBESCIENTIST_RESYNC_SECONDS": "5", **self.env}
        with open(self.log, "ab") as out:
            out.write(f"\n===== start {self.starts + 1} =====\n".encode())
            self.proc = subprocess.Popen([sys.executable, "-m", "kubescientist.adapters.kube", "-n", self.namespace],
                                         env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         preexec_fn=_die_with_parent)
        self.starts += 1

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def research_run(name: str, namespace: str, cluster: Any, **spec: Any) -> dict[str, Any]:
    """A small, fast ResearchRun on the native test template (a few seconds per node)."""
    body: dict[str, Any] = {
        "idea": {"inline": {"title": "Does momentum help gradient descent on a line?",
                            "hypothesis": "Heavy-ball momentum reaches a better fit in the same number of steps."}},
        "template": {"configMapRef": {"name": "template"}},
        "objective": {"metric": "val_r2", "direction": "maximize"},
        "stages": [{"name": "initial", "maxNodes": 1}, {"name": "tuning", "maxNodes": 2},
                   {"name": "research", "maxNodes": 1}, {"name": "ablation", "maxNodes": 1}],
        "search": {"parallelism": 2, "drafts": 1},
        "resources": {"gpus": GPUS_PER_NODE_POD, "cpu": "500m", "memory": "512Mi", "deadlineSeconds": 120},
        "seeds": 1,
        "nodeSelector": {"nvidia.com/gpu.present": "true"},
        "storage": {"s3": {"endpoint": cluster.s3.endpoint, "bucket": cluster.s3.bucket, "prefix": "e2e",
                           "secretRef": {"name": "s3-credentials"}}},
    }
    body.update(spec)
    return {"apiVersion": "kubescientist.io/v1alpha1", "kind": "ResearchRun",
            "metadata": {"name": name, "namespace": namespace}, "spec": body}


def prepare(cluster: Any, namespace: str) -> None:
    """The run's Secret (S3 identity, read by the operator only) and its template ConfigMap."""
    cluster.apply([
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3-credentials", "namespace": namespace},
         "stringData": {"AWS_ACCESS_KEY_ID": cluster.s3.access_key, "AWS_SECRET_ACCESS_KEY": cluster.s3.secret_key}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "template", "namespace": namespace},
         "data": {p.name: p.read_text() for p in sorted(TEMPLATE.iterdir()) if p.is_file()}},
    ])


def apply_file(cluster: Any, manifest: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / f"{manifest['metadata']['name']}.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    cluster.kubectl("apply", "-f", str(path))


def s3_client(cluster: Any) -> minio.Minio:
    return minio.Minio(cluster.s3.host, access_key=cluster.s3.access_key, secret_key=cluster.s3.secret_key,
                       secure=False, region=cluster.s3.region)


def get(cluster: Any, kind: str, namespace: str, name: str | None = None, selector: str | None = None) -> Any:
    args = ["get", kind, "-n", namespace] + ([name] if name else []) + (["-l", selector] if selector else [])
    return cluster.kubectl_json(*args)


def wait_phase(cluster: Any, operator: OperatorProcess, harness: KubeletHarness, namespace: str, name: str,
               phases: tuple[str, ...], timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    run: dict[str, Any] = {}
    while time.monotonic() < deadline:
        run = get(cluster, "researchrun", namespace, name)
        if run.get("status", {}).get("phase") in phases:
            return run
        time.sleep(0.5)
    pytest.fail(f"run {name} not {phases} after {timeout:.0f}s: status {json.dumps(run.get('status'), indent=1)}\n"
                f"harness errors: {harness.errors}\noperator log:\n{operator.tail()}")


def reaction_latencies(harness: KubeletHarness, namespace: str) -> list[float]:
    """For each node pod after the first: seconds from the last container end reported before it was first
    seen to that moment (node finished -> next pod exists, as far as a 0.1 s poll can tell)."""
    runs = [r for r in harness.runs.values() if r.namespace == namespace and r.labels.get("kubescientist.io/role") == "node"]
    reported = sorted(r.reported for r in runs if r.reported)
    out = []
    for run in sorted(runs, key=lambda r: r.seen):
        before = [t for t in reported if t <= run.seen]
        if before and run.seen - before[-1] < 30:
            out.append(run.seen - before[-1])
    return out


def overlapping(runs: list[ContainerRun]) -> list[tuple[ContainerRun, ContainerRun]]:
    pairs = []
    for i, a in enumerate(runs):
        for b in runs[i + 1:]:
            if a.started < b.finished and b.started < a.finished:
                pairs.append((a, b))
    return pairs


@pytest.fixture
def operator(cluster: Any, restricted_namespace: str, kubescientist_crds: list[str],
             tmp_path: Path) -> Iterator[OperatorProcess]:
    prepare(cluster, restricted_namespace)
    process = OperatorProcess(cluster, restricted_namespace, tmp_path / "operator.log")
    process.start()
    try:
        yield process
    finally:
        # Runs carry the operator's finalizer: delete them while it still runs, so the namespace can go.
        if process.proc is not None and process.proc.poll() is None:
            cluster.kubectl("delete", "researchruns", "--all", "-n", restricted_namespace, "--timeout=60s",
                            check=False, timeout=90)
        process.stop()


@pytest.fixture
def harness(cluster: Any, restricted_namespace: str) -> Iterator[KubeletHarness]:
    with KubeletHarness(cluster.kubeconfig, [restricted_namespace], parallel=2) as running:
        yield running


def test_a_research_run_runs_to_a_reviewed_paper(cluster: Any, restricted_namespace: str, operator: OperatorProcess,
                                                  harness: KubeletHarness, tmp_path: Path) -> None:
    namespace, name = restricted_namespace, "momentum"
    started = time.monotonic()
    extra = {} if LATEX else {"writeup": {"enabled": False}, "review": {"enabled": False}}
    apply_file(cluster, research_run(name, namespace, cluster, **extra), tmp_path)

    # ExperimentNodes and their Jobs appear, owned and labelled as promised.
    cluster.wait_for("the first ExperimentNode and its Job",
                     lambda: bool(get(cluster, "jobs", namespace, selector="kubescientist.io/role=node")["items"]), 60)
    run = get(cluster, "researchrun", namespace, name)
    first = get(cluster, "experimentnode", namespace, f"{name}-n0000")
    assert first["spec"]["action"] == "draft" and first["spec"]["code"]["hash"].startswith("sha256:")
    assert first["metadata"]["ownerReferences"][0]["uid"] == run["metadata"]["uid"]
    assert first["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "kubescientist",
                                           "kubescientist.io/run": name, "kubescientist.io/node": "n0000",
                                           "kubescientist.io/role": "node"}
    job = get(cluster, "job", namespace, f"{name}-n0000-a1")
    assert job["metadata"]["ownerReferences"][0]["uid"] == first["metadata"]["uid"]
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["activeDeadlineSeconds"] == 120 + 120
    pod_spec = job["spec"]["template"]["spec"]
    container = pod_spec["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == str(GPUS_PER_NODE_POD)
    assert container["resources"]["requests"]["cpu"] == container["resources"]["limits"]["cpu"] == "500m"
    assert pod_spec["automountServiceAccountToken"] is False and pod_spec["nodeSelector"]
    assert not any("secret" in json.dumps(v).lower() for v in pod_spec.get("volumes", []))
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["command"] == ["python"] and container["args"][:3] == ["-m", "experiment_runtime", "pod"]

    run = wait_phase(cluster, operator, harness, namespace, name, ("Succeeded", "Failed"), timeout=300)
    duration = time.monotonic() - started
    status = run["status"]
    assert status["phase"] == "Succeeded", json.dumps(status, indent=1) + "\n" + operator.tail()
    assert not harness.errors, harness.errors

    # The search went through the four stages, with seed re-evaluation, every node a real program run.
    nodes = get(cluster, "experimentnodes", namespace)["items"]
    assert {n["spec"]["stage"] for n in nodes} == {"initial", "tuning", "research", "ablation"}
    assert {"draft", "tune", "variant", "ablate", "seed"} <= {n["spec"]["action"] for n in nodes}
    assert all(n["status"]["phase"] == "Succeeded" for n in nodes), [n["status"] for n in nodes]
    for node in nodes:
        st = node["status"]
        assert st["metrics"]["linear"]["val_r2"] > -10 and st["jobName"] == f"{node['metadata']['name']}-a1"
        assert st["artifacts"]["uri"].startswith("s3://kubescientist/e2e/runs/") and st["artifacts"]["plots"] == ["fit.png"]
        assert st["conditions"][0]["type"] == "Ready" and st["conditions"][0]["status"] == "True"
    assert status["nodes"]["total"] == status["nodes"]["succeeded"] == len(nodes)
    assert status["stage"] == "ablation" and status["bestNode"]["name"].startswith(f"{name}-n")
    assert status["bestNode"]["seeds"] == 2 and status["bestNode"]["stderr"] >= 0
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["status"] == "True" and conditions["Succeeded"]["status"] == "True"
    assert conditions["Searching"]["status"] == conditions["Failed"]["status"] == "False"
    if LATEX:
        assert conditions["WritingUp"]["reason"] == "WriteupSucceeded"
        assert conditions["Reviewing"]["reason"] == "ReviewSucceeded"
    assert all(c["observedGeneration"] == run["metadata"]["generation"] for c in status["conditions"])
    assert status["cost"]["gpuSeconds"] > 0

    # Pods ran on the fake GPU nodes, and the real scheduler honoured nvidia.com/gpu: two node pods that ran
    # at the same time (5 + 5 GPUs) never shared an 8-GPU node.
    node_runs = [r for r in harness.runs.values() if r.labels.get("kubescientist.io/role") == "node"]
    assert len(node_runs) == len(nodes) and all(r.node.startswith("kwok-gpu-") for r in node_runs)
    assert all(r.exit_code == 0 for r in node_runs)
    together = overlapping(node_runs)
    assert together, "parallelism 2 never ran two nodes at once"
    assert all(a.node != b.node for a, b in together)

    # Writeup and review ran as Jobs; the paper and the review are in S3 and summarised in status.
    s3 = s3_client(cluster)
    if LATEX:
        roles = {j["metadata"]["labels"]["kubescientist.io/role"] for j in get(cluster, "jobs", namespace)["items"]}
        assert roles == {"node", "writeup", "review"}
        paper_key = status["paper"]["uri"].removeprefix(f"s3://{cluster.s3.bucket}/")
        assert s3.stat_object(cluster.s3.bucket, paper_key).size > 10_000
        review_key = status["review"]["uri"].removeprefix(f"s3://{cluster.s3.bucket}/")
        review = json.loads(s3.get_object(cluster.s3.bucket, review_key).read())
        assert review["decision"] == status["review"]["decision"] and review["overall"] == status["review"]["overall"]
    else:
        say("[e2e operator] no pdflatex on this machine: writeup and review were disabled for this run")
    journal = json.loads(s3.get_object(cluster.s3.bucket, f"e2e/runs/{namespace}/{name}/journal.json").read())
    assert len(journal["nodes"]) == len(nodes) and journal["phase"] == "succeeded"

    # kubectl get rr shows phase, stage, done/total, best metric and age.
    table = cluster.kubectl("get", "rr", name, "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "PHASE", "STAGE", "DONE", "TOTAL", "BEST", "AGE"]
    row = table[1].split()
    assert row[:5] == [name, "Succeeded", "ablation", str(len(nodes)), str(len(nodes))]
    assert float(row[5]) == pytest.approx(status["bestNode"]["metric"], rel=1e-6)
    wide = cluster.kubectl("get", "rr", name, "-n", namespace, "-o", "wide").stdout.splitlines()
    assert wide[0].split()[7:11] == ["METRIC", "BEST-NODE", "QUEUED", "MESSAGE"] and status["bestNode"]["name"] in wide[1]

    # Events for node outcomes and stage changes.
    events = get(cluster, "events", namespace)["items"]
    reasons = {e["reason"] for e in events if e["involvedObject"]["kind"] == "ResearchRun"}
    assert {"NodeSucceeded", "StageStarted", "StageEnded", "SearchEnded"} <= reasons
    assert not LATEX or {"PaperWritten", "PaperReviewed"} <= reasons

    latencies = reaction_latencies(harness, namespace)
    say(f"[e2e operator] run Succeeded in {duration:.1f}s with {len(nodes)} nodes + writeup + review; "
        f"reaction latency node finished -> next pod: median {statistics.median(latencies):.2f}s, "
        f"max {max(latencies):.2f}s over {len(latencies)}")
