"""Seed re-evaluation of each stage's best node, and the statistics over the seeds."""

from __future__ import annotations

import math

import pytest

from kubescientist.core.journal import Node
from kubescientist.core.objective import seed_stats
from kubescientist.core.summary import stage_seed_stats, summarize

from simulate import STAGES, Driver, bug, good, run_to_end, spec, spec_with


def test_each_stage_best_is_reevaluated_with_the_following_seeds() -> None:
    run = spec(seeds=3, seed=11)
    journal = run_to_end(run).journal
    assert journal.phase == "succeeded"
    seeded = [s for s in journal.stages if s.best != s.root]
    assert len(seeded) >= 3
    for record in seeded:
        best = journal.nodes[record.best]
        runs = [journal.nodes[i] for i in record.seed_nodes]
        assert [n.config.seed for n in runs] == [12, 13, 14]
        for node in runs:
            assert (node.action, node.parent, node.stage) == ("seed", best.id, record.name)
            assert node.config.key() == best.config.key()
            assert node.status == "succeeded"
            assert "re-evaluate" in node.reason
    # Only seed nodes are listed; every seed run re-evaluates its stage's best or one of its contenders.
    listed = [i for s in journal.stages for i in s.seed_nodes]
    assert set(listed) <= {n.id for n in journal.nodes.values() if n.action == "seed"}
    for node in journal.nodes.values():
        if node.action == "seed":
            record = journal.stage(node.stage)
            assert (node.parent == record.best or node.parent in record.contenders
                    or "provisional leader" in node.reason), node.id


def test_seed_runs_are_not_search_nodes_and_do_not_use_the_stage_budget() -> None:
    run = spec_with(max_nodes=3, seeds=4)
    journal = run_to_end(run).journal
    for name in STAGES:
        assert sum(1 for _ in journal.in_stage(name)) <= 3
    assert sum(len(s.seed_nodes) for s in journal.stages) == 4 * sum(1 for s in journal.stages
                                                                     if s.best != s.root)


def _seed_world(values: dict[int, float | None]):  # type: ignore[no-untyped-def]
    """Stage 1's draft scores by its seed (None: crashes); everything later is worse than it."""
    def world(node: Node):  # type: ignore[no-untyped-def]
        if node.stage == "initial":
            value = values[node.config.seed]
            return bug("seed crash") if value is None else good(value)
        return good(0.1)
    return world


def test_seed_mean_and_standard_error_by_hand() -> None:
    run = spec_with(max_nodes=1, search={"drafts": 1}, seeds=2, seed=7)
    driver = Driver(run, world=_seed_world({7: 0.5, 8: 0.7, 9: 0.6})).run()
    record = driver.journal.stage("initial")
    stats = stage_seed_stats(driver.journal, record)
    # values 0.5, 0.7, 0.6: mean 0.6; sample variance (0.01 + 0.01 + 0) / 2 = 0.01; sd 0.1;
    # standard error 0.1 / sqrt(3) = 0.0577350...
    assert stats is not None and stats.n == 3
    assert stats.values == (0.5, 0.7, 0.6)
    assert stats.mean == pytest.approx(0.6)
    assert stats.stderr == pytest.approx(0.0577350269)
    summary = summarize(run, driver.journal)
    seeds = summary["stages"][0]["seeds"]
    assert seeds["mean"] == pytest.approx(0.6) and seeds["stderr"] == pytest.approx(0.0577350269)
    assert seeds["n"] == 3 and seeds["nodes"] == [record.best, *record.seed_nodes] and seeds["failed"] == []
    assert summary["best"]["node"] == record.best
    assert summary["best"]["seeds"]["mean"] == pytest.approx(0.6)


def test_a_buggy_seed_run_is_left_out_of_the_stats_and_listed_as_failed() -> None:
    run = spec_with(max_nodes=1, search={"drafts": 1}, seeds=2, seed=7)
    driver = Driver(run, world=_seed_world({7: 0.5, 8: None, 9: 0.6})).run()
    journal = driver.journal
    record = journal.stage("initial")
    crashed = [i for i in record.seed_nodes if journal.nodes[i].config.seed == 8]
    assert len(crashed) == 1 and journal.nodes[crashed[0]].status == "buggy"
    stats = stage_seed_stats(journal, record)
    # values 0.5, 0.6: mean 0.55; sample variance 0.005; standard error sqrt(0.005 / 2) = 0.05.
    assert stats is not None and stats.n == 2 and stats.values == (0.5, 0.6)
    assert stats.mean == pytest.approx(0.55) and stats.stderr == pytest.approx(0.05)
    seeds = summarize(run, journal)["stages"][0]["seeds"]
    assert seeds["failed"] == crashed
    assert seeds["n"] == 2
    # A buggy seed run is not debugged: it is a measurement, not a search node.
    assert not any(n.parent == crashed[0] for n in journal.nodes.values())
    assert journal.phase == "succeeded"


def test_seeds_zero_runs_no_seed_nodes() -> None:
    run = spec(seeds=0)
    journal = run_to_end(run).journal
    assert journal.phase == "succeeded"
    assert not any(n.action == "seed" for n in journal.nodes.values())
    assert all(s.seed_nodes == [] for s in journal.stages)
    for entry in summarize(run, journal)["stages"]:
        assert entry["seeds"]["n"] == 1
        assert entry["seeds"]["stderr"] == 0.0


def test_the_run_waits_for_the_last_seeds_before_it_ends() -> None:
    run = spec_with(max_nodes=1, search={"drafts": 1, "seedCandidates": 1}, seeds=2)
    driver = Driver(run, world=_seed_world({7: 0.5, 8: 0.7, 9: 0.6}), slots=3)
    driver.run(hold=lambda n: n.action == "seed")
    assert driver.journal.phase == "searching"
    assert not driver.engine.done
    assert {n.action for n in driver.running} == {"seed"}
    driver.finish()
    assert driver.journal.phase == "searching"
    driver.finish()
    assert driver.journal.phase == "succeeded" and driver.engine.done


def test_seed_plans_come_before_the_next_stage_search() -> None:
    run = spec_with(max_nodes=2, seeds=2)
    driver = Driver(run, slots=1).run()
    journal = driver.journal
    for record in journal.stages:
        if record.best == record.root:
            continue
        best = journal.nodes[record.best]
        # The seeds were planned right after the stage's last search node finished.
        positions = [driver.started.index(i) for i in record.seed_nodes]
        last_search = max(driver.started.index(n.id) for n in journal.in_stage(record.name))
        assert positions == [last_search + 1, last_search + 2], record.name
        assert best.id in driver.started[:last_search + 1]


def test_seed_stats_by_hand() -> None:
    stats = seed_stats([1.0, 2.0, 3.0, 4.0])
    # mean 2.5; sample variance (2.25 + 0.25 + 0.25 + 2.25) / 3 = 5/3; stderr sqrt(5/3 / 4).
    assert stats.mean == 2.5 and stats.n == 4 and stats.values == (1.0, 2.0, 3.0, 4.0)
    assert stats.stderr == pytest.approx(math.sqrt(5 / 12))
    one = seed_stats([0.25])
    assert (one.mean, one.stderr, one.n) == (0.25, 0.0, 1)
    same = seed_stats([0.3, 0.3, 0.3])
    assert same.stderr == pytest.approx(0.0, abs=1e-15)
    with pytest.raises(ValueError):
        seed_stats([])


def test_the_run_best_compares_seed_means_not_single_runs() -> None:
    # Each later stage finds a node that beats its root once but not on re-evaluation:
    # stage 1: 0.80, 0.80, 0.80 (mean 0.80); stage 2: 0.85, 0.60, 0.60 (mean 0.7667);
    # stage 3: 0.86, 0.50, 0.50; stage 4: 0.87, 0.50, 0.50. Stage 1's best wins on the mean.
    single = {"tuning": 0.85, "research": 0.86, "ablation": 0.87}
    reseeded = {"initial": 0.80, "tuning": 0.60, "research": 0.50, "ablation": 0.50}

    def world(node: Node):  # type: ignore[no-untyped-def]
        if node.stage == "initial" or node.action == "seed":
            return good(reseeded[node.stage])
        return good(single[node.stage])

    # One seed candidate: each stage's best is its best single run, so the run best must compare means.
    run = spec_with(max_nodes={"initial": 1, "tuning": 1, "research": 1, "ablation": 1},
                    search={"drafts": 1, "debugProbability": 0.0, "seedCandidates": 1}, seeds=2)
    driver = Driver(run, world=world, slots=1).run()
    journal = driver.journal
    assert all(s.best != s.root for s in journal.stages)
    assert journal.nodes[journal.stage("ablation").best].metric == 0.87
    best = driver.engine.best()
    assert best is not None and best.id == journal.stage("initial").best == "n0000"
    assert journal.phase == "succeeded"
    assert "best node n0000" in journal.message
    # The messages quote seed means, never the lucky single runs.
    assert "(acc 0.8 (n=3, identical: the program ignores its seed))" in journal.message
    # With one seed candidate a stage ends before its best is re-seeded: the message says it is one run.
    tuning_end = [e.message for e in journal.events if e.kind == "stage-ended" and e.stage == "tuning"]
    assert tuning_end and tuning_end[0].endswith("best n0003 acc 0.85 (single run)")
    summary = summarize(run, journal)
    assert summary["best"]["node"] == "n0000"
    seeds = summary["best"]["seeds"]
    assert (seeds["mean"], seeds["stderr"], seeds["n"]) == (pytest.approx(0.8), pytest.approx(0.0), 3)
    tuning = summary["stages"][1]["seeds"]
    assert tuning["mean"] == pytest.approx((0.85 + 0.6 + 0.6) / 3)
    # (0.85, 0.6, 0.6): mean 0.68333; squared deviations 0.027778 + 2 * 0.006944 = 0.041667;
    # sample variance 0.020833; stderr sqrt(0.020833 / 3) = 0.083333 = 1/12.
    assert tuning["stderr"] == pytest.approx(1 / 12)
