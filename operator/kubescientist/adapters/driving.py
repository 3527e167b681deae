"""The one step that drives a run's engine, in both modes: fold what finished, judge, fill the free slots.

The local runner calls ``Driver.step`` each time a node's executor ends; the operator once per reconcile
pass. Everything about I/O stays with them: they turn what ran into ``Outcome``s (``adapters.results``),
say how to prepare a node before it starts (write its config, hash its code), and launch, save and report
what the step decided. ``Driver.step`` is where a node's life is decided: whether its outcome stands (the
LLM's review), when the next one starts and what it is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Protocol

from kubescientist.adapters.llm import AgentStopped
from kubescientist.core.engine import Engine
from kubescientist.core.journal import Journal, Node, Outcome, StageRecord
from kubescientist.core.plan import Plan, Proposal

GOAL_STAGES = ("tuning", "research")
"""The stages whose goal the LLM may judge met before their node budget is spent."""


class Proposer(Protocol):
    """Writes the config (and code) of a planned node."""

    def propose(self, plan: Plan, journal: Journal) -> Proposal | None: ...


class Agent(Proposer, Protocol):
    """The LLM side of a run, as the driver uses it (``adapters.llm.AgentCalls``)."""

    goal_checked: dict[str, int]

    def committed(self, plan: Plan, node: Node | None) -> None: ...

    def review(self, node: Node, outcome: Outcome) -> Outcome: ...

    def select_best(self, engine: Engine, record: StageRecord) -> tuple[str, str]: ...

    def stage_complete(self, engine: Engine, record: StageRecord) -> str | None: ...


@dataclasses.dataclass
class Step:
    """What one step decided, for the adapter to carry out."""

    finished: list[tuple[Node, Outcome]] = dataclasses.field(default_factory=list)
    """Nodes whose outcome was folded in, with that outcome (an infrastructure failure the engine retries
    leaves the node without one), in the order given."""
    launches: list[Node] = dataclasses.field(default_factory=list)
    """Nodes started (running in the journal): the adapter saves the journal, then launches them."""
    changed: bool = False
    """Whether the journal changed (and so must be saved)."""
    stopped: str | None = None
    """Why no new LLM work starts, when this step found out (a cap reached, the endpoint gone)."""


class Driver:
    """Drives one run's engine; one per run, called from one thread at a time."""

    def __init__(self, engine: Engine, proposer: Proposer, agent: Agent | None = None, *,
                 prepare: Callable[[Node], None] = lambda node: None) -> None:
        """``prepare``: readies a committed node to start (its config written, its code hash set)."""
        self.engine = engine
        self.proposer = proposer
        self.agent = agent
        self.prepare = prepare

    def running(self) -> int:
        return sum(1 for n in self.engine.journal.unfinished() if n.status == "running")

    def step(self, finished: Sequence[tuple[str, Outcome]], elapsed_seconds: float) -> Step:
        """Fold the outcomes of finished nodes, then start nodes while slots are free."""
        step = Step()
        for node_id, outcome in finished:
            node = self.engine.journal.nodes[node_id]
            if self.agent is not None:
                # The LLM reads the node's output and may overrule the mechanical verdict.
                outcome = self.agent.review(node, outcome)
            step.finished.append((self.engine.complete(node_id, outcome), outcome))
            step.changed = True
        self._fill(step, elapsed_seconds)
        return step

    def _fill(self, step: Step, elapsed_seconds: float) -> None:
        engine = self.engine
        if engine.spec.suspend:
            return
        running = self.running()
        while running < engine.spec.search.parallelism:
            self._judge(step)
            node = engine.next_pending()
            if node is None:
                plan = engine.plan(elapsed_seconds)
                if plan is None:
                    if self.agent is not None and engine.awaiting_judgement() is not None:
                        continue  # judged at the top of the loop
                    return
                try:
                    proposal = None if plan.config is not None else self._propose(plan)
                except AgentStopped as exc:
                    # No new LLM work: the plan is dropped, nothing new starts, running nodes finish.
                    engine.release(plan)
                    self._stopped(step, str(exc))
                    return
                node = engine.commit(plan, proposal)
                if self.agent is not None:
                    self.agent.committed(plan, node)
                step.changed = True
                if node is None:
                    continue
            self.prepare(node)
            engine.start(node.id)
            step.launches.append(node)
            step.changed = True
            running += 1

    def _propose(self, plan: Plan) -> Proposal | None:
        if self.agent is not None:
            return self.agent.propose(plan, self.engine.journal)
        return self.proposer.propose(plan, self.engine.journal)

    def _judge(self, step: Step) -> None:
        """The LLM's judgements the engine waits for: a stage's best; whether a stage met its goal early."""
        agent, engine = self.agent, self.engine
        if agent is None:
            return
        try:
            record = engine.awaiting_judgement()
            if record is not None:
                engine.judge(record.name, *agent.select_best(engine, record))
                step.changed = True
            stage = engine.current_stage()
            if stage is None or stage.name not in GOAL_STAGES or stage.goal_met:
                return
            done = sum(1 for n in engine.journal.in_stage(stage.name) if n.outcome is not None)
            # Asked once per new result, and only while the budget still has nodes the verdict could save.
            if done >= 2 and agent.goal_checked.get(stage.name) != done and done < engine.spec.stage(stage.name).max_nodes:
                agent.goal_checked[stage.name] = done
                reason = agent.stage_complete(engine, stage)
                if reason:
                    engine.goal_met(stage.name, reason)
                    step.changed = True
        except AgentStopped as exc:
            self._stopped(step, str(exc))
            pending = engine.awaiting_judgement()
            if pending is not None:
                engine.judge(pending.name, "", f"not judged: {exc}")

    def _stopped(self, step: Step, reason: str) -> None:
        self.engine.stop(reason)
        step.stopped = reason
        step.changed = True


__all__ = ["Agent", "Driver", "GOAL_STAGES", "Proposer", "Step"]
