"""A template's declared search space: hyperparameters, research-agenda variants, ablation switches."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal, Mapping

GRID_POINTS = 5
"""How many values of a numeric hyperparameter the offline proposer considers (ends included)."""


@dataclasses.dataclass(frozen=True)
class Hyperparameter:
    name: str
    """The parameter's key in the node config."""
    kind: Literal["float", "int", "choice"]
    """Its type."""
    default: Any
    """The template's own value."""
    low: float | None = None
    """Smallest value (numeric kinds)."""
    high: float | None = None
    """Largest value (numeric kinds)."""
    log: bool = False
    """Whether values are spread on a log scale (numeric kinds)."""
    values: tuple[Any, ...] = ()
    """The allowed values (choice)."""

    def grid(self) -> tuple[Any, ...]:
        """The finite set of values the offline proposer picks from, default included."""
        if self.kind == "choice":
            return tuple(dict.fromkeys([*self.values, self.default]))
        assert self.low is not None and self.high is not None
        points: list[Any] = []
        for i in range(GRID_POINTS):
            t = i / (GRID_POINTS - 1)
            if self.log and self.low > 0:
                value = math.exp(math.log(self.low) + t * (math.log(self.high) - math.log(self.low)))
            else:
                value = self.low + t * (self.high - self.low)
            points.append(int(round(value)) if self.kind == "int" else float(f"{value:.4g}"))
        return tuple(dict.fromkeys([*points, self.default]))


@dataclasses.dataclass(frozen=True)
class Change:
    """A named set of parameter overrides: a variant or an ablation."""

    name: str
    """Its name, unique within its list."""
    description: str
    """What it does, in words."""
    params: Mapping[str, Any]
    """The parameters it sets."""


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    hyperparameters: tuple[Hyperparameter, ...] = ()
    """What stage 2 tunes."""
    variants: tuple[Change, ...] = ()
    """The research agenda stage 3 tries."""
    ablations: tuple[Change, ...] = ()
    """The components stage 4 switches off, one at a time."""

    def defaults(self) -> dict[str, Any]:
        return {h.name: h.default for h in self.hyperparameters}

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> SearchSpace:
        """Build from a template's validated ``searchSpace`` mapping."""
        hyper = []
        for name, h in (data.get("hyperparameters") or {}).items():
            hyper.append(Hyperparameter(
                name=name, kind=h["type"], default=h.get("default"), low=h.get("low"), high=h.get("high"),
                log=bool(h.get("log", False)), values=tuple(h.get("values", ()))))
        return cls(
            hyperparameters=tuple(hyper),
            variants=tuple(Change(v["name"], v.get("description", ""), dict(v.get("params", {})))
                           for v in data.get("variants") or ()),
            ablations=tuple(Change(a["name"], a.get("description", ""), dict(a.get("params", {})))
                            for a in data.get("ablations") or ()),
        )
