"""The one driver both modes call: slots, judging, stopping, and a stage-goal check that survives a restart.

The engine is real; node outcomes come from the engine tests' simulated world; the judge is a scripted
stand-in for the LLM side (``adapters.driving.Agent``): what the driver asks it and when is what is tested.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from kubescientist.adapters.driving import Driver
from kubescientist.adapters.llm import AgentStopped
from kubescientist.core.engine import Engine
from kubescientist.core.journal import Journal, Node, Outcome, StageRecord
from kubescientist.core.plan import Plan, Proposal
from kubescientist.core.proposer import OfflineProposer

sys.path.insert(0, str(Path(__file__).parent / "core"))
from simulate import SPACE, outcome_of, spec_with  # noqa: E402


class Judge:
    """Answers like the LLM side would; records what it was asked."""

    def __init__(self, proposer: OfflineProposer, *, goal_at: int = 10**9, stop_after: int = 10**9) -> None:
        self.proposer = proposer
        self.goal_checked: dict[str, int] = {}
        self.asked: list[tuple[str, int]] = []
        self.proposals = 0
        self.goal_at = goal_at
        self.stop_after = stop_after

    def propose(self, plan: Plan, journal: Journal) -> Proposal | None:
        self.proposals += 1
        if self.proposals > self.stop_after:
            raise AgentStopped("token cap reached")
        return self.proposer.propose(plan, journal)

    def committed(self, plan: Plan, node: Node | None) -> None: ...

    def review(self, node: Node, outcome: Outcome) -> Outcome:
        return outcome

    def select_best(self, engine: Engine, record: StageRecord) -> tuple[str, str]:
        return engine.candidates(record)[0].id, "the first candidate"

    def stage_complete(self, engine: Engine, record: StageRecord) -> str | None:
        done = sum(1 for n in engine.journal.in_stage(record.name) if n.outcome is not None)
        self.asked.append((record.name, done))
        return "enough" if done >= self.goal_at else None


def run(driver: Driver, steps: int = 500) -> int:
    """Step until the engine is done (or ``steps``), finishing the oldest running node each time."""
    most = 0
    step = driver.step((), 0.0)
    running = list(step.launches)
    for _ in range(steps):
        most = max(most, len(running))
        if driver.engine.done or not running:
            break
        node = running.pop(0)
        step = driver.step([(node.id, outcome_of(node))], 0.0)
        running += step.launches
    return most


def test_an_offline_run_fills_its_slots_and_ends() -> None:
    spec = spec_with(max_nodes=4, search={"parallelism": 3})
    engine = Engine(spec, Journal())
    most = run(Driver(engine, OfflineProposer(SPACE, spec.seed)))
    assert engine.done and engine.journal.phase == "succeeded"
    assert most == 3


def test_a_suspended_run_starts_nothing() -> None:
    spec = spec_with(suspend=True)
    engine = Engine(spec, Journal())
    step = Driver(engine, OfflineProposer(SPACE, spec.seed)).step((), 0.0)
    assert step.launches == [] and not engine.journal.nodes


def test_the_stage_goal_is_asked_once_per_result_and_not_again_after_a_restart() -> None:
    spec = spec_with(max_nodes={"initial": 2, "tuning": 8, "research": 2, "ablation": 1}, search={"parallelism": 1})
    engine = Engine(spec, Journal(), judged=True)
    judge = Judge(OfflineProposer(SPACE, spec.seed))
    driver = Driver(engine, judge.proposer, judge)
    step = driver.step((), 0.0)
    running = list(step.launches)
    while engine.current_stage() is None or engine.current_stage().name != "tuning" or \
            sum(1 for n in engine.journal.in_stage("tuning") if n.outcome is not None) < 3:
        node = running.pop(0)
        running += driver.step([(node.id, outcome_of(node))], 0.0).launches
    tuning = [count for stage, count in judge.asked if stage == "tuning"]
    assert tuning == sorted(set(tuning)) and tuning[-1] == 3  # once per new result

    # A restart: the journal and the saved goal checks come back; nothing new finished, so nothing is asked.
    saved = json.loads(json.dumps({"journal": engine.journal.to_dict(), "goalChecked": judge.goal_checked}))
    again = Engine(spec, Journal.from_dict(saved["journal"]), judged=True)
    again.requeue_running()
    resumed = Judge(OfflineProposer(SPACE, spec.seed))
    resumed.goal_checked = {str(k): int(v) for k, v in saved["goalChecked"].items()}
    Driver(again, resumed.proposer, resumed).step((), 0.0)
    assert resumed.asked == []


def test_a_met_goal_ends_the_stage_early() -> None:
    spec = spec_with(max_nodes={"initial": 2, "tuning": 12, "research": 2, "ablation": 1}, search={"parallelism": 1})
    engine = Engine(spec, Journal(), judged=True)
    judge = Judge(OfflineProposer(SPACE, spec.seed), goal_at=3)
    run(Driver(engine, judge.proposer, judge))
    assert engine.journal.stage("tuning").goal_met
    assert sum(1 for n in engine.journal.in_stage("tuning")) < 12


def test_an_agent_that_stops_stops_new_work_and_lets_running_nodes_finish() -> None:
    spec = spec_with(max_nodes=4, search={"parallelism": 2})
    engine = Engine(spec, Journal(), judged=True)
    judge = Judge(OfflineProposer(SPACE, spec.seed), stop_after=3)
    driver = Driver(engine, judge.proposer, judge)
    step = driver.step((), 0.0)
    running = list(step.launches)
    stopped = step.stopped
    while running:
        node = running.pop(0)
        step = driver.step([(node.id, outcome_of(node))], 0.0)
        stopped = stopped or step.stopped
        running += step.launches
    assert stopped == "token cap reached" and not engine.reserved
    assert all(n.outcome is not None for n in engine.journal.nodes.values())
    assert engine.done
