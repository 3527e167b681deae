"""Load a ResearchRun manifest and validate it against the CRD itself, as the apiserver would.

The CRD in ``crds/`` is the single source of truth: its openAPIV3Schema is checked with ``jsonschema``,
its schema defaults are applied, and its CEL rules (``x-kubernetes-validations``) are evaluated with
``cel-python``, so a manifest that works locally is accepted by the cluster and vice versa. Unlike the
apiserver, which prunes unknown fields, unknown fields are errors here: locally they are almost always
typos.
"""

from __future__ import annotations

import copy
import decimal
import functools
import importlib.resources
import math
import pathlib
import re
import stat
from typing import Any, Iterator

import os

import celpy
from celpy import adapter, celtypes, evaluation
import jsonschema
import yaml

from kubescientist.core.quantity import parse_quantity
from kubescientist.core.spec import ResearchRun, SpecError, run_spec_from_dict, spec_problems

GROUP_VERSION = "kubescientist.io/v1alpha1"
NAME_PATTERN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAX_MANIFEST_BYTES = 1 << 20
"""A manifest is a few KiB; the apiserver refuses requests over about 3 MiB, and YAML parses slowly."""
MAX_DEPTH = 32
"""Nesting of mappings and sequences; the schema's deepest field is far shallower."""
INT64 = (-(2**63), 2**63 - 1)
"""Kubernetes integers are int64 (CEL and the apiserver refuse anything wider)."""
QUANTITY_RANGES: dict[tuple[str, str], tuple[decimal.Decimal, decimal.Decimal, str, str]] = {
    ("resources", "memory"): (decimal.Decimal(2**20), decimal.Decimal(2**50), "1Mi", "1Pi"),
    ("resources", "cpu"): (decimal.Decimal("0.001"), decimal.Decimal(4096), "1m", "4096"),
    ("resources", "gpuMemory"): (decimal.Decimal(2**20), decimal.Decimal(2**40), "1Mi", "1Ti"),
    ("runtime", "shmSize"): (decimal.Decimal(2**20), decimal.Decimal(2**40), "1Mi", "1Ti"),
    ("runtime", "ephemeralStorage"): (decimal.Decimal(2**20), decimal.Decimal(2**50), "1Mi", "1Pi"),
}
"""Sane bounds of the quantities that become limits and selectors: memory 1Mi..1Pi, CPU 1m..4096, memory
per GPU and /dev/shm 1Mi..1Ti, disk 1Mi..1Pi."""


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


_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def format_path(parts: Iterator[str | int] | list[str | int]) -> str:
    """``spec.stages[2].maxNodes``; a key that is not a plain name is quoted: ``spec['a b']``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{part[:60]!r}]"
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
        except (evaluation.CELEvalError, ArithmeticError, ValueError, TypeError, RecursionError):
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
    problems = list(dict.fromkeys(_value_errors(obj, [])))
    if problems:
        raise ManifestError("\n".join(problems))
    if obj.get("apiVersion") != GROUP_VERSION:
        problems.append(f"apiVersion: must be {GROUP_VERSION}")
    if obj.get("kind") != kind:
        problems.append(f"kind: must be {kind}")
    metadata = obj.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
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
    if kind == "ResearchRun" and isinstance(defaulted.get("spec"), dict):
        problems += list(_quantity_errors(defaulted["spec"]))
        problems += spec_problems(defaulted["spec"])
    if problems:
        raise ManifestError("\n".join(dict.fromkeys(problems)))
    return {**obj, **defaulted}


class _StrictLoader(yaml.SafeLoader):
    """YAML for manifests: no aliases (an alias bomb expands a KiB into GiBs), bounded nesting, no duplicate keys."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise yaml.MarkedYAMLError(
                problem=f"YAML aliases (*name) are not allowed in a manifest (line {mark.line + 1})", problem_mark=mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise yaml.MarkedYAMLError(problem=f"nested deeper than {MAX_DEPTH} levels (line {mark.line + 1})",
                                           problem_mark=mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise yaml.MarkedYAMLError(problem=f"key {str(key)[:40]!r} is not a string (line "
                                                   f"{key_node.start_mark.line + 1})", problem_mark=key_node.start_mark)
            if key in seen:
                raise yaml.MarkedYAMLError(problem=f"duplicate key {key[:80]!r} (line {key_node.start_mark.line + 1})",
                                           problem_mark=key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_manifest(path: pathlib.Path) -> Any:
    """The YAML document in `path`, read with a size limit; ManifestError says what is wrong with the file."""
    try:
        with open(path, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise ManifestError(f"{path}: not a regular file")
            data = handle.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read: {exc.strerror}") from None
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{path}: larger than {MAX_MANIFEST_BYTES // 1024} KiB; a manifest is a few KiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path}: not UTF-8 text (byte {exc.start}: {data[exc.start:exc.start + 1]!r})") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as exc:
        raise ManifestError(f"{path}: not valid YAML: {_one_line(exc.problem or str(exc))}"
                            + (f" ({exc.context})" if exc.context else "")) from None
    except (yaml.YAMLError, RecursionError, ValueError, TypeError) as exc:
        raise ManifestError(f"{path}: not valid YAML: {_one_line(str(exc))}") from None


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]


def _value_errors(value: Any, path: list[str | int]) -> Iterator[str]:
    """Values JSON and Kubernetes cannot hold: integers beyond int64, non-finite numbers, non-string keys."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, int):
        if not INT64[0] <= value <= INT64[1]:
            yield f"{format_path(path)}: integer out of range (must fit in 64 bits)"
    elif isinstance(value, float):
        if not math.isfinite(value):
            yield f"{format_path(path)}: must be a finite number"
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                yield f"{format_path(path) or 'the document'}: key {str(key)[:40]!r} is not a string"
            else:
                yield from _value_errors(item, [*path, key])
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _value_errors(item, [*path, index])
    else:
        yield f"{format_path(path)}: unsupported value of type {type(value).__name__} (YAML tags such as dates " \
              "are not JSON)"


def _quantity_errors(spec: dict[str, Any]) -> Iterator[str]:
    """Quantities that parse but overflow or round to zero: limits no node could run under."""
    for (section, name), (low, high, low_text, high_text) in QUANTITY_RANGES.items():
        block = spec.get(section)
        if not isinstance(block, dict) or name not in block:
            continue
        try:
            value = parse_quantity(block[name])
        except ValueError as exc:
            yield f"spec.{section}.{name}: {exc}"
            continue
        if not low <= value <= high:
            yield f"spec.{section}.{name}: {block[name]!r} is out of range: must be from {low_text} to {high_text}"


def load_run(path: pathlib.Path) -> tuple[ResearchRun, dict[str, Any]]:
    """Read, validate and model a ResearchRun manifest file; errors start with the file name."""
    obj = read_manifest(path)
    try:
        valid = validate_object("ResearchRun", obj)
    except ManifestError as exc:
        raise ManifestError("\n".join(f"{path}: {line}" for line in str(exc).splitlines())) from None
    meta = valid["metadata"]
    try:
        spec = run_spec_from_dict(valid["spec"])
    except SpecError as exc:
        raise ManifestError(f"{path}: {exc}") from None
    return ResearchRun(name=meta["name"], namespace=meta.get("namespace", "default"), spec=spec), valid
