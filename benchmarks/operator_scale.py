"""The operator at scale on the test control plane: reaction latency, memory and API writes per node.

Starts the e2e control plane (tests/e2e/cluster: real etcd, apiserver, scheduler and controller manager;
kwok plays the kubelet of ``--gpu-nodes`` fake GPU nodes; SeaweedFS serves S3), the operator as a
subprocess, and a fake kubelet: node pods are labelled for it (kwok leaves them Running), and it ends each
one ``--run-seconds`` after kwok reported it Running, with a plausible result in its termination message,
without running any program. ``--runs`` ResearchRuns, each ``--parallelism`` wide and ``--nodes`` nodes
big, run at once. Printed:

- reaction: for each Job of a run after its first, milliseconds from the run's latest pod finish before it
  (the fake kubelet's status write) to that Job's creation as the watch delivers it; p50, p95, max;
- operator RSS with the runs' ExperimentNodes, and after ExperimentNodes are added up to ``--total-nodes``
  (objects the operator indexes and must keep in memory; they belong to no live run);
- API writes per node: the operator's own count (``kubescientist_kubernetes_api_writes_total``) divided by
  the ExperimentNodes its runs created, in all and by verb and resource;
- the operator's reconcile pass durations (p50/p95 from its histogram) and its CPU seconds.

    python benchmarks/operator_scale.py [--runs 20] [--parallelism 12] [--nodes 56] [--gpu-nodes 100]
                                        [--run-seconds 5] [--total-nodes 10000]

Needs the control-plane binaries (tests/e2e/cluster/build.sh, cached under ~/.cache/kubescientist/bin).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import heapq
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

import kubernetes
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e" / "cluster"))

import cluster as control_plane  # noqa: E402

TEMPLATE = {
    "kubescientist.yaml": (
        "apiVersion: kubescientist.io/v1alpha1\nkind: ExperimentTemplate\nname: scale\n"
        "description: never runs; its search space is wide enough for any number of nodes\n"
        "entrypoint: train.py\nsearchSpace:\n  hyperparameters:\n"
        "    lr: {type: float, low: 1.0e-5, high: 1.0, log: true, default: 1.0e-3}\n"
        "    wd: {type: float, low: 1.0e-6, high: 1.0e-1, log: true, default: 1.0e-4}\n"
        "  variants:\n    - {name: wide, description: twice the width, params: {width: 2}}\n"
        "  ablations:\n    - {name: no_bias, description: no intercept, params: {bias: false}}\n"),
    "train.py": "raise SystemExit('the fake kubelet never runs this')\n",
}
"""The run's template: only its search space matters (no program runs)."""
FAKE_KUBELET_LABEL = "kubescientist.io/harness-kubelet"
"""Pods with this label are not finished by kwok (kwok-stages.yaml); the fake kubelet here ends them."""


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def research_run(name: str, namespace: str, cluster: Any, nodes: int, parallelism: int) -> dict[str, Any]:
    tuning = max(1, nodes - 2 * parallelism - 4)
    return {"apiVersion": "kubescientist.io/v1alpha1", "kind": "ResearchRun",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "idea": {"inline": {"title": "scale", "hypothesis": "the operator keeps up"}},
                "template": {"configMapRef": {"name": "template"}},
                "objective": {"metric": "val_r2", "direction": "maximize"},
                "stages": [{"name": "initial", "maxNodes": parallelism}, {"name": "tuning", "maxNodes": tuning},
                           {"name": "research", "maxNodes": parallelism}, {"name": "ablation", "maxNodes": 1}],
                "search": {"parallelism": parallelism, "drafts": parallelism},
                "budget": {"maxTotalNodes": nodes},
                "resources": {"gpus": 1, "cpu": "100m", "memory": "128Mi", "deadlineSeconds": 600},
                "seeds": 1, "writeup": {"enabled": False}, "review": {"enabled": False},
                "nodeSelector": {"nvidia.com/gpu.present": "true"},
                "storage": {"s3": {"endpoint": cluster.s3.endpoint, "bucket": cluster.s3.bucket, "prefix": "scale",
                                   "secretRef": {"name": "s3-credentials"}}},
            }}


def result_message(seed: int) -> str:
    """What the node runtime would leave in the termination message of a good node."""
    return json.dumps({"status": "succeeded", "buggy": False, "buggyReason": None, "durationSeconds": 1.0,
                       "codeHash": "sha256:" + "0" * 64,
                       "metrics": {"linear": {"val_r2": 0.9 + (seed % 97) * 1e-4}}}, separators=(",", ":"))


class FakeKubelet:
    """Ends node pods kwok reported Running, after ``run_seconds``, as a kubelet would after the program."""

    def __init__(self, namespace: str, run_seconds: float, workers: int = 8) -> None:
        self.namespace = namespace
        self.run_seconds = run_seconds
        self.core = kubernetes.client.CoreV1Api()
        self.batch = kubernetes.client.BatchV1Api()
        self.due: list[tuple[float, str, str]] = []
        self.lock = threading.Condition()
        self.scheduled: set[str] = set()
        self.finished: dict[str, list[float]] = defaultdict(list)
        """Run -> epoch seconds of each pod end written."""
        self.jobs_seen: dict[str, list[float]] = defaultdict(list)
        """Run -> epoch seconds each node Job was first seen (the watch's delivery)."""
        self.stopped = threading.Event()
        self.threads = [threading.Thread(target=self._watch_pods, daemon=True),
                        threading.Thread(target=self._watch_jobs, daemon=True)]
        self.threads += [threading.Thread(target=self._finisher, daemon=True) for _ in range(workers)]
        for thread in self.threads:
            thread.start()

    def _watch_pods(self) -> None:
        while not self.stopped.is_set():
            watch = kubernetes.watch.Watch()
            for event in watch.stream(self.core.list_namespaced_pod, self.namespace,
                                      label_selector=f"{FAKE_KUBELET_LABEL}=true", timeout_seconds=60):
                pod = event["object"]
                if pod.status.phase == "Running" and pod.metadata.name not in self.scheduled:
                    self.scheduled.add(pod.metadata.name)
                    with self.lock:
                        heapq.heappush(self.due, (time.time() + self.run_seconds, pod.metadata.name,
                                                  pod.metadata.labels.get("kubescientist.io/run", "")))
                        self.lock.notify()
                if self.stopped.is_set():
                    return

    def _watch_jobs(self) -> None:
        seen: set[str] = set()
        while not self.stopped.is_set():
            watch = kubernetes.watch.Watch()
            for event in watch.stream(self.batch.list_namespaced_job, self.namespace,
                                      label_selector="kubescientist.io/role=node", timeout_seconds=60):
                job = event["object"]
                if event["type"] == "ADDED" and job.metadata.name not in seen:
                    seen.add(job.metadata.name)
                    self.jobs_seen[job.metadata.labels.get("kubescientist.io/run", "")].append(time.time())
                if self.stopped.is_set():
                    return

    def _finisher(self) -> None:
        while not self.stopped.is_set():
            with self.lock:
                while not self.due or self.due[0][0] > time.time():
                    self.lock.wait(timeout=0.05 if self.due else 0.5)
                    if self.stopped.is_set():
                        return
                _, name, run = heapq.heappop(self.due)
            self._finish(name, run)

    def _finish(self, name: str, run: str) -> None:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        try:
            pod = self.core.read_namespaced_pod(name, self.namespace)
        except kubernetes.client.exceptions.ApiException:
            return
        config = next((a for a in pod.spec.containers[0].args or [] if a.startswith("{")), "{}")
        seed = int(json.loads(config).get("seed", 0)) if config.startswith("{") else 0
        container = pod.spec.containers[0]
        started = (pod.status.start_time.strftime("%Y-%m-%dT%H:%M:%SZ") if pod.status.start_time else now)
        status = {"phase": "Succeeded", "containerStatuses": [{
            "name": container.name, "image": container.image, "imageID": f"fake://{container.image}",
            "containerID": f"fake://{name}", "ready": False, "started": False, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": started, "finishedAt": now,
                                     "message": result_message(seed)}}}],
            "conditions": [{"type": t, "status": "False", "reason": "PodCompleted", "lastTransitionTime": now}
                           for t in ("Ready", "ContainersReady")]}
        try:
            self.core.patch_namespaced_pod_status(name, self.namespace, {"status": status})
        except kubernetes.client.exceptions.ApiException:
            return
        self.finished[run].append(time.time())

    def reactions(self) -> list[float]:
        """Seconds from the latest finish of a run to each next Job of that run (within 60 s)."""
        out = []
        for run, jobs in self.jobs_seen.items():
            ends = sorted(self.finished.get(run, ()))
            for seen in jobs:
                before = [t for t in ends if t <= seen]
                if before and seen - before[-1] < 60:
                    out.append(seen - before[-1])
        return out

    def stop(self) -> None:
        self.stopped.set()
        with self.lock:
            self.lock.notify_all()


def scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    sums: dict[str, float] = defaultdict(float)
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name_labels, _, value = line.rpartition(" ")
        name = name_labels.split("{", 1)[0]
        try:
            sums[name] += float(value)
        except ValueError:
            continue
        if name == "kubescientist_kubernetes_api_writes_total":
            verb = name_labels.split('verb="', 1)[1].split('"', 1)[0]
            resource = name_labels.split('resource="', 1)[1].split('"', 1)[0]
            sums[f"writes {verb} {resource}"] += float(value)
        if name == "kubescientist_reconcile_duration_seconds_bucket" and 'result="ok"' in name_labels:
            le = name_labels.split('le="', 1)[1].split('"', 1)[0]
            sums[f"reconcile_le_{le}"] += float(value)
    return sums


def histogram_quantile(sums: dict[str, float], q: float) -> float:
    buckets = sorted((float(k.removeprefix("reconcile_le_")), v) for k, v in sums.items()
                     if k.startswith("reconcile_le_"))
    total = buckets[-1][1] if buckets else 0.0
    for le, count in buckets:
        if count >= q * total:
            return le
    return float("nan")


def add_idle_nodes(namespace: str, count: int) -> None:
    """ExperimentNodes of no live run, for the operator's index to hold (as finished runs' nodes are)."""
    custom = kubernetes.client.CustomObjectsApi()

    def create(i: int) -> None:
        body = {"apiVersion": "kubescientist.io/v1alpha1", "kind": "ExperimentNode",
                "metadata": {"name": f"idle-n{i:05d}", "namespace": namespace,
                             "labels": {"app.kubernetes.io/managed-by": "kubescientist",
                                        "kubescientist.io/run": "idle", "kubescientist.io/node": f"n{i:05d}",
                                        "kubescientist.io/role": "node"}},
                "spec": {"run": "idle", "stage": "initial", "action": "draft",
                         "code": {"hash": "sha256:" + "0" * 64, "uri": "s3://kubescientist/idle"},
                         "config": {"seed": i, "params": {"lr": 0.1}}, "reason": "padding for the memory figure",
                         "resources": {"gpus": 1, "cpu": "100m", "memory": "128Mi", "deadlineSeconds": 600}}}
        custom.create_namespaced_custom_object("kubescientist.io", "v1alpha1", namespace, "experimentnodes", body)

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(create, range(count)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--parallelism", type=int, default=12)
    parser.add_argument("--nodes", type=int, default=56, help="nodes per run (its maxTotalNodes)")
    parser.add_argument("--gpu-nodes", type=int, default=100)
    parser.add_argument("--run-seconds", type=float, default=5.0)
    parser.add_argument("--total-nodes", type=int, default=10_000)
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()

    missing = control_plane.missing_binaries()
    if missing:
        sys.exit(f"operator_scale: the control plane is not built ({', '.join(missing)} missing): run "
                 f"{control_plane.BUILD_SCRIPT} once (~25 min)")
    run_dir = Path(tempfile.mkdtemp(prefix="ks-operator-scale-"))
    say(f"[scale] starting the control plane with {args.gpu_nodes} fake GPU nodes in {run_dir}")
    cluster = control_plane.up(run_dir, gpu_nodes=args.gpu_nodes, die_with_parent=True, log=say)
    operator: subprocess.Popen[bytes] | None = None
    kubelet: FakeKubelet | None = None
    try:
        namespace = "scale"
        cluster.create_namespace(namespace)
        cluster.kubectl("apply", "-f", str(REPO / "crds"))
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/researchruns.kubescientist.io",
                        "crd/experimentnodes.kubescientist.io", timeout=90)
        cluster.apply([
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3-credentials", "namespace": namespace},
             "stringData": {"AWS_ACCESS_KEY_ID": cluster.s3.access_key,
                            "AWS_SECRET_ACCESS_KEY": cluster.s3.secret_key}},
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "template", "namespace": namespace},
             "data": TEMPLATE}])
        kubernetes.config.load_kube_config(config_file=str(cluster.kubeconfig))

        port = free_port()
        env = {**cluster.env(), "PYTHONPATH": os.pathsep.join([str(REPO / "operator"), str(REPO)]),
               "KUBESCIENTIST_POD_LABELS": json.dumps({FAKE_KUBELET_LABEL: "true"}),
               "KUBESCIENTIST_NODE_IMAGE": "registry.example/kubescientist/node-runtime:scale",
               "KUBESCIENTIST_METRICS_PORT": str(port), "KUBESCIENTIST_METRICS_ADDRESS": "127.0.0.1"}
        log = open(run_dir / "operator.log", "wb")
        operator = subprocess.Popen([sys.executable, "-m", "kubescientist.adapters.kube", "-n", namespace], env=env,
                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        process = psutil.Process(operator.pid)
        kubelet = FakeKubelet(namespace, args.run_seconds)

        names = [f"scale-{i:02d}" for i in range(args.runs)]
        cluster.apply([research_run(n, namespace, cluster, args.nodes, args.parallelism) for n in names])
        started = time.monotonic()
        say(f"[scale] {args.runs} runs x {args.nodes} nodes, {args.parallelism} at once each; "
            f"nodes 'run' {args.run_seconds}s")
        custom = kubernetes.client.CustomObjectsApi()
        peak_rss = 0
        while time.monotonic() - started < args.timeout:
            time.sleep(5)
            peak_rss = max(peak_rss, process.memory_info().rss)
            runs = custom.list_namespaced_custom_object("kubescientist.io", "v1alpha1", namespace,
                                                        "researchruns")["items"]
            phases = [(r.get("status") or {}).get("phase") for r in runs]
            done = sum(p in ("Succeeded", "Failed") for p in phases)
            nodes = len(custom.list_namespaced_custom_object("kubescientist.io", "v1alpha1", namespace,
                                                             "experimentnodes")["items"])
            say(f"[scale] {time.monotonic() - started:6.0f}s: {nodes} ExperimentNodes, {done}/{len(runs)} runs "
                f"ended, operator RSS {process.memory_info().rss / 2**20:.0f} MiB")
            if done == len(runs):
                for r in runs:
                    status = r.get("status") or {}
                    say(f"[scale] {r['metadata']['name']}: {status.get('phase')}: {status.get('message')}")
                break
        elapsed = time.monotonic() - started
        metrics = scrape(port)
        nodes = len(custom.list_namespaced_custom_object("kubescientist.io", "v1alpha1", namespace,
                                                         "experimentnodes")["items"])
        writes = metrics.get("kubescientist_kubernetes_api_writes_total", 0.0)
        rss_runs = process.memory_info().rss
        cpu = process.cpu_times()
        reactions = kubelet.reactions()
        kubelet.stop()

        padding = max(0, args.total_nodes - nodes)
        say(f"[scale] adding {padding} idle ExperimentNodes")
        add_idle_nodes(namespace, padding)
        time.sleep(15)  # the operator's watch delivers them into its index
        rss_total = process.memory_info().rss

        print(f"operator scale: {args.runs} runs x {args.nodes} nodes ({nodes} ExperimentNodes), parallelism "
              f"{args.parallelism} per run ({args.runs * args.parallelism} pods at once at most), "
              f"{args.gpu_nodes} fake GPU nodes, nodes 'run' {args.run_seconds}s; {elapsed:.0f}s")
        print(f"reaction (pod finished -> next Job of its run, ms): p50 {quantile(reactions, 0.5) * 1000:.0f}, "
              f"p95 {quantile(reactions, 0.95) * 1000:.0f}, max {max(reactions, default=0) * 1000:.0f} "
              f"over {len(reactions)}")
        print(f"reconcile pass (operator histogram, bucket upper bounds): p50 <= {histogram_quantile(metrics, 0.5)}s, "
              f"p95 <= {histogram_quantile(metrics, 0.95)}s")
        print(f"operator RSS: {rss_runs / 2**20:.0f} MiB with {nodes} ExperimentNodes (peak {peak_rss / 2**20:.0f} "
              f"MiB), {rss_total / 2**20:.0f} MiB with {nodes + padding}")
        print(f"operator CPU: {cpu.user + cpu.system:.1f} s ({(cpu.user + cpu.system) / max(nodes, 1) * 1000:.0f} ms "
              f"per node)")
        print(f"API writes per node: {writes / max(nodes, 1):.2f} ({writes:.0f} writes, by the operator's count): "
              + ", ".join(f"{key.removeprefix('writes ')} {value / max(nodes, 1):.2f}"
                          for key, value in sorted(metrics.items()) if key.startswith("writes ")))
    finally:
        if kubelet is not None:
            kubelet.stop()
        if operator is not None:
            operator.terminate()
            try:
                operator.wait(timeout=20)
            except subprocess.TimeoutExpired:
                operator.kill()
        control_plane.down(run_dir, log=say)


if __name__ == "__main__":
    main()
