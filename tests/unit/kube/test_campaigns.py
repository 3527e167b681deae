"""The campaign controller against the in-memory API: runs per approved idea with owner references,
deterministic names and labels; maxConcurrentRuns and the budget hold; manual approval waits for the spec
edit; a restarted operator duplicates nothing; and over two rounds of ideation by the scripted LLM server,
the second round's prompt carries the first round's review scores and weaknesses."""

from __future__ import annotations

import copy
import datetime
from collections.abc import Iterator
from typing import Any

import pytest

from kube_fakes import FakeKube
from kubescientist.adapters.kube import naming
from kubescientist.adapters.kube.campaigns import CAMPAIGNS, CampaignReconciler, round_config_map
from tests.llmserver import ScriptedLLMServer

MOMENT = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
TEMPLATE = {"template": {"configMapRef": {"name": "tpl"}}, "objective": {"metric": "val_acc"},
            "storage": {"s3": {"endpoint": "http://s3.test:9000", "bucket": "bucket", "secretRef": {"name": "s3"}}}}


@pytest.fixture
def server() -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer() as running:
        yield running


def _campaign(kube: FakeKube, **spec: Any) -> None:
    body = {"ideas": {"inline": [{"name": n, "title": f"Idea {n}"} for n in ("a", "b", "c")]},
            "runTemplate": copy.deepcopy(TEMPLATE), "maxConcurrentRuns": 2, "rounds": 1,
            "approval": {"mode": "auto", "approved": [], "rejected": []}, "budget": {}, **spec}
    kube.put(CAMPAIGNS, {"apiVersion": naming.API_VERSION, "kind": "ResearchCampaign",
                         "metadata": {"name": "camp", "namespace": "ns", "uid": "camp-uid", "generation": 1},
                         "spec": body})


def _obj(kube: FakeKube) -> dict[str, Any]:
    return copy.deepcopy(kube.objects[(CAMPAIGNS, "ns", "camp")])


def _pass(kube: FakeKube, reconciler: CampaignReconciler | None = None) -> dict[str, Any]:
    (reconciler or CampaignReconciler(kube, propose=_no_ideation, clock=lambda: MOMENT)).reconcile(_obj(kube))
    return _obj(kube).get("status", {})


def _no_ideation(*_: Any) -> Any:
    raise AssertionError("a fixed list of ideas needs no ideation")


def _runs(kube: FakeKube) -> dict[str, dict[str, Any]]:
    return kube.of(naming.RUNS)


def _finish(kube: FakeKube, run: str, phase: str = "Succeeded", score: float = 5.0, **extra: Any) -> None:
    review = {"overall": score, "decision": "Reject", "weaknesses": ["Only one dataset.", "No error bars."]}
    kube.objects[(naming.RUNS, "ns", run)]["status"] = {
        "phase": phase, "review": review, "bestNode": {"name": f"{run}-n0001", "metric": 0.9},
        "message": "search complete" if phase == "Succeeded" else "stage initial produced no working implementation",
        **extra}


def test_runs_per_idea_within_max_concurrent_runs_and_restarts_duplicate_nothing() -> None:
    kube = FakeKube()
    _campaign(kube)
    status = _pass(kube)
    runs = _runs(kube)
    assert sorted(runs) == ["camp-a", "camp-b"] and status["phase"] == "Running"
    run = runs["camp-a"]
    assert run["metadata"]["labels"] == {naming.MANAGED_BY_LABEL: naming.MANAGED_BY, "kubescientist.io/campaign": "camp",
                                         "kubescientist.io/idea": "a", "kubescientist.io/round": "1"}
    assert run["metadata"]["ownerReferences"] == [{"apiVersion": naming.API_VERSION, "kind": "ResearchCampaign",
                                                   "name": "camp", "uid": "camp-uid", "controller": True,
                                                   "blockOwnerDeletion": True}]
    assert run["spec"]["idea"] == {"inline": {"title": "Idea a"}} and run["spec"]["objective"] == {"metric": "val_acc"}
    for _ in range(3):  # restarted operators: nothing in memory, nothing new while both run
        _pass(kube)
    assert sorted(_runs(kube)) == ["camp-a", "camp-b"]
    assert len(kube.creates) == len(set(kube.creates)) == 2

    _finish(kube, "camp-a")
    assert sorted(_runs(kube)) == ["camp-a", "camp-b"]
    status = _pass(kube)
    assert sorted(_runs(kube)) == ["camp-a", "camp-b", "camp-c"] and status["runs"]["running"] == 2
    _finish(kube, "camp-b", score=7.0)
    _finish(kube, "camp-c", phase="Failed", score=1.0)
    status = _pass(kube)
    assert status["phase"] == "Succeeded" and status["runs"] == {"total": 3, "running": 0, "succeeded": 2,
                                                                 "failed": 1}
    assert [r["run"] for r in status["leaderboard"]] == ["camp-b", "camp-a", "camp-c"]
    assert status["best"] == {"run": "camp-b", "idea": "b", "score": 7.0}
    assert status["bestByMetric"]["metric"] == 0.9
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["status"] == "True" and status["observedGeneration"] == 1
    reasons = [r for _, r, _ in kube.events]
    assert reasons.count("RunCreated") == 3 and reasons.count("RunSucceeded") == 2 and "RunFailed" in reasons


def test_manual_approval_holds_runs_until_the_spec_is_edited() -> None:
    kube = FakeKube()
    _campaign(kube, approval={"mode": "manual", "approved": [], "rejected": []})
    status = _pass(kube)
    assert not _runs(kube) and status["phase"] == "AwaitingApproval"
    assert {c["type"]: c["status"] for c in status["conditions"]}["AwaitingApproval"] == "True"
    assert [i["state"] for i in status["ideas"]] == ["Proposed"] * 3
    campaign = kube.objects[(CAMPAIGNS, "ns", "camp")]
    campaign["spec"]["approval"] = {"mode": "manual", "approved": ["b"], "rejected": ["a"]}
    campaign["metadata"]["generation"] = 2
    status = _pass(kube)
    assert sorted(_runs(kube)) == ["camp-b"] and status["observedGeneration"] == 2
    assert {i["name"]: i["state"] for i in status["ideas"]} == {"a": "Dropped", "b": "Running", "c": "Proposed"}


def test_the_campaign_budget_stops_new_runs() -> None:
    kube = FakeKube()
    _campaign(kube, budget={"maxCostUSD": 1.0}, maxConcurrentRuns=1)
    _pass(kube)
    kube.objects[(naming.RUNS, "ns", "camp-a")]["status"] = {"phase": "Searching", "cost": {"usd": 1.5}}
    status = _pass(kube)
    assert sorted(_runs(kube)) == ["camp-a"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["BudgetExhausted"]["status"] == "True"
    assert "maxCostUSD reached: $1.5000 of $1" in conditions["BudgetExhausted"]["message"]
    _finish(kube, "camp-a", cost={"usd": 1.5})
    status = _pass(kube)
    assert sorted(_runs(kube)) == ["camp-a"] and status["phase"] == "Succeeded" and status["used"]["usd"] == 1.5


@pytest.mark.parametrize(("spec", "field"), [
    ({"approval": {"mode": "manual", "approved": ["zzz"], "rejected": []}}, "spec.approval.approved[0]: 'zzz'"),
    ({"runTemplate": {**TEMPLATE, "resources": {"memory": "3"}}}, "spec.runTemplate.resources.memory"),
    ({"budget": {"maxGPUHours": -2}}, "spec.budget.maxGPUHours"),
])
def test_a_bad_campaign_fails_naming_the_field_and_creates_nothing(spec: dict[str, Any], field: str) -> None:
    kube = FakeKube()
    _campaign(kube, **spec)
    status = _pass(kube)
    assert status["phase"] == "Failed" and field in status["message"] and not _runs(kube)


def test_two_rounds_the_second_ideation_sees_the_first_rounds_reviews(server: ScriptedLLMServer) -> None:
    kube = FakeKube()
    template = {**TEMPLATE, "llm": {"baseURL": server.url, "models": {"ideation": "scripted-model"}}}
    _campaign(kube, ideas=None, topic={"inline": "# Title: Grokking\n## Abstract\nWhen do small transformers grok?"},
              ideation={"ideasPerRound": 2, "reflections": 0, "noveltyCheck": False, "literature": "offline"},
              rounds=2, runTemplate=template)
    del kube.objects[(CAMPAIGNS, "ns", "camp")]["spec"]["ideas"]
    reconciler = CampaignReconciler(kube, clock=lambda: MOMENT)
    status = _pass(kube, reconciler)
    first = sorted(_runs(kube))
    assert len(first) == 2 and status["round"] == 1 and status["phase"] == "Running"
    assert (naming.RUNS, "ns", first[0]) in kube.objects and ("configmaps", "ns", round_config_map("camp", 1)) \
        in kube.objects
    ideations = len(server.for_action("ideation"))
    assert ideations >= 2
    CampaignReconciler(kube, clock=lambda: MOMENT).reconcile(_obj(kube))  # a restart: round 1 is not re-proposed
    assert len(server.for_action("ideation")) == ideations and sorted(_runs(kube)) == first

    _finish(kube, first[0], score=6.0)
    _finish(kube, first[1], phase="Failed", score=2.0)
    status = _pass(kube, reconciler)
    assert status["round"] == 2 and len(_runs(kube)) == 4
    second = server.for_action("ideation")[ideations]
    prompt = str(second.body["messages"][-1]["content"])
    assert "What the earlier runs of this research campaign found" in prompt
    idea_a = kube.objects[(naming.RUNS, "ns", first[0])]["metadata"]["labels"]["kubescientist.io/idea"]
    assert f"(idea {idea_a}, round 1): best objective value 0.9. review overall score 6.00 (Reject). " \
           "weaknesses: Only one dataset.; No error bars." in prompt
    assert "run failed: stage initial produced no working implementation" in prompt
    feedback = kube.objects[("configmaps", "ns", round_config_map("camp", 2))]["data"]["feedback.txt"]
    assert "review overall score 6.00" in feedback
    for run in sorted(_runs(kube)):
        if run not in first:
            _finish(kube, run)
    status = _pass(kube, reconciler)
    assert status["phase"] == "Succeeded" and "all 2 round(s) done" in status["message"]
    assert [i["round"] for i in status["ideas"]] == [1, 1, 2, 2]
