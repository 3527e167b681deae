"""What the adapters share about templates: the engine's view of a template's search space."""

from __future__ import annotations

from experiment_runtime import Template
from kubescientist.core.searchspace import Change, Hyperparameter, SearchSpace


def search_space_of(template: Template) -> SearchSpace:
    """The engine's view of a template's declared search space (empty for v1 templates)."""
    space = template.search_space
    return SearchSpace(
        hyperparameters=tuple(Hyperparameter(name=h.name, kind=h.type, default=h.default, low=h.low, high=h.high,
                                             log=h.log, values=tuple(h.values)) for h in space.hyperparameters),
        variants=tuple(Change(v.name, v.description, dict(v.params)) for v in space.variants),
        ablations=tuple(Change(a.name, a.description, dict(a.params)) for a in space.ablations),
    )
