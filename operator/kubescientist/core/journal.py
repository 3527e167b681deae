"""The journal: every node of the search tree, every stage's record and every engine decision.

The journal is the engine's whole state. It serialises to plain JSON (``to_dict``/``from_dict``) so that a
run resumes from it after a crash and the operator rebuilds it from the API. Every change is also kept as a
change record (``changes()``): a store appends those to a log and writes a whole snapshot only now and then,
so that a save costs the same at node 10 as at node 10,000; ``replay`` rebuilds the journal from a snapshot
and the records after it. Records are positional upserts, so replaying one that a snapshot already holds
changes nothing.

The journal keeps indexes (children by parent, nodes by stage, config keys, unfinished and pending nodes)
so that the engine's questions do not grow with the tree. They are derived state, never serialised: the
engine changes nodes through ``add``, ``set_status`` and ``touch``, which keep them current.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Iterable, Iterator, KeysView, Literal, Mapping

from kubescientist.core.spec import Action, StageName

NodeStatus = Literal["pending", "running", "succeeded", "buggy", "failed"]
StageStatus = Literal["waiting", "searching", "judging", "done", "failed", "skipped"]
FINISHED: frozenset[NodeStatus] = frozenset({"succeeded", "buggy", "failed"})
Change = dict[str, Any]
"""One change record: ``{"op": "node"|"stage"|"event"|"exhausted"|"phase", ...}``, plain JSON."""


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
class Details:
    """What an adapter recorded about how a node attempt ran: one typed record, one spelling, in both modes."""

    status: str | None = None
    """The runtime's status of the program: succeeded, failed, timeout, killed (None: no result came back)."""
    exit_code: int | None = None
    """The program's exit status (None when a signal ended it or nothing ran)."""
    container_exit_code: int | None = None
    """The node container's exit status, in the cluster (the runtime's own, not the program's)."""
    container_reason: str | None = None
    """Why the container ended, when the kubelet says (``OOMKilled``)."""
    job_condition: str | None = None
    """The Job condition that ended the attempt, when it was the Job (``DeadlineExceeded``)."""
    code_hash: str | None = None
    """Content hash of the code and config that ran, as the runtime computed it."""
    overhead_seconds: float | None = None
    """Seconds the runtime spent around the program (copying code, collecting outputs)."""
    wall_seconds: float | None = None
    """Seconds from launch to the end of the executor, as the driving adapter measured them."""
    cpu_seconds: float | None = None
    """CPU time the program used."""
    max_rss_bytes: int | None = None
    """Peak resident memory of the program's largest process."""
    stdout_bytes: int | None = None
    """Bytes the program wrote to stdout."""
    stderr_bytes: int | None = None
    """Bytes the program wrote to stderr."""
    plots: list[str] = dataclasses.field(default_factory=list)
    """The plots the node produced, relative to its plots folder."""
    artifact_errors: list[str] = dataclasses.field(default_factory=list)
    """Outputs that did not upload (cluster)."""
    attempt: int | None = None
    """Which attempt of the node this outcome is from (cluster: each attempt is one Job)."""
    job: str | None = None
    """The attempt's Job (cluster)."""
    pod: str | None = None
    """The attempt's pod, when the outcome names one (cluster)."""
    artifacts: str | None = None
    """Where the attempt's outputs are stored (an ``s3://`` URI in the cluster)."""
    started_at: str | None = None
    """When the program started (RFC 3339)."""
    finished_at: str | None = None
    """When it ended (RFC 3339)."""
    adopted: bool = False
    """Taken from the ExperimentNode's status, which recorded the end before the journal did."""
    review: dict[str, Any] | None = None
    """The LLM's review of the node (buggy, reason, summary, by, prompt)."""
    plot_feedback: dict[str, Any] | None = None
    """The vision model's feedback on the node's plots (valid, summary, analyses)."""
    configuration_error: bool | None = None
    """True: the run's configuration cannot work (its image lacks a requirement), and the engine fails the run."""

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Details:
        """Read back a record, including those journals wrote before the keys had one spelling."""
        names = {f.name for f in dataclasses.fields(cls)}
        fields: dict[str, Any] = {}
        for key, value in raw.items():
            name = _LEGACY_DETAILS.get(key, key)
            if key == "job" and value == "DeadlineExceeded":
                name = "job_condition"  # the old records put the Job's condition under the Job's name
            if name in names and value is not None:
                fields[name] = value
        return cls(**fields)


_LEGACY_DETAILS = {"exitCode": "exit_code", "overheadSeconds": "overhead_seconds", "wallSeconds": "wall_seconds",
                   "stdoutBytes": "stdout_bytes", "stderrBytes": "stderr_bytes", "codeHash": "code_hash",
                   "artifactErrors": "artifact_errors", "containerReason": "container_reason",
                   "startedAt": "started_at", "finishedAt": "finished_at", "plotFeedback": "plot_feedback"}
"""camelCase keys of journals written before ``Details`` existed, and the field each is now."""


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
    details: Details = dataclasses.field(default_factory=Details)
    """How the attempt ran, for the record (exit code, output sizes, where its outputs are)."""


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
    contenders: list[str] = dataclasses.field(default_factory=list)
    """Set when the search ended and the best is chosen by seed mean among these leading nodes (by their
    own run); the stage concludes once their seed re-evaluations have finished."""
    provisional_root: str | None = None
    """Set when the stage started early, before the previous stage concluded: the provisional best it started
    from (``root`` is the previous stage's best once known; nodes derived from a different provisional root
    stay in the stage)."""


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

    def __post_init__(self) -> None:
        # Derived state, not fields: never serialised or compared.
        self._children: dict[str, list[str]] = {}
        self._seed_runs: dict[str, list[str]] = {}
        self._by_stage: dict[str, list[str]] = {}
        self._keys: dict[str, str] = {}
        self._variants: set[str | None] = set()
        self._ablations: set[str | None] = set()
        self._depth: dict[str, int] = {}
        self._unfinished: dict[str, None] = {}
        self._pending: set[str] = set()
        self._open_in_stage: dict[str, int] = {}
        self._exhausted: set[tuple[str, str]] = set()
        self._indexed = 0
        # What ``changes()`` has handed out already.
        self._dirty: dict[str, None] = {}
        self._saved_stages: list[dict[str, Any]] = []
        self._saved_events = 0
        self._saved_exhausted = 0
        self._saved_phase: tuple[str, str] = ("searching", "")
        self._reindex()

    # -- changes --------------------------------------------------------------------------------------

    def add(self, node: Node) -> Node:
        self._sync()
        self.nodes[node.id] = node
        self._index_node(node)
        self._indexed = len(self.nodes)
        self._dirty[node.id] = None
        return node

    def set_status(self, node: Node, status: NodeStatus) -> None:
        """Change a node's status (keeping the unfinished and pending indexes current)."""
        self._sync()
        self._unindex_status(node)
        node.status = status
        self._index_status(node)
        self._dirty[node.id] = None

    def touch(self, node: Node) -> None:
        """Note that a node changed (its outcome, attempts, code hash): the next ``changes()`` carries it."""
        self._dirty[node.id] = None

    def record(self, kind: str, message: str, stage: StageName | None = None) -> None:
        self.events.append(Event(seq=len(self.events), kind=kind, message=message, stage=stage))

    def exhaust(self, parent: str | None, action: str) -> None:
        """Note that the proposer has nothing new for ``action`` on ``parent`` (None: a new draft)."""
        pair = [parent or "", action]
        self.exhausted.append(pair)
        self._exhausted.add((pair[0], action))

    def changes(self) -> list[Change]:
        """The change records since the last call (the first call: everything), in the order to replay them."""
        out: list[Change] = []
        stages = [dataclasses.asdict(s) for s in self.stages]
        out += [{"op": "stage", "index": i, "stage": s} for i, s in enumerate(stages)
                if i >= len(self._saved_stages) or self._saved_stages[i] != s]
        self._saved_stages = stages
        out += [{"op": "node", "node": dataclasses.asdict(self.nodes[i])} for i in self._dirty if i in self.nodes]
        self._dirty = {}
        out += [{"op": "event", "event": dataclasses.asdict(e)} for e in self.events[self._saved_events:]]
        self._saved_events = len(self.events)
        out += [{"op": "exhausted", "index": i, "pair": list(p)}
                for i, p in enumerate(self.exhausted[self._saved_exhausted:], self._saved_exhausted)]
        self._saved_exhausted = len(self.exhausted)
        if (self.phase, self.message) != self._saved_phase:
            out.append({"op": "phase", "phase": self.phase, "message": self.message})
            self._saved_phase = (self.phase, self.message)
        return out

    def saved(self) -> None:
        """Mark everything as saved (a journal just loaded from its store has no changes to give)."""
        self.changes()

    def apply(self, change: Change) -> None:
        """Replay one change record."""
        op = change["op"]
        if op == "node":
            node = _node_from_dict(change["node"])
            old = self.nodes.get(node.id)
            if old is None:
                self.add(node)
            else:
                self._unindex_status(old)
                self.nodes[node.id] = node
                self._index_status(node)
        elif op == "stage":
            record = StageRecord(**change["stage"])
            index = int(change["index"])
            if index < len(self.stages):
                self.stages[index] = record
            else:
                self.stages.append(record)
        elif op == "event":
            event = Event(**change["event"])
            if event.seq < len(self.events):
                self.events[event.seq] = event
            else:
                self.events.append(event)
        elif op == "exhausted":
            index, pair = int(change["index"]), [str(p) for p in change["pair"]]
            if index >= len(self.exhausted):
                self.exhaust(pair[0] or None, pair[1])
        elif op == "phase":
            self.phase, self.message = change["phase"], change["message"]
        else:
            raise ValueError(f"journal change record: unknown op {op!r}")

    @classmethod
    def replay(cls, changes: Iterable[Change], snapshot: Mapping[str, Any] | None = None) -> Journal:
        """The journal a snapshot (``to_dict``) and the change records after it describe."""
        journal = cls.from_dict(snapshot or {})
        for change in changes:
            journal.apply(change)
        journal.saved()
        return journal

    # -- queries --------------------------------------------------------------------------------------

    def stage(self, name: StageName) -> StageRecord:
        return next(s for s in self.stages if s.name == name)

    def children(self, node_id: str) -> Iterator[Node]:
        self._sync()
        return (self.nodes[i] for i in self._children.get(node_id, ()))

    def seed_runs(self, node_id: str) -> list[Node]:
        """The node's seed re-evaluations, in creation order."""
        self._sync()
        return [self.nodes[i] for i in self._seed_runs.get(node_id, ())]

    def has_children(self, node_id: str) -> bool:
        self._sync()
        return bool(self._children.get(node_id))

    def in_stage(self, name: StageName, *, seeds: bool = False) -> Iterator[Node]:
        self._sync()
        if seeds:
            return (n for n in self.nodes.values() if n.stage == name)
        return (self.nodes[i] for i in self._by_stage.get(name, ()))

    def count_in_stage(self, name: StageName) -> int:
        """How many search nodes (seed runs not included) the stage has."""
        self._sync()
        return len(self._by_stage.get(name, ()))

    def unfinished_in_stage(self, name: StageName) -> int:
        """How many search nodes of the stage are pending or running."""
        self._sync()
        return self._open_in_stage.get(name, 0)

    def unfinished(self) -> list[Node]:
        self._sync()
        return [self.nodes[i] for i in self._unfinished]

    def any_unfinished(self) -> bool:
        self._sync()
        return bool(self._unfinished)

    def first_pending(self) -> Node | None:
        """The pending node created first (new, or to be restarted)."""
        self._sync()
        if not self._pending:
            return None
        return self.nodes[min(self._pending, key=lambda i: self.nodes[i].seq)]

    def pending_count(self) -> int:
        self._sync()
        return len(self._pending)

    def twin(self, config: NodeConfig) -> Node | None:
        """The search node (not a seed run) whose config repeats ``config``, if any."""
        self._sync()
        found = self._keys.get(config.key())
        return self.nodes[found] if found is not None else None

    def config_keys(self) -> KeysView[str]:
        """The config keys of every search node (seed runs repeat their parent's); a live view, not a copy."""
        self._sync()
        return self._keys.keys()

    def has_key(self, key: str) -> bool:
        self._sync()
        return key in self._keys

    def tried(self, field: Literal["variant", "ablation"]) -> set[str | None]:
        """Every value of ``config.variant`` (or ``ablation``) some node has."""
        self._sync()
        return set(self._variants if field == "variant" else self._ablations)

    def is_exhausted(self, parent: str | None, action: str) -> bool:
        return (parent or "", action) in self._exhausted

    def debug_depth(self, node: Node) -> int:
        """How many consecutive debug attempts end at ``node`` (0 for a node that is not a debug)."""
        self._sync()
        depth = self._depth.get(node.id)
        return depth if depth is not None else self._compute_depth(node)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Journal:
        nodes = {}
        for raw in data.get("nodes", {}).values():
            node = _node_from_dict(raw)
            nodes[node.id] = node
        return cls(
            nodes=nodes,
            stages=[StageRecord(**s) for s in data.get("stages", [])],
            events=[Event(**e) for e in data.get("events", [])],
            phase=data.get("phase", "searching"),
            message=data.get("message", ""),
            exhausted=[list(pair) for pair in data.get("exhausted", [])],
        )

    # -- indexes --------------------------------------------------------------------------------------

    def _sync(self) -> None:
        # Nodes put into ``nodes`` directly (tests, old callers) are indexed on the next question.
        if self._indexed != len(self.nodes):
            self._reindex(keep_saved=True)

    def _reindex(self, keep_saved: bool = False) -> None:
        self._children, self._seed_runs, self._by_stage, self._keys = {}, {}, {}, {}
        self._variants, self._ablations, self._depth = set(), set(), {}
        self._unfinished, self._pending, self._open_in_stage = {}, set(), {}
        self._exhausted = {(p[0], p[1]) for p in self.exhausted}
        for node in self.nodes.values():
            self._index_node(node)
        self._indexed = len(self.nodes)
        if not keep_saved:
            self._dirty = dict.fromkeys(self.nodes)
            self._saved_stages, self._saved_events, self._saved_exhausted = [], 0, 0
            self._saved_phase = ("searching", "")

    def _index_node(self, node: Node) -> None:
        if node.parent is not None:
            self._children.setdefault(node.parent, []).append(node.id)
            if node.action == "seed":
                self._seed_runs.setdefault(node.parent, []).append(node.id)
        if node.action != "seed":
            self._by_stage.setdefault(node.stage, []).append(node.id)
            self._keys.setdefault(node.config.key(), node.id)
        self._variants.add(node.config.variant)
        self._ablations.add(node.config.ablation)
        self._depth[node.id] = self._compute_depth(node)
        self._index_status(node)

    def _compute_depth(self, node: Node) -> int:
        if node.action != "debug":
            return 0
        parent = self.nodes.get(node.parent) if node.parent else None
        if parent is None:
            return 1
        known = self._depth.get(parent.id)
        return 1 + (known if known is not None else self._compute_depth(parent))

    def _index_status(self, node: Node) -> None:
        if node.status in FINISHED:
            return
        self._unfinished[node.id] = None
        if node.status == "pending":
            self._pending.add(node.id)
        if node.action != "seed":
            self._open_in_stage[node.stage] = self._open_in_stage.get(node.stage, 0) + 1

    def _unindex_status(self, node: Node) -> None:
        if node.id not in self._unfinished:
            return
        del self._unfinished[node.id]
        self._pending.discard(node.id)
        if node.action != "seed":
            self._open_in_stage[node.stage] -= 1


def _node_from_dict(raw: Mapping[str, Any]) -> Node:
    fields = dict(raw)
    fields["config"] = NodeConfig(**fields["config"])
    if fields.get("outcome") is not None:
        outcome = dict(fields["outcome"])
        outcome["details"] = Details.from_dict(outcome.get("details") or {})
        fields["outcome"] = Outcome(**outcome)
    return Node(**fields)
