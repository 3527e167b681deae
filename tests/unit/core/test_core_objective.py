"""The objective value of a node's metrics, and how the engine uses it."""

from __future__ import annotations

import math

import pytest

from kubescientist.core.journal import Outcome
from kubescientist.core.objective import ObjectiveMissing, better, objective_value, sort_key
from kubescientist.core.spec import Objective

from simulate import Driver, good, spec_with

METRICS = {
    "train": {"acc": {"final": 0.9, "best": 0.95}, "loss": {"final": 0.3}},
    "val": {"acc": {"final": 0.6, "best": 0.8}},
    "test": {"acc": {"final": 0.75}},
}


@pytest.mark.parametrize("aggregation,expected", [("mean", 0.75), ("min", 0.6), ("max", 0.9)])
def test_aggregation_over_all_datasets(aggregation: str, expected: float) -> None:
    value = objective_value(Objective(metric="acc", aggregation=aggregation), METRICS)  # type: ignore[arg-type]
    assert value == pytest.approx(expected)


@pytest.mark.parametrize("aggregation,expected", [("mean", (0.95 + 0.8 + 0.75) / 3), ("min", 0.75),
                                                  ("max", 0.95)])
def test_value_best_uses_best_and_falls_back_to_final(aggregation: str, expected: float) -> None:
    objective = Objective(metric="acc", aggregation=aggregation, value="best")  # type: ignore[arg-type]
    assert objective_value(objective, METRICS) == pytest.approx(expected)


def test_datasets_filter_counts_only_the_listed_datasets() -> None:
    assert objective_value(Objective(metric="acc", datasets=("val", "test")), METRICS) == pytest.approx(0.675)
    assert objective_value(Objective(metric="acc", datasets=("val",), value="best"), METRICS) == 0.8
    assert objective_value(Objective(metric="acc", datasets=("train", "val"), aggregation="min"), METRICS) == 0.6


def test_datasets_without_the_metric_are_skipped_when_no_filter_is_given() -> None:
    assert objective_value(Objective(metric="loss"), METRICS) == 0.3


def test_a_listed_dataset_that_lacks_the_metric_is_an_error_naming_it() -> None:
    with pytest.raises(ObjectiveMissing, match="'test'.*'loss'"):
        objective_value(Objective(metric="loss", datasets=("train", "test")), METRICS)
    with pytest.raises(ObjectiveMissing, match="'absent'"):
        objective_value(Objective(metric="acc", datasets=("absent",)), METRICS)


def test_a_metric_nobody_reports_is_an_error_naming_it() -> None:
    with pytest.raises(ObjectiveMissing, match="'f1'"):
        objective_value(Objective(metric="f1"), METRICS)
    with pytest.raises(ObjectiveMissing):
        objective_value(Objective(metric="acc"), {})


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, "0.5", None])
def test_a_non_finite_or_non_numeric_value_is_an_error(bad: object) -> None:
    with pytest.raises(ObjectiveMissing, match="d.acc.final is not a finite number"):
        objective_value(Objective(metric="acc"), {"d": {"acc": {"final": bad}}})


def test_integers_count_as_numbers() -> None:
    assert objective_value(Objective(metric="n"), {"d": {"n": {"final": 3}}}) == 3.0


def test_better_and_sort_key_follow_the_direction() -> None:
    assert better(0.9, 0.8, "maximize") and not better(0.8, 0.9, "maximize")
    assert better(0.1, 0.2, "minimize") and not better(0.2, 0.1, "minimize")
    assert not better(0.5, 0.5, "maximize") and not better(0.5, 0.5, "minimize")
    values = [0.3, 0.1, 0.7]
    assert min(values, key=lambda v: sort_key(v, "maximize")) == 0.7
    assert min(values, key=lambda v: sort_key(v, "minimize")) == 0.1


# -- through the engine ---------------------------------------------------------------------------------


def _one_node_run(outcome: Outcome, **objective):  # type: ignore[no-untyped-def]
    run = spec_with(max_nodes={"initial": 1}, search={"drafts": 1}, seeds=0,
                    objective={"metric": "acc", **objective})
    driver = Driver(run, world=lambda n: outcome)
    driver.fill()
    return driver, driver.finish()


def test_a_missing_objective_metric_makes_the_node_buggy_with_a_reason() -> None:
    driver, node = _one_node_run(Outcome(buggy=False, metrics={"d1": {"loss": {"final": 0.2}}}))
    assert node.status == "buggy"
    assert node.outcome is not None and node.outcome.buggy and node.metric is None
    assert node.outcome.reason == "objective not reported: no dataset reports metric 'acc'"
    assert driver.journal.phase == "failed"


def test_engine_computes_the_metric_from_the_metrics() -> None:
    outcome = Outcome(buggy=False, metrics={"a": {"acc": {"final": 0.2, "best": 0.4}},
                                            "b": {"acc": {"final": 0.6, "best": 0.9}}}, metric=123.0)
    _, node = _one_node_run(outcome, aggregation="max", value="best")
    assert node.status == "succeeded" and node.metric == 0.9


def test_engine_uses_the_datasets_filter() -> None:
    outcome = Outcome(buggy=False, metrics={"a": {"acc": {"final": 0.2}}, "b": {"acc": {"final": 0.6}}})
    _, node = _one_node_run(outcome, datasets=["a"])
    assert node.metric == 0.2
    _, node = _one_node_run(outcome, datasets=["a", "c"])
    assert node.status == "buggy" and "'c'" in node.outcome.reason


def test_minimize_picks_the_smallest_stage_best() -> None:
    values = {"n0000": 0.5, "n0001": 0.2, "n0002": 0.9}
    run = spec_with(max_nodes={"initial": 3}, search={"drafts": 3}, seeds=0,
                    objective={"metric": "loss", "direction": "minimize"})
    driver = Driver(run, world=lambda n: good(values.get(n.id, 0.7), "loss"), slots=3)
    driver.fill()
    driver.finish("n0002")  # the worst: stage 1 ends on it (the first good node)
    driver.run()
    journal = driver.journal
    assert journal.stage("initial").best == "n0002"
    tuning = journal.stage("tuning")
    assert tuning.root == "n0002"
    tuned = [n for n in journal.in_stage("tuning") if n.good]
    smallest = min([*tuned, journal.nodes["n0002"]], key=lambda n: (n.metric, n.seq))
    assert tuning.best == smallest.id
    overall = driver.engine.best()
    assert overall is not None and overall.metric == min(
        journal.nodes[s.best].metric for s in journal.stages if s.best)


def test_maximize_picks_the_largest_stage_best_and_the_earliest_on_ties() -> None:
    values = {"n0000": 0.5, "n0001": 0.5}
    run = spec_with(max_nodes={"initial": 2, "tuning": 2}, search={"drafts": 2, "debugProbability": 0.0},
                    seeds=0)
    driver = Driver(run, world=lambda n: good(values.get(n.id, 0.5)), slots=2).run()
    # Every node scores 0.5: the earliest (the stage root) stays the best of every stage.
    assert [s.best for s in driver.journal.stages] == ["n0000"] * 4
