"""A simulated clock around the real engine: nodes take drawn durations, proposals take a fixed time.

Shared by the benchmarks in this folder. The engine, its journal and its decisions are the real ones; only
the world is simulated: a synthetic proposer that always has something new (an LLM would), node outcomes
from a smooth quality plus seed noise, lognormal durations. Everything derives from the draw number, so a
draw replays exactly.

Three ways to drive it, as an adapter would:

- ``async``: a free slot gets work at once (the engine's own refill); proposals, if they take time, are
  made one at a time between launches, which is how the runners work before proposals are prepared ahead;
- ``lookahead``: proposals are requested while nodes run, up to ``slots`` at once, and kept ready so that a
  slot that frees starts a prepared node at once;
- ``lockstep``: AI Scientist v2 style, a batch of ``slots`` nodes starts together and the next batch waits
  for the whole batch to end.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import random
import statistics
from typing import Any

from kubescientist.core.engine import Engine
from kubescientist.core.journal import Journal, Node, NodeConfig, Outcome
from kubescientist.core.plan import Plan, Proposal
from kubescientist.core.spec import RunSpec, run_spec_from_dict


def workload_spec(*, stage_nodes: tuple[int, int, int, int] = (8, 16, 16, 8), slots: int = 8, seeds: int = 3,
                  drafts: int = 8, seed: int = 0, max_total: int | None = None,
                  search: dict[str, Any] | None = None) -> RunSpec:
    names = ("initial", "tuning", "research", "ablation")
    raw: dict[str, Any] = {
        "idea": {"inline": {"title": "benchmark"}},
        "objective": {"metric": "acc", "direction": "maximize"},
        "stages": [{"name": n, "maxNodes": m} for n, m in zip(names, stage_nodes)],
        "search": {"parallelism": slots, "drafts": drafts, "debugProbability": 0.3, "maxDebugDepth": 3,
                   **(search or {})},
        "seeds": seeds, "seed": seed,
    }
    if max_total is not None:
        raw["budget"] = {"maxTotalNodes": max_total}
    return run_spec_from_dict(raw)


class SyntheticProposer:
    """Always proposes something new, like an LLM: a child's quality drifts from its parent's.

    ``variants`` research-agenda variants exist; ablations never run out (the stage budget ends them).
    It reads only the plan's parent, never the whole journal, so its cost does not grow with the tree.
    """

    def __init__(self, variants: int = 4) -> None:
        self.variants = variants
        self.used: dict[str, int] = {}

    def propose(self, plan: Plan, journal: Journal) -> Proposal | None:
        rng = random.Random(plan.rng_seed)
        parent = journal.nodes[plan.parent] if plan.parent else None
        base = float(parent.config.params["q"]) if parent else 0.5
        if plan.action == "variant":
            count = self.used.get(plan.parent or "", 0)
            if count >= self.variants:
                return None
            self.used[plan.parent or ""] = count + 1
        step = {"draft": 0.05, "debug": 0.0, "tune": 0.02, "improve": 0.02, "variant": 0.04,
                "ablate": -0.03}.get(plan.action, 0.0)
        q = base + step * rng.uniform(-0.5, 1.0)
        config = NodeConfig(seed=0, params={"q": round(q, 9), "id": rng.getrandbits(48)},
                            variant=f"v{rng.getrandbits(16)}" if plan.action == "variant" else None,
                            ablation=f"a{rng.getrandbits(16)}" if plan.action == "ablate" else None)
        return Proposal(config, f"synthetic {plan.action}")


@dataclasses.dataclass
class World:
    """How nodes of one draw behave: outcomes and durations are functions of the draw and the node."""

    draw: int
    sigma: float = 0.5
    """Log-standard deviation of node durations (median duration 1)."""
    mean_seconds: float = 1.0
    """The median node duration."""
    bug_rate: float = 0.1
    """The share of search nodes that crash (seed runs never do: the program worked before)."""
    noise: float = 0.01
    """Standard deviation of the metric between seeds."""

    def duration(self, node: Node) -> float:
        rng = random.Random(f"d:{self.draw}:{node.seq}:{node.attempts}")
        return self.mean_seconds * math.exp(rng.gauss(0.0, self.sigma)) if self.sigma else self.mean_seconds

    def outcome(self, node: Node) -> Outcome:
        rng = random.Random(f"o:{self.draw}:{node.config.key()}:{node.config.seed}")
        if node.action != "seed" and random.Random(f"b:{self.draw}:{node.seq}").random() < self.bug_rate:
            return Outcome(buggy=True, reason="RuntimeError: simulated crash")
        value = float(node.config.params["q"]) + rng.gauss(0.0, self.noise)
        return Outcome(buggy=False, metrics={"d": {"acc": {"final": value}}})


@dataclasses.dataclass
class Result:
    makespan: float
    """Simulated time from the first launch to the end of the last node."""
    busy: float
    """Slot-seconds spent running nodes."""
    durations: list[float]
    """Every node run's duration (restarts included)."""
    starts: list[tuple[float, float]]
    """(start, end) of every node run."""
    slots: int
    journal: Journal

    @property
    def lower_bound(self) -> float:
        return max(sum(self.durations) / self.slots, max(self.durations))

    @property
    def utilisation(self) -> float:
        """Busy slot-time over all slot-time until the end."""
        return self.busy / (self.slots * self.makespan)

    @property
    def utilisation_while_work_remains(self) -> float:
        """Busy slot-time over slot-time until the last node started (after that no work is left to give)."""
        horizon = max(s for s, _ in self.starts)
        if horizon <= 0:
            return 1.0
        busy = sum(min(e, horizon) - s for s, e in self.starts if s < horizon)
        return busy / (self.slots * horizon)


def drive(spec: RunSpec, world: World, *, mode: str = "async", propose_seconds: float = 0.0,
          lookahead: int = 0) -> Result:
    """Run the search to its end on a simulated clock; ``mode``: async, lookahead or lockstep."""
    engine = Engine(spec, Journal())
    proposer = SyntheticProposer()
    slots = spec.search.parallelism
    clock = 0.0
    running: list[tuple[float, int, str]] = []  # (end time, seq, node id) heap
    starts: list[tuple[float, float]] = []
    durations: list[float] = []
    inflight: list[tuple[float, int, Plan]] = []  # lookahead proposals: (ready time, order, plan)
    order = 0

    def launch(node: Node) -> None:
        engine.start(node.id)
        d = world.duration(node)
        durations.append(d)
        starts.append((clock, clock + d))
        heapq.heappush(running, (clock + d, node.seq, node.id))

    def plan_and_commit() -> Node | None | bool:
        """One plan made and proposed synchronously; False if the engine has nothing to plan."""
        nonlocal clock
        plan = engine.plan(clock)
        if plan is None:
            return False
        if plan.config is None:
            proposal = proposer.propose(plan, engine.journal)
            clock += propose_seconds  # the driver waits for the model; nodes that end meanwhile wait too
            return engine.commit(plan, proposal)
        return engine.commit(plan)

    while True:
        if mode == "lockstep":
            if not running:
                while len(running) < slots:
                    node = engine.next_pending()
                    if node is None:
                        made = plan_and_commit()
                        if made is False:
                            break
                        if made is None:
                            continue
                        node = made  # type: ignore[assignment]
                    launch(node)  # type: ignore[arg-type]
        elif mode == "async":
            while len(running) < slots:
                node = engine.next_pending()
                if node is None:
                    made = plan_and_commit()
                    if made is False:
                        break
                    if made is None:
                        continue
                    node = made  # type: ignore[assignment]
                launch(node)  # type: ignore[arg-type]
        else:  # lookahead: keep proposals in flight so that a freeing slot finds a node ready
            while len(running) < slots and (node := engine.next_pending()) is not None:
                launch(node)
            while len(running) + len(inflight) + _pending(engine) < slots + lookahead:
                plan = engine.plan(clock)
                if plan is None:
                    break
                if plan.config is not None:
                    engine.commit(plan)
                else:
                    order += 1
                    heapq.heappush(inflight, (clock + propose_seconds, order, plan))
            while len(running) < slots and (node := engine.next_pending()) is not None:
                launch(node)
        if not running and not inflight:
            break
        # The next event: a node ends, or a prepared proposal arrives.
        if inflight and (not running or inflight[0][0] <= running[0][0]):
            ready, _, plan = heapq.heappop(inflight)
            clock = max(clock, ready)
            engine.commit(plan, proposer.propose(plan, engine.journal))
            continue
        if mode == "lockstep":
            batch = [heapq.heappop(running) for _ in range(len(running))]
            for end, _, node_id in sorted(batch):
                clock = max(clock, end)
                engine.complete(node_id, world.outcome(engine.journal.nodes[node_id]))
            continue
        end, _, node_id = heapq.heappop(running)
        clock = max(clock, end)
        engine.complete(node_id, world.outcome(engine.journal.nodes[node_id]))
    assert engine.done, "the simulated run stopped before the engine was done"
    busy = sum(durations)
    makespan = max(e for _, e in starts)
    return Result(makespan=makespan, busy=busy, durations=durations, starts=starts, slots=slots,
                  journal=engine.journal)


def _pending(engine: Engine) -> int:
    pending = getattr(engine, "pending_count", None)
    if pending is not None:
        return int(pending())
    return sum(1 for n in engine.journal.nodes.values() if n.status == "pending")


def median(values: list[float]) -> float:
    return statistics.median(values)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
