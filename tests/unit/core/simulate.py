"""A simulated world for engine tests: configs map to metrics by a fixed rule, some configs crash."""

from __future__ import annotations

import math
from typing import Any, Callable

from kubescientist.core.engine import Engine
from kubescientist.core.journal import Journal, Node, Outcome
from kubescientist.core.plan import Plan, Proposal
from kubescientist.core.proposer import OfflineProposer, Proposer
from kubescientist.core.searchspace import SearchSpace
from kubescientist.core.spec import RunSpec, run_spec_from_dict

SPACE = SearchSpace.from_mapping({
    "hyperparameters": {
        "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True, "default": 1e-3},
        "width": {"type": "choice", "values": [16, 32, 64], "default": 32},
    },
    "variants": [{"name": "wide", "description": "double width", "params": {"width": 64}},
                 {"name": "fancy", "description": "a fancy trick", "params": {"fancy": True}}],
    "ablations": [{"name": "no_fancy", "description": "", "params": {"fancy": False}},
                  {"name": "narrow", "description": "", "params": {"width": 16}}],
})

STAGES = ("initial", "tuning", "research", "ablation")


def spec(**overrides: Any) -> RunSpec:
    raw: dict[str, Any] = {
        "idea": {"inline": {"title": "t"}},
        "objective": {"metric": "acc", "direction": "maximize"},
        "stages": [{"name": n, "maxNodes": 4} for n in ("initial", "tuning", "research", "ablation")],
        "search": {"parallelism": 2, "drafts": 2, "debugProbability": 0.5, "maxDebugDepth": 3},
        "seeds": 2,
        "seed": 7,
    }
    for key, value in overrides.items():
        raw[key] = value
    return run_spec_from_dict(raw)


def spec_with(*, max_nodes: int | dict[str, int] = 4, search: dict[str, Any] | None = None,
              **overrides: Any) -> RunSpec:
    """``spec()`` with per-stage node budgets and search knobs merged over the defaults."""
    budgets = max_nodes if isinstance(max_nodes, dict) else {n: max_nodes for n in STAGES}
    knobs = {"parallelism": 2, "drafts": 2, "debugProbability": 0.5, "maxDebugDepth": 3, **(search or {})}
    return spec(stages=[{"name": n, "maxNodes": budgets.get(n, 4)} for n in STAGES], search=knobs, **overrides)


def accuracy(node: Node) -> float:
    """A smooth function of the config: best near lr=1e-2, width 64, fancy on."""
    p = node.config.params
    value = 0.9 - 0.05 * abs(math.log10(p.get("lr", 1e-3)) + 2) + 0.02 * (p.get("width", 32) / 32)
    value += 0.03 if p.get("fancy") else 0.0
    return value + 0.001 * (node.config.seed % 5)


def outcome_of(node: Node, crash: Callable[[Node], bool] = lambda n: False) -> Outcome:
    if crash(node):
        return Outcome(buggy=True, reason="RuntimeError: simulated crash")
    return Outcome(buggy=False, metrics={"d1": {"acc": {"final": accuracy(node)}}})


def good(value: float, metric: str = "acc") -> Outcome:
    """A successful outcome reporting ``value`` on one dataset."""
    return Outcome(buggy=False, metrics={"d1": {metric: {"final": value}}})


def bug(reason: str = "RuntimeError: simulated crash") -> Outcome:
    return Outcome(buggy=True, reason=reason)


def infra(reason: str = "pod evicted") -> Outcome:
    return Outcome(buggy=False, reason=reason, infrastructure=True)


def run_to_end(run: RunSpec, crash: Callable[[Node], bool] = lambda n: False, *, slots: int = 2,
               journal: Journal | None = None, step_limit: int = 1000,
               stop_after: int | None = None) -> Engine:
    """Drive the engine like an adapter: refill each free slot at once, finish the oldest running node."""
    engine = Engine(run, journal or Journal())
    engine.requeue_running()
    proposer = OfflineProposer(SPACE, run.seed)
    running: list[Node] = []
    completed = 0
    for _ in range(step_limit):
        while len(running) < slots:
            node = engine.next_pending()
            if node is None:
                plan = engine.plan(elapsed_seconds=float(completed))
                if plan is None:
                    break
                proposal = proposer.propose(plan, engine.journal) if plan.config is None else None
                node = engine.commit(plan, proposal)
                if node is None:
                    continue
            running.append(engine.start(node.id))
        if not running:
            break
        node = running.pop(0)
        engine.complete(node.id, outcome_of(node, crash))
        completed += 1
        if stop_after is not None and completed >= stop_after:
            break
    return engine


class PatchingProposer:
    """The offline proposer, except that a debug always has a fix: the parent's config plus a patch marker.

    Offline debugging can only revert parameters, which often repeats an existing node; tests of the
    engine's debug selection need a proposer that can always answer a debug plan.
    """

    def __init__(self, space: SearchSpace, base_seed: int) -> None:
        self.inner = OfflineProposer(space, base_seed)

    def propose(self, plan: Plan, journal: Journal) -> Proposal | None:
        if plan.action != "debug":
            return self.inner.propose(plan, journal)
        assert plan.parent is not None
        parent = journal.nodes[plan.parent]
        config = type(parent.config)(seed=parent.config.seed,
                                     params={**parent.config.params, "patch": plan.parent},
                                     variant=parent.config.variant, ablation=parent.config.ablation)
        return Proposal(config, f"patched {plan.parent}")


World = Callable[[Node], Outcome]


class Driver:
    """An adapter stand-in whose tests decide each node's outcome and when each node finishes.

    ``world`` maps a node to its outcome when it finishes. ``fill`` starts nodes while slots are free,
    exactly as an adapter does; ``finish`` completes one running node. Every plan handed out, every
    start and every completion is recorded for the assertions, and ``on_plan`` sees each plan at the
    moment the engine makes it (before the commit), when the journal is exactly what the engine saw.
    """

    def __init__(self, run: RunSpec, world: World | None = None, *, journal: Journal | None = None,
                 slots: int = 2, proposer: Proposer | None = None,
                 on_plan: Callable[[Engine, Plan], None] | None = None) -> None:
        self.run_spec = run
        self.engine = Engine(run, journal if journal is not None else Journal())
        self.engine.requeue_running()
        self.world: World = world or (lambda node: outcome_of(node))
        self.proposer: Proposer = proposer or OfflineProposer(SPACE, run.seed)
        self.slots = slots
        self.on_plan = on_plan
        self.elapsed = 0.0
        self.running: list[Node] = []
        self.plans: list[Plan] = []
        self.proposals: list[tuple[Plan, Proposal | None, set[str]]] = []
        self.started: list[str] = []
        self.completed: list[str] = []

    @property
    def journal(self) -> Journal:
        return self.engine.journal

    def fill(self) -> list[Node]:
        """Start nodes until every slot is busy or the engine has nothing to start; returns them."""
        new = []
        while len(self.running) < self.slots:
            node = self.engine.next_pending()
            if node is None:
                plan = self.engine.plan(self.elapsed)
                if plan is None:
                    break
                self.plans.append(plan)
                if self.on_plan is not None:
                    self.on_plan(self.engine, plan)
                proposal = None
                if plan.config is None:
                    seen = {n.config.key() for n in self.journal.nodes.values() if n.action != "seed"}
                    proposal = self.proposer.propose(plan, self.journal)
                    self.proposals.append((plan, proposal, seen))
                node = self.engine.commit(plan, proposal)
                if node is None:
                    continue
            self.running.append(self.engine.start(node.id))
            self.started.append(node.id)
            new.append(node)
        return new

    def finish(self, node_id: str | None = None, outcome: Outcome | None = None) -> Node:
        """Complete one running node (the oldest unless named) with ``outcome`` or the world's."""
        node = next(n for n in self.running if n.id == node_id) if node_id else self.running[0]
        self.running.remove(node)
        self.completed.append(node.id)
        return self.engine.complete(node.id, outcome if outcome is not None else self.world(node))

    def step(self, hold: Callable[[Node], bool] = lambda n: False) -> Node | None:
        """Fill the slots, then finish the oldest running node not held back; None if none can finish."""
        self.fill()
        free = [n for n in self.running if not hold(n)]
        if not free:
            return None
        return self.finish(free[0].id)

    def run(self, max_steps: int = 2000, hold: Callable[[Node], bool] = lambda n: False,
            tick: float = 1.0) -> Driver:
        """Step until nothing runs and nothing can start (or only held nodes remain)."""
        for _ in range(max_steps):
            if self.step(hold) is None:
                return self
            self.elapsed += tick
        raise AssertionError(f"the run did not settle within {max_steps} steps")

    def run_until(self, condition: Callable[[Driver], bool], max_steps: int = 2000) -> Driver:
        """Step until ``condition`` holds (checked after every completion)."""
        for _ in range(max_steps):
            if condition(self):
                return self
            if self.step() is None:
                raise AssertionError("the run settled before the condition held")
            self.elapsed += 1.0
        raise AssertionError(f"the condition did not hold within {max_steps} steps")

