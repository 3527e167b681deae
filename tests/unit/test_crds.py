"""Static checks of the two CustomResourceDefinitions, without a cluster.

The apiserver (CEL compilation and cost, structural-schema rules) is exercised on the test cluster; here we check
what can be checked offline: names and metadata, the contract's fields, descriptions everywhere, structural
shape, bounded status, and that the same openAPIV3Schema works for the local runner's jsonschema validation.
"""

from __future__ import annotations

import copy
import importlib.util
import re
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from kubescientist.adapters.manifest import apply_defaults

CRD_DIR = Path(__file__).resolve().parents[2] / "crds"
STAGES = ["initial", "tuning", "research", "ablation"]

# Keywords the apiserver and the jsonschema library both understand the same way; anything else in the schema
# would be validated differently in a cluster and in local mode.
PORTABLE_KEYWORDS = {
    "type", "properties", "required", "items", "enum", "minimum", "maximum", "minLength", "maxLength",
    "minItems", "maxItems", "maxProperties", "pattern", "default", "format", "additionalProperties",
    "description", "nullable", "anyOf",
}
CEL_REASONS = {"FieldValueInvalid", "FieldValueForbidden", "FieldValueRequired", "FieldValueDuplicate"}

Schema = dict[str, Any]


def _load(name: str) -> dict[str, Any]:
    with open(CRD_DIR / name, encoding="utf-8") as f:
        docs = list(yaml.safe_load_all(f))
    assert len(docs) == 1, f"{name} must hold exactly one document"
    crd = docs[0]
    assert isinstance(crd, dict)
    return crd


@pytest.fixture(scope="module")
def rr_crd() -> dict[str, Any]:
    return _load("researchrun.yaml")


@pytest.fixture(scope="module")
def en_crd() -> dict[str, Any]:
    return _load("experimentnode.yaml")


@pytest.fixture(scope="module", params=["researchrun.yaml", "experimentnode.yaml", "researchcampaign.yaml"])
def any_crd(request: pytest.FixtureRequest) -> dict[str, Any]:
    return _load(request.param)


def _version(crd: dict[str, Any]) -> dict[str, Any]:
    versions = crd["spec"]["versions"]
    assert len(versions) == 1
    version = versions[0]
    assert isinstance(version, dict)
    return version


def _root(crd: dict[str, Any]) -> Schema:
    root = _version(crd)["schema"]["openAPIV3Schema"]
    assert isinstance(root, dict)
    return root


def _walk(node: Schema, path: str = "") -> Iterator[tuple[str, Schema]]:
    """Yields (dotted path, schema) for every schema node, anyOf branches excluded (they are type-only)."""
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from _walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}{{}}")


def _at(root: Schema, dotted: str) -> Schema:
    """The schema of a dotted field path such as spec.search.parallelism ([] steps into array items)."""
    node = root
    for part in dotted.split("."):
        name, items = (part[:-2], True) if part.endswith("[]") else (part, False)
        node = node["properties"][name]
        if items:
            node = node["items"]
    return node


def _validator(root: Schema) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(root)


def _errors_at(root: Schema, obj: dict[str, Any]) -> list[deque[str | int]]:
    return [e.absolute_path for e in _validator(root).iter_errors(obj)]


# --- samples -----------------------------------------------------------------------------------------------


def _sample_run() -> dict[str, Any]:
    return {
        "apiVersion": "kubescientist.io/v1alpha1",
        "kind": "ResearchRun",
        "metadata": {"name": "grokking-rope", "namespace": "research"},
        "spec": {
            "idea": {"inline": {"title": "RoPE and grokking", "hypothesis": "RoPE grokks earlier.",
                                "description": "# Idea\nCompare positional encodings."}},
            "template": {"s3": {"uri": "s3://kubescientist/templates/sha256-0f3a.tar.gz"}},
            "objective": {"metric": "val_acc", "direction": "maximize", "aggregation": "min",
                          "datasets": ["mod97", "perm5"], "value": "final"},
            "stages": [
                {"name": "initial", "maxNodes": 6, "goal": "Get it running."},
                {"name": "tuning"},
                {"name": "research", "maxNodes": 12},
                {"name": "ablation", "maxNodes": 3},
            ],
            "search": {"parallelism": 8, "drafts": 3, "debugProbability": 0.25, "maxDebugDepth": 2},
            "resources": {"gpus": 1, "cpu": 4, "memory": "16Gi", "deadlineSeconds": 3600},
            "seeds": 3,
            "budget": {"wallClockSeconds": 86400, "maxTotalNodes": 60},
            "llm": {"baseURL": "http://vllm.llm.svc:8000/v1", "models": {"code": "qwen3-coder", "vision": "qwen2.5-vl"},
                    "secretRef": {"name": "llm-key"}, "maxTokens": 8192, "maxCostUSD": 20},
            "storage": {"s3": {"endpoint": "http://minio.minio.svc:9000", "bucket": "kubescientist",
                               "prefix": "team-a/", "secretRef": {"name": "s3-creds"}, "insecure": False}},
            "writeup": {"enabled": True},
            "review": {"enabled": True, "reviewers": 5},
            "seed": 1234,
            "suspend": False,
            "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule",
                             "futureField": "kept"}],
            "priorityClassName": "research-low",
            "queueName": "gpu-queue",
        },
        "status": {
            "phase": "Searching", "stage": "research", "observedGeneration": 2,
            "nodes": {"total": 14, "pending": 2, "running": 8, "succeeded": 3, "buggy": 1, "failed": 0},
            "bestNode": {"name": "grokking-rope-7f2c", "stage": "tuning", "metric": 0.991, "stderr": 0.004, "seeds": 3},
            "conditions": [{"type": "Ready", "status": "False", "reason": "Searching", "message": "",
                            "lastTransitionTime": "2026-11-23T10:00:00Z", "observedGeneration": 2}],
            "cost": {"promptTokens": 120000, "completionTokens": 30000, "usd": 1.25, "gpuSeconds": 5400.0},
            "startTime": "2026-11-23T10:00:00Z",
            "message": "research stage: 8 nodes running",
        },
    }


def _sample_node() -> dict[str, Any]:
    return {
        "apiVersion": "kubescientist.io/v1alpha1",
        "kind": "ExperimentNode",
        "metadata": {"name": "grokking-rope-7f2c", "namespace": "research"},
        "spec": {
            "run": "grokking-rope", "parent": "grokking-rope-11aa", "stage": "research", "action": "variant",
            "code": {"hash": "sha256:" + "0123456789abcdef" * 4, "uri": "s3://kubescientist/code/0123.tar.gz"},
            "config": {"seed": 17, "params": {"lr": 0.001, "positional": "rope", "schedule": {"warmup": 10}},
                       "variant": "rope"},
            "reason": "The tuned baseline plateaus at 0.97; try the rope variant.",
            "resources": {"gpus": 1, "cpu": "500m", "memory": "8Gi", "deadlineSeconds": 900},
        },
        "status": {
            "phase": "Succeeded", "metric": 0.991, "metrics": {"mod97": {"val_acc": 0.991, "val_loss": 0.03}},
            "buggy": False, "startTime": "2026-11-23T10:00:00Z", "completionTime": "2026-11-23T10:05:00Z",
            "durationSeconds": 300.5,
            "artifacts": {"uri": "s3://kubescientist/runs/grokking-rope/7f2c/", "stdout": "stdout.log",
                          "stderr": "stderr.log", "plots": ["curves/val_acc.png"]},
            "jobName": "grokking-rope-7f2c", "attempts": 1,
            "conditions": [{"type": "Ready", "status": "True", "reason": "Succeeded", "message": "done",
                            "lastTransitionTime": "2026-11-23T10:05:00Z"}],
        },
    }


# --- CRD metadata --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind", "plural", "short_names"),
    [
        ("researchrun.yaml", "ResearchRun", "researchruns", ["rr", "rrun"]),
        ("experimentnode.yaml", "ExperimentNode", "experimentnodes", ["en", "enode"]),
        ("researchcampaign.yaml", "ResearchCampaign", "researchcampaigns", ["rcamp", "campaign"]),
    ],
)
def test_names_group_and_version(name: str, kind: str, plural: str, short_names: list[str]) -> None:
    crd = _load(name)
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == f"{plural}.kubescientist.io"
    spec = crd["spec"]
    assert spec["group"] == "kubescientist.io"
    assert spec["scope"] == "Namespaced"
    names = spec["names"]
    assert names["kind"] == kind
    assert names["listKind"] == f"{kind}List"
    assert names["plural"] == plural
    assert names["singular"] == kind.lower()
    assert names["shortNames"] == short_names
    assert names["categories"] == ["kubescientist"]
    version = _version(crd)
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}


@pytest.mark.parametrize(
    ("name", "columns"),
    [
        ("researchrun.yaml", [("Phase", ".status.phase", "string"), ("Stage", ".status.stage", "string"),
                              ("Done", ".status.nodes.succeeded", "integer"),
                              ("Total", ".status.nodes.total", "integer"),
                              ("Best", ".status.bestNode.metric", "number"),
                              ("Age", ".metadata.creationTimestamp", "date")]),
        ("experimentnode.yaml", [("Run", ".spec.run", "string"), ("Stage", ".spec.stage", "string"),
                                 ("Action", ".spec.action", "string"), ("Phase", ".status.phase", "string"),
                                 ("Metric", ".status.metric", "number"),
                                 ("Age", ".metadata.creationTimestamp", "date")]),
        ("researchcampaign.yaml", [("Phase", ".status.phase", "string"), ("Round", ".status.round", "integer"),
                                   ("Running", ".status.runs.running", "integer"),
                                   ("Done", ".status.runs.succeeded", "integer"),
                                   ("Best", ".status.best.score", "number"),
                                   ("Age", ".metadata.creationTimestamp", "date")]),
    ],
)
def test_printer_columns(name: str, columns: list[tuple[str, str, str]]) -> None:
    crd = _load(name)
    printed = _version(crd)["additionalPrinterColumns"]
    default_view = [(c["name"], c["jsonPath"], c["type"]) for c in printed if c.get("priority", 0) == 0]
    assert default_view == columns
    root = _root(crd)
    for column in printed:
        path = column["jsonPath"]
        if path == ".metadata.creationTimestamp":
            continue
        # A column must read a field the schema declares, with the matching type, or it silently shows nothing.
        field = _at(root, path.lstrip("."))
        assert field["type"] == column["type"], f"column {column['name']}: {path} is {field['type']}"


# --- schema shape --------------------------------------------------------------------------------------------


def test_every_property_is_described(any_crd: dict[str, Any]) -> None:
    root = _root(any_crd)
    undocumented = []
    for path, node in _walk(root):
        # The apiserver rejects anything but `type: object` under the root metadata; kubectl explain shows
        # ObjectMeta's own documentation there.
        if path == ".metadata":
            assert node == {"type": "object"}
            continue
        if not str(node.get("description", "")).strip():
            undocumented.append(path or "<root>")
    assert not undocumented, f"properties without a description: {undocumented}"
    # The walk really reached the deep leaves (guards against the walker silently stopping early).
    paths = {p for p, _ in _walk(root)}
    assert ".status.conditions[].lastTransitionTime" in paths


def test_schema_is_structural(any_crd: dict[str, Any]) -> None:
    for path, node in _walk(_root(any_crd)):
        if node.get("x-kubernetes-int-or-string"):
            assert "type" not in node, path
            assert node.get("anyOf") == [{"type": "integer"}, {"type": "string"}], path
        elif path == ".metadata" or not node.get("x-kubernetes-preserve-unknown-fields"):
            assert node.get("type") in {"object", "array", "string", "integer", "number", "boolean"}, path
        else:
            assert node.get("type") == "object", path
        assert "anyOf" not in node or node.get("x-kubernetes-int-or-string"), f"{path}: anyOf outside int-or-string"
        assert not ("properties" in node and "additionalProperties" in node), f"{path}: properties+additionalProperties"
        if node.get("type") == "object" and path != ".metadata":
            assert (
                "properties" in node
                or isinstance(node.get("additionalProperties"), dict)
                or node.get("x-kubernetes-preserve-unknown-fields") is True
            ), f"{path}: object with neither properties, additionalProperties nor preserve-unknown-fields"
        if node.get("type") == "array":
            assert isinstance(node.get("items"), dict), f"{path}: array without items"
        unknown = {k for k in node if not k.startswith("x-kubernetes-")} - PORTABLE_KEYWORDS
        assert not unknown, f"{path}: keywords outside the portable set: {unknown}"


def test_strings_and_lists_are_bounded(any_crd: dict[str, Any]) -> None:
    # Bounds keep status objects small in etcd and let the CEL cost estimator accept the rules.
    unbounded = []
    for path, node in _walk(_root(any_crd)):
        if path in {"", ".metadata", ".apiVersion", ".kind"}:
            continue
        if node.get("type") == "string" and "enum" not in node and "maxLength" not in node:
            unbounded.append(path)
        if node.get("x-kubernetes-int-or-string") and "maxLength" not in node:
            unbounded.append(path)
        if node.get("type") == "array" and "maxItems" not in node:
            unbounded.append(path)
        if isinstance(node.get("additionalProperties"), dict) and "maxProperties" not in node:
            unbounded.append(path)
    assert not unbounded, f"unbounded fields: {unbounded}"
    status = _at(_root(any_crd), "status")
    preserved = [p for p, n in _walk(status) if n.get("x-kubernetes-preserve-unknown-fields")]
    assert not preserved, f"status must not hold free-form data: {preserved}"


def test_conditions_are_metav1_shaped(any_crd: dict[str, Any]) -> None:
    conditions = _at(_root(any_crd), "status.conditions")
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    item = conditions["items"]
    assert set(item["required"]) == {"type", "status", "lastTransitionTime", "reason", "message"}
    assert set(item["properties"]) == {"type", "status", "observedGeneration", "lastTransitionTime", "reason", "message"}
    assert item["properties"]["status"]["enum"] == ["True", "False", "Unknown"]
    assert item["properties"]["lastTransitionTime"]["format"] == "date-time"


def test_free_form_fields_preserve_unknown_fields(rr_crd: dict[str, Any], en_crd: dict[str, Any]) -> None:
    tolerations = _at(_root(rr_crd), "spec.tolerations[]")
    assert tolerations["type"] == "object" and tolerations["x-kubernetes-preserve-unknown-fields"] is True
    params = _at(_root(en_crd), "spec.config.params")
    assert params["type"] == "object" and params["x-kubernetes-preserve-unknown-fields"] is True


def test_patterns_compile_and_defaults_satisfy_their_schema(any_crd: dict[str, Any]) -> None:
    for path, node in _walk(_root(any_crd)):
        if "pattern" in node:
            re.compile(node["pattern"])
        if "default" in node:
            errors = list(jsonschema.Draft202012Validator(node).iter_errors(node["default"]))
            assert not errors, f"{path}: default does not satisfy its own schema: {errors[0].message}"


# --- the contract's fields -----------------------------------------------------------------------------------

RR_FIELDS: list[tuple[str, dict[str, Any]]] = [
    ("spec.idea.inline.title", {"type": "string", "minLength": 1, "maxLength": 200}),
    ("spec.idea.inline.description", {"type": "string", "maxLength": 20000}),
    ("spec.idea.configMapRef.key", {"type": "string", "default": "idea.json"}),
    ("spec.template.s3.uri", {"type": "string", "pattern": "^s3://"}),
    ("spec.objective.direction", {"enum": ["maximize", "minimize"], "default": "maximize"}),
    ("spec.objective.aggregation", {"enum": ["mean", "min", "max"], "default": "mean"}),
    ("spec.objective.datasets", {"type": "array", "default": []}),
    ("spec.objective.value", {"enum": ["final", "best"], "default": "final"}),
    ("spec.stages", {"type": "array", "minItems": 4, "maxItems": 4}),
    ("spec.stages[].name", {"enum": STAGES}),
    ("spec.stages[].maxNodes", {"type": "integer", "minimum": 1, "default": 4}),
    ("spec.stages[].goal", {"type": "string", "maxLength": 2000}),
    ("spec.search.parallelism", {"type": "integer", "minimum": 1, "maximum": 256, "default": 2}),
    ("spec.search.drafts", {"type": "integer", "minimum": 1, "maximum": 50, "default": 2}),
    ("spec.search.debugProbability", {"type": "number", "minimum": 0, "maximum": 1, "default": 0.5}),
    ("spec.search.maxDebugDepth", {"type": "integer", "minimum": 0, "maximum": 20, "default": 3}),
    ("spec.search.seedCandidates", {"type": "integer", "minimum": 1, "maximum": 10, "default": 2}),
    ("spec.resources.gpus", {"type": "integer", "minimum": 0, "maximum": 16, "default": 0}),
    ("spec.resources.cpu", {"x-kubernetes-int-or-string": True, "default": "1"}),
    ("spec.resources.memory", {"type": "string", "default": "4Gi"}),
    ("spec.resources.deadlineSeconds", {"type": "integer", "minimum": 1, "maximum": 604800, "default": 600}),
    ("spec.seeds", {"type": "integer", "minimum": 0, "maximum": 20, "default": 3}),
    ("spec.budget.wallClockSeconds", {"type": "integer", "minimum": 1}),
    ("spec.budget.maxTotalNodes", {"type": "integer", "minimum": 1}),
    ("spec.llm.secretRef.key", {"type": "string", "default": "api-key"}),
    ("spec.llm.maxTokens", {"type": "integer", "minimum": 1}),
    ("spec.llm.maxCostUSD", {"type": "number", "minimum": 0}),
    ("spec.storage.s3.prefix", {"type": "string", "default": ""}),
    ("spec.storage.s3.insecure", {"type": "boolean", "default": False}),
    ("spec.writeup.enabled", {"type": "boolean", "default": True}),
    ("spec.review.enabled", {"type": "boolean", "default": True}),
    ("spec.review.reviewers", {"type": "integer", "minimum": 1, "maximum": 10, "default": 3}),
    ("spec.seed", {"type": "integer", "minimum": 0, "default": 0}),
    ("spec.suspend", {"type": "boolean", "default": False}),
    ("status.phase", {"enum": ["Pending", "Searching", "WritingUp", "Reviewing", "Succeeded", "Failed", "Suspended"]}),
    ("status.stage", {"enum": STAGES}),
    ("status.startTime", {"format": "date-time"}),
    ("status.completionTime", {"format": "date-time"}),
]

EN_FIELDS: list[tuple[str, dict[str, Any]]] = [
    ("spec.stage", {"enum": STAGES}),
    ("spec.action", {"enum": ["draft", "debug", "improve", "tune", "variant", "ablate", "seed"]}),
    ("spec.code.hash", {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"}),
    ("spec.reason", {"type": "string", "maxLength": 2000}),
    ("status.phase", {"enum": ["Pending", "Running", "Succeeded", "Buggy", "Failed"]}),
    ("status.buggyReason", {"type": "string", "maxLength": 4000}),
    ("status.artifacts.plots", {"type": "array", "maxItems": 32}),
]


@pytest.mark.parametrize(("path", "expected"), RR_FIELDS, ids=[p for p, _ in RR_FIELDS])
def test_researchrun_field_matches_contract(rr_crd: dict[str, Any], path: str, expected: dict[str, Any]) -> None:
    node = _at(_root(rr_crd), path)
    assert {k: node.get(k) for k in expected} == expected


@pytest.mark.parametrize(("path", "expected"), EN_FIELDS, ids=[p for p, _ in EN_FIELDS])
def test_experimentnode_field_matches_contract(en_crd: dict[str, Any], path: str, expected: dict[str, Any]) -> None:
    node = _at(_root(en_crd), path)
    assert {k: node.get(k) for k in expected} == expected


def test_required_fields(rr_crd: dict[str, Any], en_crd: dict[str, Any]) -> None:
    rr = _root(rr_crd)
    assert rr["required"] == ["spec"]
    assert set(_at(rr, "spec")["required"]) == {"idea", "objective"}
    assert _at(rr, "spec.objective")["required"] == ["metric"]
    assert _at(rr, "spec.idea.ideasFile")["required"] == ["path", "name"]
    assert _at(rr, "spec.stages[]")["required"] == ["name"]
    assert set(_at(rr, "spec.storage.s3")["required"]) == {"endpoint", "bucket", "secretRef"}
    en = _root(en_crd)
    assert set(_at(en, "spec")["required"]) == {"run", "stage", "action", "code"}
    assert _at(en, "spec.code")["required"] == ["hash"]


def _shape(node: Any) -> Any:
    """The schema without its descriptions, which are worded for their own kind."""
    if isinstance(node, dict):
        return {k: _shape(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [_shape(v) for v in node]
    return node


def test_node_resources_have_the_run_resources_shape(rr_crd: dict[str, Any], en_crd: dict[str, Any]) -> None:
    # The operator copies the run's spec.resources into every node it creates, so the two must accept the same.
    assert _shape(_at(_root(en_crd), "spec.resources")) == _shape(_at(_root(rr_crd), "spec.resources"))


def test_default_stages_are_the_four_in_order(rr_crd: dict[str, Any]) -> None:
    stages = _at(_root(rr_crd), "spec.stages")
    assert [s["name"] for s in stages["default"]] == STAGES
    assert all(s["maxNodes"] == 4 and s["goal"].strip() for s in stages["default"])
    rules = [v["rule"] for v in stages["x-kubernetes-validations"]]
    assert "self.map(s, s.name) == ['initial', 'tuning', 'research', 'ablation']" in rules


# --- CEL rules -----------------------------------------------------------------------------------------------


def _rules(root: Schema) -> Iterator[tuple[str, Schema, dict[str, Any]]]:
    for path, node in _walk(root):
        for rule in node.get("x-kubernetes-validations", []):
            yield path, node, rule


def test_cel_rules_are_well_formed(any_crd: dict[str, Any]) -> None:
    rules = list(_rules(_root(any_crd)))
    assert rules
    for path, node, rule in rules:
        assert set(rule) <= {"rule", "message", "fieldPath", "reason"}, path
        assert rule["rule"].strip() and rule["message"].strip(), path
        assert rule["rule"].count("(") == rule["rule"].count(")"), f"{path}: unbalanced parentheses"
        if "reason" in rule:
            assert rule["reason"] in CEL_REASONS, path
        if "fieldPath" in rule:
            # The apiserver rejects a fieldPath that does not name a field of the schema the rule sits on.
            assert rule["fieldPath"].startswith("."), path
            _at(node, rule["fieldPath"][1:])


def _rule_texts(root: Schema, dotted: str) -> list[str]:
    node = root if dotted == "" else _at(root, dotted)
    return [v["rule"] for v in node.get("x-kubernetes-validations", [])]


def test_exactly_one_source_rules_name_every_source(rr_crd: dict[str, Any]) -> None:
    root = _root(rr_crd)
    for dotted in ("spec.idea", "spec.template"):
        sources = sorted(p for p in _at(root, dotted)["properties"] if p != "args")  # args: not a source
        one_of = [r for r in _rule_texts(root, dotted) if r.endswith("== 1")]
        assert len(one_of) == 1, dotted
        assert sorted(re.findall(r"has\(self\.(\w+)\)", one_of[0])) == sources


def test_immutability_rules(rr_crd: dict[str, Any], en_crd: dict[str, Any]) -> None:
    assert "self == oldSelf" in _rule_texts(_root(en_crd), "spec")
    rr = _root(rr_crd)
    for dotted in ("spec.idea", "spec.template", "spec.objective", "spec.seed"):
        assert "self == oldSelf" in _rule_texts(rr, dotted), dotted
    # Editable knobs must stay editable: budgets and parallelism are tuned while a run searches.
    for dotted in ("spec", "spec.search", "spec.budget", "spec.stages", "spec.suspend"):
        assert "self == oldSelf" not in _rule_texts(rr, dotted), dotted


def test_parent_rule(en_crd: dict[str, Any]) -> None:
    spec_rules = {v["rule"]: v for v in _at(_root(en_crd), "spec")["x-kubernetes-validations"]}
    required = spec_rules["self.action == 'draft' || has(self.parent)"]
    assert (required["fieldPath"], required["reason"]) == (".parent", "FieldValueRequired")


# --- jsonschema (local mode) ---------------------------------------------------------------------------------


def test_schema_is_a_valid_json_schema(any_crd: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator.check_schema(_root(any_crd))
    jsonschema.Draft7Validator.check_schema(_root(any_crd))


def test_sample_run_and_node_validate(rr_crd: dict[str, Any], en_crd: dict[str, Any]) -> None:
    _validator(_root(rr_crd)).validate(_sample_run())
    _validator(_root(en_crd)).validate(_sample_node())


def test_minimal_run_with_defaults_is_complete(rr_crd: dict[str, Any]) -> None:
    root = _root(rr_crd)
    spec: dict[str, Any] = {"idea": {"configMapRef": {"name": "idea"}}, "objective": {"metric": "val_loss"}}
    run = {"apiVersion": "kubescientist.io/v1alpha1", "kind": "ResearchRun", "metadata": {"name": "m"}, "spec": spec}
    run = apply_defaults(root, run)
    _validator(root).validate(run)
    # `default: {}` on the optional groups is what makes their inner defaults apply when the group is omitted.
    assert spec["search"] == {"parallelism": 2, "drafts": 2, "debugProbability": 0.5, "maxDebugDepth": 3,
                              "seedCandidates": 2}
    assert spec["resources"] == {"gpus": 0, "cpu": "1", "memory": "4Gi", "deadlineSeconds": 600, "network": False}
    assert spec["writeup"] == {"enabled": True} and spec["review"] == {"enabled": True, "reviewers": 3}
    assert spec["objective"] == {"metric": "val_loss", "direction": "maximize", "aggregation": "mean",
                                 "datasets": [], "value": "final"}
    assert spec["idea"]["configMapRef"]["key"] == "idea.json"
    assert [s["name"] for s in spec["stages"]] == STAGES
    assert (spec["seeds"], spec["seed"], spec["suspend"]) == (3, 0, False)
    assert "budget" not in spec and "template" not in spec


_DROP = object()


def _mutated(obj: dict[str, Any], keys: list[str | int], value: Any) -> dict[str, Any]:
    """A copy of obj with the field at keys set to value (or removed when value is _DROP)."""
    out = copy.deepcopy(obj)
    parent: Any = out
    for key in keys[:-1]:
        parent = parent[key]
    if value is _DROP:
        del parent[keys[-1]]
    else:
        parent[keys[-1]] = value
    return out


BAD_RUNS: list[tuple[str, list[str | int], Any]] = [
    ("maxNodes-0", ["spec", "stages", 2, "maxNodes"], 0),
    ("parallelism-0", ["spec", "search", "parallelism"], 0),
    ("parallelism-257", ["spec", "search", "parallelism"], 257),
    ("direction-up", ["spec", "objective", "direction"], "up"),
    ("stage-name", ["spec", "stages", 1, "name"], "tune"),
    ("debugProbability", ["spec", "search", "debugProbability"], 1.5),
    ("cpu-negative", ["spec", "resources", "cpu"], "-2"),
    ("memory-junk", ["spec", "resources", "memory"], "lots"),
    ("template-uri", ["spec", "template", "s3", "uri"], "https://example.com/t.tgz"),
    ("empty-title", ["spec", "idea", "inline", "title"], ""),
    ("seeds-21", ["spec", "seeds"], 21),
    ("bucket", ["spec", "storage", "s3", "bucket"], "Bad_Bucket"),
    ("gpus-17", ["spec", "resources", "gpus"], 17),
    ("status-phase", ["status", "phase"], "Done"),
]


@pytest.mark.parametrize(("keys", "value"), [(k, v) for _, k, v in BAD_RUNS], ids=[i for i, _, _ in BAD_RUNS])
def test_bad_run_fails_at_the_field(rr_crd: dict[str, Any], keys: list[str | int], value: Any) -> None:
    run = _mutated(_sample_run(), keys, value)
    assert _errors_at(_root(rr_crd), run) == [deque(keys)]


@pytest.mark.parametrize(
    ("keys", "value", "error_path"),
    [
        (["spec", "stages"], [{"name": "initial"}, {"name": "tuning"}, {"name": "research"}], ["spec", "stages"]),
        (["spec", "objective", "metric"], _DROP, ["spec", "objective"]),
        (["spec", "idea"], _DROP, ["spec"]),
    ],
    ids=["three-stages", "no-metric", "no-idea"],
)
def test_bad_run_fails_at_the_parent(
    rr_crd: dict[str, Any], keys: list[str | int], value: Any, error_path: list[str | int]
) -> None:
    run = _mutated(_sample_run(), keys, value)
    assert _errors_at(_root(rr_crd), run) == [deque(error_path)]


BAD_NODES: list[tuple[str, list[str | int], Any, list[str | int]]] = [
    ("hash", ["spec", "code", "hash"], "sha256:ABC", ["spec", "code", "hash"]),
    ("action", ["spec", "action"], "mutate", ["spec", "action"]),
    ("no-run", ["spec", "run"], _DROP, ["spec"]),
    ("negative-seed", ["spec", "config", "seed"], -1, ["spec", "config", "seed"]),
]


@pytest.mark.parametrize(("keys", "value", "error_path"), [c[1:] for c in BAD_NODES], ids=[c[0] for c in BAD_NODES])
def test_bad_node_fails_at_the_field(
    en_crd: dict[str, Any], keys: list[str | int], value: Any, error_path: list[str | int]
) -> None:
    errors = _errors_at(_root(en_crd), _mutated(_sample_node(), keys, value))
    assert errors and all(e == deque(error_path) for e in errors), errors


def test_bad_status_fails_at_the_field(en_crd: dict[str, Any]) -> None:
    node = _sample_node()
    node["status"]["artifacts"]["plots"] = [f"p{i}.png" for i in range(33)]
    node["status"]["metrics"]["mod97"]["val_acc"] = "high"
    paths = sorted(map(list, _errors_at(_root(en_crd), node)), key=str)
    assert paths == [["status", "artifacts", "plots"], ["status", "metrics", "mod97", "val_acc"]]


# --- ResearchCampaign ---------------------------------------------------------------------------------------


def _sync_module() -> Any:
    spec = importlib.util.spec_from_file_location("sync_campaign", CRD_DIR / "sync_campaign.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sample_campaign() -> dict[str, Any]:
    return {
        "apiVersion": "kubescientist.io/v1alpha1", "kind": "ResearchCampaign",
        "metadata": {"name": "grokking", "namespace": "research"},
        "spec": {
            "ideas": {"inline": [{"name": "rope", "title": "RoPE and grokking"},
                                 {"name": "wd", "title": "Weight decay", "hypothesis": "h", "description": "d"}]},
            "runTemplate": {"template": {"s3": {"uri": "s3://b/t.tar.gz"}}, "objective": {"metric": "val_acc"},
                            "storage": {"s3": {"endpoint": "http://s3:9000", "bucket": "kubescientist",
                                               "secretRef": {"name": "s3"}}}},
            "maxConcurrentRuns": 2,
            "budget": {"maxTokens": 100000, "maxCostUSD": 5, "maxGPUHours": 1.5},
            "approval": {"mode": "manual", "approved": ["rope"], "rejected": ["wd"]},
        },
    }


def test_campaign_run_template_is_the_run_spec_without_idea_and_transition_rules(rr_crd: dict[str, Any]) -> None:
    campaign = _load("researchcampaign.yaml")
    assert campaign == _sync_module().synced(rr_crd, campaign), "run python crds/sync_campaign.py"
    template = _at(_root(campaign), "spec.runTemplate")
    assert "idea" not in template["properties"] and template["required"] == ["objective"]
    assert template["properties"]["stages"] == _at(_root(rr_crd), "spec.stages")
    assert not [p for p, _, r in _rules(template) if "oldSelf" in r["rule"]]
    assert [r for _, _, r in _rules(template) if "drafts" in r["rule"]], "the run spec's own rules are kept"


def _root_cel_errors(obj: dict[str, Any]) -> list[str]:
    from kubescientist.adapters.manifest import _cel_errors

    root = _root(_load("researchcampaign.yaml"))
    defaulted = apply_defaults(root, copy.deepcopy(obj))
    return list(_cel_errors(root, defaulted, []))


def test_sample_campaign_validates_and_passes_every_cel_rule() -> None:
    root = _root(_load("researchcampaign.yaml"))
    assert _errors_at(root, _sample_campaign()) == []
    assert _root_cel_errors(_sample_campaign()) == []


@pytest.mark.parametrize(("change", "message"), [
    (lambda s: s["approval"].update(approved=["rope", "nope"]), ".spec.approval.approved: spec.approval.approved names"),
    (lambda s: s["approval"].update(rejected=["gone"]), ".spec.approval.rejected: spec.approval.rejected names"),
    (lambda s: s["approval"].update(approved=["wd"]), "spec.approval.rejected: an idea cannot be both"),
    (lambda s: s.update(topic={"inline": "# Title: t"}), "spec: spec must set exactly one of topic"),
    (lambda s: s.update(rounds=2), "spec.rounds: rounds above 1 need spec.topic"),
    (lambda s: s["ideas"]["inline"].append({"name": "rope", "title": "again"}), "spec.ideas.inline: ideas.inline names"),
    (lambda s: s["runTemplate"].update(search={"drafts": 5}), "spec.runTemplate.search.drafts: search.drafts cannot"),
])
def test_campaign_cel_rules_refuse_at_the_field(change: Any, message: str) -> None:
    obj = _sample_campaign()
    change(obj["spec"])
    errors = _root_cel_errors(obj)
    assert any(e.startswith(message) for e in errors), errors


def test_campaign_topic_needs_an_llm_and_approval_may_name_proposed_ideas() -> None:
    obj = _sample_campaign()
    del obj["spec"]["ideas"]
    obj["spec"]["topic"] = {"inline": "# Title: grokking"}
    obj["spec"]["approval"] = {"mode": "manual", "approved": ["proposed-one"]}
    errors = _root_cel_errors(obj)
    assert any(e.startswith("spec.topic: spec.topic needs an LLM") for e in errors), errors
    assert any(e.startswith(".spec.approval.approved") for e in errors), errors
    obj["spec"]["runTemplate"]["llm"] = {"baseURL": "http://llm:8000/v1"}
    obj["status"] = {"ideas": [{"name": "proposed-one", "state": "Proposed"}]}
    assert _root_cel_errors(obj) == []


@pytest.mark.parametrize(("keys", "value"), [
    (["budget", "maxCostUSD"], -1), (["budget", "maxTokens"], -5), (["budget", "maxGPUHours"], -0.5),
    (["maxConcurrentRuns"], 0), (["ideas", "inline", 0, "name"], "Not_A_Label"),
    (["approval", "mode"], "sometimes"),
])
def test_bad_campaign_fails_at_the_field(keys: list[str | int], value: Any) -> None:
    obj = _sample_campaign()
    target: Any = obj["spec"]
    for key in keys[:-1]:
        target = target[key]
    target[keys[-1]] = value
    assert deque(["spec", *keys]) in _errors_at(_root(_load("researchcampaign.yaml")), obj)


def test_approved_gates_must_be_gates() -> None:
    from kubescientist.adapters.manifest import ManifestError, validate_object

    run = _sample_run()
    del run["status"]
    run["spec"].update(gates=["tuning"], approvedGates=["tuning"])
    assert validate_object("ResearchRun", run)["spec"]["approvedGates"] == ["tuning"]
    run["spec"]["approvedGates"] = ["research"]
    with pytest.raises(ManifestError, match=r"spec.approvedGates: approvedGates may only name stages listed in gates"):
        validate_object("ResearchRun", run)
    run["spec"].update(gates=["ablation"], approvedGates=[])
    with pytest.raises(ManifestError, match=r"spec.gates\[0\]: must be one of initial, tuning, research"):
        validate_object("ResearchRun", run)
