"""Judged mode: a judge (the LLM) picks each stage's best and may find a stage's goal met early."""

from __future__ import annotations

from simulate import Driver, spec_with

from kubescientist.core.engine import Engine
from kubescientist.core.journal import Journal


def judged_driver(**kwargs: object) -> Driver:
    driver = Driver(spec_with(max_nodes=3, seeds=1, **kwargs))  # type: ignore[arg-type]
    driver.engine = Engine(driver.run_spec, Journal(), judged=True)
    return driver


def settle(driver: Driver) -> None:
    """Run until nothing can start: either the run is over or a stage waits for its judgement."""
    driver.run()


def test_a_stage_waits_for_the_judge_and_the_next_stage_starts_from_its_pick():
    driver = judged_driver()
    settle(driver)
    record = driver.engine.awaiting_judgement()
    assert record is not None and record.name == "tuning"  # stage 1 ends at its first good node, unjudged
    assert driver.engine.current_stage() is None
    assert all(p.action == "seed" for p in [driver.engine.plan(0.0)] if p is not None)  # only seeds may run
    candidates = driver.engine.candidates(record)
    by_metric = max(candidates, key=lambda n: n.metric or 0.0)
    pick = next(n for n in candidates if n.id != by_metric.id)
    driver.engine.judge("tuning", pick.id, "converges more stably across datasets")
    assert record.status == "done" and record.best == pick.id
    assert "judged: converges more stably" in (record.end_reason or "")
    research = driver.journal.stage("research")
    assert research.status == "searching" and research.root == pick.id


def test_an_invalid_pick_falls_back_to_the_metric():
    driver = judged_driver()
    settle(driver)
    record = driver.engine.awaiting_judgement()
    assert record is not None
    best = max(driver.engine.candidates(record), key=lambda n: n.metric or 0.0)
    driver.engine.judge(record.name, "n9999", "a node that does not exist")
    assert record.best == best.id
    assert any(e.kind == "judgement" and "n9999" in e.message for e in driver.journal.events)


def test_the_run_finishes_only_after_every_judgement():
    driver = judged_driver()
    for _ in range(10):
        settle(driver)
        record = driver.engine.awaiting_judgement()
        if record is None:
            break
        best = max(driver.engine.candidates(record), key=lambda n: n.metric or 0.0)
        driver.engine.judge(record.name, best.id, "best by the judge")
    assert driver.journal.phase == "succeeded"
    assert all(s.status == "done" for s in driver.journal.stages)


def test_goal_met_stops_new_search_nodes_and_ends_the_stage():
    driver = Driver(spec_with(max_nodes=8, seeds=0))
    driver.run_until(lambda d: d.journal.stage("tuning").status == "searching"
                     and sum(1 for _ in d.journal.in_stage("tuning")) >= 2)
    before = sum(1 for _ in driver.journal.in_stage("tuning"))
    driver.engine.goal_met("tuning", "stable convergence on both datasets")
    driver.run_until(lambda d: d.journal.stage("tuning").status == "done")
    tuning = driver.journal.stage("tuning")
    assert sum(1 for _ in driver.journal.in_stage("tuning")) <= before + 1  # only what was already planned
    assert tuning.end_reason == "goal met: stable convergence on both datasets"
    assert driver.journal.stage("research").status == "searching"
