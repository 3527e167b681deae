"""Which node the engine expands next: drafts, debugging, best-first expansion."""

from __future__ import annotations

from kubescientist.core.engine import Engine
from kubescientist.core.journal import Journal, Node
from kubescientist.core.objective import sort_key
from kubescientist.core.plan import Plan
from kubescientist.core.proposer import OfflineProposer

from simulate import SPACE, Driver, PatchingProposer, bug, good, outcome_of, spec_with


def _eligible_leaves(journal: Journal, stage: str, limit: int) -> list[str]:
    """Buggy leaves of ``stage`` the engine may debug (computed here, not with the engine's helpers)."""
    parents = {n.parent for n in journal.nodes.values()}
    return [n.id for n in journal.in_stage(stage)  # type: ignore[arg-type]
            if n.status == "buggy" and n.id not in parents and [n.id, "debug"] not in journal.exhausted
            and journal.debug_depth(n) < limit]


# -- stage 1: drafts, then debugging ---------------------------------------------------------------


def test_stage1_drafts_up_to_search_drafts_then_waits() -> None:
    driver = Driver(spec_with(max_nodes=10, search={"drafts": 3}), slots=5)
    driver.fill()
    assert [n.action for n in driver.journal.nodes.values()] == ["draft"] * 3
    assert all(n.parent is None for n in driver.journal.nodes.values())
    # Nothing is buggy yet, so there is nothing to debug: the free slots stay free.
    assert len(driver.running) == 3
    assert driver.engine.plan(0.0) is None
    assert [p.reason for p in driver.plans] == ["draft 1 of 3", "draft 2 of 3", "draft 3 of 3"]


def test_stage1_first_draft_is_the_template_and_later_drafts_differ() -> None:
    driver = Driver(spec_with(max_nodes=10, search={"drafts": 3}), slots=3)
    driver.fill()
    configs = [n.config for n in driver.journal.nodes.values()]
    assert configs[0].params == SPACE.defaults()
    assert len({c.key() for c in configs}) == 3
    for config in configs[1:]:
        for h in SPACE.hyperparameters:
            assert config.params[h.name] in h.grid()


def test_stage1_debugs_buggy_leaves_after_the_drafts() -> None:
    driver = Driver(spec_with(max_nodes=10, search={"drafts": 2}), world=lambda n: bug("ValueError: boom"),
                    slots=3, proposer=PatchingProposer(SPACE, 7))
    driver.fill()
    assert len(driver.running) == 2
    driver.finish("n0001")
    started = driver.fill()
    assert [(n.action, n.parent) for n in started] == [("debug", "n0001")]
    assert "ValueError: boom" in driver.journal.nodes[started[0].id].reason
    assert "debug depth 0 < 3" in started[0].reason
    # n0001 now has a child: with n0000 still running there is nothing else to debug.
    assert driver.engine.plan(0.0) is None
    driver.finish("n0000")
    started = driver.fill()
    assert [(n.action, n.parent) for n in started] == [("debug", "n0000")]


def test_stage1_never_drafts_more_than_asked_even_when_every_draft_fails() -> None:
    driver = Driver(spec_with(max_nodes=12, search={"drafts": 2}), world=lambda n: bug(), slots=2,
                    proposer=PatchingProposer(SPACE, 7))
    driver.run()
    actions = [n.action for n in driver.journal.nodes.values()]
    assert actions.count("draft") == 2
    assert set(actions) == {"draft", "debug"}


# -- best-first expansion ----------------------------------------------------------------------------


def _best_first_checker(seen: list[Plan]):  # type: ignore[no-untyped-def]
    def check(engine: Engine, plan: Plan) -> None:
        if plan.action not in ("tune", "improve"):
            return
        journal = engine.journal
        stage = journal.stage(plan.stage)
        ranked = [n for n in journal.in_stage(plan.stage) if n.good] + [journal.nodes[stage.root]]
        ranked = [n for n in ranked if [n.id, plan.action] not in journal.exhausted]
        expected = min(ranked, key=lambda n: (sort_key(n.metric, engine.spec.objective.direction), n.seq))
        assert plan.parent == expected.id, (plan, expected.id)
        seen.append(plan)
    return check


def test_tuning_expands_the_best_good_node() -> None:
    seen: list[Plan] = []
    run = spec_with(max_nodes={"initial": 2, "tuning": 12, "research": 1, "ablation": 1},
                    search={"drafts": 1, "debugProbability": 0.0})
    driver = Driver(run, slots=1, on_plan=_best_first_checker(seen)).run()
    tuned = [p for p in seen if p.action == "tune"]
    assert len(tuned) >= 10
    # The search climbed: parents changed as better nodes appeared, and it ended at a better node.
    assert len({p.parent for p in tuned}) >= 3
    tuning = driver.journal.stage("tuning")
    assert driver.journal.nodes[tuning.best].metric > driver.journal.nodes[tuning.root].metric


def test_tuning_best_first_holds_with_parallel_slots() -> None:
    seen: list[Plan] = []
    run = spec_with(max_nodes={"initial": 2, "tuning": 10, "research": 6, "ablation": 2},
                    search={"drafts": 2, "debugProbability": 0.0})
    Driver(run, slots=3, on_plan=_best_first_checker(seen)).run()
    assert {p.action for p in seen} == {"tune", "improve"}


def _three_tunes_of_the_draft(run, values):  # type: ignore[no-untyped-def]
    """Stage 1 is one draft; three tunes of it run at once and finish with ``values``."""
    driver = Driver(run, world=lambda n: good(values.get(n.id, 0.0), run.objective.metric), slots=3)
    driver.fill()
    driver.finish("n0000")
    assert [(n.action, n.parent) for n in driver.fill()] == [("tune", "n0000")] * 3
    for node_id in ("n0001", "n0002", "n0003"):
        driver.finish(node_id)
    driver.slots = 1
    return driver


def test_tuning_expands_the_best_of_several_finished_nodes() -> None:
    run = spec_with(max_nodes={"initial": 1, "tuning": 10}, search={"drafts": 1, "debugProbability": 0.0},
                    seeds=0)
    driver = _three_tunes_of_the_draft(run, {"n0000": 0.5, "n0001": 0.7, "n0002": 0.9, "n0003": 0.6})
    started = driver.fill()
    assert [(n.action, n.parent) for n in started] == [("tune", "n0002")]
    assert "the stage's best node n0002" in started[0].reason


def test_tuning_falls_back_to_the_next_best_when_the_best_is_exhausted() -> None:
    run = spec_with(max_nodes={"initial": 1, "tuning": 10}, search={"drafts": 1, "debugProbability": 0.0},
                    seeds=0)
    driver = _three_tunes_of_the_draft(run, {"n0000": 0.5, "n0001": 0.9, "n0002": 0.7, "n0003": 0.6})
    offline = OfflineProposer(SPACE, run.seed)

    class RefuseBest:
        def propose(self, plan, journal):  # type: ignore[no-untyped-def]
            return None if plan.parent == "n0001" else offline.propose(plan, journal)

    driver.proposer = RefuseBest()
    started = driver.fill()
    assert ["n0001", "tune"] in driver.journal.exhausted
    assert driver.plans[-2].parent == "n0001"
    assert [(n.action, n.parent) for n in started] == [("tune", "n0002")]
    assert "rank 2" in started[0].reason
    exhausted = [e for e in driver.journal.events if e.kind == "exhausted"]
    assert len(exhausted) == 1 and "n0001" in exhausted[0].message
    # The exhausted best is never planned again for a tune, though it stays the stage's best.
    driver.proposer = offline
    driver.run()
    assert sum(1 for p in driver.plans if p.action == "tune" and p.parent == "n0001") == 1
    assert driver.journal.stage("tuning").best == "n0001"
    assert len(list(driver.journal.in_stage("tuning"))) == 10


def test_minimize_expands_the_smallest() -> None:
    run = spec_with(max_nodes={"initial": 1, "tuning": 10}, search={"drafts": 1, "debugProbability": 0.0},
                    seeds=0, objective={"metric": "loss", "direction": "minimize"})
    driver = _three_tunes_of_the_draft(run, {"n0000": 0.5, "n0001": 0.9, "n0002": 0.2, "n0003": 0.3})
    started = driver.fill()
    assert started[0].parent == "n0002"


# -- debug probability ---------------------------------------------------------------------------------


def _tuning_crashes(node: Node):  # type: ignore[no-untyped-def]
    if node.stage == "tuning" and node.action == "tune" and node.config.params.get("width") != 32:
        return bug()
    return outcome_of(node)


def test_debug_probability_zero_never_debugs_while_something_can_be_expanded() -> None:
    checks: list[tuple[Plan, list[str]]] = []

    def record(engine: Engine, plan: Plan) -> None:
        if plan.stage == "tuning" and plan.action != "seed":
            checks.append((plan, _eligible_leaves(engine.journal, "tuning", 3)))

    run = spec_with(max_nodes={"initial": 1, "tuning": 12, "research": 1, "ablation": 1},
                    search={"drafts": 1, "debugProbability": 0.0})
    driver = Driver(run, world=_tuning_crashes, slots=1, proposer=PatchingProposer(SPACE, 7),
                    on_plan=record).run()
    # Buggy leaves were available while tuning went on, and none was debugged.
    assert any(leaves for plan, leaves in checks if plan.action == "tune")
    tuning_debugs = [n for n in driver.journal.in_stage("tuning") if n.action == "debug"]
    assert all("nothing else to expand" in n.reason for n in tuning_debugs)
    for plan, _ in checks:
        if plan.action == "debug":
            assert "nothing else to expand" in plan.reason


def test_debug_probability_one_always_debugs_an_eligible_leaf() -> None:
    checks: list[tuple[Plan, list[str]]] = []

    def record(engine: Engine, plan: Plan) -> None:
        if plan.stage == "tuning" and plan.action != "seed":
            checks.append((plan, _eligible_leaves(engine.journal, "tuning", 3)))

    run = spec_with(max_nodes={"initial": 1, "tuning": 12, "research": 1, "ablation": 1},
                    search={"drafts": 1, "debugProbability": 1.0})
    Driver(run, world=_tuning_crashes, slots=1, proposer=PatchingProposer(SPACE, 7), on_plan=record).run()
    with_leaves = [(plan, leaves) for plan, leaves in checks if leaves]
    assert len(with_leaves) >= 2
    for plan, leaves in with_leaves:
        assert plan.action == "debug" and plan.parent in leaves
    for plan, leaves in checks:
        if not leaves:
            assert plan.action == "tune"


def test_debug_probability_half_mixes_both() -> None:
    run = spec_with(max_nodes={"initial": 1, "tuning": 40, "research": 1, "ablation": 1},
                    search={"drafts": 1, "debugProbability": 0.5, "maxDebugDepth": 20})

    def world(node: Node):  # type: ignore[no-untyped-def]
        return bug() if node.stage == "tuning" and node.seq % 2 == 0 else outcome_of(node)

    driver = Driver(run, world=world, slots=1, proposer=PatchingProposer(SPACE, 7)).run()
    reasons = [n.reason for n in driver.journal.in_stage("tuning") if n.action == "debug"]
    assert any("< p=0.5" in r for r in reasons)
    assert any(n.action == "tune" for n in driver.journal.in_stage("tuning"))


# -- debug depth ----------------------------------------------------------------------------------------


def test_max_debug_depth_zero_disables_debugging() -> None:
    run = spec_with(max_nodes=10, search={"drafts": 2, "maxDebugDepth": 0})
    driver = Driver(run, world=lambda n: bug(), proposer=PatchingProposer(SPACE, 7)).run()
    assert [n.action for n in driver.journal.nodes.values()] == ["draft", "draft"]
    assert driver.journal.phase == "failed"
    assert "nothing left to try" in driver.journal.stage("initial").end_reason


def test_debug_chain_never_exceeds_the_limit() -> None:
    for limit in (1, 2, 3, 5):
        run = spec_with(max_nodes=30, search={"drafts": 2, "maxDebugDepth": limit})
        driver = Driver(run, world=lambda n: bug(), slots=2, proposer=PatchingProposer(SPACE, 7)).run()
        journal = driver.journal
        depths = [journal.debug_depth(n) for n in journal.nodes.values()]
        assert max(depths) == limit
        # Two drafts, each with a chain of exactly `limit` debugs.
        assert len(journal.nodes) == 2 * (1 + limit)
        assert journal.phase == "failed"


def test_debug_depth_limit_applies_in_later_stages() -> None:
    run = spec_with(max_nodes={"initial": 1, "tuning": 20, "research": 1, "ablation": 1},
                    search={"drafts": 1, "debugProbability": 1.0, "maxDebugDepth": 2})

    def world(node: Node):  # type: ignore[no-untyped-def]
        return bug() if node.stage == "tuning" and node.action in ("tune", "debug") else outcome_of(node)

    driver = Driver(run, world=world, slots=2, proposer=PatchingProposer(SPACE, 7)).run()
    tuning = list(driver.journal.in_stage("tuning"))
    assert any(n.action == "debug" for n in tuning)
    assert max(driver.journal.debug_depth(n) for n in tuning) == 2


def test_a_leaf_is_debugged_at_most_once() -> None:
    run = spec_with(max_nodes=30, search={"drafts": 3, "maxDebugDepth": 4})
    driver = Driver(run, world=lambda n: bug(), slots=4, proposer=PatchingProposer(SPACE, 7)).run()
    parents = [n.parent for n in driver.journal.nodes.values() if n.action == "debug"]
    assert len(parents) == len(set(parents)) == 12


def test_a_planned_but_uncommitted_debug_reserves_its_leaf() -> None:
    run = spec_with(max_nodes=10, search={"drafts": 1})
    engine = Engine(run, Journal())
    plan = engine.plan(0.0)
    draft = engine.commit(plan, OfflineProposer(SPACE, 7).propose(plan, engine.journal))
    assert draft is not None
    engine.start(draft.id)
    engine.complete(draft.id, bug())
    first = engine.plan(0.0)
    assert first is not None and (first.action, first.parent) == ("debug", draft.id)
    # A second free slot asks before the first plan is committed: the leaf is taken.
    assert engine.plan(0.0) is None
    child = engine.commit(first, PatchingProposer(SPACE, 7).propose(first, engine.journal))
    assert child is not None and child.parent == draft.id
    # Committed but not started: still taken.
    assert engine.plan(0.0) is None


def test_a_debug_the_proposer_cannot_answer_is_not_asked_again() -> None:
    run = spec_with(max_nodes=10, search={"drafts": 1})
    engine = Engine(run, Journal())
    plan = engine.plan(0.0)
    draft = engine.commit(plan, OfflineProposer(SPACE, 7).propose(plan, engine.journal))
    engine.start(draft.id)
    engine.complete(draft.id, bug())
    plan = engine.plan(0.0)
    assert plan.action == "debug"
    # Offline, the default config has nothing to revert.
    assert OfflineProposer(SPACE, 7).propose(plan, engine.journal) is None
    assert engine.commit(plan, None) is None
    assert [draft.id, "debug"] in engine.journal.exhausted
    # Nothing else to do in stage 1: it fails at once instead of asking again.
    assert engine.plan(0.0) is None
    assert engine.journal.phase == "failed"
    assert engine.done
