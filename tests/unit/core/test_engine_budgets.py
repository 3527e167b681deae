"""Budgets (per stage, total, wall clock), suspend, asynchronous refill and infrastructure retries."""

from __future__ import annotations

import itertools

import pytest

from kubescientist.core.engine import MAX_ATTEMPTS, Engine
from kubescientist.core.journal import Journal, Node
from kubescientist.core.plan import Proposal
from kubescientist.core.proposer import OfflineProposer

from simulate import STAGES, SPACE, Driver, PatchingProposer, bug, good, infra, outcome_of, run_to_end, spec, \
    spec_with


# -- per-stage node budget ----------------------------------------------------------------------------


@pytest.mark.parametrize("max_nodes,slots", [(1, 1), (2, 4), (3, 3), (5, 2), (6, 8)])
def test_stage_node_budget_is_never_exceeded(max_nodes: int, slots: int) -> None:
    def crash(node: Node) -> bool:
        return node.seq % 3 == 1 and node.action != "seed"

    run = spec_with(max_nodes=max_nodes, search={"drafts": 2})
    driver = Driver(run, world=lambda n: outcome_of(n, crash), slots=slots,
                    proposer=PatchingProposer(SPACE, 7)).run()
    journal = driver.journal
    for name in STAGES:
        assert sum(1 for _ in journal.in_stage(name)) <= max_nodes, name
    assert journal.phase in ("succeeded", "failed")
    if journal.phase == "succeeded":
        # Tuning has options enough to use its budget exactly.
        assert sum(1 for _ in journal.in_stage("tuning")) == max_nodes
        assert "node budget" in journal.stage("tuning").end_reason


def test_stage_budget_counts_planned_nodes_too() -> None:
    run = spec_with(max_nodes={"initial": 1, "tuning": 3}, search={"drafts": 1}, seeds=0)
    engine = Engine(run, Journal())
    proposer = OfflineProposer(SPACE, 7)
    plan = engine.plan(0.0)
    draft = engine.commit(plan, proposer.propose(plan, engine.journal))
    engine.start(draft.id)
    engine.complete(draft.id, good(0.5))
    plans = [engine.plan(0.0) for _ in range(5)]
    # Three tuning plans use the budget; with no seeds to run, the slots that would idle start the next
    # stage early from the provisional best (the draft, the only good node so far).
    assert [p.stage if p else None for p in plans] == ["tuning"] * 3 + ["research"] * 2
    assert engine.journal.stage("research").provisional_root == draft.id
    # A plan whose proposal is rejected (it repeats a node) frees its place in the budget, and the parent
    # is not asked for that action again (a deterministic proposer would repeat itself for ever).
    assert engine.commit(plans[0], Proposal(draft.config, "the draft again")) is None
    assert any(e.kind == "duplicate" for e in engine.journal.events)
    assert [draft.id, "tune"] in engine.journal.exhausted
    again = engine.plan(0.0)  # the freed place is not tuning's: its only parent has no more tunes
    assert again is not None and again.stage == "research"


# -- run-wide budgets -----------------------------------------------------------------------------------


def test_max_total_nodes_stops_new_work_and_the_run_still_succeeds() -> None:
    run = spec_with(max_nodes=4, seeds=2, budget={"maxTotalNodes": 7})
    driver = Driver(run, slots=2).run()
    journal = driver.journal
    assert len(journal.nodes) <= 7
    assert journal.phase == "succeeded" and driver.engine.done
    later = [s for s in journal.stages if s.status == "skipped"]
    assert [s.name for s in later] == ["research", "ablation"]
    for record in later:
        assert record.end_reason == "not started: total node budget of 7 used"
        assert not list(journal.in_stage(record.name, seeds=True))
    assert "stopped: total node budget of 7 used" == journal.stage("tuning").end_reason
    assert any(e.kind == "budget" for e in journal.events)
    assert driver.engine.plan(0.0) is None


@pytest.mark.parametrize("total", range(1, 20))
def test_max_total_nodes_is_never_exceeded(total: int) -> None:
    run = spec_with(max_nodes=4, seeds=2, budget={"maxTotalNodes": total})
    driver = Driver(run, slots=3, proposer=PatchingProposer(SPACE, 7)).run()
    journal = driver.journal
    assert len(journal.nodes) <= total
    assert driver.engine.done
    assert journal.phase == "succeeded"  # stage 1's first draft is always good in this world
    assert not driver.running
    # Nothing is left half-way: every stage either ran and is done, or never started.
    statuses = [s.status for s in journal.stages]
    assert set(statuses) <= {"done", "skipped"}
    assert statuses == sorted(statuses)  # "done" stages come first, then the skipped ones
    if len(journal.nodes) == total:
        assert any(e.kind == "budget" for e in journal.events)


def test_total_budget_before_stage1_has_a_good_node_fails_the_run() -> None:
    run = spec_with(max_nodes=10, budget={"maxTotalNodes": 3})
    driver = Driver(run, world=lambda n: bug(), proposer=PatchingProposer(SPACE, 7)).run()
    journal = driver.journal
    assert len(journal.nodes) == 3
    assert journal.phase == "failed"
    assert "initial" in journal.message and "total node budget of 3 used" in journal.message


def test_wall_clock_budget_stops_new_work_and_running_nodes_finish() -> None:
    elapsed_at_plan: list[float] = []
    run = spec_with(max_nodes=6, budget={"wallClockSeconds": 6})
    driver = Driver(run, slots=2, on_plan=lambda engine, plan: elapsed_at_plan.append(driver.elapsed))
    while driver.elapsed < 6:
        driver.step()
        driver.elapsed += 1.0
    count = len(driver.journal.nodes)
    running = [n.id for n in driver.running]
    assert [driver.journal.nodes[i].stage for i in running] == ["tuning"]
    assert driver.engine.plan(driver.elapsed) is None
    # Stopped, but the running tuning node still has to report.
    assert driver.journal.phase == "searching" and driver.journal.stage("tuning").status == "searching"
    assert any(e.kind == "budget" and "wall-clock budget of 6s used" in e.message for e in driver.journal.events)
    driver.run()
    journal = driver.journal
    assert len(journal.nodes) == count
    assert max(elapsed_at_plan) < 6
    assert all(journal.nodes[i].status == "succeeded" for i in running)
    assert journal.phase == "succeeded" and driver.engine.done
    assert [s.status for s in journal.stages] == ["done", "done", "skipped", "skipped"]
    assert journal.stage("tuning").end_reason == "stopped: wall-clock budget of 6s used"
    assert journal.stage("research").end_reason == "not started: wall-clock budget of 6s used"
    assert journal.stage("tuning").seed_nodes == []  # no new work, re-evaluations included


def test_wall_clock_budget_is_read_from_the_elapsed_argument_only() -> None:
    run = spec_with(budget={"wallClockSeconds": 100})
    engine = Engine(run, Journal())
    assert engine.plan(99.9) is not None
    assert engine.plan(100.0) is None
    assert engine.plan(0.0) is None  # once stopped, it stays stopped


def test_wall_clock_budget_at_start_fails_stage1() -> None:
    run = spec_with(budget={"wallClockSeconds": 5})
    engine = Engine(run, Journal())
    assert engine.plan(5.0) is None
    assert engine.journal.phase == "failed" and engine.done
    assert "initial" in engine.journal.message and "wall-clock" in engine.journal.message
    assert engine.journal.nodes == {}


def test_suspend_plans_nothing() -> None:
    run = spec(suspend=True)
    engine = Engine(run, Journal())
    for elapsed in (0.0, 1.0, 1e6):
        assert engine.plan(elapsed) is None
    assert engine.journal.nodes == {} and engine.journal.phase == "searching"
    assert not engine.done


def test_suspend_midway_then_resume() -> None:
    driver = Driver(spec(), slots=2)
    driver.run_until(lambda d: len(d.completed) >= 5)
    suspended = Engine(spec(suspend=True), Journal.from_dict(driver.journal.to_dict()))
    assert suspended.plan(0.0) is None
    resumed = Driver(spec(), journal=Journal.from_dict(driver.journal.to_dict()), slots=2).run()
    assert resumed.journal.phase == "succeeded"


# -- asynchronous refill --------------------------------------------------------------------------------


def test_a_free_slot_is_refilled_while_another_node_keeps_running() -> None:
    run = spec_with(max_nodes={"initial": 2, "tuning": 8}, search={"drafts": 2, "debugProbability": 0.0})
    driver = Driver(run, slots=2)
    driver.fill()
    assert [n.id for n in driver.running] == ["n0000", "n0001"]
    long = "n0000"
    finished_meanwhile = []
    for _ in range(12):
        driver.fill()
        # Both slots are busy the moment after any completion: nothing waits for a batch.
        assert len(driver.running) == 2 and long in {n.id for n in driver.running}
        other = next(n for n in driver.running if n.id != long)
        driver.finish(other.id)
        finished_meanwhile.append(other.id)
    assert driver.journal.nodes[long].status == "running"
    assert len(finished_meanwhile) == 12 and len(set(finished_meanwhile)) == 12
    actions = {driver.journal.nodes[i].action for i in finished_meanwhile}
    assert {"tune", "seed"} <= actions
    driver.finish(long)
    driver.run()
    assert driver.journal.phase == "succeeded"


def test_a_stage_waits_for_its_long_node_but_its_other_slots_keep_working() -> None:
    run = spec_with(max_nodes={"initial": 1, "tuning": 6}, search={"drafts": 1, "debugProbability": 0.0},
                    seeds=0)
    driver = Driver(run, slots=2)
    driver.fill()
    driver.finish("n0000")
    assert [(n.id, n.action) for n in driver.fill()] == [("n0001", "tune"), ("n0002", "tune")]
    long = "n0001"
    for _ in range(8):
        driver.step(hold=lambda n: n.id == long)
    # The five other tuning nodes started and finished while the long one ran ...
    others = [n.id for n in driver.journal.in_stage("tuning") if n.id != long]
    assert others == ["n0002", "n0003", "n0004", "n0005", "n0006"]
    assert driver.completed[:6] == ["n0000", *others]
    assert all(driver.journal.nodes[i].status == "succeeded" for i in others)
    # ... and then, with the budget used and no seeds to run, the other slot started research early from
    # tuning's provisional best.
    tuning, research = driver.journal.stage("tuning"), driver.journal.stage("research")
    assert tuning.status == "searching" and research.status == "searching"
    assert research.provisional_root is not None and research.root == research.provisional_root
    assert {driver.journal.nodes[i].stage for i in driver.completed[6:]} == {"research"}
    driver.finish(long)
    assert tuning.status == "done" and research.status == "searching"
    assert research.root == tuning.best
    kind = "root-confirmed" if tuning.best == research.provisional_root else "re-rooted"
    assert any(e.kind == kind and e.stage == "research" for e in driver.journal.events)
    driver.run()
    assert driver.journal.phase == "succeeded"


# -- infrastructure failures ----------------------------------------------------------------------------


def _one_draft() -> tuple[Engine, Node]:
    engine = Engine(spec_with(max_nodes=4, search={"drafts": 1}), Journal())
    plan = engine.plan(0.0)
    node = engine.commit(plan, OfflineProposer(SPACE, 7).propose(plan, engine.journal))
    assert node is not None
    return engine, node


def test_infrastructure_failure_puts_the_node_back_to_pending() -> None:
    engine, node = _one_draft()
    engine.start(node.id)
    engine.complete(node.id, infra("node lost"))
    assert node.status == "pending" and node.attempts == 1 and node.outcome is None
    assert engine.next_pending() is node
    retry = [e for e in engine.journal.events if e.kind == "retry"]
    assert len(retry) == 1 and "node lost" in retry[0].message and f"of {MAX_ATTEMPTS}" in retry[0].message
    engine.start(node.id)
    engine.complete(node.id, good(0.7))
    assert node.status == "succeeded" and node.attempts == 2 and node.metric == 0.7
    assert engine.journal.stage("initial").best == node.id


def test_infrastructure_failures_fail_the_node_after_max_attempts() -> None:
    engine, node = _one_draft()
    for attempt in range(1, MAX_ATTEMPTS + 1):
        assert engine.next_pending() is node
        engine.start(node.id)
        engine.complete(node.id, infra(f"evicted {attempt}"))
        assert node.attempts == attempt
    assert node.status == "failed"
    assert node.outcome is not None and node.outcome.infrastructure and not node.outcome.buggy
    assert sum(1 for e in engine.journal.events if e.kind == "retry") == MAX_ATTEMPTS - 1
    assert engine.next_pending() is None


def test_an_infrastructure_failure_is_never_debugged() -> None:
    run = spec_with(max_nodes={"initial": 6}, search={"drafts": 2})

    def world(node: Node):  # type: ignore[no-untyped-def]
        return infra() if node.id == "n0000" else bug()

    driver = Driver(run, world=world, slots=1, proposer=PatchingProposer(SPACE, 7)).run()
    journal = driver.journal
    first = journal.nodes["n0000"]
    assert first.status == "failed" and first.attempts == MAX_ATTEMPTS
    assert driver.started.count("n0000") == MAX_ATTEMPTS
    assert not any(n.parent == "n0000" for n in journal.nodes.values())
    assert all(n.status != "buggy" for n in journal.nodes.values() if n.outcome and n.outcome.infrastructure)
    # The failed node used one place of the stage budget; the rest went to the other draft's chain.
    assert len(journal.nodes) == 1 + 1 + 3
    assert journal.phase == "failed"


def test_infrastructure_retries_do_not_create_nodes() -> None:
    flaky = itertools.count()

    def world(node: Node):  # type: ignore[no-untyped-def]
        return infra() if next(flaky) % 3 == 0 else outcome_of(node)

    reference = run_to_end(spec())
    driver = Driver(spec(), world=world, slots=2).run()
    assert driver.journal.phase == "succeeded"
    assert len(driver.journal.nodes) == len(reference.journal.nodes)
    assert len(driver.started) > len(driver.journal.nodes)
    assert all(n.status == "succeeded" for n in driver.journal.nodes.values())
