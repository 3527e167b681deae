"""Load a ResearchRun manifest and validate it against the CRD itself, as the apiserver would.

The CRD in ``crds/`` is the single source of truth: its openAPIV3Schema is checked with ``jsonschema``,
its schema defaults are applied, and its CEL rules (``x-kubernetes-validations``) are evaluated with
``cel-python``, so a manifest that works locally is accepted by the cluster and vice versa. Unlike the
apiserver, which prunes unknown fields, unknown fields are errors here: locally they are almost always
typos.
"""

from __future__ import annotations

import copy
import functools
import importlib.resources
import pathlib
import re
from typing import Any, Iterator

import celpy
from celpy import adapter, celtypes, evaluation
import jsonschema
import yaml

from kubescientist.core.quantity import parse_quantity
from kubescientist.core.spec import ResearchRun, run_spec_from_dict

GROUP_VERSION = "kubescientist.io/v1alpha1"
NAME_PATTERN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class ManifestError(Exception):
    """A manifest is invalid; the message names the file and each offending field."""


@functools.cache
def crd_schema(kind: str) -> dict[str, Any]:
    """The openAPIV3Schema of a CRD shipped with the package (``ResearchRun`` or ``ExperimentNode``)."""
    text = importlib.resources.files("kubescientist").joinpath(f"crds/{kind.lower()}.yaml").read_text()
    crd = yaml.safe_load(text)
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1")
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def format_path(parts: Iterator[str | int] | list[str | int]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _describe(error: jsonschema.ValidationError) -> tuple[str, str]:
    path = list(error.absolute_path)
    value: Any = error.validator_value
    match error.validator:
        case "required":
            missing = re.search(r"'([^']+)' is a required property", error.message)
            return format_path([*path, missing.group(1) if missing else "?"]), "required field is missing"
        case "minimum":
            return format_path(path), f"must be >= {value}"
        case "maximum":
            return format_path(path), f"must be <= {value}"
        case "enum":
            return format_path(path), "must be one of " + ", ".join(str(v) for v in value)
        case "type":
            return format_path(path), f"must be of type {value}"
        case "minItems" | "minLength":
            return format_path(path), f"must have at least {value} " + ("items" if error.validator == "minItems"
                                                                       else "characters")
        case "maxItems" | "maxLength":
            return format_path(path), f"must have at most {value} " + ("items" if error.validator == "maxItems"
                                                                      else "characters")
        case "pattern":
            return format_path(path), f"must match {value}"
        case _:
            return format_path(path), error.message


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Fill in schema defaults the way the apiserver does (recursively, only where a value is absent)."""
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                value[name] = apply_defaults(sub, value[name])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for name in value:
                value[name] = apply_defaults(extra, value[name])
    elif isinstance(value, list) and "items" in schema:
        return [apply_defaults(schema["items"], item) for item in value]
    return value


def _unknown_fields(schema: dict[str, Any], value: Any, path: list[str | int]) -> Iterator[str]:
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    if isinstance(value, dict) and "properties" in schema:
        for name, item in value.items():
            if name not in schema["properties"]:
                yield f"{format_path([*path, name])}: unknown field"
            else:
                yield from _unknown_fields(schema["properties"][name], item, [*path, name])
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            yield from _unknown_fields(schema["items"], item, [*path, index])


def _is_quantity(value: Any) -> celtypes.BoolType:
    try:
        parse_quantity(str(value))
    except ValueError:
        return celtypes.BoolType(False)
    return celtypes.BoolType(True)


# The Kubernetes CEL quantity library, as far as our CRDs use it (cel-python has only standard CEL).
_KUBERNETES_FUNCTIONS: dict[str, Any] = {
    "isQuantity": _is_quantity,
    "quantity": lambda value: celtypes.DoubleType(float(parse_quantity(str(value)))),
    "isGreaterThan": lambda a, b: celtypes.BoolType(a > b),
    "isLessThan": lambda a, b: celtypes.BoolType(a < b),
}


@functools.cache
def _cel_program(rule: str) -> Any:
    env = celpy.Environment()
    return env.program(env.compile(rule), functions=_KUBERNETES_FUNCTIONS)


def _cel_errors(schema: dict[str, Any], value: Any, path: list[str | int]) -> Iterator[str]:
    for rule in schema.get("x-kubernetes-validations", []):
        if "oldSelf" in rule["rule"]:
            continue  # transition rules need a previous object; only the apiserver has one
        try:
            ok = _cel_program(rule["rule"]).evaluate({"self": adapter.json_to_cel(value)})
        except evaluation.CELEvalError:
            ok = False
        if not ok:
            where = format_path(path) + (rule.get("fieldPath", "") or "")
            yield f"{where}: {rule.get('message') or 'failed rule ' + rule['rule']}"
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                yield from _cel_errors(sub, value[name], [*path, name])
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            yield from _cel_errors(schema["items"], item, [*path, index])


def validate_object(kind: str, obj: Any) -> dict[str, Any]:
    """Validate a manifest object, returning a defaulted copy; raises ``ManifestError`` listing every problem."""
    if not isinstance(obj, dict):
        raise ManifestError("the document is not a mapping")
    problems = []
    if obj.get("apiVersion") != GROUP_VERSION:
        problems.append(f"apiVersion: must be {GROUP_VERSION}")
    if obj.get("kind") != kind:
        problems.append(f"kind: must be {kind}")
    name = (obj.get("metadata") or {}).get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name) or len(name) > 63:
        problems.append("metadata.name: required, a DNS label (lower-case letters, digits, '-'; at most 63)")
    if problems:
        raise ManifestError("\n".join(problems))
    schema = crd_schema(kind)
    body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata", "status")}
    sub_schema = {"type": "object", "properties": {k: v for k, v in schema["properties"].items()
                                                    if k not in ("apiVersion", "kind", "metadata", "status")},
                  "required": [r for r in schema.get("required", []) if r != "metadata"]}
    validator = jsonschema.Draft202012Validator(sub_schema)
    errors = sorted(validator.iter_errors(body), key=lambda e: [str(p) for p in e.absolute_path])
    problems += [": ".join(_describe(e)) for e in errors]
    problems += list(_unknown_fields(sub_schema, body, []))
    if problems:
        raise ManifestError("\n".join(dict.fromkeys(problems)))
    defaulted = apply_defaults(sub_schema, copy.deepcopy(body))
    problems += list(_cel_errors(sub_schema, defaulted, []))
    if problems:
        raise ManifestError("\n".join(dict.fromkeys(problems)))
    return {**obj, **defaulted}


def load_run(path: pathlib.Path) -> tuple[ResearchRun, dict[str, Any]]:
    """Read, validate and model a ResearchRun manifest file; errors start with the file name."""
    try:
        obj = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path}: not valid YAML: {exc}") from None
    try:
        valid = validate_object("ResearchRun", obj)
    except ManifestError as exc:
        raise ManifestError("\n".join(f"{path}: {line}" for line in str(exc).splitlines())) from None
    meta = valid["metadata"]
    run = ResearchRun(name=meta["name"], namespace=meta.get("namespace", "default"),
                      spec=run_spec_from_dict(valid["spec"]))
    return run, valid
