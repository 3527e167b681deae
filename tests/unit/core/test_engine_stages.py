"""Stage rules: when each of the four stages ends, what it starts from, how the run ends."""

from __future__ import annotations

from kubescientist.core.journal import Node
from kubescientist.core.proposer import OfflineProposer
from kubescientist.core.searchspace import SearchSpace
from kubescientist.core.summary import summarize

from simulate import SPACE, STAGES, Driver, PatchingProposer, bug, good, outcome_of, run_to_end, spec, spec_with


def test_a_full_run_passes_through_the_four_stages_in_order() -> None:
    engine = run_to_end(spec())
    journal = engine.journal
    assert engine.done and journal.phase == "succeeded"
    assert [s.name for s in journal.stages] == list(STAGES)
    assert all(s.status == "done" for s in journal.stages)
    started = [e.stage for e in journal.events if e.kind == "stage-started"]
    ended = [e.stage for e in journal.events if e.kind == "stage-ended"]
    assert started == ended == list(STAGES)
    assert journal.events[-1].kind == "run-ended"
    # Node stages appear in stage order (seeds of a stage may interleave with the next stage's search).
    order = [STAGES.index(n.stage) for n in journal.nodes.values() if n.action != "seed"]
    assert order == sorted(order)


def test_stage1_ends_at_the_first_good_node_while_other_drafts_run() -> None:
    values = {"n0000": 0.8, "n0001": 0.5, "n0002": 0.9}
    driver = Driver(spec_with(max_nodes=6, search={"drafts": 3}, seeds=0),
                    world=lambda n: good(values.get(n.id, 0.1)), slots=3)
    driver.fill()
    assert [n.id for n in driver.running] == ["n0000", "n0001", "n0002"]
    driver.finish("n0001")
    initial, tuning = driver.journal.stage("initial"), driver.journal.stage("tuning")
    assert initial.status == "done" and initial.best == "n0001"
    assert "goal met: n0001" in initial.end_reason
    assert tuning.status == "searching" and tuning.root == "n0001"
    # The other drafts still run; the free slot goes to stage 2 meanwhile.
    assert driver.journal.nodes["n0000"].status == "running"
    assert [(n.stage, n.action, n.parent) for n in driver.fill()] == [("tuning", "tune", "n0001")]
    # They later finish and are recorded, without changing stage 1's best.
    driver.finish("n0000")
    driver.finish("n0002")
    assert driver.journal.nodes["n0000"].status == "succeeded" and driver.journal.nodes["n0000"].metric == 0.8
    assert driver.journal.nodes["n0002"].metric == 0.9
    assert initial.best == "n0001" and tuning.root == "n0001"
    assert all(n.parent == "n0001" for n in driver.journal.in_stage("tuning"))


def test_stage1_fails_when_its_budget_runs_out_without_a_good_node() -> None:
    driver = Driver(spec_with(max_nodes={"initial": 3}, search={"drafts": 2}), world=lambda n: bug(),
                    proposer=PatchingProposer(SPACE, 7)).run()
    journal = driver.journal
    assert journal.phase == "failed"
    assert "initial" in journal.message and "no working implementation" in journal.message
    assert journal.stage("initial").status == "failed"
    assert journal.stage("initial").end_reason == "node budget of 3 used"
    assert len(journal.nodes) == 3
    assert all(n.stage == "initial" for n in journal.nodes.values())
    assert driver.engine.done and driver.engine.plan(0.0) is None
    assert journal.events[-1].kind == "run-ended"


def test_stage1_failure_waits_for_running_drafts_to_report() -> None:
    driver = Driver(spec_with(max_nodes={"initial": 2}), world=lambda n: bug(), slots=2)
    driver.fill()
    driver.finish("n0000")
    assert driver.journal.phase == "searching"
    driver.finish("n0001")
    assert driver.journal.phase == "failed"


def test_later_stages_are_rooted_at_the_previous_stage_best() -> None:
    journal = run_to_end(spec_with(max_nodes=5, seeds=1), slots=3).journal
    for before, after in zip(journal.stages, journal.stages[1:]):
        assert after.root == before.best is not None
    for record in journal.stages[1:]:
        members = {n.id for n in journal.in_stage(record.name)}
        assert members
        for node in journal.in_stage(record.name):
            # Every search node descends from the root (or the provisional root the stage started from
            # early) through nodes of its own stage.
            current: Node = node
            while current.parent not in (record.root, record.provisional_root):
                assert current.parent in members
                current = journal.nodes[current.parent]


def test_a_stage_that_never_beats_its_root_keeps_the_root_and_is_not_reseeded() -> None:
    def world(node: Node):  # type: ignore[no-untyped-def]
        return good(0.1) if node.stage == "tuning" else outcome_of(node)

    driver = Driver(spec(), world=world).run()
    journal = driver.journal
    tuning = journal.stage("tuning")
    assert tuning.status == "done"
    assert tuning.best == tuning.root == journal.stage("initial").best
    assert tuning.seed_nodes == []
    # The root was a contender with its own seed runs (from stage initial) and won on the seed mean; the
    # stage's own seed runs re-evaluated its other contender or filled slots that would have idled.
    assert tuning.root in tuning.contenders
    for node in journal.nodes.values():
        if node.stage == "tuning" and node.action == "seed":
            assert node.parent != tuning.root
            assert node.parent in tuning.contenders or "provisional leader" in node.reason
    ended = next(e for e in journal.events if e.kind == "stage-ended" and e.stage == "tuning")
    assert "no node of this stage beat its root" in ended.message and "best by seed mean" in ended.message
    assert journal.stage("research").root == tuning.root
    assert journal.phase == "succeeded"


def test_with_one_seed_candidate_a_kept_root_is_not_reseeded() -> None:
    def world(node: Node):  # type: ignore[no-untyped-def]
        return good(0.1) if node.stage == "tuning" and node.action != "seed" else outcome_of(node)

    run = spec(search={"parallelism": 2, "drafts": 2, "debugProbability": 0.5, "maxDebugDepth": 3,
                       "seedCandidates": 1})
    driver = Driver(run, world=world).run()
    journal = driver.journal
    tuning = journal.stage("tuning")
    assert tuning.best == tuning.root == journal.stage("initial").best
    assert tuning.seed_nodes == [] and tuning.contenders == []
    # Only slots that would have idled re-evaluated a provisional leader of the stage; never the root.
    for node in journal.nodes.values():
        if node.stage == "tuning" and node.action == "seed":
            assert node.parent != tuning.root and "provisional leader" in node.reason
    assert journal.phase == "succeeded"


def test_research_tries_each_variant_once_in_order_then_improves() -> None:
    run = spec_with(max_nodes={"research": 6}, search={"debugProbability": 0.0})
    journal = Driver(run, slots=1).run().journal
    research = list(journal.in_stage("research"))
    root = journal.stage("research").root
    assert [(n.action, n.config.variant, n.parent) for n in research[:2]] == [
        ("variant", "wide", root), ("variant", "fancy", root)]
    assert {n.action for n in research[2:]} == {"improve"}
    assert len(research) == 6
    assert [root, "variant"] in journal.exhausted
    assert sum(1 for n in journal.nodes.values() if n.action == "variant") == 2
    # A variant is the root's parameters with the variant's overrides.
    root_params = journal.nodes[root].config.params
    assert research[0].config.params == {**root_params, "width": 64}
    assert research[1].config.params == {**root_params, "fancy": True}


def test_research_with_parallel_slots_still_tries_each_variant_once() -> None:
    run = spec_with(max_nodes={"research": 6}, search={"debugProbability": 0.0})
    journal = Driver(run, slots=4).run().journal
    variants = [n.config.variant for n in journal.in_stage("research") if n.action == "variant"]
    assert variants == ["wide", "fancy"]


def test_ablation_tries_each_ablation_once_then_ends_exhausted() -> None:
    run = spec_with(max_nodes={"ablation": 10}, search={"debugProbability": 0.0})
    driver = Driver(run, slots=3).run()
    journal = driver.journal
    ablation = journal.stage("ablation")
    nodes = list(journal.in_stage("ablation"))
    assert [(n.action, n.config.ablation, n.parent) for n in nodes] == [
        ("ablate", "no_fancy", ablation.root), ("ablate", "narrow", ablation.root)]
    assert ablation.status == "done"
    assert "nothing left to try" in ablation.end_reason
    assert [ablation.root, "ablate"] in journal.exhausted
    root = journal.nodes[ablation.root]
    assert nodes[0].config.params == {**root.config.params, "fancy": False}
    assert nodes[0].config.variant == root.config.variant
    assert journal.phase == "succeeded"


def test_a_template_without_variants_or_ablations_still_finishes() -> None:
    bare = SearchSpace(hyperparameters=SPACE.hyperparameters)
    run = spec_with(max_nodes={"research": 3, "ablation": 3}, search={"debugProbability": 0.0})
    journal = Driver(run, slots=2, proposer=OfflineProposer(bare, run.seed)).run().journal
    assert journal.phase == "succeeded"
    assert all(n.action == "improve" for n in journal.in_stage("research"))
    assert list(journal.in_stage("ablation")) == []
    ablation = journal.stage("ablation")
    assert ablation.status == "done" and ablation.best == ablation.root


def test_summarize_lists_all_four_stages() -> None:
    run = spec()
    journal = run_to_end(run).journal
    summary = summarize(run, journal)
    assert [s["name"] for s in summary["stages"]] == list(STAGES)
    assert summary["phase"] == "succeeded"
    assert summary["nodes"]["total"] == len(journal.nodes)
    assert summary["nodes"]["succeeded"] == len(journal.nodes)
    assert sum(s["nodes"]["total"] for s in summary["stages"]) == len(journal.nodes)
    for entry, record in zip(summary["stages"], journal.stages):
        assert entry["status"] == record.status == "done"
        assert entry["best"]["node"] == record.best
        assert entry["root"] == record.root
    assert summary["best"]["node"] == run_to_end(run).best().id
    assert summary["objective"] == {"metric": "acc", "direction": "maximize", "aggregation": "mean",
                                    "value": "final"}


def test_summarize_of_a_failed_run_still_lists_four_stages() -> None:
    run = spec_with(max_nodes={"initial": 2})
    journal = run_to_end(run, crash=lambda n: True).journal
    summary = summarize(run, journal)
    assert summary["phase"] == "failed"
    assert [s["name"] for s in summary["stages"]] == list(STAGES)
    assert summary["stages"][0]["status"] == "failed"
    assert summary["stages"][0]["nodes"]["buggy"] == 2
    assert summary["best"] is None
