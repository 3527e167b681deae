"""What the engine asks for (a plan) and what a proposer answers (a proposal)."""

from __future__ import annotations

import dataclasses

from kubescientist.core.journal import NodeConfig
from kubescientist.core.spec import Action, StageName


@dataclasses.dataclass(frozen=True)
class Plan:
    """The engine's decision for a free slot: which action on which parent, and why."""

    stage: StageName
    """The stage the new node belongs to."""
    action: Action
    """What to do."""
    parent: str | None
    """The node to derive from; None for a draft."""
    reason: str
    """Why this choice, in words (recorded on the node)."""
    rng_seed: str
    """Seeds the proposer's generator, so proposals derive from the run seed only."""
    config: NodeConfig | None = None
    """Set when the engine already knows the config (seed re-evaluations need no proposer)."""


@dataclasses.dataclass(frozen=True)
class Proposal:
    """A proposer's answer to a plan."""

    config: NodeConfig
    """The new node's parameters (and code, if written by an LLM)."""
    summary: str
    """What changed relative to the parent, in words."""
