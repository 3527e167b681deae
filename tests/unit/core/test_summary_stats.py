"""The reported best is a seed mean, never the luckiest seed; summary.json's nodes table, ablations and cost."""

from __future__ import annotations

from kubescientist.core.journal import Journal, Node, NodeConfig, Outcome, StageRecord
from kubescientist.core.objective import seed_stats
from kubescientist.core.spec import Action, StageName
from kubescientist.core.stats import compare, fmt_stats
from kubescientist.core.summary import describe_best, run_best, summarize
from simulate import spec


def _node(journal: Journal, stage: StageName, action: Action, parent: str | None, metric: float | None,
          seed: int = 7, **config: object) -> Node:
    seq = len(journal.nodes)
    node = Node(id=f"n{seq:04d}", seq=seq, stage=stage, action=action, parent=parent,
                config=NodeConfig(seed=seed, **config),  # type: ignore[arg-type]
                reason="planted", status="succeeded" if metric is not None else "buggy",
                outcome=Outcome(buggy=metric is None, reason=None if metric is not None else "Traceback: boom",
                                metric=metric, duration_seconds=2.0))
    return journal.add(node)


def _seeds(journal: Journal, record: StageRecord, best: Node, *values: float) -> None:
    for offset, value in enumerate(values, start=1):
        node = _node(journal, record.name, "seed", best.id, value, seed=7 + offset, params=dict(best.config.params),
                     variant=best.config.variant, ablation=best.config.ablation)
        record.seed_nodes.append(node.id)


def lucky_journal() -> Journal:
    """Tuning's best had one lucky seed (0.7277, its seeds average 0.67); research's is steadily 0.70."""
    journal = Journal(stages=[StageRecord(name=n, status="done") for n in
                              ("initial", "tuning", "research", "ablation")], phase="succeeded")
    initial, tuning, research, ablation = journal.stages
    draft = _node(journal, "initial", "draft", None, 0.50, params={"lr": 0.001})
    initial.best = draft.id
    _seeds(journal, initial, draft, 0.52, 0.51)
    tuning.root = draft.id
    lucky = _node(journal, "tuning", "tune", draft.id, 0.7277, params={"lr": 0.003})
    _node(journal, "tuning", "tune", draft.id, None, params={"lr": 0.1})
    tuning.best = lucky.id
    _seeds(journal, tuning, lucky, 0.64, 0.6423)
    research.root = lucky.id
    steady = _node(journal, "research", "variant", lucky.id, 0.70, params={"lr": 0.003}, variant="rope")
    research.best = steady.id
    _seeds(journal, research, steady, 0.69, 0.71)
    ablation.root = steady.id
    ablated = _node(journal, "ablation", "ablate", steady.id, 0.60, params={"lr": 0.003}, variant="rope",
                    ablation="no_wd")
    ablation.best = ablated.id
    _seeds(journal, ablation, ablated, 0.61, 0.59)
    return journal


def test_the_best_is_chosen_and_reported_by_seed_mean_not_by_a_lucky_seed() -> None:
    run, journal = spec(), lucky_journal()
    assert run_best(run, journal).id == "n0007"  # type: ignore[union-attr]
    summary = summarize(run, journal)
    best = summary["best"]
    assert best["node"] == "n0007" and best["change"] == "variant rope"
    assert abs(best["seeds"]["mean"] - 0.70) < 1e-12 and best["seeds"]["n"] == 3
    assert best["text"] == "0.700 ± 0.006 (n=3)"
    # Against the first working implementation: a Welch test, not a maximum.
    assert best["againstBaseline"]["node"] == "n0000" and best["againstBaseline"]["verdict"] == "better"
    assert describe_best(summary) == ("best node n0007 (stage research, variant rope): acc = 0.700 ± 0.006 (n=3); "
                                      "against the first working n0000: better")
    tuning = summary["stages"][1]
    assert tuning["seeds"]["mean"] < 0.68 and tuning["best"]["text"].startswith("0.67")


def test_nodes_table_ablations_and_cost_block_offline() -> None:
    summary = summarize(spec(), lucky_journal())
    rows = {row["id"]: row for row in summary["nodeTable"]}
    assert rows["n0003"]["change"] == "lr=0.003" and rows["n0003"]["seeds"]["n"] == 3
    assert rows["n0004"]["status"] == "buggy" and rows["n0004"]["error"] == "Traceback: boom"
    assert rows["n0007"]["change"] == "variant rope" and rows["n0010"]["change"] == "ablation no_wd"
    assert rows["n0001"]["change"] == "seed 8" and rows["n0001"]["seeds"] is None
    assert rows["n0003"]["seconds"] == 2.0 and rows["n0003"]["costUSD"] is None
    (row,) = summary["ablations"]["ablations"]
    # Against the research best's seed mean (0.70), not its single run.
    assert summary["ablations"]["reference"]["node"] == "n0007"
    assert abs(row["delta"] - (0.60 - 0.70)) < 1e-12 and row["comparison"]["verdict"] == "worse"
    assert summary["cost"] == {"llm": False, "usd": 0.0, "tokens": 0, "calls": 0, "nodeSeconds": 26.0,
                               "unpricedModels": []}
    with_llm = summarize(spec(), lucky_journal(), {"total": {"usd": 0.5, "totalTokens": 10, "calls": 2},
                                                   "byNode": {"n0003": {"usd": 0.25}}})
    assert with_llm["cost"]["usd"] == 0.5 and with_llm["nodeTable"][3]["costUSD"] == 0.25


def test_identical_seeds_are_flagged_and_single_runs_named() -> None:
    same = seed_stats([2991.36824480] * 3)
    assert fmt_stats(same) == "2991 (n=3, identical: the program ignores its seed)"
    assert fmt_stats(None, 0.72771) == "0.7277 (single run)"
    assert compare(same, same, "minimize").verdict == "identical"


def test_within_noise_when_the_interval_of_the_difference_holds_zero() -> None:
    a, b = seed_stats([0.67, 0.64, 0.70]), seed_stats([0.66, 0.69, 0.65])
    result = compare(a, b, "maximize")
    assert result.verdict == "within noise" and result.interval is not None
    assert result.interval[0] < 0 < result.interval[1]
    assert compare(seed_stats([0.9, 0.91, 0.92]), b, "maximize").verdict == "better"
    assert compare(seed_stats([0.9, 0.91, 0.92]), b, "minimize").verdict == "worse"
    assert compare(seed_stats([0.9]), b, "maximize").verdict == "single run"
