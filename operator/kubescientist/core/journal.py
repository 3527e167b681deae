"""The journal: every node of the search tree, every stage's record and every engine decision.

The journal is the engine's whole state. It serialises to plain JSON (``to_dict``/``from_dict``) so that a
run resumes from it after a crash and the operator rebuilds it from the API.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Iterator, Literal, Mapping

from kubescientist.core.spec import Action, StageName

NodeStatus = Literal["pending", "running", "succeeded", "buggy", "failed"]
StageStatus = Literal["waiting", "searching", "judging", "done", "failed", "skipped"]
FINISHED: frozenset[NodeStatus] = frozenset({"succeeded", "buggy", "failed"})


@dataclasses.dataclass
class NodeConfig:
    """What distinguishes one run of a template from another."""

    seed: int
    """The seed the program seeds its random generators with."""
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Hyperparameters and other template parameters."""
    variant: str | None = None
    """The research-agenda variant applied, if any."""
    ablation: str | None = None
    """The component switched off, if any."""
    code: str | None = None
    """The program text, when the node's code differs from the template's (LLM-written)."""

    def key(self) -> str:
        """Identity of the experiment regardless of seed: two nodes with the same key repeat each other."""
        return json.dumps([self.params, self.variant, self.ablation, self.code], sort_keys=True, default=str)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclasses.dataclass
class Outcome:
    """What a finished node reported, as the engine sees it."""

    buggy: bool
    """Whether the node failed to produce a usable result."""
    reason: str | None = None
    """Why it is buggy (or an infrastructure failure's message)."""
    metrics: dict[str, dict[str, dict[str, Any]]] = dataclasses.field(default_factory=dict)
    """The normalised metrics: dataset -> metric -> {final, best, direction, ...}."""
    metric: float | None = None
    """The objective value, computed by the engine from ``metrics``."""
    infrastructure: bool = False
    """A failure of the machine rather than the program (evicted, node lost): retried, never buggy."""
    duration_seconds: float | None = None
    """How long the program ran."""
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Adapter-specific facts kept for the record (exit code, output sizes, artefact paths)."""


@dataclasses.dataclass
class Node:
    """One program run: a vertex of the search tree."""

    id: str
    """Deterministic name: ``<stage index><sequence>``, e.g. ``n0007``."""
    seq: int
    """Creation order, starting at 0."""
    stage: StageName
    """The stage that created it."""
    action: Action
    """How it was derived from its parent."""
    parent: str | None
    """The node it was derived from; None for drafts."""
    config: NodeConfig
    """Its parameters (and code, when LLM-written)."""
    reason: str
    """Why the engine created it: the decision, in words."""
    status: NodeStatus = "pending"
    """Lifecycle phase."""
    code_hash: str | None = None
    """Content hash of its program and config, set by the adapter that materialises it."""
    outcome: Outcome | None = None
    """Its result, once finished."""
    attempts: int = 0
    """How many times it was started (infrastructure failures restart it)."""

    @property
    def good(self) -> bool:
        return self.status == "succeeded" and self.outcome is not None and self.outcome.metric is not None

    @property
    def metric(self) -> float | None:
        return self.outcome.metric if self.outcome is not None else None


@dataclasses.dataclass
class StageRecord:
    """A stage's progress and outcome."""

    name: StageName
    """Which stage."""
    status: StageStatus = "waiting"
    """Lifecycle phase."""
    root: str | None = None
    """The previous stage's best node this stage starts from."""
    best: str | None = None
    """The stage's best node, chosen when the search of the stage ends."""
    end_reason: str | None = None
    """Why the stage ended."""
    seed_nodes: list[str] = dataclasses.field(default_factory=list)
    """Re-evaluation runs of ``best`` with other seeds."""
    goal_met: str | None = None
    """Set when a judge found the stage's goal met before its budget: why. No new search node starts."""


@dataclasses.dataclass
class Event:
    """A decision or transition of the engine that is not a node of its own."""

    seq: int
    """Order among events."""
    kind: str
    """A short machine-readable tag: stage-started, stage-ended, budget, run-ended, ..."""
    message: str
    """The decision and its reason, in words."""
    stage: StageName | None = None
    """The stage it concerns."""


@dataclasses.dataclass
class Journal:
    """The search tree and everything the engine decided."""

    nodes: dict[str, Node] = dataclasses.field(default_factory=dict)
    """Every node, in creation order."""
    stages: list[StageRecord] = dataclasses.field(default_factory=list)
    """One record per stage, in order."""
    events: list[Event] = dataclasses.field(default_factory=list)
    """Engine decisions that are not nodes."""
    phase: Literal["searching", "succeeded", "failed"] = "searching"
    """Whether the search goes on or how it ended."""
    message: str = ""
    """Why the search ended."""
    exhausted: list[list[str]] = dataclasses.field(default_factory=list)
    """``[parent, action]`` pairs the proposer had nothing new for (parent "" for drafts)."""

    def add(self, node: Node) -> Node:
        self.nodes[node.id] = node
        return node

    def record(self, kind: str, message: str, stage: StageName | None = None) -> None:
        self.events.append(Event(seq=len(self.events), kind=kind, message=message, stage=stage))

    def stage(self, name: StageName) -> StageRecord:
        return next(s for s in self.stages if s.name == name)

    def children(self, node_id: str) -> Iterator[Node]:
        return (n for n in self.nodes.values() if n.parent == node_id)

    def in_stage(self, name: StageName, *, seeds: bool = False) -> Iterator[Node]:
        return (n for n in self.nodes.values()
                if n.stage == name and (seeds or n.action != "seed"))

    def unfinished(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.status not in FINISHED]

    def debug_depth(self, node: Node) -> int:
        """How many consecutive debug attempts end at ``node`` (0 for a node that is not a debug)."""
        depth = 0
        current: Node | None = node
        while current is not None and current.action == "debug":
            depth += 1
            current = self.nodes.get(current.parent) if current.parent else None
        return depth

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Journal:
        nodes = {}
        for raw in data.get("nodes", {}).values():
            fields = dict(raw)
            fields["config"] = NodeConfig(**fields["config"])
            if fields.get("outcome") is not None:
                fields["outcome"] = Outcome(**fields["outcome"])
            node = Node(**fields)
            nodes[node.id] = node
        return cls(
            nodes=nodes,
            stages=[StageRecord(**s) for s in data.get("stages", [])],
            events=[Event(**e) for e in data.get("events", [])],
            phase=data.get("phase", "searching"),
            message=data.get("message", ""),
            exhausted=[list(pair) for pair in data.get("exhausted", [])],
        )
