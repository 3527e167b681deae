"""The objective value of a node's metrics, comparisons between values, and seed statistics."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable, Mapping

from kubescientist.core.spec import Direction, Objective


class ObjectiveMissing(Exception):
    """The metrics do not report the objective metric on any counted dataset."""


def objective_value(objective: Objective, metrics: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> float:
    """Fold the objective metric over the counted datasets into one number."""
    wanted = objective.datasets or tuple(metrics)
    values = []
    for dataset in wanted:
        entry = metrics.get(dataset, {}).get(objective.metric)
        if entry is None:
            if objective.datasets:
                raise ObjectiveMissing(f"dataset {dataset!r} does not report metric {objective.metric!r}")
            continue
        value = entry.get(objective.value, entry.get("final"))
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ObjectiveMissing(f"{dataset}.{objective.metric}.{objective.value} is not a finite number")
        values.append(float(value))
    if not values:
        raise ObjectiveMissing(f"no dataset reports metric {objective.metric!r}")
    if objective.aggregation == "min":
        return min(values)
    if objective.aggregation == "max":
        return max(values)
    return sum(values) / len(values)


def better(a: float, b: float, direction: Direction) -> bool:
    """Whether ``a`` is strictly better than ``b``."""
    return a > b if direction == "maximize" else a < b


def sort_key(value: float, direction: Direction) -> float:
    """A key under which ``min()`` picks the best value."""
    return -value if direction == "maximize" else value


@dataclasses.dataclass(frozen=True)
class SeedStats:
    """A metric over several seeds."""

    mean: float
    """The mean over the seeds that produced a value."""
    stderr: float
    """Standard error of the mean: sample standard deviation / sqrt(n); 0 for one sample."""
    n: int
    """How many seeds produced a value."""
    values: tuple[float, ...]
    """The individual values."""


def seed_stats(values: Iterable[float]) -> SeedStats:
    sample = tuple(values)
    if not sample:
        raise ValueError("no values")
    n = len(sample)
    mean = sum(sample) / n
    if n == 1:
        return SeedStats(mean=mean, stderr=0.0, n=1, values=sample)
    variance = sum((v - mean) ** 2 for v in sample) / (n - 1)
    return SeedStats(mean=mean, stderr=math.sqrt(variance / n), n=n, values=sample)
