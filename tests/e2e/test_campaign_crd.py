"""The ResearchCampaign CRD on a real apiserver: the example applies with its defaults (the run template's
included), kubectl's columns show, and bad campaigns are refused by the apiserver with the field named: an
approval naming an unknown idea, a runTemplate no ResearchRun could have, a budget below zero."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from cluster import Cluster

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "campaign.yaml"


def example() -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    return manifest


def test_example_campaign_applies_with_defaults(cluster: Cluster, kubescientist_crds: list[str],
                                                namespace: str) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", str(EXAMPLE))
    campaign = cluster.kubectl_json("get", "researchcampaign", "grokking-ideas", "-n", namespace)
    spec = campaign["spec"]
    assert spec["runTemplate"]["search"]["debugProbability"] == 0.5, "the ResearchRun defaults apply to the template"
    assert spec["ideation"]["ideasPerRound"] == 3 and spec["rounds"] == 1
    assert spec["approval"] == {"mode": "auto", "approved": [], "rejected": []}
    header = cluster.kubectl("get", "rcamp", "-n", namespace).stdout.splitlines()[0].split()
    assert header == ["NAME", "PHASE", "ROUND", "RUNNING", "DONE", "BEST", "AGE"]
    # Proposed ideas in status make their names approvable; the template stays editable (no transition rules).
    cluster.kubectl("patch", "campaign", "grokking-ideas", "-n", namespace, "--type=merge", "-p",
                    '{"spec": {"runTemplate": {"seeds": 2}, "approval": {"mode": "manual", "approved": ["rope"]}}}')


def _unknown_approval(m: dict[str, Any]) -> None:
    m["spec"]["approval"] = {"mode": "manual", "approved": ["rope", "no-such-idea"]}


def _negative_budget(m: dict[str, Any]) -> None:
    m["spec"]["budget"] = {"maxCostUSD": -1}


def _drafts_over_initial_nodes(m: dict[str, Any]) -> None:
    m["spec"]["runTemplate"]["search"]["drafts"] = 3


def _review_without_writeup(m: dict[str, Any]) -> None:
    m["spec"]["runTemplate"]["writeup"] = {"enabled": False}
    m["spec"]["runTemplate"]["review"] = {"enabled": True}


@pytest.mark.parametrize(
    ("mutate", "field", "message"),
    [
        (_unknown_approval, "spec.approval.approved", "names an idea the campaign does not have"),
        (_negative_budget, "spec.budget.maxCostUSD", "greater than or equal to 0"),
        (_drafts_over_initial_nodes, "spec.runTemplate.search.drafts", "search.drafts cannot exceed"),
        (_review_without_writeup, "spec.runTemplate.review.enabled", "review.enabled requires writeup.enabled"),
    ],
    ids=["unknown-approval", "negative-budget", "drafts", "review-without-writeup"],
)
def test_invalid_campaign_is_refused_naming_the_field(
    cluster: Cluster, kubescientist_crds: list[str], namespace: str,
    mutate: Callable[[dict[str, Any]], None], field: str, message: str,
) -> None:
    manifest = copy.deepcopy(example())
    mutate(manifest)
    result = cluster.kubectl("create", "-n", namespace, "-f", "-", input=yaml.safe_dump(manifest), check=False)
    assert result.returncode != 0, result.stdout
    assert "is invalid" in result.stderr and f"{field}:" in result.stderr and message in result.stderr, result.stderr
