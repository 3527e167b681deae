"""Experiment templates: a folder of code a node's program starts from.

Two kinds are recognised:

- native: the folder has `kubescientist.yaml` (kind ExperimentTemplate), naming its entrypoint,
  its search space and, optionally, extra arguments of its program (`args: [--device, cpu]`). Run as
  `python <entrypoint> --out_dir=<out_dir> --config=<config.json> <args...>`.
- v1: an AI Scientist v1 template: `experiment.py` and no manifest, with optional `plot.py`,
  `prompt.json` ({"system", "task_description"}) and `seed_ideas.json` (a list of ideas). Run
  unchanged as `python experiment.py --out_dir=<out_dir>`; it finds its config through the
  KUBESCIENTIST_CONFIG environment variable if it wants it. Having no manifest, it gets extra
  arguments from the run instead (ResearchRun spec.template.args, passed to `command_for`).

The manifest is validated in full, and every error names the file and the field, e.g.
`kubescientist.yaml: searchSpace.hyperparameters.lr.low: must be < high`.

Everything in the folder travels with it: data files beside the entrypoint (`data/train.csv`,
`*.npy`, `input.txt`) are copied into each node's work dir locally and packed into the code tarball
a node's pod downloads in a cluster, so the program finds them at the same relative paths. That is
for small data: a template over `MAX_TEMPLATE_BYTES` in all is refused, naming its largest files
(larger data belongs in a dataset, ResearchRun spec.datasets).
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn

import yaml

MANIFEST = "kubescientist.yaml"
V1_ENTRYPOINT = "experiment.py"
API_VERSION = "kubescientist.io/v1alpha1"
KIND = "ExperimentTemplate"

TemplateKind = Literal["native", "v1"]
Scalar = str | int | float | bool


MAX_TEMPLATE_BYTES = 64 * 1024 * 1024
"""The most a template folder may hold, data files included: it is copied into every node's work dir
(within the node's disk quota) and, in a cluster, stored and downloaded for every node."""
_NOT_CODE = ("__pycache__",)
"""Folders not counted (nor hashed nor copied by the node runtime): byte code, not the template's."""

RESERVED_ARGS = ("--out_dir", "--config")
"""Arguments the runner sets; a template's or a run's extra arguments may not set them."""


class TemplateError(ValueError):
    """The folder is not a template, or its manifest is invalid; the message names file and field."""


@dataclass(frozen=True)
class Hyperparameter:
    """One tunable parameter of the program (stage 2 searches over these)."""

    name: str
    """The key in config.json["params"]."""

    type: Literal["float", "int", "choice"]
    """float and int are ranges [low, high]; choice is one of `values`."""

    default: Scalar
    """The value the program uses when the key is absent."""

    low: float | None = None
    """Lower bound of a float or int range."""

    high: float | None = None
    """Upper bound of a float or int range."""

    log: bool = False
    """Whether a range is searched on a log scale (then low > 0)."""

    values: tuple[Scalar, ...] = ()
    """The options of a choice."""


@dataclass(frozen=True)
class ParamSet:
    """A named set of parameter overrides: a research variant (stage 3) or an ablation (stage 4)."""

    name: str
    """Unique within its list; recorded as config.json["variant"] or ["ablation"]."""

    description: str
    """What the overrides change, for people and for the agent."""

    params: dict[str, Any]
    """The overrides, merged into config.json["params"]."""


@dataclass(frozen=True)
class SearchSpace:
    """What the search may change without writing code."""

    hyperparameters: tuple[Hyperparameter, ...] = ()
    """Tunable parameters, in manifest order."""

    variants: tuple[ParamSet, ...] = ()
    """The research agenda: named variants of the method."""

    ablations: tuple[ParamSet, ...] = ()
    """Components to switch off, one each."""


@dataclass(frozen=True)
class Template:
    """A recognised template folder."""

    kind: TemplateKind
    """Either native (has kubescientist.yaml) or v1 (the AI Scientist v1 layout)."""

    root: Path
    """The template folder."""

    entrypoint: str
    """Path of the program to run, relative to `root`."""

    name: str
    """The manifest's name; the folder name for v1."""

    description: str
    """The manifest's description; prompt.json's task_description for v1."""

    search_space: SearchSpace
    """Declared tunables, variants and ablations (empty for v1)."""

    prompt: dict[str, Any] | None
    """v1 prompt.json ({"system", "task_description"}), when present."""

    seed_ideas: tuple[dict[str, Any], ...]
    """v1 seed_ideas.json entries, when present."""

    plot_script: str | None
    """v1 plot.py, relative to `root`, when present."""

    args: tuple[str, ...] = ()
    """Extra command-line arguments of the program (kubescientist.yaml `args`; none for v1)."""


def load_template(root: Path) -> Template:
    """Recognises and validates the template in `root`; raises TemplateError if it is none, broken or
    larger than MAX_TEMPLATE_BYTES."""
    if (root / MANIFEST).is_file():
        template = _load_native(root)
    elif (root / V1_ENTRYPOINT).is_file():
        template = _load_v1(root)
    else:
        raise TemplateError(f"{root}: no {MANIFEST} or {V1_ENTRYPOINT}: not a template")
    check_size(root)
    return template


def check_size(root: Path, limit: int | None = None) -> None:
    """Raises TemplateError, naming the largest files, when the folder's files (links not followed) hold
    more than `limit` bytes (MAX_TEMPLATE_BYTES by default)."""
    limit = MAX_TEMPLATE_BYTES if limit is None else limit
    sizes: list[tuple[int, str]] = []
    for current, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _NOT_CODE]
        for name in filenames:
            path = Path(current, name)
            try:
                sizes.append((path.lstat().st_size, path.relative_to(root).as_posix()))
            except OSError:
                continue  # gone meanwhile: it travels with nothing
    total = sum(size for size, _ in sizes)
    if total <= limit:
        return
    largest = ", ".join(f"{name} ({_mib(size)})" for size, name in sorted(sizes, reverse=True)[:3])
    raise TemplateError(f"{root}: holds {_mib(total)} of files, over the {_mib(limit)} that may travel with a "
                        f"template (copied into every node); the largest: {largest}. Move large data out of the "
                        "template into a dataset (spec.datasets), which is mounted read-only instead")


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB" if size >= 1024 * 1024 else f"{size} bytes"


def command_for(template: Template, out_dir: Path, config_path: Path, python: str = sys.executable,
                extra_args: tuple[str, ...] = ()) -> list[str]:
    """The argv that runs the template's program, to be run with the program's code dir as cwd.

    `python` is the interpreter with the program's dependencies (this one by default); a runtime
    installed apart from the experiment's environment passes the other one. The template's own `args`
    follow the runner's arguments, then `extra_args` (the run's spec.template.args).
    """
    command = [python, template.entrypoint, f"--out_dir={out_dir}"]
    if template.kind == "native":
        command.append(f"--config={config_path}")
    return command + list(template.args) + list(extra_args)


def args_problem(args: object) -> str | None:
    """Why `args` cannot be a program's extra arguments (a list of non-empty strings, not setting
    --out_dir or --config), or None."""
    if not isinstance(args, (list, tuple)):
        return f"must be a list of strings, got {args!r}"
    for index, arg in enumerate(args):
        if not isinstance(arg, str) or not arg:
            return f"[{index}]: must be a non-empty string, got {arg!r}"
        if arg.startswith(RESERVED_ARGS):
            return f"[{index}]: {arg!r}: the runner sets --out_dir and --config"
    return None


def _load_v1(root: Path) -> Template:
    prompt = _optional_json(root / "prompt.json")
    if prompt is not None and not isinstance(prompt, dict):
        raise TemplateError(f"{root / 'prompt.json'}: must be a JSON object")
    ideas = _optional_json(root / "seed_ideas.json")
    if ideas is not None and not (isinstance(ideas, list) and all(isinstance(i, dict) for i in ideas)):
        raise TemplateError(f"{root / 'seed_ideas.json'}: must be a JSON list of objects")
    description = prompt.get("task_description", "") if prompt else ""
    return Template(
        kind="v1",
        root=root,
        entrypoint=V1_ENTRYPOINT,
        name=root.resolve().name,
        description=description if isinstance(description, str) else "",
        search_space=SearchSpace(),
        prompt=prompt,
        seed_ideas=tuple(ideas or ()),
        plot_script="plot.py" if (root / "plot.py").is_file() else None,
    )


def _optional_json(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise TemplateError(f"{path}: invalid JSON: {err}") from err


def _load_native(root: Path) -> Template:
    path = root / MANIFEST
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as err:
        raise TemplateError(f"{path}: invalid YAML: {err}") from err
    check = _Checker(path)
    fields = check.mapping(data, "")
    check.keys(fields, "", ("apiVersion", "kind", "name", "description", "entrypoint", "searchSpace", "args"))
    for key, expected in (("apiVersion", API_VERSION), ("kind", KIND)):
        if key in fields and fields[key] != expected:
            check.fail(key, f"must be {expected!r}, got {fields[key]!r}")
    name = check.string(fields.get("name", root.resolve().name), "name")
    description = check.string(fields.get("description", ""), "description", allow_empty=True)
    if "entrypoint" not in fields:
        check.fail("entrypoint", "is required")
    entrypoint = check.string(fields["entrypoint"], "entrypoint")
    target = (root / entrypoint).resolve()
    if not target.is_relative_to(root.resolve()):
        check.fail("entrypoint", f"must be inside the template folder, got {entrypoint!r}")
    if not target.is_file():
        check.fail("entrypoint", f"{entrypoint!r} does not exist in {root}")
    args = fields.get("args", [])
    args = [] if args is None else args  # an empty YAML list ("args:") reads as null
    if (problem := args_problem(args)) is not None:
        check.fail("args", problem)
    return Template(
        kind="native",
        root=root,
        entrypoint=entrypoint,
        name=name,
        description=description,
        search_space=_search_space(check, fields.get("searchSpace", {})),
        prompt=None,
        seed_ideas=(),
        plot_script=None,
        args=tuple(args),
    )


def _search_space(check: _Checker, data: object) -> SearchSpace:
    fields = check.mapping(data, "searchSpace")
    check.keys(fields, "searchSpace", ("hyperparameters", "variants", "ablations"))
    hyper_path = "searchSpace.hyperparameters"
    hyper = check.mapping(fields.get("hyperparameters", {}), hyper_path)
    return SearchSpace(
        hyperparameters=tuple(_hyperparameter(check, name, spec, hyper_path) for name, spec in hyper.items()),
        variants=_param_sets(check, fields.get("variants", []), "searchSpace.variants"),
        ablations=_param_sets(check, fields.get("ablations", []), "searchSpace.ablations"),
    )


def _hyperparameter(check: _Checker, name: object, spec: object, parent: str) -> Hyperparameter:
    if not (isinstance(name, str) and name.isidentifier()):
        check.fail(f"{parent}.{name}", "names must be identifiers (YAML reads yes/no/on/off as booleans)")
    path = f"{parent}.{name}"
    fields = check.mapping(spec, path)
    kind = fields.get("type")
    if kind == "choice":
        check.keys(fields, path, ("type", "values", "default"))
        values = fields.get("values")
        if not isinstance(values, list) or not values:
            check.fail(f"{path}.values", "must be a non-empty list")
        options = tuple(check.scalar(v, f"{path}.values[{i}]") for i, v in enumerate(values))
        if len(set(map(repr, options))) != len(options):
            check.fail(f"{path}.values", "must not repeat a value")
        if "default" not in fields:
            check.fail(f"{path}.default", "is required")
        default = check.scalar(fields["default"], f"{path}.default")
        if repr(default) not in map(repr, options):
            check.fail(f"{path}.default", f"must be one of values, got {default!r}")
        return Hyperparameter(name=name, type="choice", default=default, values=options)
    if kind not in ("float", "int"):
        check.fail(f"{path}.type", f"must be float, int or choice, got {kind!r}")
    check.keys(fields, path, ("type", "low", "high", "log", "default"))
    bounds = []
    for key in ("low", "high", "default"):
        if key not in fields:
            check.fail(f"{path}.{key}", "is required")
        bounds.append(check.number(fields[key], f"{path}.{key}", integer=kind == "int"))
    low, high, default = bounds
    log = fields.get("log", False)
    if not isinstance(log, bool):
        check.fail(f"{path}.log", f"must be true or false, got {log!r}")
    if not low < high:
        check.fail(f"{path}.low", "must be < high")
    if log and low <= 0:
        check.fail(f"{path}.low", "must be > 0 when log is true")
    if not low <= default <= high:
        check.fail(f"{path}.default", f"must be within [low, high], got {default!r}")
    return Hyperparameter(name=name, type=kind, default=default, low=low, high=high, log=log)


def _param_sets(check: _Checker, data: object, path: str) -> tuple[ParamSet, ...]:
    if not isinstance(data, list):
        check.fail(path, f"must be a list, got {type(data).__name__}")
    seen: set[str] = set()
    result = []
    for i, item in enumerate(data):
        where = f"{path}[{i}]"
        fields = check.mapping(item, where)
        check.keys(fields, where, ("name", "description", "params"))
        if "name" not in fields:
            check.fail(f"{where}.name", "is required")
        name = check.string(fields["name"], f"{where}.name")
        if name in seen:
            check.fail(f"{where}.name", f"duplicate name {name!r}")
        seen.add(name)
        if "params" not in fields:
            check.fail(f"{where}.params", "is required")
        params = check.mapping(fields["params"], f"{where}.params")
        for key in params:
            if not (isinstance(key, str) and key.isidentifier()):
                check.fail(f"{where}.params", f"keys must be identifiers, got {key!r}")
        description = check.string(fields.get("description", ""), f"{where}.description", allow_empty=True)
        result.append(ParamSet(name=name, description=description, params=dict(params)))
    return tuple(result)


class _Checker:
    """Type checks that raise TemplateError naming the manifest and the field."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, field: str, message: str) -> NoReturn:
        where = f"{self.path}: {field}" if field else str(self.path)
        raise TemplateError(f"{where}: {message}")

    def mapping(self, data: object, field: str) -> dict[Any, Any]:
        if data is None:
            return {}  # an empty YAML section ("variants:") reads as null
        if not isinstance(data, dict):
            self.fail(field, f"must be a mapping, got {type(data).__name__}")
        return data

    def keys(self, fields: dict[Any, Any], field: str, known: tuple[str, ...]) -> None:
        for key in fields:
            if key not in known:
                where = f"{field}.{key}" if field else str(key)
                self.fail(where, f"unknown field (expected one of {', '.join(known)})")

    def string(self, data: object, field: str, allow_empty: bool = False) -> str:
        if not isinstance(data, str) or not (allow_empty or data.strip()):
            self.fail(field, f"must be a non-empty string, got {data!r}")
        return data

    def scalar(self, data: object, field: str) -> Scalar:
        if not isinstance(data, (str, int, float, bool)):
            self.fail(field, f"must be a string, number or boolean, got {data!r}")
        return data

    def number(self, data: object, field: str, integer: bool) -> float:
        if isinstance(data, str) and _looks_numeric(data):
            self.fail(field, f"must be a number, got the string {data!r} (YAML reads 1e-4 as a string: write 1.0e-4)")
        if isinstance(data, bool) or not isinstance(data, (int, float)) or not math.isfinite(data):
            self.fail(field, f"must be a finite number, got {data!r}")
        if integer and not isinstance(data, int):
            self.fail(field, f"must be an integer, got {data!r}")
        return data


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
