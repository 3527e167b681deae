"""A stand-in kubelet for the e2e tests: it really runs the containers of pods on the fake (kwok) nodes.

kwok plays the kubelet of the fake GPU nodes, but it runs nothing: it only writes pod status. For pods
labelled ``kubescientist.io/harness-kubelet: "true"`` kwok stops at Running and leaves the end to this
harness, which does what a kubelet would:

- it picks up a pod once the real scheduler has bound it and kwok reports it Running;
- it runs the pod's container command and args as a local process, with the container's env, in a
  scratch folder standing for the container's filesystem (the pod's emptyDirs, its termination-log file,
  $TMPDIR and $HOME point there; ``python`` is this interpreter; the repository is on PYTHONPATH, as the
  image would have the packages installed);
- it reads the termination message (the file, or the log tail for ``FallbackToLogsOnError`` when the
  file is empty and the container failed, at most 4096 bytes as the kubelet keeps) and writes the
  container's terminated state and the pod phase (Succeeded or Failed) with a status patch, so the real
  Job controller completes or fails the Job;
- a pod deleted while its process runs (Job deadline, eviction) has its process killed.

What it does not do: enforce the pod's securityContext (it runs as the test's user; PSS admission of the
pod spec is checked by the apiserver, not here), resource limits, or image pulls.

``hold_seconds`` keeps each container Running at least that long, so that a test can act while nodes run.
Bounded: it polls every ``poll_seconds``, runs at most ``parallel`` containers at once, kills a container
that outlives ``max_container_seconds``, and stops itself after ``lifetime_seconds`` or on ``stop()``.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import kubernetes

REPO = Path(__file__).resolve().parents[2]
HARNESS_LABEL = "kubescientist.io/harness-kubelet"
MESSAGE_BYTES = 4096
FALLBACK_LINES = 80
FALLBACK_BYTES = 2048


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass
class ContainerRun:
    """One container the harness ran: for the tests' checks and timings."""

    namespace: str
    pod: str
    labels: dict[str, str]
    node: str
    seen: float
    """time.time() when the harness first saw the pod (any phase)."""
    started: float = 0.0
    finished: float = 0.0
    reported: float = 0.0
    """time.time() when the terminated status was written."""
    exit_code: int | None = None
    message: str = ""
    output: str = ""


class KubeletHarness:
    """Runs harness-labelled pods of the given namespaces; ``start()``, then ``stop()``."""

    def __init__(self, kubeconfig: Path, namespaces: list[str], *, parallel: int = 2, poll_seconds: float = 0.1,
                 max_container_seconds: float = 600, lifetime_seconds: float = 1800, hold_seconds: float = 0.0) -> None:
        self.namespaces = namespaces
        self.hold_seconds = hold_seconds
        """Keep each container "running" at least this long (a stand-in for longer experiments)."""
        self.parallel = parallel
        self.poll_seconds = poll_seconds
        self.max_container_seconds = max_container_seconds
        self.lifetime_seconds = lifetime_seconds
        self.api = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
        self.root = Path(tempfile.mkdtemp(prefix="ks-harness-"))
        self.root.chmod(0o755)
        self.runs: dict[str, ContainerRun] = {}
        """By "<namespace>/<pod>": every pod seen, with what happened to it."""
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._slots = threading.Semaphore(parallel)
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._threads: list[threading.Thread] = []
        self._loop = threading.Thread(target=self._poll, name="kubelet-harness", daemon=True)

    # ---- API
    def _call(self, method: str, path: str, query: list[tuple[str, str]] | None = None, body: Any = None) -> Any:
        headers = {"Accept": "application/json", "Content-Type": "application/merge-patch+json"
                   if method == "PATCH" else "application/json"}
        _, url, headers, body, _ = self.api.param_serialize(method, path, query_params=query or [],
                                                            header_params=headers, body=body,
                                                            auth_settings=["BearerToken"])
        response = self.api.call_api(method, url, header_params=headers, body=body, _request_timeout=(5, 30))
        response.read()
        if not 200 <= response.status < 300:
            raise RuntimeError(f"{method} {path}: HTTP {response.status}: {response.data[:300]!r}")
        return json.loads(response.data)

    def _pods(self, namespace: str) -> list[dict[str, Any]]:
        data = self._call("GET", f"/api/v1/namespaces/{namespace}/pods", [("labelSelector", f"{HARNESS_LABEL}=true")])
        return list(data.get("items") or [])

    # ---- lifecycle
    def start(self) -> KubeletHarness:
        self._loop.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._loop.join(timeout=10)
        with self._lock:
            procs = list(self._procs.values())
        for proc in procs:
            _kill(proc)
        for thread in self._threads:
            thread.join(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> KubeletHarness:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- the loop
    def _poll(self) -> None:
        deadline = time.monotonic() + self.lifetime_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            for namespace in self.namespaces:
                try:
                    pods = self._pods(namespace)
                except Exception as err:  # noqa: BLE001 - the apiserver may blip; keep polling
                    self._error(f"list pods in {namespace}: {err}")
                    continue
                present = set()
                for pod in pods:
                    key = f"{namespace}/{pod['metadata']['name']}"
                    present.add(key)
                    self._consider(key, pod)
                self._kill_deleted(namespace, present, pods)
            self._stop.wait(self.poll_seconds)

    def _consider(self, key: str, pod: dict[str, Any]) -> None:
        with self._lock:
            run = self.runs.get(key)
            if run is None:
                meta = pod["metadata"]
                run = self.runs[key] = ContainerRun(namespace=meta["namespace"], pod=meta["name"],
                                                    labels=dict(meta.get("labels") or {}),
                                                    node=pod["spec"].get("nodeName") or "", seen=time.time())
            if run.started or pod["metadata"].get("deletionTimestamp"):
                return
            if pod["status"].get("phase") != "Running" or not pod["spec"].get("nodeName"):
                return
            run.node = pod["spec"]["nodeName"]
            run.started = time.time()
        thread = threading.Thread(target=self._run, args=(key, pod), name=f"container-{run.pod}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _kill_deleted(self, namespace: str, present: set[str], pods: list[dict[str, Any]]) -> None:
        deleting = {f"{namespace}/{p['metadata']['name']}" for p in pods if p["metadata"].get("deletionTimestamp")}
        with self._lock:
            doomed = [proc for key, proc in self._procs.items()
                      if key.startswith(f"{namespace}/") and (key not in present or key in deleting)]
        for proc in doomed:
            _kill(proc)

    def _error(self, message: str) -> None:
        with self._lock:
            if len(self.errors) < 100:
                self.errors.append(message)

    # ---- one container
    def _run(self, key: str, pod: dict[str, Any]) -> None:
        with self._slots:
            if self._stop.is_set():
                return
            try:
                self._execute(key, pod)
            except Exception as err:  # noqa: BLE001 - recorded for the test to show
                self._error(f"{key}: {type(err).__name__}: {err}")

    def _execute(self, key: str, pod: dict[str, Any]) -> None:
        container = pod["spec"]["containers"][0]
        scratch = Path(tempfile.mkdtemp(prefix=f"{pod['metadata']['name']}-", dir=self.root))
        scratch.chmod(0o755)
        mounts = {m["mountPath"]: scratch / m["name"] for m in container.get("volumeMounts") or ()}
        for folder in mounts.values():
            folder.mkdir(exist_ok=True)
            folder.chmod(0o777)
        termination_log = scratch / "termination-log"
        termination_log.write_bytes(b"")

        def local(value: str) -> str:
            for mount, folder in sorted(mounts.items(), key=lambda m: -len(m[0])):
                if value == mount or value.startswith(mount + "/"):
                    return str(folder) + value[len(mount):]
            return value

        env = {e["name"]: local(e.get("value", "")) for e in container.get("env") or ()}
        env.update({
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": os.pathsep.join([str(REPO / "operator"), str(REPO)]),
            "KUBESCIENTIST_TERMINATION_LOG": str(termination_log),
            # The harness runs as root and its interpreter may live where the sandbox user cannot reach; a real
            # pod runs as non-root, where dropping privileges does not apply anyway.
            "KUBESCIENTIST_KEEP_ROOT": "1",
        })
        command = [*container.get("command", []), *container.get("args", [])]
        if command and command[0] in ("python", "python3"):
            command[0] = sys.executable
        workdir = local(container.get("workingDir") or str(scratch))
        started_at = _now()
        proc = subprocess.Popen(command, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        with self._lock:
            self._procs[key] = proc
        try:
            output, _ = proc.communicate(timeout=self.max_container_seconds)
        except subprocess.TimeoutExpired:
            _kill(proc)
            output, _ = proc.communicate()
        finally:
            with self._lock:
                self._procs.pop(key, None)
        left = self.hold_seconds - (time.time() - self.runs[key].started)
        if left > 0:
            self._stop.wait(left)
        code = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
        text = output.decode(errors="replace")
        message = termination_log.read_bytes()[:MESSAGE_BYTES].decode(errors="replace")
        if not message and code != 0 and container.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            message = "\n".join(text.splitlines()[-FALLBACK_LINES:])[-FALLBACK_BYTES:]
        run = self.runs[key]
        run.finished, run.exit_code, run.message, run.output = time.time(), code, message, text[-20000:]
        if self._stop.is_set():
            return
        self._report(pod, container, code, message, started_at)
        run.reported = time.time()
        shutil.rmtree(scratch, ignore_errors=True)

    def _report(self, pod: dict[str, Any], container: dict[str, Any], code: int, message: str, started: str) -> None:
        meta = pod["metadata"]
        now = _now()
        terminated: dict[str, Any] = {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                                      "startedAt": started, "finishedAt": now}
        if message:
            terminated["message"] = message
        status = {
            "phase": "Succeeded" if code == 0 else "Failed",
            "conditions": [{"type": t, "status": "False", "reason": "PodCompleted", "lastTransitionTime": now}
                           for t in ("PodReadyToStartContainers", "ContainersReady", "Ready")],
            "containerStatuses": [{"name": container["name"], "image": container["image"],
                                   "imageID": f"harness://{container['image']}", "containerID": "harness://1",
                                   "ready": False, "started": False, "restartCount": 0,
                                   "state": {"terminated": terminated}}],
        }
        try:
            self._call("PATCH", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status",
                       body={"status": status})
        except RuntimeError as err:
            if "HTTP 404" not in str(err):  # deleted meanwhile: nothing to report to
                raise


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """Kill a container's process group (it was started in a session of its own)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
