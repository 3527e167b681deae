"""The Helm chart on the real control plane, and its alerts and dashboard against a real Prometheus.

- `helm lint`; `helm template` (every optional object on) accepted by `kubectl apply --dry-run=server`;
- `helm install` into a namespace that enforces Pod Security `restricted`: the Deployment, its pod (admitted),
  the ServiceAccount, the RBAC, the CRDs; `kubectl auth can-i` as the ServiceAccount grants exactly the
  operator's verbs;
- the operator, run with a token of the chart's ServiceAccount instead of admin, takes a small ResearchRun to
  Succeeded (the RBAC is enough, not only plausible);
- Prometheus (Debian package) scrapes a tiny exporter serving the operator's registry while a run is simulated;
  `promtool check metrics` is clean and every dashboard and alert expression is valid PromQL that returns data.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ctypes
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "kubescientist"
TEMPLATE = REPO / "tests" / "fixtures" / "native_template"


def say(message: str) -> None:
    print(message, file=sys.__stderr__, flush=True)


def values_file(tmp_path: Path, values: dict[str, Any]) -> str:
    path = tmp_path / f"values-{secrets.token_hex(3)}.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path)


# Stand-ins for the Prometheus Operator's CRDs, which cannot be fetched here (their real schemas live in its
# repository): enough for the apiserver to accept ServiceMonitor and PrometheusRule objects in a dry run. The
# contents of those objects are checked elsewhere (promtool on the rules, the unit tests on the selectors).
MONITORING_CRDS = [
    {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
     "metadata": {"name": f"{plural}.monitoring.coreos.com"},
     "spec": {"group": "monitoring.coreos.com", "scope": "Namespaced",
              "names": {"kind": kind, "plural": plural, "singular": plural[:-1], "listKind": f"{kind}List"},
              "versions": [{"name": "v1", "served": True, "storage": True,
                            "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {
                                "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}}}]}}
    for kind, plural in (("ServiceMonitor", "servicemonitors"), ("PrometheusRule", "prometheusrules"))
]


def test_helm_lint(cluster: Any) -> None:
    proc = cluster.helm("lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in proc.stdout


def test_rendered_chart_passes_a_server_side_dry_run(cluster: Any, namespace: str, tmp_path: Path) -> None:
    cluster.apply(MONITORING_CRDS)
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                    "crd/servicemonitors.monitoring.coreos.com", "crd/prometheusrules.monitoring.coreos.com")
    values = {
        "operator": {"watchNamespaces": [namespace]},
        "metrics": {"serviceMonitor": {"enabled": True}},
        "prometheusRule": {"enabled": True},
        "grafanaDashboard": {"enabled": True},
        "networkPolicy": {"enabled": True, "objectStorage": {"cidrs": ["127.0.0.1/32"], "ports": [8333]}},
        "podSecurity": {"createNamespaces": True},
        "llm": {"existingSecret": "llm", "prices": {"gpt-4o": {"input": 2.5, "output": 10.0}}},
        "nodes": {"podLabels": {"team": "ml"}},
    }
    rendered = cluster.helm("template", "dry", str(CHART), "--namespace", namespace, "--include-crds",
                            "-f", values_file(tmp_path, values)).stdout
    kinds = sorted({doc["kind"] for doc in yaml.safe_load_all(rendered) if doc})
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "ConfigMap", "CustomResourceDefinition", "Deployment",
                     "Namespace", "NetworkPolicy", "PrometheusRule", "RoleBinding", "Service", "ServiceAccount",
                     "ServiceMonitor"]
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(rendered)
    proc = cluster.kubectl("apply", "--dry-run=server", "--server-side", "--field-manager=helm-dry-run",
                           "--force-conflicts", "-f", str(manifest), check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert proc.stdout.count("(server dry run)") == len([d for d in yaml.safe_load_all(rendered) if d])


def can_i(cluster: Any, who: str, verb: str, resource: str, namespace: str | None) -> bool:
    """`kubectl auth can-i`; ``resource`` may end in /<subresource> (can-i reads TYPE/NAME as a name)."""
    where = ["-n", namespace] if namespace else []
    kind, _, sub = resource.partition("/")
    subresource = [f"--subresource={sub}"] if sub else []
    proc = cluster.kubectl("auth", "can-i", verb, kind, *subresource, "--as", who, *where, check=False)
    answer: str = proc.stdout.strip()
    return answer == "yes"


@contextlib.contextmanager
def installed(cluster: Any, release: str, namespace: str, values: dict[str, Any], tmp_path: Path) -> Iterator[None]:
    cluster.helm("install", release, str(CHART), "--namespace", namespace, "-f", values_file(tmp_path, values),
                 timeout=180)
    try:
        yield
    finally:
        cluster.helm("uninstall", release, "--namespace", namespace, "--wait", "--timeout", "60s", check=False)


def test_helm_install_creates_deployment_rbac_and_crds(cluster: Any, restricted_namespace: str,
                                                       tmp_path: Path) -> None:
    namespace = restricted_namespace
    release = f"ks{secrets.token_hex(2)}"
    fullname = f"{release}-kubescientist"
    sa = f"system:serviceaccount:{namespace}:{fullname}-operator"
    crds = ("researchruns.kubescientist.io", "experimentnodes.kubescientist.io")
    existed = {c: cluster.kubectl("get", "crd", c, check=False).returncode == 0 for c in crds}
    with installed(cluster, release, namespace, {"operator": {"watchNamespaces": [namespace]}}, tmp_path):
        for crd in crds:
            # Helm creates crds/ on install unless they exist (then it leaves them alone, as on upgrades).
            obj = cluster.kubectl_json("get", "crd", crd)
            assert obj["spec"]["group"] == "kubescientist.io"
            if not existed[crd]:
                assert obj["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "kubescientist"
        deployment = cluster.kubectl_json("get", "deployment", f"{fullname}-operator", "-n", namespace)
        assert deployment["spec"]["replicas"] == 1
        # The ReplicaSet's pod is admitted by PodSecurity "restricted" (a refused pod never appears).
        cluster.wait_for("the operator pod", lambda: bool(cluster.kubectl_json(
            "get", "pods", "-n", namespace, "-l", "app.kubernetes.io/component=operator")["items"]), 60)
        cluster.kubectl_json("get", "serviceaccount", f"{fullname}-operator", "-n", namespace)
        cluster.kubectl_json("get", "service", f"{fullname}-metrics", "-n", namespace)
        for role in ("operator", "operator-cluster", "edit", "view"):
            cluster.kubectl_json("get", "clusterrole", f"{fullname}-{role}")
        cluster.kubectl_json("get", "rolebinding", f"{fullname}-operator", "-n", namespace)
        # What the ServiceAccount may do, as the apiserver's authorizer says.
        allowed = [("list", "researchruns.kubescientist.io"), ("watch", "researchruns.kubescientist.io"),
                   ("patch", "researchruns.kubescientist.io"), ("patch", "researchruns.kubescientist.io/status"),
                   ("create", "experimentnodes.kubescientist.io"), ("get", "experimentnodes.kubescientist.io"),
                   ("patch", "experimentnodes.kubescientist.io/status"), ("create", "jobs.batch"),
                   ("list", "jobs.batch"), ("watch", "pods"), ("list", "pods"), ("create", "events"),
                   ("get", "configmaps"), ("get", "secrets")]
        for verb, resource in allowed:
            assert can_i(cluster, sa, verb, resource, namespace), f"{verb} {resource} refused"
        denied = [("delete", "jobs.batch", namespace), ("create", "pods", namespace), ("list", "secrets", namespace),
                  ("update", "researchruns.kubescientist.io", namespace),
                  ("patch", "experimentnodes.kubescientist.io", namespace),
                  ("update", "researchruns.kubescientist.io/status", namespace),
                  ("delete", "experimentnodes.kubescientist.io", namespace),
                  ("get", "secrets", "default"), ("create", "jobs.batch", "default"), ("list", "nodes", None)]
        for verb, resource, where in denied:
            assert not can_i(cluster, sa, verb, resource, where), f"{verb} {resource} in {where} allowed"
        assert can_i(cluster, sa, "update", "researchruns.kubescientist.io/finalizers", namespace)
        assert can_i(cluster, sa, "watch", "customresourcedefinitions.apiextensions.k8s.io", None)
        assert can_i(cluster, sa, "list", "namespaces", None)
        # Users who can edit the namespace can run research (aggregated into the built-in edit role).
        cluster.kubectl("create", "rolebinding", "alice-edit", "--clusterrole=edit", "--user=alice", "-n", namespace)
        assert can_i(cluster, "alice", "create", "researchruns.kubescientist.io", namespace)
        assert can_i(cluster, "alice", "list", "experimentnodes.kubescientist.io", namespace)
    for role in ("operator", "operator-cluster"):
        assert cluster.kubectl("get", "clusterrole", f"{fullname}-{role}", check=False).returncode != 0
    for crd in crds:  # never deleted with the release: the runs in them survive an uninstall
        cluster.kubectl_json("get", "crd", crd)


# ------------------------------------------------------------------- the operator with the chart's RBAC


def _die_with_parent() -> None:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def token_kubeconfig(cluster: Any, namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig that authenticates as the ServiceAccount (a bound token, as a pod would get)."""
    token = cluster.kubectl("create", "token", account, "-n", namespace, "--duration=1h").stdout.strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    ca = admin["clusters"][0]["cluster"]["certificate-authority-data"]
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [{"name": "e2e", "cluster": {"server": cluster.server, "certificate-authority-data": ca}}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "e2e", "user": "sa", "namespace": namespace}}]}))
    return path


def small_run(cluster: Any, namespace: str) -> dict[str, Any]:
    return {"apiVersion": "kubescientist.io/v1alpha1", "kind": "ResearchRun",
            "metadata": {"name": "rbac", "namespace": namespace},
            "spec": {"idea": {"inline": {"title": "RBAC", "hypothesis": "The chart's RBAC is enough."}},
                     "template": {"configMapRef": {"name": "template"}},
                     "objective": {"metric": "val_r2", "direction": "maximize"},
                     "stages": [{"name": "initial", "maxNodes": 1}, {"name": "tuning", "maxNodes": 1},
                                {"name": "research", "maxNodes": 1}, {"name": "ablation", "maxNodes": 1}],
                     "search": {"parallelism": 1, "drafts": 1},
                     "resources": {"gpus": 1, "cpu": "500m", "memory": "512Mi", "deadlineSeconds": 120},
                     "seeds": 0, "writeup": {"enabled": False}, "review": {"enabled": False},
                     "nodeSelector": {"nvidia.com/gpu.present": "true"},
                     "storage": {"s3": {"endpoint": cluster.s3.endpoint, "bucket": cluster.s3.bucket,
                                        "prefix": "e2e-rbac", "secretRef": {"name": "s3-credentials"}}}}}


def test_operator_with_the_charts_service_account_completes_a_run(cluster: Any, restricted_namespace: str,
                                                                   kubescientist_crds: list[str],
                                                                   tmp_path: Path) -> None:
    from kubelet_harness import HARNESS_LABEL, KubeletHarness

    namespace = restricted_namespace
    release = f"ks{secrets.token_hex(2)}"
    account = f"{release}-kubescientist-operator"
    # replicas 0: the Deployment's pod would only be "run" by kwok; the operator runs here, as that account.
    values = {"operator": {"replicas": 0, "watchNamespaces": [namespace]}}
    with installed(cluster, release, namespace, values, tmp_path):
        cluster.apply([
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3-credentials", "namespace": namespace},
             "stringData": {"AWS_ACCESS_KEY_ID": cluster.s3.access_key,
                            "AWS_SECRET_ACCESS_KEY": cluster.s3.secret_key}},
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "template", "namespace": namespace},
             "data": {p.name: p.read_text() for p in sorted(TEMPLATE.iterdir()) if p.is_file()}},
        ])
        kubeconfig = token_kubeconfig(cluster, namespace, account, tmp_path / "sa.kubeconfig")
        log = tmp_path / "operator.log"
        env = {**cluster.env(), "KUBECONFIG": str(kubeconfig),
               "PYTHONPATH": os.pathsep.join([str(REPO / "operator"), str(REPO)]),
               "KUBESCIENTIST_POD_LABELS": json.dumps({HARNESS_LABEL: "true"}),
               "KUBESCIENTIST_NODE_IMAGE": "registry.example/kubescientist/node-runtime:e2e",
               "KUBESCIENTIST_RESYNC_SECONDS": "3"}
        with open(log, "wb") as out:
            operator = subprocess.Popen([sys.executable, "-m", "kubescientist.adapters.kube", "-n", namespace],
                                        env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        preexec_fn=_die_with_parent)
        try:
            with KubeletHarness(cluster.kubeconfig, [namespace], parallel=1) as harness:
                cluster.apply(small_run(cluster, namespace))
                deadline = time.monotonic() + 240
                status: dict[str, Any] = {}
                while time.monotonic() < deadline and operator.poll() is None:
                    status = cluster.kubectl_json("get", "researchrun", "rbac", "-n", namespace).get("status") or {}
                    if status.get("phase") in ("Succeeded", "Failed"):
                        break
                    time.sleep(1)
                text = log.read_text(errors="replace")
                assert status.get("phase") == "Succeeded", \
                    f"status: {json.dumps(status, indent=1)}\nharness: {harness.errors}\noperator:\n{text[-6000:]}"
            forbidden = [line for line in text.splitlines() if re.search(r"\b403\b|[Ff]orbidden", line)]
            assert not forbidden, "\n".join(forbidden[:20])
            nodes = cluster.kubectl_json("get", "experimentnodes", "-n", namespace)["items"]
            assert len(nodes) >= 4 and all(n["status"]["phase"] == "Succeeded" for n in nodes)
            # Events are best effort in the operator (a refused one is dropped silently): check they exist.
            events = cluster.kubectl_json("get", "events", "-n", namespace)["items"]
            reasons = {e["reason"] for e in events if e["involvedObject"]["name"] == "rbac"}
            assert {"NodeSucceeded", "SearchEnded"} <= reasons, reasons
            # Runs carry the operator's finalizer: delete while it runs, so that the namespace can go.
            cluster.kubectl("delete", "researchrun", "rbac", "-n", namespace, "--timeout=60s", timeout=90)
        finally:
            operator.terminate()
            try:
                operator.wait(timeout=20)
            except subprocess.TimeoutExpired:
                operator.kill()
                operator.wait()


# ------------------------------------------------------------------- Prometheus: dashboard and alerts


def _helm_binary() -> str | None:
    cache = Path(os.environ.get("KUBESCIENTIST_CACHE", Path.home() / ".cache" / "kubescientist"))
    cached = sorted(cache.glob("tools/*/helm"))
    return str(cached[-1]) if cached else shutil.which("helm")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Simulation:
    """The operator's metrics during a run: a stuck run, a busy one near its budget, nodes finishing (a third
    failing for infrastructure reasons), LLM calls, API errors, passes. Updates keep coming so that rates move."""

    def __init__(self) -> None:
        from kubescientist.adapters.metrics import Metrics

        self.now = time.time() - 3 * 3600  # the stuck run was last seen three hours ago
        self.metrics = Metrics(clock=lambda: self.now)
        m = self.metrics
        m.run_phase_changed("lab", "stuck", "Searching")
        self.now = time.time()
        m.run_phase_changed("lab", "busy", "Pending")
        m.run_phase_changed("lab", "busy", "Searching")
        m.run_phase_changed("lab", "done", "Succeeded")
        m.best_metric("lab", "busy", "val_r2", 0.91)
        m.budget_usage("lab", "busy", "nodes", 19, 20)
        m.budget_usage("lab", "busy", "cost", 3.0, 20.0)
        m.run_nodes_counted("lab", "busy", {"total": 3, "pending": 0, "running": 1, "succeeded": 1, "buggy": 1,
                                            "failed": 0})
        m.nodes_waiting("lab", "busy", 2)
        m.campaign_observed("lab", "grokking", {"running": 1, "succeeded": 2, "failed": 1}, 42000, 0.84, 5400.0)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        outcomes = ("Succeeded", "Failed", "Buggy")
        i = 0
        while not self.stop.wait(0.2):
            self.now = time.time()
            m = self.metrics
            m.node_finished(("initial", "tuning")[i % 2], ("draft", "tune")[i % 2], outcomes[i % 3],  # type: ignore[arg-type]
                            3.0 + i % 7, namespace="lab", run="busy")
            m.reaction_latency(0.2 + (i % 5) / 10)
            m.gpu_seconds("lab", 4.0)
            m.llm_usage(("code", "feedback")[i % 2], "gpt-4o", 800, 120, 0.003)
            if i % 4 == 0:
                m.api_error("create", "jobs", 409)
            m.reconcile_finished(0.05, i % 6 != 0)
            i += 1


def dashboard_queries() -> list[tuple[str, str]]:
    board = json.loads((CHART / "dashboards" / "kubescientist.json").read_text())
    out = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            out.append((panel["title"], target["expr"]))
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            # label_values(<selector>, label) is a Grafana function: the selector part is the query.
            selector = re.fullmatch(r"label_values\((.*), *\w+\)", variable["query"]["query"])
            assert selector, variable
            out.append((f"${variable['name']}", selector.group(1)))
    return out


def grafana_to_promql(expr: str) -> str:
    """Grafana's variables as Grafana would expand them for "All" and a 30-second step."""
    return (expr.replace("$__rate_interval", "30s").replace("$__range", "5m")
            .replace('"$namespace"', '".*"').replace('"$run"', '".*"'))


def query(base: str, expr: str) -> dict[str, Any]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            result: dict[str, Any] = json.loads(response.read())
    except urllib.error.HTTPError as err:  # 400: a PromQL error, with its message
        result = json.loads(err.read())
    return result


@dataclasses.dataclass
class Scraped:
    base: str
    """Prometheus' URL."""
    simulation: Simulation
    exporter: WSGIServer
    """The operator registry's /metrics server."""
    job: str


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scraped]:
    """A Prometheus scraping the simulated operator every second (one per module: ~10 s to get going).
    The last test using it stops the exporter."""
    tmp_path = tmp_path_factory.mktemp("prometheus")
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus not installed (apt-get install prometheus)")
    simulation = Simulation()
    server = simulation.metrics.serve(0, "127.0.0.1")
    simulation.thread.start()
    job = "ks-kubescientist-metrics"  # what the ServiceMonitor's job label would be for release "ks"
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "scrape_configs": [{"job_name": job, "static_configs": [
                  {"targets": [f"127.0.0.1:{server.server_port}"]}]}]}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = _free_port()
    log = open(tmp_path / "prometheus.log", "wb")
    proc = subprocess.Popen([binary, f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            preexec_fn=_die_with_parent)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()
            samples = query(base, f'count_over_time(up{{job="{job}"}}[1m])') if _ready(base) else {}
            values = (samples.get("data") or {}).get("result") or []
            if values and float(values[0]["value"][1]) >= 8:  # enough scrapes for rates over 30s windows
                break
            time.sleep(0.5)
        else:
            pytest.fail("Prometheus did not scrape the exporter:\n" + (tmp_path / "prometheus.log").read_text()[-3000:])
        yield Scraped(base, simulation, server, job)
    finally:
        simulation.stop.set()
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        server.shutdown()
        server.server_close()


def _ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/-/ready", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def rendered_alerts(tmp_path: Path) -> dict[str, str]:
    helm = _helm_binary()
    if helm is None:
        pytest.skip("no helm binary (python tests/e2e/cluster/cluster.py tools)")
    out = subprocess.run([helm, "template", "ks", str(CHART), "--set", "prometheusRule.enabled=true",
                          "--show-only", "templates/prometheusrule.yaml"], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    spec = yaml.safe_load(out)["spec"]
    return {r["alert"]: r["expr"] for g in spec["groups"] for r in g["rules"]}


def test_promtool_check_metrics_is_clean_on_the_live_endpoint(prometheus: Scraped) -> None:
    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed (apt-get install prometheus)")
    port = prometheus.exporter.server_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        body = response.read()
    assert b"kubescientist_nodes_finished_total" in body
    proc = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, timeout=30)
    assert proc.returncode == 0 and not (proc.stdout + proc.stderr).strip(), (proc.stdout + proc.stderr).decode()


def test_every_dashboard_and_alert_query_returns_data(prometheus: Scraped, tmp_path: Path) -> None:
    base = prometheus.base
    problems = []
    for title, expr in dashboard_queries():
        result = query(base, grafana_to_promql(expr))
        if result.get("status") != "success":
            problems.append(f"{title}: {expr}\n  {result.get('errorType')}: {result.get('error')}")
        elif not result["data"]["result"]:
            problems.append(f"{title}: {expr}\n  no data")
    alerts = rendered_alerts(tmp_path)
    assert set(alerts) == {"KubescientistRunStuck", "KubescientistNodeFailureRateHigh",
                           "KubescientistBudgetNearCap", "KubescientistOperatorAbsent"}
    firing = {}
    for name, expr in alerts.items():
        result = query(base, expr)
        if result.get("status") != "success":
            problems.append(f"alert {name}: {result.get('errorType')}: {result.get('error')}")
        else:
            firing[name] = result["data"]["result"]
    assert not problems, "\n".join(problems)
    # The simulated state trips exactly the three run alerts, with the right labels.
    assert [r["metric"] for r in firing["KubescientistRunStuck"]] == [{"namespace": "lab", "run": "stuck"}]
    assert [r["metric"] for r in firing["KubescientistBudgetNearCap"]] == [
        {"namespace": "lab", "run": "busy", "budget": "nodes"}]
    assert len(firing["KubescientistNodeFailureRateHigh"]) == 1
    assert 0.25 < float(firing["KubescientistNodeFailureRateHigh"][0]["value"][1]) < 0.45
    assert firing["KubescientistOperatorAbsent"] == []  # the operator is up...
    # ...then its endpoint goes away, and the alert's expression says so once a scrape fails.
    prometheus.simulation.stop.set()
    prometheus.exporter.shutdown()
    prometheus.exporter.server_close()
    deadline = time.monotonic() + 15
    absent: list[Any] = []
    while time.monotonic() < deadline and not absent:
        absent = query(base, alerts["KubescientistOperatorAbsent"])["data"]["result"]
        time.sleep(0.5)
    assert [r["metric"] for r in absent] == [{"job": prometheus.job}]
