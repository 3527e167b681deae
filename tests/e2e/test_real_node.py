"""The images of `make images` on a real node: containerd + runc + kubelet run them, exit codes and logs are real.

Run with `make e2e-real` (KUBESCIENTIST_E2E_REAL_NODE=1); skipped otherwise, and where podman, containerd or
the built images are missing. Every pod here tolerates the real node's taint and selects it, so nothing else
lands on it. What the operator makes of a pod that cannot pull its image, or whose image has no node runtime,
is checked on the pods as the real kubelet reports them (``outcomes.observe``).
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest

import realnode
from kubescientist.adapters.kube.outcomes import observe

pytestmark = [pytest.mark.real_node,
              pytest.mark.root_only("the kubelet manages cgroups, mounts and pod networks")]

REPO = Path(__file__).resolve().parents[2]
VERSION = re.search(r'^appVersion:\s*"?([^"\s]+)', (REPO / "charts/kubescientist/Chart.yaml").read_text(),
                    re.MULTILINE).group(1)  # type: ignore[union-attr]
NODE_IMAGE = f"ghcr.io/kubescientist/node-runtime:{VERSION}-cpu"
MISSING_IMAGE = "registry.invalid/kubescientist/node-runtime:does-not-exist"

# A hostile-ish program: looks for credentials and writable places, then exits with a code of its own.
PROBE = r"""
import json, os, pathlib, sys
found = {
    "uid": os.getuid(), "gid": os.getgid(),
    "token": pathlib.Path("/var/run/secrets/kubernetes.io/serviceaccount").exists(),
    "secret_env": sorted(k for k in os.environ if any(w in k for w in ("SECRET", "TOKEN", "PASSWORD", "AWS_"))),
    "environ": dict(os.environ),
    # Files where credentials would be mounted (an empty /run/secrets is the build secret's mount point).
    "secret_files": [os.path.join(d, f) for top in ("/var/run/secrets", "/run/secrets", "/root/.kube",
                                                    "/etc/kubernetes") for d, _, fs in os.walk(top) for f in fs],
}
for place in ("/", "/opt/venv", "/work", "/tmp"):
    try:
        pathlib.Path(place, "probe").write_text("x")
        found["writable:" + place] = True
    except OSError as err:
        found["writable:" + place] = err.strerror
import numpy, matplotlib, experiment_runtime
found["numpy"] = numpy.__version__
print(json.dumps(found), flush=True)
sys.exit(3)
"""


def pod(name: str, image: str, command: list[str], args: list[str] | None = None) -> dict[str, Any]:
    """A Job-less pod in the restricted profile, pinned to the real node."""
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "nodeSelector": {realnode.REAL_NODE_LABEL[0]: realnode.REAL_NODE_LABEL[1]},
            "tolerations": [realnode.REAL_NODE_TOLERATION],
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "main", "image": image, "imagePullPolicy": "IfNotPresent",
                "command": command, "args": args or [],
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}},
                "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}},
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            }],
            "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
        },
    }


def job(name: str, image: str, command: list[str], args: list[str]) -> dict[str, Any]:
    spec = pod(name, image, command, args)["spec"]
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"backoffLimit": 0, "activeDeadlineSeconds": 120, "template": {"spec": spec}}}


def wait_pod(cluster: Any, namespace: str, selector: list[str], done: Any, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    seen: dict[str, Any] = {}
    while time.monotonic() < deadline:
        seen = cluster.kubectl_json("get", *selector, "-n", namespace)
        items = seen.get("items", [seen]) if "items" in seen else [seen]
        if items and items[0] and done(items[0]):
            return dict(items[0])
        time.sleep(0.5)
    pytest.fail(f"{selector} not done after {timeout:.0f}s: {json.dumps(seen.get('status', seen), indent=1)[:3000]}")


def record(case: str, job_object: dict[str, Any], pods: list[dict[str, Any]]) -> None:
    """With KUBESCIENTIST_RECORD_DIR set (tests/unit/kube/recorded/), keep the objects the real kubelet
    reported, for the unit tests of the outcome classification."""
    where = os.environ.get("KUBESCIENTIST_RECORD_DIR")
    if not where:
        return
    for obj in (job_object, *pods):
        obj.get("metadata", {}).pop("managedFields", None)
    how = "reported by a real kubelet and containerd (tests/e2e/test_real_node.py)"
    Path(where, f"{case}.json").write_text(json.dumps({"job": job_object, "pods": pods, "how": how}, indent=1) + "\n")


def finished(p: dict[str, Any]) -> bool:
    return p.get("status", {}).get("phase") in ("Succeeded", "Failed") and terminated(p) is not None


def terminated(p: dict[str, Any]) -> dict[str, Any] | None:
    statuses = p.get("status", {}).get("containerStatuses") or []
    return statuses[0]["state"].get("terminated") if statuses else None


@pytest.fixture(scope="module")
def node_image(real_node: realnode.RealNode) -> str:
    seconds = real_node.import_image(NODE_IMAGE)
    print(f"[real node] {NODE_IMAGE} in containerd ({seconds:.1f}s to import)")
    return NODE_IMAGE


def test_the_node_runtime_image_runs_a_real_program_in_a_restricted_pod(cluster: Any, restricted_namespace: str,
                                                                          node_image: str) -> None:
    cluster.apply(pod("probe", node_image, ["python", "-c", PROBE]), namespace=restricted_namespace)
    done = wait_pod(cluster, restricted_namespace, ["pod", "probe"], finished)
    state = terminated(done)
    assert state is not None and state["exitCode"] == 3 and done["status"]["phase"] == "Failed", state
    assert done["spec"]["nodeName"] == realnode.NODE_NAME
    logs = cluster.kubectl("logs", "probe", "-n", restricted_namespace).stdout
    found = json.loads(logs.strip().splitlines()[-1])
    assert found["uid"] == 65532 and found["gid"] == 65532
    assert found["token"] is False and found["secret_env"] == [] and found["secret_files"] == []
    assert cluster.s3.secret_key not in logs and "KUBERNETES_SERVICE_HOST" in found["environ"]
    assert found["writable:/"] == found["writable:/opt/venv"] == "Read-only file system"
    assert found["writable:/tmp"] is True and found["numpy"]
    # The message the operator reads is the log tail (FallbackToLogsOnError), from the real container.
    assert '"uid": 65532' in state.get("message", "")


def test_the_runtime_entrypoint_runs_in_the_image(cluster: Any, restricted_namespace: str, node_image: str) -> None:
    """`python -m experiment_runtime` (the image's ENTRYPOINT, the operator's Job command) starts: a bad call
    exits 2 with argparse's usage, from the real process."""
    cluster.apply(pod("usage", node_image, ["python"], ["-m", "experiment_runtime", "no-such-command"]),
                  namespace=restricted_namespace)
    done = wait_pod(cluster, restricted_namespace, ["pod", "usage"], finished)
    state = terminated(done)
    assert state is not None and state["exitCode"] == 2, state
    assert "usage:" in cluster.kubectl("logs", "usage", "-n", restricted_namespace).stdout


def test_an_image_that_does_not_exist_stalls_the_node_with_the_pull_error(cluster: Any, restricted_namespace: str,
                                                                           real_node: realnode.RealNode) -> None:
    cluster.apply(job("nopull", MISSING_IMAGE, ["python"], ["-m", "experiment_runtime", "pod"]),
                  namespace=restricted_namespace)

    def pull_failed(p: dict[str, Any]) -> bool:
        statuses = p.get("status", {}).get("containerStatuses") or []
        waiting = statuses[0]["state"].get("waiting", {}) if statuses else {}
        return waiting.get("reason") in ("ErrImagePull", "ImagePullBackOff") and bool(waiting.get("message"))

    p = wait_pod(cluster, restricted_namespace, ["pods", "-l", "job-name=nopull"], pull_failed)
    job_object = cluster.kubectl_json("get", "job", "nopull", "-n", restricted_namespace)
    record("image-pull-real-node", job_object, [p])
    seen = observe(job_object, [p])
    assert seen.state == "pending" and seen.outcome is None
    assert seen.stalled is not None and f"cannot pull image {MISSING_IMAGE}" in seen.stalled
    assert "registry.invalid" in seen.stalled.split(MISSING_IMAGE, 1)[1], seen.stalled  # containerd's own error


def test_an_image_without_the_node_runtime_is_an_infrastructure_error(cluster: Any, restricted_namespace: str,
                                                                       real_node: realnode.RealNode) -> None:
    """The pause image has no python: the runtime cannot start the command, and the operator says the image is
    wrong instead of blaming the node's program."""
    cluster.apply(job("noentry", realnode.PAUSE_IMAGE, ["python"], ["-m", "experiment_runtime", "pod"]),
                  namespace=restricted_namespace)
    p = wait_pod(cluster, restricted_namespace, ["pods", "-l", "job-name=noentry"],
                 lambda p: p.get("status", {}).get("phase") == "Failed" and terminated(p) is not None)
    job_object = cluster.kubectl_json("get", "job", "noentry", "-n", restricted_namespace)
    record("no-entrypoint-real-node", job_object, [p])
    seen = observe(job_object, [p])
    assert seen.state == "finished" and seen.outcome is not None
    assert seen.outcome.infrastructure and not seen.outcome.buggy
    assert f"the image {realnode.PAUSE_IMAGE} cannot run `python -m experiment_runtime`" in seen.outcome.reason


def test_a_research_run_runs_every_node_in_a_real_pod(cluster: Any, restricted_namespace: str, node_image: str,
                                                       kubescientist_crds: list[str], tmp_path: Path) -> None:
    """The operator (a local process here; in its own pod in test_operator_pod.py) runs a ResearchRun whose
    nodes are pods of the node-runtime image on the real node: code fetched by presigned URL, the native
    template run, results uploaded, the outcome reported through the termination message."""
    from test_operator import OperatorProcess, apply_file, get, prepare, research_run

    namespace, name = restricted_namespace, "realnode"
    prepare(cluster, namespace)
    operator = OperatorProcess(cluster, namespace, tmp_path / "operator.log")
    operator.env = {"KUBESCIENTIST_NODE_IMAGE": node_image, "KUBESCIENTIST_POD_LABELS": "{}"}
    operator.start()
    try:
        run = research_run(name, namespace, cluster, writeup={"enabled": False}, review={"enabled": False},
                           resources={"gpus": 0, "cpu": "500m", "memory": "512Mi", "deadlineSeconds": 120},
                           nodeSelector={realnode.REAL_NODE_LABEL[0]: realnode.REAL_NODE_LABEL[1]},
                           tolerations=[realnode.REAL_NODE_TOLERATION])
        started = time.monotonic()
        apply_file(cluster, run, tmp_path)
        deadline = started + 400
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = get(cluster, "researchrun", namespace, name).get("status", {})
            if status.get("phase") in ("Succeeded", "Failed"):
                break
            time.sleep(1)
        assert status.get("phase") == "Succeeded", json.dumps(status, indent=1) + "\n" + operator.tail()
        nodes = get(cluster, "experimentnodes", namespace)["items"]
        assert {n["spec"]["stage"] for n in nodes} == {"initial", "tuning", "research", "ablation"}
        assert "seed" in {n["spec"]["action"] for n in nodes}
        assert all(n["status"]["phase"] == "Succeeded" for n in nodes), [n["status"] for n in nodes]
        pods = get(cluster, "pods", namespace, selector="kubescientist.io/role=node")["items"]
        assert len(pods) == len(nodes) and {p["spec"]["nodeName"] for p in pods} == {realnode.NODE_NAME}
        for p in pods:
            state = terminated(p)
            assert state is not None and state["exitCode"] == 0 and json.loads(state["message"])["status"] == "succeeded"
            assert p["spec"]["containers"][0]["image"] == node_image
        print(f"[real node] run Succeeded in {time.monotonic() - started:.1f}s with {len(nodes)} nodes in real pods")
    finally:
        cluster.kubectl("delete", "researchruns", "--all", "-n", namespace, "--timeout=60s", check=False, timeout=90)
        operator.stop()


SLEEPER = r"""
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # it will not stop by itself
print("sleeping", flush=True)
time.sleep(600)
"""


def test_a_program_past_its_deadline_is_killed_by_kubernetes(cluster: Any, restricted_namespace: str,
                                                              real_node: realnode.RealNode, node_image: str) -> None:
    """activeDeadlineSeconds ends the Job; the kubelet kills the container, which ignores SIGTERM, after its
    grace period; the operator's classification calls it a timeout of the program."""
    spec = job("sleeper", node_image, ["python", "-c", SLEEPER], [])
    spec["spec"]["activeDeadlineSeconds"] = 6
    spec["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 2
    cluster.apply(spec, namespace=restricted_namespace)
    running = wait_pod(cluster, restricted_namespace, ["pods", "-l", "job-name=sleeper"],
                       lambda p: p.get("status", {}).get("phase") == "Running")
    container_id = running["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    assert container_id in real_node.ctr("tasks", "ls", "-q").stdout
    started = time.monotonic()

    def ended() -> bool:
        job_object = cluster.kubectl_json("get", "job", "sleeper", "-n", restricted_namespace)
        failed = [c for c in job_object.get("status", {}).get("conditions", [])
                  if c["type"] == "Failed" and c["status"] == "True"]
        return bool(failed) and failed[0]["reason"] == "DeadlineExceeded" and \
            container_id not in real_node.ctr("tasks", "ls", "-q").stdout

    deadline = time.monotonic() + 60
    while not ended():
        assert time.monotonic() < deadline, "the Job's deadline did not end the container"
        time.sleep(0.5)
    waited = time.monotonic() - started
    assert waited < 30, f"the container outlived its deadline by {waited:.0f}s"
    job_object = cluster.kubectl_json("get", "job", "sleeper", "-n", restricted_namespace)
    pods = cluster.kubectl_json("get", "pods", "-l", "job-name=sleeper", "-n", restricted_namespace)["items"]
    seen = observe(job_object, pods, seen_running=True)
    assert seen.outcome is not None and seen.outcome.buggy and seen.outcome.reason.startswith("timeout")


# A node pod's view of the network: which of these it can open a TCP connection to. It retries until the
# policy is in force (kube-router syncs a new pod's firewall a moment after the pod appears), at most 30 s.
REACH = r"""
import json, socket, sys, time
targets = json.loads(sys.argv[1])
def reach(host, port):
    try:
        socket.create_connection((host, port), timeout=2).close()
        return "open"
    except OSError as err:
        return err.strerror or str(err)
started = time.monotonic()
while True:
    seen = {name: reach(*where) for name, where in targets.items()}
    if sys.argv[2] == "free" or seen["apiserver"] != "open" or time.monotonic() - started > 30:
        break
    time.sleep(0.5)
seen["seconds"] = round(time.monotonic() - started, 1)
print(json.dumps(seen), flush=True)
"""


def test_the_charts_network_policy_lets_node_pods_reach_object_storage_only(
        cluster: Any, restricted_namespace: str, node_image: str, tmp_path: Path) -> None:
    """The chart's NetworkPolicy, enforced by kube-router on the real node: a pod labelled as the operator labels
    node pods reaches S3 and nothing else (not the apiserver, directly or as the `kubernetes` Service, not
    another pod such as the operator); an unlabelled pod in the same namespace reaches all of them."""
    namespace = restricted_namespace
    s3_port = int(cluster.s3.host.rsplit(":", 1)[1])
    values = {"networkPolicy": {"enabled": True, "namespaces": [namespace],
                                "objectStorage": {"cidrs": [f"{cluster.pod_network}/32"], "ports": [s3_port]}}}
    values_path = tmp_path / "values.yaml"
    values_path.write_text(json.dumps(values))
    rendered = cluster.helm("template", "np", str(REPO / "charts/kubescientist"), "--namespace", namespace,
                            "-f", str(values_path), "--show-only", "templates/networkpolicy.yaml").stdout
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=rendered)
    # Something listening in the namespace, as the operator's metrics port would be.
    listener = pod("listener", node_image, ["python", "-m", "http.server", "8080", "--directory", "/tmp"])
    cluster.apply(listener, namespace=namespace)
    ip = wait_pod(cluster, namespace, ["pod", "listener"],
                  lambda p: p.get("status", {}).get("phase") == "Running" and bool(p["status"].get("podIP")))
    targets = {"s3": [cluster.pod_network, s3_port], "apiserver": [cluster.pod_network, cluster.api_port],
               "kubernetes-service": ["10.0.0.1", 443], "other-pod": [ip["status"]["podIP"], 8080]}
    results = {}
    for name, labels in (("free", {}), ("node", {"app.kubernetes.io/managed-by": "kubescientist",
                                                  "kubescientist.io/role": "node"})):
        probe = pod(f"probe-{name}", node_image, ["python", "-c", REACH, json.dumps(targets), name])
        probe["metadata"]["labels"] = labels
        cluster.apply(probe, namespace=namespace)
        done = wait_pod(cluster, namespace, ["pod", f"probe-{name}"], finished)
        results[name] = json.loads(cluster.kubectl("logs", f"probe-{name}", "-n", namespace).stdout.strip())
        assert (terminated(done) or {}).get("exitCode") == 0, results
    free, node = results["free"], results["node"]
    assert all(free[name] == "open" for name in targets), free
    assert node["s3"] == "open", node
    assert all(node[name] != "open" for name in ("apiserver", "kubernetes-service", "other-pod")), node
    print(f"[real node] NetworkPolicy in force {node['seconds']}s after the pod started: {node}")
