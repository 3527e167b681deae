"""A ResearchCampaign on the real control plane, the operator as a subprocess, ideation and code by the
scripted OpenAI-compatible server, node, writeup and review pods run by the kubelet harness.

Two rounds of one idea each: round 1's idea becomes a ResearchRun (owned by the campaign, deterministic
name); the operator is SIGKILLed mid-campaign and restarted; once the run is reviewed, round 2's ideation
prompt carries round 1's review score and weaknesses; maxConcurrentRuns (1) is never exceeded, and nothing is
duplicated: two runs, two round ConfigMaps."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubelet_harness import KubeletHarness
from test_operator import LATEX, OperatorProcess, apply_file, get, harness, research_run
from test_operator_llm import MODEL, llm_operator, server
from tests.llmserver import ScriptedLLMServer

pytestmark = pytest.mark.e2e

__all__ = ["harness", "llm_operator", "server"]  # fixtures shared with the operator tests

@pytest.fixture
def campaigns(cluster: Any, restricted_namespace: str, llm_operator: OperatorProcess) -> Iterator[OperatorProcess]:
    """The operator, and at the end the campaigns deleted while it still runs (they carry its finalizer)."""
    yield llm_operator
    if llm_operator.proc is not None and llm_operator.proc.poll() is None:
        cluster.kubectl("delete", "researchcampaigns", "--all", "-n", restricted_namespace, "--timeout=60s",
                        check=False, timeout=90)


TOPIC = "# Title: Momentum on a line\n## Abstract\nWhen does heavy-ball momentum help gradient descent fit a line?"


def _campaign(name: str, namespace: str, cluster: Any, server: ScriptedLLMServer) -> dict[str, Any]:
    template = research_run("x", namespace, cluster, objective={"metric": "val_acc", "direction": "maximize"},
                            stages=[{"name": "initial", "maxNodes": 2}, {"name": "tuning", "maxNodes": 1},
                                    {"name": "research", "maxNodes": 1}, {"name": "ablation", "maxNodes": 1}],
                            search={"parallelism": 2, "drafts": 1, "debugProbability": 1.0},
                            llm={"baseURL": server.url, "secretRef": {"name": "llm-key"},
                                 "models": {"ideation": MODEL, "code": MODEL, "feedback": MODEL}},
                            **({} if LATEX else {"writeup": {"enabled": False}, "review": {"enabled": False}}))["spec"]
    del template["idea"], template["template"]
    return {"apiVersion": "kubescientist.io/v1alpha1", "kind": "ResearchCampaign",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"topic": {"inline": TOPIC}, "rounds": 2, "maxConcurrentRuns": 1,
                     "ideation": {"ideasPerRound": 1, "reflections": 0, "noveltyCheck": False, "literature": "offline"},
                     "runTemplate": template}}


def _wait(cluster: Any, operator: OperatorProcess, what: str, check: Any, timeout: float,
          seen: list[int]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = get(cluster, "researchruns", operator.namespace, selector="kubescientist.io/campaign=camp")["items"]
        seen.append(sum(1 for r in runs if (r.get("status") or {}).get("phase") not in ("Succeeded", "Failed")))
        found = check(runs)
        if found:
            return found
        time.sleep(1.0)
    campaign = get(cluster, "researchcampaign", operator.namespace, "camp")
    pytest.fail(f"{what} not after {timeout:.0f}s: campaign status {json.dumps(campaign.get('status'), indent=1)}\n"
                f"operator log:\n{operator.tail()}")


def test_two_rounds_feed_the_first_reviews_into_the_second_ideation(
        cluster: Any, restricted_namespace: str, campaigns: OperatorProcess, harness: KubeletHarness,
        server: ScriptedLLMServer, tmp_path: Path) -> None:
    namespace, llm_operator = restricted_namespace, campaigns
    apply_file(cluster, _campaign("camp", namespace, cluster, server), tmp_path)
    running: list[int] = []
    first = _wait(cluster, llm_operator, "the first round's run", lambda runs: runs[:1], 120, running)[0]
    campaign = get(cluster, "researchcampaign", namespace, "camp")
    assert first["metadata"]["ownerReferences"][0]["uid"] == campaign["metadata"]["uid"]
    assert first["metadata"]["labels"]["kubescientist.io/round"] == "1"

    llm_operator.kill()  # mid-campaign: nothing may be lost or duplicated
    llm_operator.start()

    def reviewed(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
        done = [r for r in runs if r["metadata"]["name"] == first["metadata"]["name"]
                and (r.get("status") or {}).get("phase") in ("Succeeded", "Failed")]
        return done[0] if done else None

    finished = _wait(cluster, llm_operator, "the first run's end", reviewed, 420, running)
    assert finished["status"]["phase"] == "Succeeded", json.dumps(finished["status"], indent=1)
    second = _wait(cluster, llm_operator, "the second round's run", lambda runs: len(runs) == 2 and runs, 180,
                   running)
    assert {r["metadata"]["labels"]["kubescientist.io/round"] for r in second} == {"1", "2"}

    prompts = [str(r.body["messages"][-1]["content"]) for r in server.for_action("ideation")]
    fed = [p for p in prompts if "What the earlier runs of this research campaign found" in p]
    assert fed, "no ideation prompt carried the first round's results"
    review = finished["status"].get("review") or {}
    if LATEX:
        assert f"review overall score {review['overall']:.2f}" in fed[0]
        assert review["weaknesses"] and review["weaknesses"][0].strip() in fed[0]
    assert f"idea {first['metadata']['labels']['kubescientist.io/idea']}, round 1" in fed[0]

    _wait(cluster, llm_operator, "the campaign's end",
          lambda runs: get(cluster, "researchcampaign", namespace, "camp").get("status", {}).get("phase")
          in ("Succeeded", "Failed"), 420, running)
    status = get(cluster, "researchcampaign", namespace, "camp")["status"]
    assert status["phase"] == "Succeeded" and status["round"] == 2, json.dumps(status, indent=1)
    assert max(running) <= 1, "maxConcurrentRuns exceeded"
    runs = get(cluster, "researchruns", namespace, selector="kubescientist.io/campaign=camp")["items"]
    maps = get(cluster, "configmaps", namespace, selector="kubescientist.io/campaign=camp")["items"]
    assert len(runs) == 2 and len(maps) == 2, "a restart duplicated a run or a round"
    assert len(status["leaderboard"]) == 2 and llm_operator.starts == 2


def _fixed(name: str, namespace: str, cluster: Any, server: ScriptedLLMServer, **spec: Any) -> dict[str, Any]:
    manifest = _campaign(name, namespace, cluster, server)
    del manifest["spec"]["topic"], manifest["spec"]["ideation"]
    manifest["spec"].update(rounds=1, ideas={"inline": [{"name": "first", "title": "Momentum on a line"},
                                                        {"name": "second", "title": "Nesterov on a line"}]}, **spec)
    return manifest


def _status(cluster: Any, namespace: str, name: str) -> dict[str, Any]:
    return dict(get(cluster, "researchcampaign", namespace, name).get("status") or {})


def _runs_of(cluster: Any, namespace: str, name: str) -> list[str]:
    return sorted(r["metadata"]["name"] for r in get(cluster, "researchruns", namespace,
                                                      selector=f"kubescientist.io/campaign={name}")["items"])


def test_manual_approval_holds_runs_and_the_budget_stops_new_ones(
        cluster: Any, restricted_namespace: str, campaigns: OperatorProcess, harness: KubeletHarness,
        server: ScriptedLLMServer, tmp_path: Path) -> None:
    namespace = restricted_namespace
    apply_file(cluster, _fixed("held", namespace, cluster, server, approval={"mode": "manual"}), tmp_path)
    # A spend cap below one run's LLM cost: the first run starts (nothing spent yet), the second never does.
    apply_file(cluster, _fixed("capped", namespace, cluster, server, budget={"maxCostUSD": 0.000001}), tmp_path)
    cluster.wait_for("the held campaign waiting for approval",
                     lambda: _status(cluster, namespace, "held").get("phase") == "AwaitingApproval", 60)
    time.sleep(3 * 5)  # three resync periods of the operator: still nothing runs
    assert _runs_of(cluster, namespace, "held") == []
    cluster.kubectl("patch", "researchcampaign", "held", "-n", namespace, "--type=merge", "-p",
                    '{"spec": {"approval": {"approved": ["second"], "rejected": ["first"]}}}')
    cluster.wait_for("the approved idea's run", lambda: _runs_of(cluster, namespace, "held") == ["held-second"], 60)
    ideas = {i["name"]: i["state"] for i in _status(cluster, namespace, "held")["ideas"]}
    assert ideas["first"] == "Dropped" and ideas["second"] in ("Running", "Succeeded", "Failed")

    cluster.wait_for("the capped campaign's end",
                     lambda: _status(cluster, namespace, "capped").get("phase") in ("Succeeded", "Failed"), 420)
    status = _status(cluster, namespace, "capped")
    assert _runs_of(cluster, namespace, "capped") == ["capped-first"], json.dumps(status, indent=1)
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["BudgetExhausted"]["status"] == "True"
    assert "spec.budget.maxCostUSD reached" in conditions["BudgetExhausted"]["message"]
    assert {i["name"]: i["state"] for i in status["ideas"]}["second"] == "Approved"
