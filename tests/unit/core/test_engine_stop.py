"""An adapter can drop a plan its proposer could not serve and stop the search for a reason of its own
(an LLM budget cap, an unreachable endpoint): nothing new starts, running nodes finish and count."""

from __future__ import annotations

from simulate import SPACE, outcome_of, spec_with
from kubescientist.core.engine import Engine
from kubescientist.core.journal import Journal
from kubescientist.core.proposer import OfflineProposer


def test_release_forgets_a_plan_without_marking_it_exhausted() -> None:
    engine = Engine(spec_with(search={"drafts": 2}), Journal())
    plan = engine.plan(0.0)
    assert plan is not None and plan.action == "draft"
    engine.release(plan)
    assert engine.journal.exhausted == []
    again = engine.plan(0.0)
    assert again is not None and again.action == "draft"


def test_stop_ends_the_run_with_what_it_has() -> None:
    engine = Engine(spec_with(max_nodes=3, seeds=0), Journal())
    proposer = OfflineProposer(SPACE, 7)
    plan = engine.plan(0.0)
    assert plan is not None
    node = engine.commit(plan, proposer.propose(plan, engine.journal))
    assert node is not None
    engine.start(node.id)
    engine.complete(node.id, outcome_of(node))  # stage 1 met: tuning starts
    running = engine.plan(0.0)
    assert running is not None and running.action == "tune"
    tune = engine.commit(running, proposer.propose(running, engine.journal))
    assert tune is not None
    engine.start(tune.id)
    refused = engine.plan(0.0)
    assert refused is not None
    engine.release(refused)
    engine.stop("LLM token cap reached")
    assert engine.plan(0.0) is None and not engine.done  # the running node still counts
    engine.complete(tune.id, outcome_of(tune))
    journal = engine.journal
    assert engine.done and journal.phase == "succeeded"
    assert journal.stage("tuning").end_reason == "stopped: LLM token cap reached"
    assert [s.status for s in journal.stages[2:]] == ["skipped", "skipped"]
    assert any(e.kind == "budget" and "LLM token cap reached" in e.message for e in journal.events)
    engine.stop("again")  # a second stop changes nothing
    assert sum(e.kind == "budget" for e in journal.events) == 1


def test_a_configuration_error_fails_the_run_without_buggy_nodes_or_debugging() -> None:
    from kubescientist.core.journal import Details, Outcome

    engine = Engine(spec_with(search={"drafts": 2, "parallelism": 3}), Journal())
    proposer = OfflineProposer(SPACE, 7)
    nodes = []
    for _ in range(2):
        plan = engine.plan(0.0)
        assert plan is not None and plan.action == "draft"
        node = engine.commit(plan, proposer.propose(plan, engine.journal))
        assert node is not None
        nodes.append(node)
    first, second = nodes
    engine.start(first.id)  # the second is committed but not started yet
    reason = "configuration error: the node image lacks the requirement(s) scipy (not installed)"
    engine.complete(first.id, Outcome(buggy=False, reason=reason, details=Details(configuration_error=True)))
    journal = engine.journal
    assert journal.phase == "failed" and journal.message == reason and engine.done
    assert journal.nodes[first.id].status == "failed" and journal.nodes[second.id].status == "failed"
    assert not any(n.status == "buggy" or n.action == "debug" for n in journal.nodes.values())
    assert engine.plan(0.0) is None and engine.next_pending() is None
