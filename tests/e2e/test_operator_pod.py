"""`helm install` of charts/kubescientist on the real node: the operator runs in its own pod, from the image
`make images` built, with the chart's ServiceAccount, RBAC and security settings, and runs a ResearchRun whose
nodes are real pods of the node-runtime image.

Run with `make e2e-real` (KUBESCIENTIST_E2E_REAL_NODE=1); skipped otherwise. The operator finds the apiserver as
any in-cluster client does, through the `kubernetes` Service (kube-proxy on the real node routes it); the values
only pin the operator to the real node and the node image to its CPU variant.
The writeup and review Jobs run the writeup image there too, and `kubectl scientist paper` downloads the PDF.
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

import realnode
from test_operator import apply_file, get, prepare, research_run, s3_client
from test_plugin import kubectl_scientist
from test_real_node import NODE_IMAGE, VERSION, terminated

pytestmark = [pytest.mark.real_node,
              pytest.mark.root_only("the kubelet manages cgroups, mounts and pod networks")]

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "kubescientist"
OPERATOR_IMAGE = f"ghcr.io/kubescientist/operator:{VERSION}"
WRITEUP_IMAGE = f"ghcr.io/kubescientist/writeup:{VERSION}"


def wait(what: str, check: Any, timeout: float, detail: Any = lambda: "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{detail()}")


def test_helm_installed_operator_pod_runs_a_research_run_on_the_real_node(
        cluster: Any, restricted_namespace: str, real_node: realnode.RealNode, kubescientist_crds: list[str],
        tmp_path: Path) -> None:
    namespace, release = restricted_namespace, f"ks{secrets.token_hex(2)}"
    imported = {image: real_node.import_image(image) for image in (OPERATOR_IMAGE, NODE_IMAGE, WRITEUP_IMAGE)}
    print(f"[real node] images in containerd: {imported}")
    values = {
        "operator": {
            "watchNamespaces": [namespace], "resyncSeconds": 5,
            "nodeSelector": {realnode.REAL_NODE_LABEL[0]: realnode.REAL_NODE_LABEL[1]},
            "tolerations": [realnode.REAL_NODE_TOLERATION],
        },
        "nodes": {"image": {"tag": NODE_IMAGE.rsplit(":", 1)[1]}},
    }
    values_path = tmp_path / "values.yaml"
    values_path.write_text(yaml.safe_dump(values))
    prepare(cluster, namespace)
    cluster.helm("install", release, str(CHART), "--namespace", namespace, "-f", str(values_path), timeout=180)
    selector = "app.kubernetes.io/component=operator"

    def operator_pod() -> dict[str, Any] | None:
        pods = get(cluster, "pods", namespace, selector=selector)["items"]
        ready = [p for p in pods if any(c["type"] == "Ready" and c["status"] == "True"
                                        for c in p.get("status", {}).get("conditions", []))]
        return ready[0] if ready else None

    try:
        pod = wait("the operator pod Ready", operator_pod, 180,
                   lambda: json.dumps(get(cluster, "pods", namespace)["items"], indent=1)[-3000:])
        spec = pod["spec"]
        container = spec["containers"][0]
        assert spec["nodeName"] == realnode.NODE_NAME and container["image"] == OPERATOR_IMAGE
        assert spec["serviceAccountName"] == f"{release}-kubescientist-operator"
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["runAsNonRoot"] is True or spec["securityContext"]["runAsNonRoot"] is True

        name = "inpod"
        run = research_run(name, namespace, cluster,
                           resources={"gpus": 0, "cpu": "500m", "memory": "512Mi", "deadlineSeconds": 120},
                           nodeSelector={realnode.REAL_NODE_LABEL[0]: realnode.REAL_NODE_LABEL[1]},
                           tolerations=[realnode.REAL_NODE_TOLERATION])
        started = time.monotonic()
        apply_file(cluster, run, tmp_path)

        def logs() -> str:
            return str(cluster.kubectl("logs", "-n", namespace, "-l", selector, "--tail=60", check=False).stdout)

        def settled() -> dict[str, Any] | None:
            status: dict[str, Any] = get(cluster, "researchrun", namespace, name).get("status", {})
            return status if status.get("phase") in ("Succeeded", "Failed") else None

        status = wait(f"ResearchRun {name} to finish", settled, 500, logs)
        assert status["phase"] == "Succeeded", json.dumps(status, indent=1) + "\n" + logs()
        nodes = get(cluster, "experimentnodes", namespace)["items"]
        assert {n["spec"]["stage"] for n in nodes} == {"initial", "tuning", "research", "ablation"}
        pods = get(cluster, "pods", namespace, selector="kubescientist.io/role=node")["items"]
        assert len(pods) == len(nodes) and {p["spec"]["nodeName"] for p in pods} == {realnode.NODE_NAME}
        assert all((terminated(p) or {}).get("exitCode") == 0 for p in pods)
        # The writeup and review ran as pods of the writeup image on the real node, and left their results.
        for role in ("writeup", "review"):
            role_pods = get(cluster, "pods", namespace, selector=f"kubescientist.io/role={role}")["items"]
            assert role_pods and all(p["spec"]["containers"][0]["image"] == WRITEUP_IMAGE for p in role_pods)
            assert all(p["spec"]["nodeName"] == realnode.NODE_NAME for p in role_pods)
            assert (terminated(role_pods[-1]) or {}).get("exitCode") == 0, role_pods[-1]["status"]
        conditions = {c["type"]: c for c in status["conditions"]}
        assert conditions["WritingUp"]["reason"] == "WriteupSucceeded"
        assert conditions["Reviewing"]["reason"] == "ReviewSucceeded"
        s3 = s3_client(cluster)
        review_key = status["review"]["uri"].removeprefix(f"s3://{cluster.s3.bucket}/")
        review = json.loads(s3.get_object(cluster.s3.bucket, review_key).read())
        assert review["decision"] == status["review"]["decision"]
        paper = tmp_path / "paper.pdf"
        kubectl_scientist(cluster, tmp_path, "paper", name, "-n", namespace, "-o", str(paper))
        assert paper.read_bytes().startswith(b"%PDF") and paper.stat().st_size > 10_000
        # The operator's own log, from its container through the kubelet: kopf served this run.
        full_log = cluster.kubectl("logs", "-n", namespace, "-l", selector, "--tail=-1").stdout
        assert f"{namespace}/{name}" in full_log or f"[{namespace}/{name}]" in full_log, full_log[-3000:]
        print(f"[real node] operator pod ran {name} to Succeeded in {time.monotonic() - started:.1f}s "
              f"({len(nodes)} node pods, writeup and review pods, a {paper.stat().st_size} byte PDF)")
    finally:
        cluster.kubectl("delete", "researchruns", "--all", "-n", namespace, "--timeout=60s", check=False, timeout=90)
        cluster.helm("uninstall", release, "--namespace", namespace, "--wait", "--timeout", "60s", check=False)
