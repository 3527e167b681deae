"""The journal as the whole state: JSON round trips, resuming after a crash, determinism."""

from __future__ import annotations

import json

import pytest

from kubescientist.core.engine import Engine
from kubescientist.core.journal import Journal, Node, NodeConfig, Outcome

from simulate import SPACE, Driver, PatchingProposer, bug, outcome_of, run_to_end, spec, spec_with


def _through_json(journal: Journal) -> Journal:
    return Journal.from_dict(json.loads(json.dumps(journal.to_dict())))


def _crashy(node: Node) -> Outcome:
    # Buggy tunes and drafts exercise the debug bookkeeping and the exhausted list in the round trip.
    if node.action != "seed" and node.seq % 4 == 1:
        return bug()
    return outcome_of(node)


# -- round trip -----------------------------------------------------------------------------------------


def test_round_trip_of_a_finished_run() -> None:
    journal = Driver(spec(), world=_crashy, proposer=PatchingProposer(SPACE, 7)).run().journal
    assert journal.exhausted and any(n.status == "buggy" for n in journal.nodes.values())
    copy = _through_json(journal)
    assert copy == journal
    assert copy.to_dict() == journal.to_dict()
    assert list(copy.nodes) == list(journal.nodes)
    node = next(iter(copy.nodes.values()))
    assert isinstance(node.config, NodeConfig) and isinstance(node.outcome, Outcome)


def test_round_trip_mid_run_keeps_running_and_pending_nodes() -> None:
    driver = Driver(spec(), slots=3)
    driver.run_until(lambda d: len(d.completed) >= 6)
    driver.fill()
    journal = driver.journal
    assert any(n.status == "running" for n in journal.nodes.values())
    copy = _through_json(journal)
    assert copy == journal
    assert [n.status for n in copy.nodes.values()] == [n.status for n in journal.nodes.values()]
    assert copy.nodes[driver.running[0].id].outcome is None


def test_from_dict_of_an_empty_mapping_is_a_fresh_journal() -> None:
    assert Journal.from_dict({}) == Journal()
    engine = Engine(spec(), Journal.from_dict({}))
    assert engine.journal.stage("initial").status == "searching"


def test_config_to_dict_leaves_out_unset_fields_and_key_ignores_the_seed() -> None:
    config = NodeConfig(seed=3, params={"b": 1, "a": 2})
    assert config.to_dict() == {"seed": 3, "params": {"b": 1, "a": 2}}
    assert config.key() == NodeConfig(seed=4, params={"a": 2, "b": 1}).key()
    assert config.key() != NodeConfig(seed=3, params={"a": 2, "b": 1}, variant="v").key()
    assert config.key() != NodeConfig(seed=3, params={"a": 2, "b": 1}, code="print()").key()


def test_debug_depth_counts_consecutive_debugs_only() -> None:
    journal = Journal()
    config = NodeConfig(seed=0)
    chain = [("a", None, "draft"), ("b", "a", "debug"), ("c", "b", "debug"), ("d", "c", "tune"),
             ("e", "d", "debug")]
    for seq, (node_id, parent, action) in enumerate(chain):
        journal.add(Node(id=node_id, seq=seq, stage="initial", action=action, parent=parent, config=config,
                         reason=""))
    assert [journal.debug_depth(journal.nodes[i]) for i in "abcde"] == [0, 1, 2, 0, 1]


# -- resume ---------------------------------------------------------------------------------------------


def _interrupted(run, stop_after: int, slots: int = 3):  # type: ignore[no-untyped-def]
    driver = Driver(run, world=_crashy, slots=slots, proposer=PatchingProposer(SPACE, run.seed))
    for _ in range(stop_after):
        if driver.step() is None:
            break
    driver.fill()
    return driver


@pytest.mark.parametrize("stop_after", [1, 2, 4, 7, 10, 13, 16, 18])
def test_resume_reruns_only_the_nodes_that_were_running(stop_after: int) -> None:
    run = spec(seeds=2)
    first = _interrupted(run, stop_after)
    was_running = {n.id for n in first.running}
    finished = {n.id: n.outcome for n in first.journal.nodes.values() if n.outcome is not None}
    assert was_running, "the interruption should catch nodes in flight"

    restored = _through_json(first.journal)
    second = Driver(run, world=_crashy, journal=restored, slots=3, proposer=PatchingProposer(SPACE, run.seed))
    for node_id in was_running:
        assert second.journal.nodes[node_id].status == "pending"
    second.run()
    journal = second.journal

    # The nodes that were running ran again; no finished node ran again.
    assert was_running <= set(second.started)
    assert not set(second.started) & set(finished)
    for node_id, outcome in finished.items():
        assert journal.nodes[node_id].outcome == outcome
    for node_id in was_running:
        assert journal.nodes[node_id].attempts == 2
    # Ids are unique and follow creation order.
    assert list(journal.nodes) == [f"n{i:04d}" for i in range(len(journal.nodes))]
    assert [n.seq for n in journal.nodes.values()] == list(range(len(journal.nodes)))

    assert journal.phase == "succeeded"
    for record in journal.stages:
        expected = 0 if record.best == record.root else run.seeds
        assert len(record.seed_nodes) == expected, record.name
        assert [journal.nodes[i].config.seed for i in record.seed_nodes] == \
            list(range(run.seed + 1, run.seed + 1 + expected))
    uninterrupted = Driver(run, world=_crashy, slots=3, proposer=PatchingProposer(SPACE, run.seed)).run()
    assert sum(len(s.seed_nodes) for s in journal.stages) == \
        sum(len(s.seed_nodes) for s in uninterrupted.journal.stages)
    # No config was run twice as a search node, across the interruption.
    keys = [n.config.key() for n in journal.nodes.values() if n.action != "seed"]
    assert len(keys) == len(set(keys))


def test_resume_of_a_finished_run_does_nothing() -> None:
    engine = run_to_end(spec())
    resumed = Engine(spec(), _through_json(engine.journal))
    assert resumed.done
    assert resumed.plan(0.0) is None
    assert resumed.journal == engine.journal


def test_resume_with_the_old_runner_helper() -> None:
    halfway = run_to_end(spec(), stop_after=9)
    running = [n.id for n in halfway.journal.nodes.values() if n.status == "running"]
    assert running
    resumed = run_to_end(spec(), journal=_through_json(halfway.journal))
    assert resumed.journal.phase == "succeeded"
    assert all(resumed.journal.nodes[i].status == "succeeded" for i in running)


# -- determinism ----------------------------------------------------------------------------------------


def test_same_seed_and_outcomes_give_identical_journals() -> None:
    for slots in (1, 2, 4):
        a = Driver(spec(), world=_crashy, slots=slots, proposer=PatchingProposer(SPACE, 7)).run().journal
        b = Driver(spec(), world=_crashy, slots=slots, proposer=PatchingProposer(SPACE, 7)).run().journal
        assert a.to_dict() == b.to_dict()
        assert json.dumps(a.to_dict(), sort_keys=True) == json.dumps(b.to_dict(), sort_keys=True)


def test_same_seed_gives_identical_journals_with_the_offline_proposer() -> None:
    a = run_to_end(spec_with(max_nodes=6, search={"drafts": 3}), crash=lambda n: n.seq % 5 == 2)
    b = run_to_end(spec_with(max_nodes=6, search={"drafts": 3}), crash=lambda n: n.seq % 5 == 2)
    assert a.journal.to_dict() == b.journal.to_dict()


def test_a_different_run_seed_gives_a_different_tree() -> None:
    def second_draft(seed: int) -> dict:
        journal = run_to_end(spec(seed=seed)).journal
        return journal.nodes["n0001"].config.params

    drafts = {json.dumps(second_draft(seed), sort_keys=True) for seed in range(6)}
    # The first draft is the template itself; the second is a random grid point drawn from the run seed.
    assert len(drafts) >= 3
    a, b = run_to_end(spec(seed=7)).journal, run_to_end(spec(seed=8)).journal
    assert [n.config.key() for n in a.nodes.values()] != [n.config.key() for n in b.nodes.values()]
    assert a.nodes["n0000"].config.params == b.nodes["n0000"].config.params == SPACE.defaults()


def test_run_seed_is_the_node_seed_and_seeds_follow_it() -> None:
    journal = run_to_end(spec(seed=42)).journal
    search = [n for n in journal.nodes.values() if n.action != "seed"]
    assert {n.config.seed for n in search} == {42}
    assert {n.config.seed for n in journal.nodes.values() if n.action == "seed"} == {43, 44}
