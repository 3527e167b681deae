"""The offline proposer and the search space it draws from."""

from __future__ import annotations

import pytest

from kubescientist.core.journal import Journal, Node, NodeConfig
from kubescientist.core.plan import Plan
from kubescientist.core.proposer import OfflineProposer
from kubescientist.core.searchspace import GRID_POINTS, Change, Hyperparameter, SearchSpace

from simulate import SPACE, Driver, outcome_of, run_to_end, spec_with


def _journal(*configs: tuple[str, str, str | None, dict, dict]) -> Journal:
    """Nodes from (id, action, parent, params, extra config fields)."""
    journal = Journal()
    for seq, (node_id, action, parent, params, extra) in enumerate(configs):
        journal.add(Node(id=node_id, seq=seq, stage="tuning", action=action, parent=parent,  # type: ignore[arg-type]
                         config=NodeConfig(seed=7, params=params, **extra), reason=""))
    return journal


def _plan(action: str, parent: str | None, rng_seed: str = "7:0:0:0") -> Plan:
    return Plan("tuning", action, parent, "test", rng_seed)  # type: ignore[arg-type]


# -- grid -----------------------------------------------------------------------------------------------


def test_log_grid_has_the_ends_and_the_default() -> None:
    h = Hyperparameter("lr", "float", default=1e-3, low=1e-4, high=1e-1, log=True)
    assert h.grid() == (1e-4, 5.623e-4, 3.162e-3, 1.778e-2, 0.1, 1e-3)


def test_linear_grid_with_the_default_on_it_is_not_repeated() -> None:
    h = Hyperparameter("dropout", "float", default=0.25, low=0.0, high=1.0)
    assert h.grid() == (0.0, 0.25, 0.5, 0.75, 1.0)
    assert len(h.grid()) == GRID_POINTS


def test_int_grid_rounds_and_includes_the_default() -> None:
    h = Hyperparameter("steps", "int", default=400, low=100, high=2000)
    assert h.grid() == (100, 575, 1050, 1525, 2000, 400)
    assert all(isinstance(v, int) for v in h.grid())
    small = Hyperparameter("layers", "int", default=2, low=1, high=3)
    assert small.grid() == (1, 2, 3)


def test_log_with_a_zero_low_falls_back_to_linear() -> None:
    h = Hyperparameter("wd", "float", default=0.0, low=0.0, high=0.1, log=True)
    assert h.grid() == (0.0, 0.025, 0.05, 0.075, 0.1)


def test_choice_grid_is_its_values() -> None:
    h = Hyperparameter("width", "choice", default=32, values=(16, 32, 64))
    assert h.grid() == (16, 32, 64)


def test_search_space_from_mapping() -> None:
    assert [h.name for h in SPACE.hyperparameters] == ["lr", "width"]
    assert SPACE.defaults() == {"lr": 1e-3, "width": 32}
    assert SPACE.hyperparameters[0].log and SPACE.hyperparameters[1].values == (16, 32, 64)
    assert SPACE.variants[0] == Change("wide", "double width", {"width": 64})
    assert [a.name for a in SPACE.ablations] == ["no_fancy", "narrow"]
    assert SearchSpace.from_mapping({}) == SearchSpace()


# -- drafts ---------------------------------------------------------------------------------------------


def test_first_draft_is_the_defaults_then_unseen_random_grid_points() -> None:
    proposer = OfflineProposer(SPACE, 7)
    journal = Journal()
    first = proposer.propose(_plan("draft", None), journal)
    assert first is not None and first.config.params == SPACE.defaults() and first.config.seed == 7
    journal = _journal(("a", "draft", None, SPACE.defaults(), {}))
    second = proposer.propose(_plan("draft", None, "x"), journal)
    assert second is not None and second.config.params != SPACE.defaults()
    assert "random grid point" in second.summary
    for h in SPACE.hyperparameters:
        assert second.config.params[h.name] in h.grid()


def test_drafts_run_out_when_the_whole_grid_is_seen() -> None:
    tiny = SearchSpace(hyperparameters=(Hyperparameter("w", "choice", default=1, values=(1, 2)),))
    journal = _journal(("a", "draft", None, {"w": 1}, {}), ("b", "draft", None, {"w": 2}, {}))
    assert OfflineProposer(tiny, 0).propose(_plan("draft", None), journal) is None


def test_drafts_of_a_space_without_hyperparameters() -> None:
    proposer = OfflineProposer(SearchSpace(), 0)
    first = proposer.propose(_plan("draft", None), Journal())
    assert first is not None and first.config.params == {}
    assert proposer.propose(_plan("draft", None), _journal(("a", "draft", None, {}, {}))) is None


# -- tune -----------------------------------------------------------------------------------------------


def test_tune_changes_exactly_one_hyperparameter_to_a_grid_value() -> None:
    parent = {"lr": 1e-3, "width": 32, "other": "kept"}
    journal = _journal(("p", "draft", None, parent, {"variant": "v"}))
    proposer = OfflineProposer(SPACE, 7)
    grids = {h.name: h.grid() for h in SPACE.hyperparameters}
    seen_changes = set()
    for i in range(40):
        proposal = proposer.propose(_plan("tune", "p", f"s{i}"), journal)
        assert proposal is not None
        params = proposal.config.params
        changed = [k for k in params if params[k] != parent.get(k)]
        assert len(changed) == 1 and changed[0] in grids
        assert params[changed[0]] in grids[changed[0]]
        assert set(params) == set(parent)
        assert proposal.config.variant == "v" and proposal.config.seed == 7
        assert changed[0] in proposal.summary
        seen_changes.add((changed[0], params[changed[0]]))
    assert {k for k, _ in seen_changes} == {"lr", "width"}


def test_tune_is_deterministic_given_the_plan_seed() -> None:
    journal = _journal(("p", "draft", None, SPACE.defaults(), {}))
    proposer = OfflineProposer(SPACE, 7)
    a = [proposer.propose(_plan("tune", "p", f"s{i}"), journal) for i in range(10)]
    b = [proposer.propose(_plan("tune", "p", f"s{i}"), journal) for i in range(10)]
    assert a == b


def test_tune_runs_out_when_every_neighbour_is_seen() -> None:
    space = SearchSpace(hyperparameters=(Hyperparameter("w", "choice", default=1, values=(1, 2, 3)),))
    journal = _journal(("p", "draft", None, {"w": 1}, {}), ("a", "tune", "p", {"w": 2}, {}))
    proposer = OfflineProposer(space, 0)
    last = proposer.propose(_plan("tune", "p"), journal)
    assert last is not None and last.config.params == {"w": 3}
    journal = _journal(("p", "draft", None, {"w": 1}, {}), ("a", "tune", "p", {"w": 2}, {}),
                       ("b", "tune", "p", {"w": 3}, {}))
    assert proposer.propose(_plan("tune", "p"), journal) is None


def test_the_proposer_never_proposes_a_config_already_in_the_journal() -> None:
    checked = 0
    for seed in range(4):
        driver = Driver(spec_with(max_nodes=8, seed=seed, search={"drafts": 3}),
                        world=lambda n: outcome_of(n, lambda m: m.seq % 3 == 2))
        driver.run()
        for plan, proposal, seen in driver.proposals:
            if proposal is not None:
                assert proposal.config.key() not in seen, plan
                checked += 1
        assert not any(e.kind == "duplicate" for e in driver.journal.events)
    assert checked > 50


def test_a_full_offline_run_never_repeats_a_search_config() -> None:
    journal = run_to_end(spec_with(max_nodes=10)).journal
    keys = [n.config.key() for n in journal.nodes.values() if n.action != "seed"]
    assert len(keys) == len(set(keys)) > 20


def test_every_tune_node_of_a_run_differs_from_its_parent_in_one_hyperparameter() -> None:
    journal = run_to_end(spec_with(max_nodes=8)).journal
    tunes = [n for n in journal.nodes.values() if n.action in ("tune", "improve")]
    assert len(tunes) >= 8
    for node in tunes:
        parent = journal.nodes[node.parent].config.params
        diff = {k for k in {*parent, *node.config.params} if parent.get(k) != node.config.params.get(k)}
        assert len(diff) == 1 and diff <= {"lr", "width"}


# -- debug (offline) ------------------------------------------------------------------------------------


def test_debug_reverts_a_changed_parameter_to_its_default() -> None:
    journal = _journal(("p", "tune", None, {"lr": 0.1, "width": 32}, {"variant": "fancy"}))
    proposal = OfflineProposer(SPACE, 7).propose(_plan("debug", "p"), journal)
    assert proposal is not None
    assert proposal.config.params == {"lr": 1e-3, "width": 32}
    assert proposal.config.variant == "fancy"
    assert proposal.summary == "revert lr: 0.1 -> 0.001"


def test_debug_reverts_one_parameter_at_a_time() -> None:
    journal = _journal(("p", "tune", None, {"lr": 0.1, "width": 64}, {}))
    reverts = {tuple(sorted(p.config.params.items()))
               for i in range(30)
               if (p := OfflineProposer(SPACE, 7).propose(_plan("debug", "p", f"s{i}"), journal)) is not None}
    assert reverts == {(("lr", 1e-3), ("width", 64)), (("lr", 0.1), ("width", 32))}


def test_debug_has_nothing_to_revert_at_the_defaults() -> None:
    journal = _journal(("p", "draft", None, SPACE.defaults(), {}))
    assert OfflineProposer(SPACE, 7).propose(_plan("debug", "p"), journal) is None
    # A parameter the node does not set is at its default, too.
    journal = _journal(("p", "draft", None, {}, {}))
    assert OfflineProposer(SPACE, 7).propose(_plan("debug", "p"), journal) is None


def test_debug_returns_none_when_the_only_revert_already_ran() -> None:
    journal = _journal(("a", "draft", None, {"lr": 1e-3, "width": 32}, {}),
                       ("p", "tune", "a", {"lr": 0.1, "width": 32}, {}))
    assert OfflineProposer(SPACE, 7).propose(_plan("debug", "p"), journal) is None


# -- variants and ablations -----------------------------------------------------------------------------


def test_variants_are_applied_in_declared_order_once_each() -> None:
    proposer = OfflineProposer(SPACE, 7)
    journal = _journal(("r", "tune", None, {"lr": 0.01, "width": 32}, {}))
    first = proposer.propose(_plan("variant", "r"), journal)
    assert first is not None and first.config.variant == "wide"
    assert first.config.params == {"lr": 0.01, "width": 64}
    assert first.summary == "variant wide: double width"
    journal.add(Node(id="v1", seq=1, stage="research", action="variant", parent="r", config=first.config,
                     reason=""))
    second = proposer.propose(_plan("variant", "r"), journal)
    assert second is not None and second.config.variant == "fancy"
    assert second.config.params == {"lr": 0.01, "width": 32, "fancy": True}
    journal.add(Node(id="v2", seq=2, stage="research", action="variant", parent="r", config=second.config,
                     reason=""))
    assert proposer.propose(_plan("variant", "r"), journal) is None


def test_ablations_keep_the_variant_and_have_a_clean_summary() -> None:
    proposer = OfflineProposer(SPACE, 7)
    journal = _journal(("r", "variant", None, {"lr": 0.01, "width": 32, "fancy": True}, {"variant": "fancy"}))
    first = proposer.propose(_plan("ablate", "r"), journal)
    assert first is not None
    assert (first.config.ablation, first.config.variant) == ("no_fancy", "fancy")
    assert first.config.params == {"lr": 0.01, "width": 32, "fancy": False}
    assert first.summary == "ablation no_fancy"  # no dangling ": " without a description


def test_unknown_actions_get_no_proposal() -> None:
    journal = _journal(("p", "draft", None, SPACE.defaults(), {}))
    assert OfflineProposer(SPACE, 7).propose(_plan("seed", "p"), journal) is None


def test_non_draft_plans_need_a_parent() -> None:
    with pytest.raises(AssertionError):
        OfflineProposer(SPACE, 7).propose(_plan("tune", None), Journal())
