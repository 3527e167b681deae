"""The analysis agrees with the engine's own summary, and registers every number the paper states."""

import json

import pytest

from kubescientist.paper.analysis import analyse
from kubescientist.paper.records import RecordsError, load

from paper_support import FIXTURE


@pytest.fixture(scope="module")
def analysis():
    return analyse(load(FIXTURE))


def test_stage_statistics_match_summary_json(analysis):
    summary = json.loads((FIXTURE / "summary.json").read_text())
    for stage, recorded in zip(analysis.stages, summary["stages"]):
        assert stage.name == recorded["name"]
        assert stage.best.id == recorded["best"]["node"]
        assert stage.objective.mean == pytest.approx(recorded["seeds"]["mean"])
        assert stage.objective.stderr == pytest.approx(recorded["seeds"]["stderr"])
        assert stage.objective.n == recorded["seeds"]["n"]
    assert analysis.best.best.id == summary["best"]["node"]


def test_the_run_is_read_as_it_happened(analysis):
    assert analysis.best.name == "tuning"  # the research variant did not beat the tuned model over seeds
    assert [c.name for c in analysis.variants] == ["rope", "mlp"]
    assert [c.name for c in analysis.ablations] == ["no_weight_decay", "no_layer_norm", "no_warmup"]
    no_wd = analysis.ablations[0]
    # Against the reference's seed mean, not its single (possibly lucky) run.
    assert no_wd.delta == pytest.approx(no_wd.value - analysis.ablation_reference_stats.mean)
    assert analysis.counts["buggy"] == 1
    assert analysis.stage("tuning").changes == (("lr", 0.001, 0.003162),)
    assert set(analysis.stage("tuning").curves) == {"mod_add", "mod_sub"}


def test_facts_hold_summary_values_and_derived_numbers(analysis):
    summary = json.loads((FIXTURE / "summary.json").read_text())
    assert analysis.facts.within(summary["best"]["seeds"]["mean"], 1e-12)
    assert analysis.facts.within(abs(analysis.ablations[0].delta), 1e-12)
    assert not analysis.facts.within(123.45, 0.005)


def test_a_folder_that_is_not_a_run_is_refused(tmp_path):
    with pytest.raises(RecordsError, match="run.yaml: missing"):
        load(tmp_path)
