"""Kueue, built from the Go module proxy and run against the e2e control plane as a local process.

    build()                 go install sigs.k8s.io/kueue/cmd/kueue@VERSION into $KUBESCIENTIST_CACHE/bin/kueue-VERSION
                            (once; several minutes on 2 cores), with the module's CRDs next to the binary
    KueueProcess(cluster)   applies the CRDs, starts the manager with a config of its own, waits for it to be ready

The manager runs on this host with the cluster's admin kubeconfig, like the operator in the e2e tests. Its
webhooks are not registered with the apiserver (nothing in the cluster routes to a host process, and the
operator creates its Jobs already suspended with the queue label, which is all the Job integration needs);
the webhook server still listens, on a self-signed certificate, because the manager insists on serving it,
and its metrics server reads a self-signed certificate from /etc/kueue/metrics/certs (written once).
Leader election is off (one instance); every port is picked free, so several clusters can run it at once.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

VERSION = "v0.17.0"
"""The Kueue release built (its client libraries are Kubernetes 0.35; the control plane is 1.37)."""
MODULE = "sigs.k8s.io/kueue"
CACHE = Path(os.environ.get("KUBESCIENTIST_CACHE") or Path.home() / ".cache" / "kubescientist")
BIN_DIR = CACHE / "bin" / f"kueue-{VERSION}"
GOPATH = CACHE / "gopath"
METRICS_CERTS = Path("/etc/kueue/metrics/certs")
"""Where the manager reads its metrics certificate when it does not manage certificates itself (fixed in its
main.go); a self-signed one is written there once, as on a node running Kueue from its manifests."""


def binary() -> Path:
    return BIN_DIR / "kueue"


def build(log: Any = print) -> float:
    """Builds the manager unless it is cached; returns the seconds the build took (0 when cached)."""
    if binary().is_file() and (BIN_DIR / "crds").is_dir():
        return 0.0
    go = shutil.which("go") or "/usr/local/go/bin/go"
    env = {**os.environ, "GOPATH": str(GOPATH), "GOMODCACHE": str(GOPATH / "pkg" / "mod"), "GOBIN": str(BIN_DIR),
           "GOFLAGS": "-buildvcs=false"}
    started = time.monotonic()
    log(f"[kueue] building {MODULE}/cmd/kueue@{VERSION} (once; cached in {BIN_DIR})")
    subprocess.run([go, "install", f"{MODULE}/cmd/kueue@{VERSION}"], env=env, check=True, timeout=3600)
    source = GOPATH / "pkg" / "mod" / f"{MODULE}@{VERSION}" / "config" / "components" / "crd" / "bases"
    shutil.copytree(source, BIN_DIR / "crds", dirs_exist_ok=True)
    seconds = time.monotonic() - started
    log(f"[kueue] built in {seconds:.0f}s")
    return seconds


def _self_signed(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650", "-subj",
                    "/CN=kueue", "-keyout", str(folder / "tls.key"), "-out", str(folder / "tls.crt")],
                   check=True, capture_output=True, timeout=60)


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class KueueProcess:
    """One Kueue manager for one test cluster."""

    def __init__(self, cluster: Any, workdir: Path) -> None:
        self.cluster = cluster
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "kueue.log"

    def start(self, timeout: float = 120) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for crd in sorted((BIN_DIR / "crds").glob("*.yaml")):
            # Server-side: the CRDs are too large for the last-applied annotation of a client-side apply.
            self.cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
        for crd in ("workloads", "clusterqueues", "localqueues", "resourceflavors", "workloadpriorityclasses"):
            self.cluster.wait_for(f"the {crd} CRD to be established", lambda crd=crd: any(
                c["type"] == "Established" and c["status"] == "True" for c in self.cluster.kubectl_json(
                    "get", "crd", f"{crd}.kueue.x-k8s.io").get("status", {}).get("conditions") or []), 60)
        self.cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kueue-system"}})
        certs = self.workdir / "certs"
        _self_signed(certs)
        # Without internal cert management the manager reads its metrics certificate from this fixed path.
        if not (METRICS_CERTS / "tls.crt").is_file():
            _self_signed(METRICS_CERTS)
        health, metrics, webhook, visibility = _free_ports(4)
        self.health = health
        config = self.workdir / "config.yaml"
        config.write_text(f"""apiVersion: config.kueue.x-k8s.io/v1beta2
kind: Configuration
namespace: kueue-system
health:
  healthProbeBindAddress: 127.0.0.1:{health}
metrics:
  bindAddress: 127.0.0.1:{metrics}
webhook:
  port: {webhook}
  host: 127.0.0.1
  certDir: {certs}
leaderElection:
  leaderElect: false
internalCertManagement:
  enable: false
integrations:
  frameworks: ["batch/job"]
""")
        env = {**self.cluster.env(), "KUBECONFIG": str(self.cluster.kubeconfig)}
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                # The visibility API (pending-workload listing) would need an aggregated APIService: off.
                [str(binary()), f"--config={config}", f"--visibility-server-port={visibility}",
                 "--feature-gates=VisibilityOnDemand=false"],
                env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kueue exited {self.proc.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{health}/readyz", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"kueue not ready after {timeout:.0f}s:\n{self.tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""


if __name__ == "__main__":
    build(lambda message: print(message, file=sys.stderr))
