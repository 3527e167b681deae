"""One real node for the e2e control plane: containerd, runc and a kubelet that run real containers.

    node = start(cluster, log=...)      # after cluster.up(); registers node `real-0`, tainted REAL_NODE_TAINT
    node.import_image("ghcr.io/kubescientist/node-runtime:0.1.0-cpu")   # from podman's storage (images/build.py)
    stop(node)                          # deletes its pods, stops kubelet and containerd, removes every container

What it starts (all from Debian packages except the kubelet, built with the control plane by build.sh):
- containerd 1.6 as a plain process, with its own config, socket and state under /run/kubescientist-node/,
  and its content root cached under $KUBESCIENTIST_CACHE/containerd/root (imported images survive runs);
  runc with cgroupfs (no systemd), `restrict_oom_score_adj` (no CAP_SYS_RESOURCE here), a pause image made
  locally (catatonit);
- the CNI bridge and host-local plugins (/usr/lib/cni): pods get 10.245.0.x/24 behind the bridge `ks-cni0`;
- kube-proxy in iptables mode (no IPVS in these kernels), so pods reach Services, `kubernetes` among them;
- kube-router's NetworkPolicy controller (iptables + ipset), so the chart's NetworkPolicy is enforced;
- the kubelet, with `failCgroupV1: false` (these machines have a hybrid cgroup v1 layout), anonymous
  AlwaysAllow on its API (the apiserver reaches it for logs; it is a throw-away test node), image garbage
  collection off (it would delete the cached images), and a NoSchedule taint so that only pods that tolerate
  it land there: the fake GPU nodes stay the default for every other test.

Only one real node can run on a machine at a time (containerd's root and the kubelet's /kubepods cgroups are
per machine): a lock file under the cache says so clearly instead of two kubelets fighting.

Changes to the machine (restored or removed by stop() where possible): the kubelet sets vm.overcommit_memory=1,
kernel.panic=10 and kernel.panic_on_oops=1 (restored to the values read before start); the CNI bridge
plugin creates the `ks-cni0` bridge (deleted), sets net.ipv4.ip_forward=1 (left, podman needs it too) and
adds iptables NAT rules per pod (removed with each pod, and swept after a crash); kube-proxy adds its KUBE-*
chains (removed by `kube-proxy --cleanup`), the kubelet its KUBE-FIREWALL and KUBE-KUBELET-CANARY chains,
kube-router its KUBE-ROUTER-*, KUBE-NWPLCY-*, KUBE-POD-FW-* chains and KUBE-SRC-*/KUBE-DST-* ipsets (all removed); the kubelet writes pod logs under /var/log/pods and
keeps pod cgroups under /sys/fs/cgroup/*/kubepods (removed with the pods) and bind-mounts its root dir
(KUBELET_ROOT) onto itself (unmounted, and the dir deleted).
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cluster as control_plane

NODE_NAME = "real-0"
REAL_NODE_ENV = os.environ.get("KUBESCIENTIST_E2E_REAL_NODE") == "1"
"""Set by `make e2e-real`: the test cluster listens where pods reach it, and the real-node tests run."""
REAL_NODE_LABEL = ("kubescientist.io/real-node", "true")
REAL_NODE_TAINT = {"key": "kubescientist.io/real-node", "value": "true", "effect": "NoSchedule"}
REAL_NODE_TOLERATION = {"key": "kubescientist.io/real-node", "operator": "Exists", "effect": "NoSchedule"}
PAUSE_IMAGE = "localhost/kubescientist/pause:catatonit"
POD_SUBNET = "10.245.0.0/24"
BRIDGE = "ks-cni0"
CONTAINERD_NS = "k8s.io"
KUBELET_SYSCTLS = ("vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops")
KUBELET_ROOT = Path("/var/lib/kubescientist-node/kubelet")
"""The kubelet's root dir: short (the kubelet makes unix sockets below it, limited to 108 bytes, which a pytest
tmp path can exceed) and the same for every run, so that a run after a crash finds what is left there."""
STATE_ROOT = Path("/run/kubescientist-node")
"""containerd's state and socket: a short path (unix sockets must fit in 108 bytes), and the same for every run,
so that a containerd started after a crashed run finds that run's tasks and shims again and can remove them."""


class NodeUnavailable(control_plane.ClusterError):
    """This machine cannot run a real node (a tool is missing, or another real node runs)."""


def kube_router() -> Path:
    """The cached kube-router binary of the pinned version (make network-policy-tools builds it)."""
    return control_plane.cache_dir() / "bin" / f"kube-router-{control_plane.read_versions()['KUBE_ROUTER']}"


def missing_tools() -> list[str]:
    """What a real node needs that this machine lacks."""
    out = [tool for tool in ("containerd", "ctr", "runc", "podman", "iptables", "ipset") if shutil.which(tool) is None]
    if not kube_router().exists():
        out.append(f"{kube_router().name} (make network-policy-tools)")
    if not (Path("/usr/lib/cni") / "bridge").exists():
        out.append("/usr/lib/cni/bridge (containernetworking-plugins)")
    if not (control_plane.cache_dir() / "bin" / "kubelet").exists():
        out.append("kubelet (tests/e2e/cluster/build.sh)")
    if os.geteuid() != 0:
        out.append("root")
    return out


def host_ip() -> str:
    """The address of the default-route interface: the node's InternalIP, reachable from pods and apiserver."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.254", 9))  # no packet is sent: connect() on UDP only picks the route
        return str(probe.getsockname()[0])


@dataclass
class RealNode:
    """A running real node."""

    cluster: control_plane.Cluster
    dir: Path
    """Config, logs and kubelet root, under the cluster's run dir."""
    state: Path
    """containerd state and socket (short path under /run)."""
    name: str = NODE_NAME
    ip: str = ""
    sysctls: dict[str, str] = field(default_factory=dict)
    """The values of KUBELET_SYSCTLS before the kubelet changed them."""
    lock: Any = None

    @property
    def socket(self) -> Path:
        return self.state / "containerd.sock"

    def ctr(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(["ctr", "--address", str(self.socket), "-n", CONTAINERD_NS, *args],
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise control_plane.ClusterError(f"ctr {' '.join(args)}: {proc.stderr.strip()[-500:]}")
        return proc

    def import_image(self, reference: str, podman_env: Mapping[str, str] | None = None) -> float:
        """Copy an image from podman's storage into containerd (skipped when the same image id is there);
        returns the seconds spent."""
        started = time.monotonic()
        env = dict(podman_env) if podman_env is not None else _podman_env()
        image_id = subprocess.run(["podman", "image", "inspect", "--format", "{{.Id}}", reference], env=env,
                                  capture_output=True, text=True)
        if image_id.returncode != 0:
            raise NodeUnavailable(f"image {reference} is not built: run `make images` ({image_id.stderr.strip()})")
        marker = control_plane.cache_dir() / "containerd" / "imported" / reference.replace("/", "_").replace(":", "_")
        listed = self.ctr("images", "ls", "-q").stdout.split()
        if marker.exists() and marker.read_text().strip() == image_id.stdout.strip() and _normalized(reference) in listed:
            return 0.0
        archive = self.dir / "image.tar"
        saved = subprocess.run(["podman", "save", "--format", "docker-archive", "-o", str(archive), reference],
                               env=env, capture_output=True, text=True)
        if saved.returncode != 0:
            raise control_plane.ClusterError(f"podman save {reference}: {saved.stderr.strip()[-500:]}")
        try:
            self.ctr("images", "import", "--no-unpack", str(archive), timeout=900)
        finally:
            archive.unlink(missing_ok=True)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(image_id.stdout.strip() + "\n")
        return time.monotonic() - started


def _normalized(reference: str) -> str:
    first = reference.split("/", 1)[0]
    if "/" not in reference or ("." not in first and ":" not in first and first != "localhost"):
        return f"docker.io/{reference if '/' in reference else 'library/' + reference}"
    return reference


def _podman_env() -> dict[str, str]:
    conf = control_plane.cache_dir() / "containers"
    return {**os.environ, "CONTAINERS_CONF": str(conf / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(conf / "storage.conf")}


def _containerd_config(node: RealNode, cni_conf: Path) -> str:
    root = control_plane.cache_dir() / "containerd" / "root"
    return f"""version = 2
root = "{root}"
state = "{node.state / 'state'}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
                    "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{node.socket}"
[ttrpc]
  address = "{node.state / 'containerd.sock.ttrpc'}"
[debug]
  level = "warn"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni_conf}"
"""


def _cni_config(node: RealNode) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0", "name": "kubescientist",
        "plugins": [
            {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": True, "hairpinMode": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_SUBNET}]], "routes": [{"dst": "0.0.0.0/0"}],
                      "dataDir": str(node.dir / "cni-ipam")}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def _kubelet_config(node: RealNode, port: int, healthz: int) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        # Hybrid cgroup v1 here; kubelets >= 1.35 refuse v1 unless told (KEP-5573). No systemd: cgroupfs.
        "failCgroupV1": False, "cgroupDriver": "cgroupfs",
        "containerRuntimeEndpoint": f"unix://{node.socket}",
        "address": node.ip, "port": port, "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1", "healthzPort": healthz,
        # A throw-away test node: the apiserver (logs, exec) is let in without credentials.
        "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
        "authorization": {"mode": "AlwaysAllow"},
        "failSwapOn": False, "protectKernelDefaults": False, "resolvConf": "",
        # The images are imported once and cached: the kubelet must never garbage-collect them.
        "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "50Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                         "nodefs.inodesFree": "1%"},
        "serializeImagePulls": False,
        "registerWithTaints": [REAL_NODE_TAINT],
        "nodeStatusReportFrequency": "10s",
        "maxPods": 30,
    }


def _write_node_credentials(node: RealNode) -> Path:
    """A client cert CN=system:node:<name>, O=system:nodes (what the Node authorizer expects)."""
    pki = node.cluster.run_dir / "pki"
    name = f"node-{node.name}"
    cnf = pki / f"{name}.cnf"
    cnf.write_text(control_plane._cert_config(  # noqa: SLF001  (same test package, one PKI)
        f"system:node:{node.name}", "system:nodes",
        "basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\nextendedKeyUsage = clientAuth"))
    control_plane._openssl("req", "-new", *control_plane.EC_KEY, "-keyout", str(pki / f"{name}.key"),  # noqa: SLF001
                           "-out", str(pki / f"{name}.csr"), "-config", str(cnf))
    control_plane._openssl("x509", "-req", "-in", str(pki / f"{name}.csr"), "-CA", str(pki / "ca.crt"),  # noqa: SLF001
                           "-CAkey", str(pki / "ca.key"), "-set_serial", str(int(time.time() * 1000)), "-days", "30",
                           "-out", str(pki / f"{name}.crt"), "-extfile", str(cnf), "-extensions", "ext")
    kubeconfig = node.dir / "kubelet.kubeconfig"
    control_plane.write_kubeconfig(kubeconfig, node.cluster.server, pki, name)
    return kubeconfig


def _sysctls_file() -> Path:
    return control_plane.cache_dir() / "containerd" / "sysctls-before-kubelet.json"


def _read_sysctls() -> dict[str, str]:
    """The values the kubelet will change, as they were before any real node ran: kept in a file until stop()
    restores them, so a run that crashed before restoring them leaves the originals for the next one."""
    saved = _sysctls_file()
    if saved.exists():
        return dict(json.loads(saved.read_text()))
    values = {key: (Path("/proc/sys") / key).read_text().strip() for key in KUBELET_SYSCTLS}
    saved.write_text(json.dumps(values) + "\n")
    return values


def _unmount_below(root: Path) -> None:
    """Unmount everything at or below root, deepest first: the kubelet bind-mounts its root dir onto itself and
    pod volumes below it, containerd mounts each sandbox's /dev/shm under its state; a crashed run (or a sandbox
    removed with ctr) leaves them. Only called with the lock held and the kubelet and containerd stopped."""
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount_point in sorted((m for m in mounts if m == str(root) or m.startswith(f"{root}/")), key=len,
                              reverse=True):
        subprocess.run(["umount", "--lazy", mount_point], capture_output=True)


def _unmount_leftovers() -> None:
    _unmount_below(KUBELET_ROOT)
    _unmount_below(STATE_ROOT)


def _restore_sysctls(values: Mapping[str, str]) -> None:
    for key, value in values.items():
        try:
            (Path("/proc/sys") / key).write_text(value + "\n")
        except OSError:
            pass


def _take_lock() -> Any:
    path = control_plane.cache_dir() / "containerd" / "node.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")  # noqa: SIM115  (held for the node's lifetime)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise NodeUnavailable(f"another real node runs on this machine (lock {path})") from None
    return handle


def start(cluster: control_plane.Cluster, die_with_parent: bool = True,
          log: Callable[[str], None] = print) -> RealNode:
    """Start containerd and a kubelet for `cluster`; wait until the node is Ready. Raises NodeUnavailable when
    this machine cannot run one."""
    missing = missing_tools()
    if missing:
        raise NodeUnavailable("a real node needs: " + ", ".join(missing))
    lock = _take_lock()
    _unmount_leftovers()
    node = RealNode(cluster=cluster, dir=cluster.run_dir / "node", state=STATE_ROOT, lock=lock)
    node.dir.mkdir(parents=True, exist_ok=True)
    node.state.mkdir(parents=True, exist_ok=True)
    node.ip = host_ip()
    node.sysctls = _read_sysctls()
    run_dir = cluster.run_dir
    started = time.monotonic()
    try:
        cni_conf = node.dir / "cni"
        cni_conf.mkdir(exist_ok=True)
        (cni_conf / "10-kubescientist.conflist").write_text(json.dumps(_cni_config(node), indent=2))
        config = node.dir / "containerd.toml"
        config.write_text(_containerd_config(node, cni_conf))
        control_plane._spawn(run_dir, "containerd", ["containerd", "--config", str(config)], None,  # noqa: SLF001
                             die_with_parent)
        control_plane.wait_until("containerd socket", lambda: node.ctr("version", check=False).returncode == 0,
                                 60, run_dir, ["containerd"])
        _sweep(node, log)
        if PAUSE_IMAGE not in node.ctr("images", "ls", "-q").stdout.split():
            node.import_image(PAUSE_IMAGE)
        port, healthz = control_plane._free_ports(2)  # noqa: SLF001
        kubelet_config = node.dir / "kubelet.yaml"
        kubelet_config.write_text(json.dumps(_kubelet_config(node, port, healthz), indent=2))
        kubeconfig = _write_node_credentials(node)
        kubelet = control_plane.cache_dir() / "bin" / "kubelet"
        control_plane._spawn(run_dir, "kubelet", [  # noqa: SLF001
            str(kubelet), f"--config={kubelet_config}", f"--kubeconfig={kubeconfig}",
            f"--hostname-override={node.name}", f"--node-ip={node.ip}", f"--root-dir={KUBELET_ROOT}",
            f"--cert-dir={node.dir / 'pki'}", f"--node-labels={REAL_NODE_LABEL[0]}={REAL_NODE_LABEL[1]}",
            "--v=1",
        ], None, die_with_parent)

        def ready() -> bool:
            found = cluster.kubectl("get", "node", node.name, "-o", "json", check=False)
            if found.returncode != 0:
                return False
            node_object = json.loads(found.stdout)
            conditions = node_object.get("status", {}).get("conditions", [])
            taints = node_object.get("spec", {}).get("taints", [])
            # Ready, and the node-lifecycle controller has lifted its not-ready taint (the scheduler needs both).
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions) and \
                not any(t.get("key", "").startswith("node.kubernetes.io/") for t in taints)

        control_plane.wait_until(f"real node {node.name} Ready", ready, 120, run_dir, ["kubelet", "containerd"],
                                 interval=0.5)
        # Services for the pods (the `kubernetes` Service above all: in-cluster clients use it). iptables mode:
        # this kernel has no IPVS; conntrack limits are left alone (no CAP_SYS_RESOURCE).
        proxy_healthz, proxy_metrics = control_plane._free_ports(2)  # noqa: SLF001
        control_plane._spawn(run_dir, "kube-proxy", [  # noqa: SLF001
            str(control_plane.cache_dir() / "bin" / "kube-proxy"), f"--kubeconfig={cluster.kubeconfig}",
            "--proxy-mode=iptables", f"--cluster-cidr={POD_SUBNET}", f"--hostname-override={node.name}",
            f"--bind-address={node.ip}", "--conntrack-max-per-core=0", f"--metrics-bind-address=127.0.0.1:{proxy_metrics}",
            f"--healthz-bind-address=127.0.0.1:{proxy_healthz}", "--v=1",
        ], None, die_with_parent)
        control_plane.wait_until(
            "kube-proxy /healthz", lambda: control_plane._http_ok(f"http://127.0.0.1:{proxy_healthz}/healthz"),  # noqa: SLF001
            60, run_dir, ["kube-proxy"])
        # NetworkPolicy: kube-router's policy controller only (pod routes are the bridge's, Services kube-proxy's).
        router_health = control_plane._free_ports(1)[0]  # noqa: SLF001
        control_plane._spawn(run_dir, "kube-router", [  # noqa: SLF001
            str(kube_router()), f"--kubeconfig={cluster.kubeconfig}", "--run-firewall=true", "--run-router=false",
            "--run-service-proxy=false", "--enable-cni=false", f"--hostname-override={node.name}",
            f"--service-cluster-ip-range={control_plane.SERVICE_CIDR}", f"--health-port={router_health}",
            "--metrics-port=0", "--v=1",
        ], None, die_with_parent)
        control_plane.wait_until(
            "kube-router /healthz", lambda: control_plane._http_ok(f"http://127.0.0.1:{router_health}/healthz"),  # noqa: SLF001
            60, run_dir, ["kube-router"])
    except BaseException:
        log(f"[real node] start failed; stopping it (logs in {run_dir / 'logs'})")
        stop(node, log)
        raise
    log(f"[real node] {node.name} Ready at {node.ip} in {time.monotonic() - started:.1f}s")
    return node


def _sweep(node: RealNode, log: Callable[[str], None]) -> None:
    """Remove every container and task in containerd's k8s.io namespace (left by a crashed earlier run, or
    by this one): stopping them also ends their shims."""
    ids = node.ctr("containers", "ls", "-q", check=False).stdout.split()
    for container in ids:
        node.ctr("tasks", "kill", "-s", "SIGKILL", container, check=False)
    for container in ids:
        for _ in range(50):  # the task ends a moment after SIGKILL; delete fails until then
            deleted = node.ctr("tasks", "delete", container, check=False)
            if deleted.returncode == 0 or "not found" in deleted.stderr:
                break
            time.sleep(0.1)
        node.ctr("containers", "delete", container, check=False)
    if ids:
        log(f"[real node] removed {len(ids)} containers")
    for netns in Path("/run/netns").glob("cni-*") if Path("/run/netns").exists() else ():
        subprocess.run(["ip", "netns", "delete", netns.name], capture_output=True)
    _remove_iptables_leftovers()


KUBELET_CHAINS = ("KUBE-FIREWALL", "KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT")
"""iptables chains the kubelet makes for itself (kube-proxy --cleanup leaves them)."""
KUBE_ROUTER_PREFIXES = ("KUBE-ROUTER-", "KUBE-NWPLCY-", "KUBE-POD-FW-")
"""kube-router's iptables chains (its own --cleanup-config panics on kernels without IPVS)."""
KUBE_ROUTER_SETS = ("KUBE-SRC-", "KUBE-DST-", "inet6:KUBE-SRC-", "inet6:KUBE-DST-")
"""kube-router's ipsets: the pods and ipBlocks each policy selects."""


def _remove_iptables_leftovers() -> None:
    """Remove our CNI network's NAT rules and chains (a pod removed without its CNI DEL, as after a crash,
    leaves them) and the kubelet's own chains. Only called with no pod of ours running."""
    for tool in ("iptables", "ip6tables"):
        for table in ("nat", "filter", "mangle"):
            _remove_chains(tool, table)
    if shutil.which("ipset") is not None:
        names = subprocess.run(["ipset", "list", "-n"], capture_output=True, text=True).stdout.split()
        for name in names:
            if name.startswith(KUBE_ROUTER_SETS):
                subprocess.run(["ipset", "destroy", name], capture_output=True)


def _remove_chains(tool: str, table: str) -> None:
    listed = subprocess.run([tool, "-t", table, "-S"], capture_output=True, text=True).stdout
    rules = [shlex.split(line) for line in listed.splitlines() if line.startswith("-A ")]
    chains: set[str] = set(KUBELET_CHAINS)
    chains |= {line.split()[1] for line in listed.splitlines()
               if line.startswith("-N ") and line.split()[1].startswith(KUBE_ROUTER_PREFIXES)}
    # A chain of ours whose POSTROUTING rule is already gone (deleted half-way before) is still ours.
    chains |= {words[1] for words in rules if words[1].startswith("CNI-") and 'name: "kubescientist"' in " ".join(words)}
    for words in rules:
        target = words[words.index("-j") + 1] if "-j" in words else ""
        if target in chains or (target.startswith("CNI-") and 'name: "kubescientist"' in " ".join(words)):
            subprocess.run([tool, "-t", table, "-D", *words[1:]], capture_output=True)
            chains.add(target)
    for chain in chains:
        if f"-N {chain}" in listed:
            subprocess.run([tool, "-t", table, "-F", chain], capture_output=True)
            subprocess.run([tool, "-t", table, "-X", chain], capture_output=True)


def stop(node: RealNode, log: Callable[[str], None] = print, timeout: float = 60) -> None:
    """Delete the node's pods (the kubelet then tears their sandboxes and networks down), stop the kubelet,
    remove every container that is left, stop containerd, restore the sysctls, release the lock."""
    run_dir = node.cluster.run_dir
    kubelet = control_plane._recorded(run_dir, "kubelet")  # noqa: SLF001
    try:
        if kubelet is not None and control_plane._alive(kubelet[0]):  # noqa: SLF001
            node.cluster.kubectl("delete", "pods", "-A", "--field-selector", f"spec.nodeName={node.name}",
                                 "--grace-period=0", "--wait=false", check=False)

            def drained() -> bool:
                left = node.cluster.kubectl_json("get", "pods", "-A", "--field-selector", f"spec.nodeName={node.name}")
                return not left["items"] and not node.ctr("tasks", "ls", "-q", check=False).stdout.split()

            try:
                control_plane.wait_until("real node's pods removed", drained, timeout, interval=0.5)
            except control_plane.ClusterError as err:
                log(f"[real node] {err}")
    finally:
        _stop_component(run_dir, "kube-router")
        _stop_component(run_dir, "kube-proxy")
        _stop_component(run_dir, "kubelet")
        if node.socket.exists():
            _sweep(node, log)
        _stop_component(run_dir, "containerd")
        _unmount_leftovers()
        # Pods are gone: what the kubelet kept of them (volumes, checkpoints) is of no use to the next node.
        shutil.rmtree(KUBELET_ROOT, ignore_errors=True)
        _restore_sysctls(node.sysctls)
        _sysctls_file().unlink(missing_ok=True)
        subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True)
        # kube-proxy's iptables chains (KUBE-*), by its own cleanup mode.
        subprocess.run([str(control_plane.cache_dir() / "bin" / "kube-proxy"), "--cleanup"], capture_output=True)
        _remove_iptables_leftovers()
        shutil.rmtree(node.state, ignore_errors=True)
        if node.lock is not None:
            node.lock.close()
        log(f"[real node] {node.name} stopped")


def _stop_component(run_dir: Path, name: str, timeout: float = 15) -> None:
    rec = control_plane._recorded(run_dir, name)  # noqa: SLF001
    if rec is None or not control_plane._alive(rec[0]) or not control_plane._runs(*rec):  # noqa: SLF001
        return
    os.kill(rec[0], signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while control_plane._alive(rec[0]) and time.monotonic() < deadline:  # noqa: SLF001
        time.sleep(0.1)
    if control_plane._alive(rec[0]):  # noqa: SLF001
        os.kill(rec[0], signal.SIGKILL)
