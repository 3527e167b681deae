"""The campaign's pure decisions: approval, maxConcurrentRuns, the budget, rounds, feedback, leaderboard."""

from __future__ import annotations

import dataclasses

import pytest

from kubescientist.core.campaign import (
    CampaignBudget, CampaignError, CampaignIdea, CampaignSpec, IdeaRecord, RunReport, Usage, campaign_spec_from_dict,
    ideas_from_entries, ideation_feedback, leaderboard, next_step, run_name, run_spec, spec_problems, status)

TEMPLATE = {"objective": {"metric": "val_accuracy"}, "template": {"path": "templates/grokking"}}


def _ideas(*names: str, round: int = 1) -> list[IdeaRecord]:
    return [IdeaRecord(CampaignIdea(name=n, title=f"Idea {n}", round=round)) for n in names]


def _spec(**changes: object) -> CampaignSpec:
    base = CampaignSpec(run_template=TEMPLATE, max_concurrent_runs=2, raw_sources=frozenset({"ideas"}))
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def _run(idea: str, phase: str = "running", **fields: object) -> RunReport:
    return RunReport(idea=idea, run=run_name("camp", idea), phase=phase, **fields)  # type: ignore[arg-type]


def test_auto_approval_starts_no_more_than_max_concurrent_runs() -> None:
    ideas = _ideas("a", "b", "c")
    step = next_step(_spec(), ideas, {})
    assert [i.name for i in step.start] == ["a", "b"] and step.phase == "Running"
    # Two running: the third waits for a slot, whatever order the runs are reported in.
    step = next_step(_spec(), ideas, {"b": _run("b"), "a": _run("a", "pending")})
    assert step.start == () and step.phase == "Running"
    step = next_step(_spec(), ideas, {"a": _run("a", "succeeded"), "b": _run("b")})
    assert [i.name for i in step.start] == ["c"]


def test_manual_approval_holds_ideas_until_approved_or_rejected() -> None:
    ideas = _ideas("a", "b")
    held = next_step(_spec(approval="manual"), ideas, {})
    assert held.phase == "AwaitingApproval" and held.start == ()
    assert "a, b" in held.message and "spec.approval.approved" in held.message
    one = next_step(_spec(approval="manual", approved=("b",)), ideas, {})
    assert [i.name for i in one.start] == ["b"] and "waiting for approval: a" in one.message
    # b finished, a rejected: the (only) round is over.
    done = next_step(_spec(approval="manual", approved=("b",), rejected=("a",)), ideas,
                     {"b": _run("b", "succeeded", score=5.0)})
    assert done.phase == "Succeeded" and done.start == ()
    report = status(_spec(approval="manual", approved=("b",), rejected=("a",)), done, ideas,
                    {"b": _run("b", "succeeded", score=5.0)})
    assert [(i["name"], i["state"]) for i in report["ideas"]] == [("a", "Dropped"), ("b", "Succeeded")]
    assert report["ideas"][0]["reason"] == "rejected in spec.approval.rejected"


def test_budget_stops_new_runs_and_lets_running_ones_finish() -> None:
    spec = _spec(budget=CampaignBudget(max_cost_usd=1.0), max_concurrent_runs=3)
    ideas = _ideas("a", "b", "c")
    step = next_step(spec, ideas, {"a": _run("a", usd=0.6), "b": _run("b", "succeeded", usd=0.5)})
    assert step.start == () and step.phase == "Running"
    assert step.exhausted.startswith("spec.budget.maxCostUSD reached: $1.1000 of $1")
    end = next_step(spec, ideas, {"a": _run("a", "succeeded", usd=0.6), "b": _run("b", "succeeded", usd=0.5)})
    assert end.phase == "Succeeded" and "maxCostUSD" in end.message and end.ideate is None
    # Ideation's own spend counts too; tokens and GPU-hours are capped the same way.
    assert next_step(_spec(budget=CampaignBudget(max_tokens=100)), ideas, {},
                     ideation_used=Usage(tokens=100)).start == ()
    assert "maxGPUHours" in next_step(_spec(budget=CampaignBudget(max_gpu_hours=0.5)), ideas,
                                      {"a": _run("a", gpu_hours=0.5)}).exhausted
    # A zero budget allows nothing at all.
    assert next_step(_spec(budget=CampaignBudget(max_cost_usd=0.0)), ideas, {}).start == ()


def test_open_ended_rounds_ideate_until_the_last_round() -> None:
    spec = _spec(raw_sources=frozenset({"topic"}), topic="# Title: grokking", rounds=2)
    first = next_step(spec, [], {})
    assert (first.phase, first.ideate, first.round) == ("Ideating", 1, 1)
    ideas = _ideas("a", "b")
    assert next_step(spec, ideas, {"a": _run("a"), "b": _run("b", "succeeded")}).ideate is None
    second = next_step(spec, ideas, {"a": _run("a", "failed"), "b": _run("b", "succeeded")})
    assert (second.phase, second.ideate, second.round) == ("Ideating", 2, 2)
    ideas += _ideas("c", round=2)
    third = next_step(spec, ideas, {"a": _run("a", "failed"), "b": _run("b", "succeeded")})
    assert [i.name for i in third.start] == ["c"] and third.round == 2
    done = next_step(spec, ideas, {"a": _run("a", "failed"), "b": _run("b", "succeeded"),
                                   "c": _run("c", "succeeded")})
    assert done.phase == "Succeeded" and done.ideate is None and "all 2 round(s) done" in done.message
    # A fixed list runs once, whatever rounds says; all runs failed is a failed campaign.
    assert next_step(_spec(rounds=3), _ideas("a"), {"a": _run("a", "failed")}).phase == "Failed"


def test_suspend_starts_nothing() -> None:
    step = next_step(_spec(suspend=True), _ideas("a"), {})
    assert step.phase == "Suspended" and step.start == () and step.ideate is None


def test_next_rounds_ideation_sees_scores_weaknesses_results_and_failures() -> None:
    ideas = _ideas("a", "b", "c") + [IdeaRecord(CampaignIdea("d", "Idea d"), dropped="not novel: Power et al.")]
    runs = {"a": _run("a", "succeeded", score=6.5, decision="Accept", metric=0.9731,
                      weaknesses=("Only one dataset.", "No error bars.")),
            "b": _run("b", "failed", message="every draft was buggy"),
            "c": _run("c", "running")}
    text = ideation_feedback(ideas, runs)
    lines = text.splitlines()
    assert lines[0] == ('- "Idea a" (idea a, round 1): best objective value 0.9731. review overall score 6.50 '
                        '(Accept). weaknesses: Only one dataset.; No error bars.')
    assert lines[1] == '- "Idea b" (idea b, round 1): run failed: every draft was buggy'
    assert lines[2] == '- "Idea d" (idea d, round 1): dropped before running: not novel: Power et al.'
    assert len(lines) == 3, "an unfinished run has nothing to teach yet"
    assert ideation_feedback(_ideas("a"), {}) == ""


def test_leaderboard_ranks_by_score_then_metric_and_is_bounded() -> None:
    runs = [_run("a", "succeeded", score=4.0, metric=0.9), _run("b", "succeeded", score=6.0, metric=0.5),
            _run("c", "succeeded", score=4.0, metric=0.95), _run("d", "failed"), _run("e", "running", score=9.0)]
    assert [r.idea for r in leaderboard(runs)] == ["b", "c", "a", "d"]
    assert [r.idea for r in leaderboard(runs, "minimize")] == ["b", "a", "c", "d"]
    many = [_run(f"i{n:02d}", "succeeded", score=float(n)) for n in range(25)]
    assert [r.idea for r in leaderboard(many)] == [f"i{n:02d}" for n in range(24, 14, -1)]
    report = status(_spec(), next_step(_spec(), [], {r.idea: r for r in runs}), [], {r.idea: r for r in runs})
    assert report["best"] == {"run": "camp-b", "idea": "b", "score": 6.0}
    assert report["bestByMetric"] == {"run": "camp-c", "idea": "c", "metric": 0.95}
    assert report["runs"] == {"total": 5, "running": 1, "succeeded": 3, "failed": 1}


def test_run_names_are_deterministic_dns_labels() -> None:
    assert run_name("camp", "rope") == "camp-rope"
    long = run_name("c" * 40, "i" * 40)
    assert len(long) == 63 and long == run_name("c" * 40, "i" * 40)
    assert long != run_name("c" * 40, "i" * 39 + "j")


def test_run_spec_inlines_the_idea_over_the_template() -> None:
    idea = CampaignIdea("rope", "RoPE", hypothesis="earlier", description="# more")
    assert run_spec(TEMPLATE, idea) == {"idea": {"inline": {"title": "RoPE", "hypothesis": "earlier",
                                                            "description": "# more"}}, **TEMPLATE}


@pytest.mark.parametrize(("spec", "field"), [
    ({"budget": {"maxCostUSD": -0.01}}, "spec.budget.maxCostUSD"),
    ({"budget": {"maxTokens": -1}}, "spec.budget.maxTokens"),
    ({"budget": {"maxGPUHours": float("nan")}}, "spec.budget.maxGPUHours"),
    ({"ideas": {"inline": [{"name": "a", "title": "A"}]}, "approval": {"approved": ["b"]}},
     "spec.approval.approved[0]: 'b' is not an idea of the campaign (ideas: a)"),
    ({"ideas": {"inline": [{"name": "a", "title": "A"}]}, "approval": {"rejected": ["a", "x"]}},
     "spec.approval.rejected[1]"),
    ({"ideas": {"inline": [{"name": "a", "title": "A"}]}, "approval": {"approved": ["a"], "rejected": ["a"]}},
     "spec.approval.rejected: 'a' is also approved"),
    ({"ideas": {"inline": [{"name": "a", "title": "A"}, {"name": "a", "title": "B"}]}},
     "spec.ideas.inline[1].name"),
])
def test_bad_specs_name_the_field(spec: dict[str, object], field: str) -> None:
    problems = spec_problems(spec)
    assert len(problems) == 1 and problems[0].startswith(field), problems


def test_approvals_may_name_proposed_ideas() -> None:
    assert spec_problems({"approval": {"approved": ["rope"]}}, known_ideas=["rope"]) == []
    assert spec_problems({"approval": {"approved": ["rope"]}})[0].endswith("(ideas: none yet)")


def test_ideas_from_a_file_get_unique_label_names() -> None:
    entries = [{"Name": "rope_grokking", "Title": "RoPE", "Experiment": "Compare.", "Short Hypothesis": "h"},
               {"name": "rope-grokking", "title": "Again", "experiments": ["x", "y"]},
               {"Title": "No name: only a title!"}]
    ideas = ideas_from_entries(entries, round=2)
    assert [i.name for i in ideas] == ["rope-grokking", "rope-grokking-2", "no-name-only-a-title"]
    assert ideas[0].hypothesis == "h" and "Experiments:\nCompare." in ideas[0].description
    assert "- x\n- y" in ideas[1].description and all(i.round == 2 for i in ideas)
    with pytest.raises(CampaignError, match=r"ideas\[0\]: an idea needs a title"):
        ideas_from_entries([{"Name": "x"}])


def test_spec_model_from_a_defaulted_dict() -> None:
    spec = campaign_spec_from_dict({
        "ideas": {"inline": [{"name": "a", "title": "A", "hypothesis": "h"}]}, "runTemplate": TEMPLATE,
        "rounds": 1, "maxConcurrentRuns": 3, "budget": {"maxCostUSD": 2.5},
        "approval": {"mode": "manual", "approved": ["a"], "rejected": []}})
    assert spec.ideas == (CampaignIdea("a", "A", hypothesis="h"),) and not spec.open_ended
    assert spec.budget.max_cost_usd == 2.5 and spec.approval == "manual" and spec.max_concurrent_runs == 3
