"""The offline proposer: turns plans into configs from a template's declared search space, no LLM.

Stage 2 tunes one hyperparameter at a time over a small grid, stage 3 applies the research-agenda
variants in their declared order, stage 4 switches one component off at a time. Never repeats a config
already in the journal, and is deterministic given the plan's seed.
"""

from __future__ import annotations

import random
from typing import Any, Collection, Protocol

from kubescientist.core.journal import Journal, Node, NodeConfig
from kubescientist.core.plan import Plan, Proposal
from kubescientist.core.searchspace import Change, SearchSpace

RANDOM_DRAFT_TRIES = 256
"""How many random grid points a later draft samples before giving up on finding an unseen one."""


class Proposer(Protocol):
    def propose(self, plan: Plan, journal: Journal) -> Proposal | None:
        """A config for ``plan``, or None when this parent has nothing new for this action."""


class OfflineProposer:
    def __init__(self, space: SearchSpace, base_seed: int) -> None:
        self.space = space
        self.base_seed = base_seed

    def propose(self, plan: Plan, journal: Journal) -> Proposal | None:
        rng = random.Random(plan.rng_seed)
        seen = journal.config_keys()
        parent = journal.nodes[plan.parent] if plan.parent else None
        if plan.action == "draft":
            return self._draft(seen, rng)
        assert parent is not None, f"{plan.action} needs a parent"
        if plan.action in ("tune", "improve"):
            return _pick(rng, [c for c in self._one_change_neighbours(parent) if c[0].key() not in seen])
        if plan.action == "variant":
            return self._apply_next(parent, self.space.variants, "variant", journal, seen)
        if plan.action == "ablate":
            return self._apply_next(parent, self.space.ablations, "ablation", journal, seen)
        if plan.action == "debug":
            return _pick(rng, [c for c in self._reverts(parent) if c[0].key() not in seen])
        return None

    def _config(self, params: dict[str, Any], like: Node | None = None, **changes: Any) -> NodeConfig:
        config = NodeConfig(seed=self.base_seed, params=params,
                            variant=like.config.variant if like else None,
                            ablation=like.config.ablation if like else None)
        for key, value in changes.items():
            setattr(config, key, value)
        return config

    def _draft(self, seen: Collection[str], rng: random.Random) -> Proposal | None:
        defaults = self._config(self.space.defaults())
        if defaults.key() not in seen:
            return Proposal(defaults, "the template as written (default parameters)")
        for _ in range(RANDOM_DRAFT_TRIES):
            params = {h.name: rng.choice(h.grid()) for h in self.space.hyperparameters}
            config = self._config(params)
            if config.key() not in seen:
                shown = ", ".join(f"{k}={v}" for k, v in params.items())
                return Proposal(config, f"an independent draft at a random grid point ({shown})")
        return None

    def _fixed(self, node: Node) -> set[str]:
        """Parameters the node's variant or ablation sets: changing them would undo what it tests."""
        named = {c.name: c for c in self.space.variants if c.name == node.config.variant}
        named.update({c.name: c for c in self.space.ablations if c.name == node.config.ablation})
        return {key for change in named.values() for key in change.params}

    def _one_change_neighbours(self, parent: Node) -> list[tuple[NodeConfig, str]]:
        out = []
        fixed = self._fixed(parent)
        for h in self.space.hyperparameters:
            if h.name in fixed:
                continue
            current = parent.config.params.get(h.name, h.default)
            for value in h.grid():
                if value != current:
                    params = {**parent.config.params, h.name: value}
                    out.append((self._config(params, parent), f"{h.name}: {current} -> {value}"))
        return out

    def _reverts(self, parent: Node) -> list[tuple[NodeConfig, str]]:
        # Offline there is no code to fix: the only repair is to undo a parameter change that may be
        # the cause (a learning rate that diverges, a model too large for the deadline).
        out = []
        fixed = self._fixed(parent)
        for h in self.space.hyperparameters:
            current = parent.config.params.get(h.name, h.default)
            if current != h.default and h.name not in fixed:
                params = {**parent.config.params, h.name: h.default}
                out.append((self._config(params, parent), f"revert {h.name}: {current} -> {h.default}"))
        return out

    def _apply_next(self, parent: Node, changes: tuple[Change, ...], field: str, journal: Journal,
                    seen: Collection[str]) -> Proposal | None:
        tried = journal.tried("variant" if field == "variant" else "ablation")
        for change in changes:
            if change.name in tried:
                continue
            config = self._config({**parent.config.params, **change.params}, parent, **{field: change.name})
            if config.key() in seen:
                continue
            what = "variant" if field == "variant" else "ablation"
            return Proposal(config, f"{what} {change.name}: {change.description}".rstrip(": "))
        return None


def _pick(rng: random.Random, candidates: list[tuple[NodeConfig, str]]) -> Proposal | None:
    if not candidates:
        return None
    config, summary = rng.choice(candidates)
    return Proposal(config, summary)
