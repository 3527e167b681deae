"""The Helm chart (charts/kubescientist), without a cluster.

Rendering needs the helm binary: the one the e2e setup caches (~/.cache/kubescientist/tools/.../helm,
`python tests/e2e/cluster/cluster.py tools` installs it) or any helm on PATH; without one those tests skip.
Alert rules are checked with promtool (Debian package `prometheus`) when it is installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from kubescientist.adapters import metrics as operator_metrics
from kubescientist.adapters.kube import config, naming

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "kubescientist"
RELEASE = "ks"
FULLNAME = "ks-kubescientist"


def _helm() -> str | None:
    cache = Path(os.environ.get("KUBESCIENTIST_CACHE", Path.home() / ".cache" / "kubescientist"))
    cached = sorted(cache.glob("tools/*/helm"))
    if cached:
        return str(cached[-1])
    return shutil.which("helm")


HELM = _helm()
needs_helm = pytest.mark.skipif(HELM is None, reason="no helm binary (python tests/e2e/cluster/cluster.py tools)")
needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                                    reason="promtool not installed (apt-get install prometheus)")


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    assert HELM is not None
    proc = subprocess.run([HELM, *args], capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)}: exit {proc.returncode}\n{proc.stderr}{proc.stdout}")
    return proc


def render(values: Mapping[str, Any] | None = None, tmp: Path | None = None, namespace: str = "kubescientist",
           ) -> list[dict[str, Any]]:
    """`helm template` with a values file; the rendered objects (no CRDs: Helm does not template crds/)."""
    args = ["template", RELEASE, str(CHART), "--namespace", namespace]
    if values:
        path = (tmp or Path("/tmp")) / f"values-{os.getpid()}-{abs(hash(json.dumps(values, sort_keys=True)))}.yaml"
        path.write_text(yaml.safe_dump(dict(values)))
        args += ["-f", str(path)]
    out = helm(*args).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = find(objects, kind, name)
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


ALL_FEATURES: dict[str, Any] = {
    "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
    "prometheusRule": {"enabled": True},
    "grafanaDashboard": {"enabled": True},
    "networkPolicy": {"enabled": True, "objectStorage": {"cidrs": ["10.0.0.5/32"], "ports": [8333]}},
    "operator": {"watchNamespaces": ["research", "team-b"]},
    "podSecurity": {"createNamespaces": True},
    "llm": {"existingSecret": "llm-key", "prices": {"gpt-4o": {"input": 2.5, "output": 10.0}}},
}


# ------------------------------------------------------------------------------------------- static files


def test_chart_crds_are_byte_identical_to_the_repository_crds() -> None:
    """Helm installs crds/ from the chart; the repository's crds/ is the source of truth. Keep them equal:
    `cp crds/*.yaml charts/kubescientist/crds/`."""
    source = sorted(p.name for p in (REPO / "crds").glob("*.yaml"))
    copies = sorted(p.name for p in (CHART / "crds").glob("*.yaml"))
    assert copies == source
    for name in source:
        assert (CHART / "crds" / name).read_bytes() == (REPO / "crds" / name).read_bytes(), name


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "kubescientist"
    from kubescientist import __version__

    assert chart["appVersion"] == __version__, "images default to appVersion: keep it the package's version"


def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
    return loaded


def test_values_yaml_satisfies_its_schema() -> None:
    jsonschema.Draft7Validator.check_schema(schema())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.validate(values, schema())


BAD_VALUES: list[tuple[str, dict[str, Any], str]] = [
    ("two replicas", {"operator": {"replicas": 2}}, "replicas"),
    ("latest tag", {"operator": {"image": {"repository": "r/op", "tag": "latest"}}}, "tag"),
    ("malformed digest", {"nodes": {"image": {"repository": "r/n", "digest": "sha256:xyz"}}}, "digest"),
    ("unknown key (typo)", {"operator": {"replica": 1}}, "replica"),
    ("bad namespace", {"operator": {"watchNamespaces": ["Not_A_Namespace"]}}, "watchNamespaces"),
    ("ratio above 1", {"prometheusRule": {"budgetRatio": 1.5}}, "budgetRatio"),
    ("price as text", {"llm": {"prices": {"m": {"input": "cheap", "output": 1}}}}, "input"),
    ("bad duration", {"prometheusRule": {"nodeFailureWindow": "30 minutes"}}, "nodeFailureWindow"),
    ("bad PSS level", {"podSecurity": {"level": "strict"}}, "level"),
]


def _merged(override: Mapping[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())

    def merge(into: dict[str, Any], patch: Mapping[str, Any]) -> None:
        for key, value in patch.items():
            if isinstance(value, Mapping) and isinstance(into.get(key), dict):
                merge(into[key], value)
            else:
                into[key] = value

    merge(values, override)
    return values


@pytest.mark.parametrize("why, override, field", BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_schema_rejects_bad_values(why: str, override: dict[str, Any], field: str) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(_merged(override), schema())


@needs_helm
@pytest.mark.parametrize("why, override, field", BAD_VALUES[:5], ids=[b[0] for b in BAD_VALUES[:5]])
def test_helm_lint_fails_on_bad_values(why: str, override: dict[str, Any], field: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(override))
    proc = helm("lint", str(CHART), "-f", str(path), check=False)
    assert proc.returncode != 0, proc.stdout
    assert field in proc.stdout + proc.stderr


@needs_helm
@pytest.mark.parametrize("values", [{}, ALL_FEATURES], ids=["defaults", "all-features"])
def test_helm_lint_is_clean(values: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    proc = helm("lint", "--strict", str(CHART), "-f", str(path))
    assert "0 chart(s) failed" in proc.stdout


# ------------------------------------------------------------------------------------------- rendering


@needs_helm
def test_defaults_render_the_operator_and_its_rbac(tmp_path: Path) -> None:
    objects = render(tmp=tmp_path)
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in objects)
    assert kinds == sorted([
        ("ServiceAccount", f"{FULLNAME}-operator"),
        ("ClusterRole", f"{FULLNAME}-operator"), ("ClusterRole", f"{FULLNAME}-operator-cluster"),
        ("ClusterRoleBinding", f"{FULLNAME}-operator"), ("ClusterRoleBinding", f"{FULLNAME}-operator-cluster"),
        ("ClusterRole", f"{FULLNAME}-edit"), ("ClusterRole", f"{FULLNAME}-view"),
        ("Deployment", f"{FULLNAME}-operator"), ("Service", f"{FULLNAME}-metrics"),
    ])
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["--all-namespaces", "--liveness=http://0.0.0.0:8080/healthz"]


def _env(deployment: Mapping[str, Any]) -> dict[str, str]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


@needs_helm
def test_operator_env_is_what_its_config_reads(tmp_path: Path) -> None:
    """Every KUBESCIENTIST_* variable maps to a Settings field (or a documented extra), and parses."""
    objects = render({"nodes": {"podLabels": {"team": "ml"}}, **{k: v for k, v in ALL_FEATURES.items()
                                                                  if k in ("llm", "operator")}}, tmp_path)
    env = _env(one(objects, "Deployment"))
    fields = {f"{config.PREFIX}{f.upper()}" for f in config.Settings.__dataclass_fields__}
    extras = {operator_metrics.PORT_ENV, "KUBESCIENTIST_LLM_API_KEY_FILE", "KUBESCIENTIST_LLM_PRICES",
              "KUBESCIENTIST_LLM_MODEL"}
    ours = {k for k in env if k.startswith("KUBESCIENTIST_")}
    assert ours - fields - extras == set()
    settings = config.from_env(env)
    defaults = config.Settings()
    assert settings.node_image == defaults.node_image, "chart default node image = operator default"
    assert settings.publish_image == "ghcr.io/kubescientist/writeup:0.1.0"
    assert settings.pod_labels == {"team": "ml"}
    assert settings.run_as_user == defaults.run_as_user
    assert env[operator_metrics.PORT_ENV] == "9090"
    # The LLM key is a mounted file, never an env value.
    assert env["KUBESCIENTIST_LLM_API_KEY_FILE"] == "/var/run/secrets/kubescientist/llm/api-key"
    assert not any("API_KEY" in k and k != "KUBESCIENTIST_LLM_API_KEY_FILE" for k in env)
    prices = one(objects, "ConfigMap", f"{FULLNAME}-llm-prices")
    assert json.loads(prices["data"]["prices.json"]) == {"gpt-4o": {"input": 2.5, "output": 10.0}}


@needs_helm
def test_operator_pod_meets_pod_security_restricted(tmp_path: Path) -> None:
    spec = one(render(tmp=tmp_path), "Deployment")["spec"]["template"]["spec"]
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["runAsUser"] == config.Settings().run_as_user
    for container in spec["containers"]:
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["readOnlyRootFilesystem"] is True
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
        assert container["image"] == "ghcr.io/kubescientist/operator:0.1.0"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


@needs_helm
def test_image_digest_wins_over_tag(tmp_path: Path) -> None:
    digest = "sha256:" + "ab" * 32
    objects = render({"operator": {"image": {"repository": "reg/op", "tag": "9.9.9", "digest": digest}},
                      "nodes": {"image": {"repository": "reg/node", "tag": "1.2.3"}}}, tmp_path)
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == f"reg/op@{digest}"
    assert _env(deployment)["KUBESCIENTIST_NODE_IMAGE"] == "reg/node:1.2.3"


# ------------------------------------------------------------------------------------------- RBAC

Rule = tuple[str, str, str]
"""(apiGroup, resource, verb)."""

NAMESPACED: set[Rule] = {
    # kopf watches runs and writes its finalizer and progress annotations; the reconciler patches status.
    ("kubescientist.io", "researchruns", "list"), ("kubescientist.io", "researchruns", "watch"),
    ("kubescientist.io", "researchruns", "patch"), ("kubescientist.io", "researchruns/status", "patch"),
    # ExperimentNodes: kopf's index (list, watch), created by the reconciler (get after a 409), status patched.
    ("kubescientist.io", "experimentnodes", "get"), ("kubescientist.io", "experimentnodes", "list"),
    ("kubescientist.io", "experimentnodes", "watch"), ("kubescientist.io", "experimentnodes", "create"),
    ("kubescientist.io", "experimentnodes/status", "patch"),
    # Owner references with blockOwnerDeletion (OwnerReferencesPermissionEnforcement).
    ("kubescientist.io", "researchruns/finalizers", "update"),
    ("kubescientist.io", "experimentnodes/finalizers", "update"),
    ("batch", "jobs", "get"), ("batch", "jobs", "list"), ("batch", "jobs", "watch"), ("batch", "jobs", "create"),
    ("batch", "jobs", "patch"),  # ttlSecondsAfterFinished once the node's outcome is saved
    ("", "pods", "list"), ("", "pods", "watch"),
    ("", "events", "create"),
    ("", "configmaps", "get"), ("", "secrets", "get"), ("", "persistentvolumeclaims", "get"),
    # Campaigns: kopf's daemon per campaign (list, watch, patch), the controller's runs, status and the
    # ConfigMap of each round's proposed ideas; runs and ConfigMaps are owned by their campaign.
    ("kubescientist.io", "researchruns", "create"),
    ("kubescientist.io", "researchcampaigns", "list"), ("kubescientist.io", "researchcampaigns", "watch"),
    ("kubescientist.io", "researchcampaigns", "patch"), ("kubescientist.io", "researchcampaigns/status", "patch"),
    ("kubescientist.io", "researchcampaigns/finalizers", "update"),
    ("", "configmaps", "list"), ("", "configmaps", "create"),
    ("kueue.x-k8s.io", "workloads", "list"),
}
CLUSTER: set[Rule] = {("apiextensions.k8s.io", "customresourcedefinitions", "list"),
                      ("apiextensions.k8s.io", "customresourcedefinitions", "watch")}
NAMESPACE_SCAN: set[Rule] = {("", "namespaces", "list"), ("", "namespaces", "watch")}


def rules_of(role: Mapping[str, Any]) -> set[Rule]:
    out: set[Rule] = set()
    for rule in role["rules"]:
        assert not rule.get("resourceNames") and not rule.get("nonResourceURLs")
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    assert "*" not in (group, resource, verb), rule
                    out.add((group, resource, verb))
    return out


def test_expected_rules_cover_the_operators_api_calls() -> None:
    """The kinds the operator's client can touch (clients._PLURALS) are all granted, and nothing it never
    touches is (Secret/ConfigMap get, Job/ExperimentNode create, Pod list...)."""
    from kubescientist.adapters.kube import clients

    plurals = set(clients._PLURALS.values())
    granted = {resource for _, resource, _ in NAMESPACED}
    assert plurals <= granted | {"pods"}
    assert {naming.RUNS, naming.NODES} <= granted
    assert not any(verb in ("delete", "deletecollection", "update", "*") and not r.endswith("/finalizers")
                   for _, r, verb in NAMESPACED)


@needs_helm
def test_rbac_is_exactly_the_expected_set_cluster_wide(tmp_path: Path) -> None:
    objects = render(tmp=tmp_path)
    assert rules_of(one(objects, "ClusterRole", f"{FULLNAME}-operator")) == NAMESPACED
    assert rules_of(one(objects, "ClusterRole", f"{FULLNAME}-operator-cluster")) == CLUSTER
    bindings = {b["roleRef"]["name"]: b for b in find(objects, "ClusterRoleBinding")}
    assert set(bindings) == {f"{FULLNAME}-operator", f"{FULLNAME}-operator-cluster"}
    for binding in bindings.values():
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": f"{FULLNAME}-operator",
                                        "namespace": "kubescientist"}]
    assert not find(objects, "RoleBinding")


@needs_helm
def test_rbac_with_watched_namespaces_is_bound_only_there(tmp_path: Path) -> None:
    objects = render({"operator": {"watchNamespaces": ["research", "team-b"]}}, tmp_path)
    assert rules_of(one(objects, "ClusterRole", f"{FULLNAME}-operator")) == NAMESPACED
    assert rules_of(one(objects, "ClusterRole", f"{FULLNAME}-operator-cluster")) == CLUSTER | NAMESPACE_SCAN
    assert [b["roleRef"]["name"] for b in find(objects, "ClusterRoleBinding")] == [f"{FULLNAME}-operator-cluster"]
    bindings = find(objects, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["research", "team-b"]
    assert all(b["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                "name": f"{FULLNAME}-operator"} for b in bindings)
    args = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:2] == ["--namespace=research", "--namespace=team-b"]


@needs_helm
def test_rbac_can_be_left_to_the_user(tmp_path: Path) -> None:
    objects = render({"rbac": {"create": False}, "serviceAccount": {"create": False, "name": "mine"}}, tmp_path)
    assert not [o for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding", "RoleBinding",
                                                    "ServiceAccount")]
    assert one(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "mine"


# ------------------------------------------------------------------------------------------- optional objects


@needs_helm
def test_all_features_render(tmp_path: Path) -> None:
    objects = render(ALL_FEATURES, tmp_path)
    monitor = one(objects, "ServiceMonitor")
    service = one(objects, "Service")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert all(service["metadata"]["labels"][k] == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"] == "metrics"
    namespaces = find(objects, "Namespace")
    assert sorted(n["metadata"]["name"] for n in namespaces) == ["research", "team-b"]
    for ns in namespaces:
        labels = ns["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
        assert ns["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    dashboard = one(objects, "ConfigMap", f"{FULLNAME}-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["kubescientist.json"]) == json.loads(
        (CHART / "dashboards" / "kubescientist.json").read_text())


@needs_helm
def test_network_policy_confines_the_operators_pods(tmp_path: Path) -> None:
    objects = render(ALL_FEATURES, tmp_path)
    policies = find(objects, "NetworkPolicy")
    assert sorted(p["metadata"]["namespace"] for p in policies) == ["research", "team-b"]
    spec = policies[0]["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"] and spec["ingress"] == []
    # It selects exactly the pods the operator labels (node, writeup, review), not the operator itself.
    selector = spec["podSelector"]
    for role in ("node", "writeup", "review"):
        labels = naming.child_labels("run", role, "n0001", 1) if role == "node" else naming.child_labels("run", role)
        assert all(labels.get(k) == v for k, v in selector["matchLabels"].items())
        assert labels[naming.ROLE_LABEL] in selector["matchExpressions"][0]["values"]
    operator_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert not all(operator_labels.get(k) == v for k, v in selector["matchLabels"].items())
    dns, storage = spec["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert storage == {"to": [{"ipBlock": {"cidr": "10.0.0.5/32"}}], "ports": [{"protocol": "TCP", "port": 8333}]}


@needs_helm
@pytest.mark.parametrize("values, message", [
    ({"networkPolicy": {"enabled": True, "objectStorage": {"cidrs": ["10.0.0.5/32"]}}}, "networkPolicy.namespaces"),
    ({"networkPolicy": {"enabled": True, "namespaces": ["a"]}}, "objectStorage.cidrs"),
])
def test_network_policy_refuses_to_cut_nodes_off(values: dict[str, Any], message: str, tmp_path: Path) -> None:
    path = tmp_path / "v.yaml"
    path.write_text(yaml.safe_dump(values))
    proc = helm("template", RELEASE, str(CHART), "-f", str(path), check=False)
    assert proc.returncode != 0 and message in proc.stderr


# ------------------------------------------------------------------------------------------- alerts, dashboard


def metric_families() -> set[str]:
    """Every series name the operator's registry can expose (after a simulated run)."""
    from prometheus_client.parser import text_string_to_metric_families

    registry = operator_metrics.Metrics()
    registry.run_phase_changed("ns", "r", "Searching")
    registry.run_nodes_counted("ns", "r", {"running": 1})
    registry.nodes_waiting("ns", "r", 1)
    registry.best_metric("ns", "r", "m", 1.0)
    registry.budget_usage("ns", "r", "nodes", 1, 2)
    registry.node_finished("initial", "draft", "Failed", 1.0)
    registry.reaction_latency(1.0)
    registry.gpu_seconds("ns", 1.0)
    registry.llm_usage("code", "m", 1, 1, 0.1)
    registry.api_error("get", "pods", 500)
    registry.reconcile_finished(0.1, True)
    registry.campaign_observed("ns", "c", {"running": 1}, 1, 0.1, 1.0)
    return {s.name for f in text_string_to_metric_families(registry.exposition().decode()) for s in f.samples}


def names_in(expr: str) -> set[str]:
    return set(re.findall(r"\b((?:kubescientist|process)_[a-z_]+)\b", expr))


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((CHART / "dashboards" / "kubescientist.json").read_text())
    return loaded


def dashboard_exprs() -> Iterator[tuple[str, str]]:
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def test_dashboard_is_well_formed_grafana_json() -> None:
    board = dashboard()
    assert board["uid"] == "kubescientist-operator" and board["schemaVersion"] >= 36
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        box = panel["gridPos"]
        assert 0 <= box["x"] and box["x"] + box["w"] <= 24 and box["h"] > 0, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert panel["targets"] and len(refs) == len(set(refs)), panel["title"]
    boxes = [(p["gridPos"], p["title"]) for p in board["panels"]]
    for i, (a, first) in enumerate(boxes):
        for b, second in boxes[i + 1:]:
            overlap = (a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"] and a["y"] < b["y"] + b["h"]
                       and b["y"] < a["y"] + a["h"])
            assert not overlap, f"panels overlap: {first!r} and {second!r}"
    variables_used = {v for _, e in dashboard_exprs() for v in re.findall(r"\$(\w+)", e)}
    assert variables_used <= {"namespace", "run", "__rate_interval", "__range"}


def test_dashboard_and_alerts_query_only_metrics_the_operator_exports() -> None:
    exported = metric_families() | {"up"}
    for title, expr in dashboard_exprs():
        assert names_in(expr) and names_in(expr) <= exported, f"{title}: {names_in(expr) - exported}"
    # The alert template's expressions, read from the raw template (rendering is tested below).
    template = (CHART / "templates" / "prometheusrule.yaml").read_text()
    assert names_in(template) <= exported, names_in(template) - exported


def rendered_rules(tmp_path: Path, values: Mapping[str, Any] | None = None) -> dict[str, Any]:
    objects = render({"prometheusRule": {"enabled": True, **(values or {})}}, tmp_path)
    spec: dict[str, Any] = one(objects, "PrometheusRule")["spec"]
    return spec


@needs_helm
@needs_promtool
def test_promtool_accepts_the_rendered_rules(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(rendered_rules(tmp_path)))
    proc = subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 rules found" in proc.stdout


def alert_exprs(spec: Mapping[str, Any]) -> dict[str, str]:
    return {r["alert"]: r["expr"] for g in spec["groups"] for r in g["rules"]}


@needs_helm
@needs_promtool
def test_alerts_fire_exactly_when_they_should(tmp_path: Path) -> None:
    """promtool's rule unit tests on synthetic series: each alert's expression at a chosen time."""
    spec = rendered_rules(tmp_path, {"stuckRunSeconds": 3600})
    exprs = alert_exprs(spec)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec))
    job = f"{FULLNAME}-metrics"
    series = [
        # stuck: searching, last progress at t=0.
        {"series": 'kubescientist_run_last_progress_timestamp_seconds{namespace="ns",run="stuck"}', "values": "0x150"},
        {"series": 'kubescientist_run_phase{namespace="ns",run="stuck",phase="Searching"}', "values": "1x150"},
        # busy: progress every minute.
        {"series": 'kubescientist_run_last_progress_timestamp_seconds{namespace="ns",run="busy"}',
         "values": "0+60x150"},
        {"series": 'kubescientist_run_phase{namespace="ns",run="busy",phase="Searching"}', "values": "1x150"},
        # paused on purpose: not stuck, and its spent budget is no news.
        {"series": 'kubescientist_run_last_progress_timestamp_seconds{namespace="ns",run="paused"}', "values": "0x150"},
        {"series": 'kubescientist_run_phase{namespace="ns",run="paused",phase="Suspended"}', "values": "1x150"},
        {"series": 'kubescientist_run_budget_usage_ratio{namespace="ns",run="paused",budget="cost"}', "values": "0.99x150"},
        {"series": 'kubescientist_run_budget_usage_ratio{namespace="ns",run="busy",budget="nodes"}', "values": "0.95x150"},
        {"series": 'kubescientist_run_budget_usage_ratio{namespace="ns",run="busy",budget="cost"}', "values": "0.5x150"},
        # one node in two fails for infrastructure reasons, one a minute each.
        {"series": 'kubescientist_nodes_finished_total{stage="initial",action="draft",phase="Failed"}',
         "values": "0+1x150"},
        {"series": 'kubescientist_nodes_finished_total{stage="initial",action="draft",phase="Succeeded"}',
         "values": "0+1x150"},
        {"series": f'up{{job="{job}",instance="a"}}', "values": "1x150"},
    ]
    quiet = [
        {"series": 'kubescientist_nodes_finished_total{stage="initial",action="draft",phase="Succeeded"}',
         "values": "0+1x150"},
        # one failure among many: below the ratio.
        {"series": 'kubescientist_nodes_finished_total{stage="initial",action="draft",phase="Failed"}',
         "values": "0x100 1x50"},
    ]
    rule = next(r for g in spec["groups"] for r in g["rules"] if r["alert"] == "KubescientistRunStuck")
    fill = {"{{ $labels.namespace }}": "ns", "{{ $labels.run }}": "stuck",
            "{{ $value | humanizeDuration }}": "1h 15m 0s"}  # 75 minutes without progress
    stuck_annotations = {}
    for key, text in rule["annotations"].items():
        for placeholder, value in fill.items():
            text = text.replace(placeholder, value)
        assert "{{" not in text, text
        stuck_annotations[key] = text
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {"interval": "1m", "input_series": series, "promql_expr_test": [
                {"expr": exprs["KubescientistRunStuck"], "eval_time": "90m",
                 "exp_samples": [{"labels": '{namespace="ns",run="stuck"}', "value": 5400}]},
                {"expr": exprs["KubescientistRunStuck"], "eval_time": "30m", "exp_samples": []},
                {"expr": exprs["KubescientistBudgetNearCap"], "eval_time": "10m",
                 "exp_samples": [{"labels": '{namespace="ns",run="busy",budget="nodes"}', "value": 0.95}]},
                {"expr": exprs["KubescientistNodeFailureRateHigh"], "eval_time": "60m",
                 "exp_samples": [{"labels": "{}", "value": 0.5}]},
                {"expr": exprs["KubescientistOperatorAbsent"], "eval_time": "10m", "exp_samples": []},
            ]},
            {"interval": "1m", "input_series": [{"series": f'up{{job="{job}",instance="a"}}', "values": "1x5 0x10"}],
             "promql_expr_test": [
                {"expr": exprs["KubescientistOperatorAbsent"], "eval_time": "3m", "exp_samples": []},
                {"expr": exprs["KubescientistOperatorAbsent"], "eval_time": "10m",
                 "exp_samples": [{"labels": f'{{job="{job}"}}', "value": 0}]},
            ]},
            {"interval": "1m", "input_series": quiet, "promql_expr_test": [
                {"expr": exprs["KubescientistNodeFailureRateHigh"], "eval_time": "140m", "exp_samples": []},
                {"expr": exprs["KubescientistOperatorAbsent"], "eval_time": "10m",
                 "exp_samples": [{"labels": f'{{job="{job}"}}', "value": 1}]},
            ]},
            # The alert itself, with its `for`: pending at first, firing 10 minutes later, annotations rendered.
            {"interval": "1m", "input_series": series[:2], "alert_rule_test": [
                {"eval_time": "61m", "alertname": "KubescientistRunStuck", "exp_alerts": []},
                {"eval_time": "75m", "alertname": "KubescientistRunStuck", "exp_alerts": [
                    {"exp_labels": {"severity": "warning", "namespace": "ns", "run": "stuck"},
                     "exp_annotations": stuck_annotations}]},
            ]},
        ],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    proc = subprocess.run(["promtool", "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@needs_helm
def test_alert_thresholds_come_from_values(tmp_path: Path) -> None:
    exprs = alert_exprs(rendered_rules(tmp_path, {"stuckRunSeconds": 999, "nodeFailureRatio": 0.4,
                                                  "nodeFailureWindow": "2h", "budgetRatio": 0.8}))
    assert "> 999" in exprs["KubescientistRunStuck"]
    assert "> 0.4" in exprs["KubescientistNodeFailureRateHigh"] and "[2h]" in exprs["KubescientistNodeFailureRateHigh"]
    assert ">= 0.8" in exprs["KubescientistBudgetNearCap"]
    assert f'job="{FULLNAME}-metrics"' in exprs["KubescientistOperatorAbsent"]
