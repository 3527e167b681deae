"""The metrics a node's program reports, parsed and validated.

A program writes `<out_dir>/metrics.json` (schema id "kubescientist.io/metrics/v1")::

    {
      "schema": "kubescientist.io/metrics/v1",           # optional
      "notes": ["..."],                                   # optional: what reading final_info.json skipped
      "datasets": {                                       # required, at least one dataset
        "<dataset>": {                                    # at least one metric each
          "<metric>": {
            "final": 0.97,                                # required, a finite number
            "best": 0.99,                                 # optional, defaults to final
            "direction": "maximize",                      # optional: "maximize" | "minimize"
            "stderr": 0.01,                               # optional, a finite number >= 0
            "curve": {"step": [0, 100], "value": [0.1, 0.97]}   # optional, same lengths
          }
        }
      }
    }

Numbers are JSON numbers (booleans are not numbers); curve steps are integers. Unknown keys are
errors, so a misspelt "fianl" is reported instead of silently lost. Curves longer than
`MAX_CURVE_POINTS` are thinned to that many evenly spaced points, the last one always kept.

An AI Scientist v1 program writes `<out_dir>/final_info.json` instead::

    {"<dataset>": {"means": {"<metric>": 0.97}, "stderrs": {"<metric>_stderr": 0.01}}}

which is accepted when metrics.json is absent: final = best = the mean, direction unknown, and the
stderr taken from `stderrs[<metric>]`, or from `stderrs[<name>_stderr]` for a metric `<name>_mean`
(the v1 templates' naming). v1 programs write more shapes than that, and they are read, not refused:

- Nested objects in `means` are flattened into dotted names: {"layer_0": {"acc": 0.9}} gives the
  metric `layer_0.acc` (its stderr looked up the same way, in the same nesting of `stderrs`, or as a
  flat dotted key).
- A list of numbers in `means` is read as repeated measurements of one quantity (the slot holds
  averages, so a list there is values the program left unaveraged): the metric is their mean. No
  stderr is derived from it: the values may be steps of a curve rather than independent repeats.
- A dataset entry without `means` but with `final_info_dict` (v1's per-seed values,
  {"final_val_acc": [0.97, 0.99]}) takes its metrics from there: each list's mean, with the stderr
  of that mean (sample standard deviation / sqrt(n), for n >= 2), since v1 defines those lists as one
  value per seed. Alongside `means`, `final_info_dict` is ignored.
- Leaves that are not finite numbers (strings, booleans, null, NaN, empty lists, lists holding
  anything but numbers) are skipped, each with a note in `Metrics.notes` naming its path; a dataset
  left with no metric at all is an error naming its path.

Every problem raises MetricsError naming the file and the JSON path, e.g.
`metrics.json: datasets.mod97.val_acc.final: must be a finite number`. `Metrics.to_json()` gives
the normalized form, which is itself valid metrics.json. The user-facing description, with an
example program, is METRICS.md beside this module.
"""

from __future__ import annotations

import json
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeGuard

SCHEMA = "kubescientist.io/metrics/v1"
METRICS_FILE = "metrics.json"
FINAL_INFO_FILE = "final_info.json"
MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_CURVE_POINTS = 1000

Direction = Literal["maximize", "minimize"]

_METRIC_KEYS = ("final", "best", "direction", "stderr", "curve")


class MetricsError(ValueError):
    """The metrics file is missing or breaks the contract; the message names the file and path."""


@dataclass(frozen=True)
class Curve:
    """A metric's value over training steps."""

    step: tuple[int, ...]
    """Training steps, one per value."""

    value: tuple[float, ...]
    """The metric at each step."""


@dataclass(frozen=True)
class MetricValue:
    """One metric on one dataset."""

    final: float
    """The value at the end of the run."""

    best: float
    """The best value during the run (the final value when the program did not say)."""

    direction: Direction | None
    """Whether larger or smaller is better, when the program said so."""

    stderr: float | None
    """Standard error of `final` over seeds or repeats, when known."""

    curve: Curve | None
    """The value over training steps, when the program recorded it."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"final": self.final, "best": self.best}
        if self.direction is not None:
            out["direction"] = self.direction
        if self.stderr is not None:
            out["stderr"] = self.stderr
        if self.curve is not None:
            out["curve"] = {"step": list(self.curve.step), "value": list(self.curve.value)}
        return out


@dataclass(frozen=True)
class Metrics:
    """Everything one run reported: metric values by dataset, then by metric name."""

    datasets: dict[str, dict[str, MetricValue]]
    """{dataset: {metric: value}}, in the order the program wrote them."""

    source: str
    """The file they came from: "metrics.json" or "final_info.json"."""

    notes: tuple[str, ...] = ()
    """What was skipped while reading (values of final_info.json that are not numbers), by JSON path."""

    def to_json(self) -> dict[str, Any]:
        """The normalized form: {"schema": ..., "datasets": {dataset: {metric: {final, best, ...}}}}, with
        "notes" (a list of strings) when something was skipped."""
        out: dict[str, Any] = {
            "schema": SCHEMA,
            "datasets": {
                dataset: {name: value.to_json() for name, value in metrics.items()}
                for dataset, metrics in self.datasets.items()
            },
        }
        if self.notes:
            out["notes"] = list(self.notes)
        return out

    def finals(self) -> dict[str, dict[str, float]]:
        """{dataset: {metric: final}}: the bounded summary a node's status carries."""
        return {dataset: {name: v.final for name, v in metrics.items()} for dataset, metrics in self.datasets.items()}


def read_metrics(out_dir: Path) -> Metrics:
    """Reads `out_dir/metrics.json`, or `out_dir/final_info.json` when there is none.

    Symbolic links are refused: the runner may be root and the program must not make it read
    (and echo into an error message) a file the program itself could not read.
    """
    if out_dir.is_symlink():
        raise MetricsError("out_dir: must be a directory, not a symbolic link")
    for name, parse in ((METRICS_FILE, parse_metrics), (FINAL_INFO_FILE, from_final_info)):
        data = _load_json(out_dir / name, name)
        if data is not _MISSING:
            return parse(data, name)
    raise MetricsError(f"no {METRICS_FILE} or {FINAL_INFO_FILE} in out_dir")


def parse_metrics(data: object, source: str = METRICS_FILE) -> Metrics:
    """Validates parsed metrics.json content (or the normalized form) into Metrics."""
    top = _object(data, source, "")
    _no_unknown_keys(top, ("schema", "datasets", "notes"), source, "")
    if "schema" in top and top["schema"] != SCHEMA:
        raise MetricsError(f"{source}: schema: must be {SCHEMA!r}, got {top['schema']!r}")
    if "datasets" not in top:
        raise MetricsError(f"{source}: datasets: is required")
    datasets = _object(top["datasets"], source, "datasets", nonempty=True)
    parsed: dict[str, dict[str, MetricValue]] = {}
    for dataset, metrics in datasets.items():
        path = f"datasets.{dataset}"
        parsed[dataset] = {
            name: _metric(value, source, f"{path}.{name}")
            for name, value in _object(metrics, source, path, nonempty=True).items()
        }
    notes = _list(top.get("notes", []), source, "notes")
    if not all(isinstance(note, str) for note in notes):
        raise MetricsError(f"{source}: notes: must be a list of strings")
    return Metrics(datasets=parsed, source=source, notes=tuple(str(note) for note in notes))


def from_final_info(data: object, source: str = FINAL_INFO_FILE) -> Metrics:
    """Converts parsed AI Scientist v1 final_info.json content into Metrics (the rules are in the module's
    docstring: nested means flattened into dotted names, lists averaged, non-numbers skipped with a note)."""
    datasets = _object(data, source, "", nonempty=True)
    parsed: dict[str, dict[str, MetricValue]] = {}
    notes: list[str] = []
    for dataset, entry in datasets.items():
        fields = _object(entry, source, dataset)
        stderrs = _object(fields.get("stderrs", {}), source, f"{dataset}.stderrs")
        noted = len(notes)
        if "means" in fields:
            path = f"{dataset}.means"
            leaves = _leaves(_object(fields["means"], source, path, nonempty=True), path, source, notes)
            per_seed = False
        elif "final_info_dict" in fields:
            path = f"{dataset}.final_info_dict"
            leaves = _leaves(_object(fields["final_info_dict"], source, path, nonempty=True), path, source, notes)
            per_seed = True
        else:
            raise MetricsError(f"{source}: {dataset}.means: is required (or final_info_dict)")
        metrics: dict[str, MetricValue] = {}
        for name, values in leaves.items():
            final = math.fsum(values) / len(values)
            stderr = _given_stderr(name, stderrs, source, dataset)
            if stderr is None and per_seed and len(values) > 1:
                spread = math.fsum((v - final) ** 2 for v in values) / (len(values) - 1)
                stderr = math.sqrt(spread / len(values))
            metrics[name] = MetricValue(final=final, best=final, direction=None, stderr=stderr, curve=None)
        if not metrics:
            raise MetricsError(f"{source}: {path}: holds no number (skipped: {'; '.join(notes[noted:][:3])})")
        parsed[dataset] = metrics
    return Metrics(datasets=parsed, source=source, notes=tuple(notes))


def _leaves(fields: dict[str, object], path: str, source: str, notes: list[str],
            prefix: str = "") -> dict[str, list[float]]:
    """{dotted name: values} of the numbers under `fields`; what is not a number is noted and skipped."""
    found: dict[str, list[float]] = {}
    for key, value in fields.items():
        name, where = f"{prefix}{key}", f"{path}.{key}"
        if isinstance(value, dict):
            found.update(_leaves(_object(value, source, where), where, source, notes, f"{name}."))
        elif isinstance(value, list):
            if value and all(_finite(v) for v in value):
                found[name] = [float(v) for v in value]
            else:
                notes.append(f"{where}: skipped ({'an empty list' if not value else 'a list not only of numbers'})")
        elif _finite(value):
            found[name] = [float(value)]
        else:
            notes.append(f"{where}: skipped ({_show(value)}, not a number)")
    return found


def _finite(value: object) -> TypeGuard[int | float]:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _given_stderr(metric: str, stderrs: dict[str, object], source: str, dataset: str) -> float | None:
    """The stderr `stderrs` gives for a (possibly dotted) metric: nested the same way, or as a flat key."""
    scope, name = stderrs, metric
    parts = metric.split(".")
    for part in parts[:-1]:
        inner = scope.get(part)
        if not isinstance(inner, dict):
            break
        scope, name = inner, name[len(part) + 1:]
    key = _stderr_key(name, scope)
    if key is None:
        scope, key = stderrs, _stderr_key(metric, stderrs)
        name = metric
    if key is None:
        return None
    where = metric[: len(metric) - len(name)] + key
    return _number(scope[key], source, f"{dataset}.stderrs.{where}", minimum=0.0)


def _stderr_key(metric: str, stderrs: dict[str, object]) -> str | None:
    if metric in stderrs:
        return metric
    if metric.endswith("_mean") and f"{metric[: -len('_mean')]}_stderr" in stderrs:
        return f"{metric[: -len('_mean')]}_stderr"
    return None


class _Missing:
    pass


_MISSING = _Missing()


def _load_json(path: Path, name: str) -> object:
    try:
        # O_NONBLOCK: a FIFO named metrics.json must not hang the runner; it is refused below.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return _MISSING
    except OSError as err:
        raise MetricsError(f"{name}: cannot be read: {err.strerror}") from err
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise MetricsError(f"{name}: must be a regular file")
        raw = file.read(MAX_FILE_BYTES + 1)
    if len(raw) > MAX_FILE_BYTES:
        raise MetricsError(f"{name}: larger than {MAX_FILE_BYTES} bytes")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise MetricsError(f"{name}: invalid JSON: {err}") from err
    except RecursionError as err:
        raise MetricsError(f"{name}: invalid JSON: nested too deeply") from err


def _metric(data: object, source: str, path: str) -> MetricValue:
    fields = _object(data, source, path)
    _no_unknown_keys(fields, _METRIC_KEYS, source, path)
    if "final" not in fields:
        raise MetricsError(f"{source}: {path}.final: is required")
    final = _number(fields["final"], source, f"{path}.final")
    best = _number(fields["best"], source, f"{path}.best") if "best" in fields else final
    direction = fields.get("direction")
    if direction is not None and direction not in ("maximize", "minimize"):
        raise MetricsError(f"{source}: {path}.direction: must be 'maximize' or 'minimize', got {direction!r}")
    stderr = None
    if "stderr" in fields:
        stderr = _number(fields["stderr"], source, f"{path}.stderr", minimum=0.0)
    curve = _curve(fields["curve"], source, f"{path}.curve") if "curve" in fields else None
    return MetricValue(final=final, best=best, direction=direction, stderr=stderr, curve=curve)


def _curve(data: object, source: str, path: str) -> Curve:
    fields = _object(data, source, path)
    _no_unknown_keys(fields, ("step", "value"), source, path)
    steps = _list(fields.get("step"), source, f"{path}.step")
    values = _list(fields.get("value"), source, f"{path}.value")
    if len(steps) != len(values):
        raise MetricsError(
            f"{source}: {path}: step and value must have the same length, got {len(steps)} and {len(values)}"
        )
    step = tuple(_integer(s, source, f"{path}.step[{i}]") for i, s in enumerate(steps))
    value = tuple(_number(v, source, f"{path}.value[{i}]") for i, v in enumerate(values))
    if len(step) > MAX_CURVE_POINTS:
        last = len(step) - 1
        keep = sorted({round(i * last / (MAX_CURVE_POINTS - 1)) for i in range(MAX_CURVE_POINTS)})
        step = tuple(step[i] for i in keep)
        value = tuple(value[i] for i in keep)
    return Curve(step=step, value=value)


def _where(source: str, path: str) -> str:
    return f"{source}: {path}" if path else source


def _object(data: object, source: str, path: str, nonempty: bool = False) -> dict[str, object]:
    if not isinstance(data, dict):
        raise MetricsError(f"{_where(source, path)}: must be an object, got {_kind(data)}")
    if nonempty and not data:
        raise MetricsError(f"{_where(source, path)}: must not be empty")
    for key in data:
        if not key:
            raise MetricsError(f"{_where(source, path)}: names must not be empty")
    return data


def _list(data: object, source: str, path: str) -> list[object]:
    if not isinstance(data, list):
        raise MetricsError(f"{source}: {path}: must be a list, got {_kind(data)}")
    return data


def _number(data: object, source: str, path: str, minimum: float | None = None) -> float:
    if isinstance(data, bool) or not isinstance(data, (int, float)) or not math.isfinite(data):
        raise MetricsError(f"{source}: {path}: must be a finite number, got {_show(data)}")
    if minimum is not None and data < minimum:
        raise MetricsError(f"{source}: {path}: must be >= {minimum:g}, got {data!r}")
    return float(data)


def _integer(data: object, source: str, path: str) -> int:
    if isinstance(data, bool) or not isinstance(data, int):
        raise MetricsError(f"{source}: {path}: must be an integer, got {_show(data)}")
    return data


def _no_unknown_keys(fields: dict[str, object], known: tuple[str, ...], source: str, path: str) -> None:
    for key in fields:
        if key not in known:
            where = f"{path}.{key}" if path else key
            raise MetricsError(f"{source}: {where}: unknown key (expected one of {', '.join(known)})")


def _kind(data: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(data), "a number"
    )


def _show(data: object) -> str:
    if isinstance(data, float):
        return repr(data)  # nan, inf
    return _kind(data) if isinstance(data, (dict, list)) else json.dumps(data)[:80]
