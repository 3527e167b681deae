"""The review model through the real openai client and the scripted server: an ensemble of reviewers with
their own personas and temperatures, reflection rounds, an area chair, and the combined review.json."""

from __future__ import annotations

import asyncio
import json
import math
import pathlib
import shutil
from typing import Any

import pytest

from agent_helpers import MODEL, client
from kubescientist.agent.accounting import Caps, Usage
from kubescientist.agent.errors import BudgetExceeded
from kubescientist.agent.reviewing import (ENSEMBLE_TEMPERATURES, PERSONAS, LLMReviewer, review_team,
                                           takes_temperature)
from kubescientist.paper import write_paper
from kubescientist.review import REVIEW_FILE, ReviewReport, areview, from_text, review_submission
from kubescientist.review.form import FOUR_POINT
from tests.llmserver import Reply, ScriptedLLMServer
from tests.llmserver.writeup import form

FIXTURE = pathlib.Path(__file__).resolve().parents[2] / "fixtures" / "runs" / "grokking-small"
PAPER_TEXT = ("Weight Decay Drives Grokking in Tiny Transformers\n\nAbstract\nWe test whether weight decay makes a "
              "small transformer generalise on modular arithmetic, over 3 seeds with error bars. ") * 3
SCORES = (*FOUR_POINT, "overall", "confidence")


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The recorded run with its offline paper written (reviews only add review.json)."""
    if shutil.which("pdflatex") is None or shutil.which("pdftotext") is None:
        pytest.skip("texlive and poppler-utils are not installed (see the Makefile)")
    target = tmp_path_factory.mktemp("llm-review") / "grokking-small"
    shutil.copytree(FIXTURE, target)
    write_paper(target)
    return target


def body_text(message: dict[str, Any]) -> str:
    return str(message["content"])


def test_an_ensemble_reflects_and_an_area_chair_writes_the_combined_review(
        paper_run: pathlib.Path, server: ScriptedLLMServer) -> None:
    llm = client(server)

    async def go() -> ReviewReport:
        async with llm:
            reviewers, chair = review_team(llm, 3)
            return await areview(paper_run, reviewers=reviewers, chair=chair, reflections=3)

    report = asyncio.run(go())
    saved = json.loads((paper_run / REVIEW_FILE).read_text())
    assert saved == json.loads(json.dumps(report.to_dict()))
    assert saved["kind"] == "model" and saved["label"].startswith("Model review: 3 reviewer(s), meta-review")

    # Three reviewers with their own persona and temperature, each shown the paper and the rubric's checks.
    asked = server.for_action("review_paper")
    assert sorted(r.body["temperature"] for r in asked) == sorted(ENSEMBLE_TEMPERATURES)
    personas = sorted(body_text(r.body["messages"][-1]).split("\n")[1] for r in asked)
    assert personas == sorted(f"persona: {p.key}" for p in PERSONAS[:3])
    for request in asked:
        text = body_text(request.body["messages"][-1])
        assert "Weight Decay Drives Grokking in Tiny Transformers" in text and "--- the paper" in text
        assert "- seeds (the main result is the mean over at least 3 seeds): passed" in text
        assert request.body["response_format"]["json_schema"]["name"] == "review_form"
    assert [r["Reviewer"] for r in saved["reviews"]] == [f"{MODEL} ({p.key})" for p in PERSONAS[:3]]

    # Reflection: round 1 revises, round 2 is done; the rounds are counted in the prompt.
    assert saved["reflections"] == [2, 2, 2]
    reflections = server.for_action("reflect_review")
    assert len(reflections) == 6
    rounds = sorted(body_text(r.body["messages"][-1]).split("\n")[1].split(".")[0] for r in reflections)
    assert rounds == ["Reflection round 1 of 3"] * 3 + ["Reflection round 2 of 3"] * 3
    history = reflections[0].body["messages"]
    assert [m["role"] for m in history] == ["system", "user", "assistant", "user"]
    assert history[1]["content"].startswith("action: review_paper")
    for review in saved["reviews"]:
        assert review["Weaknesses"][-1] == "On reflection: no comparison with prior work."

    # The area chair read all three; the combination keeps its text and decision, with the ensemble's mean scores.
    [meta_request] = server.for_action("meta_review")
    assert body_text(meta_request.body["messages"][-1]).count("--- review ") == 3
    meta, final = saved["metaReview"], saved["review"]
    assert meta["Overall"] == 4 and meta["Decision"] == "Reject"
    assert final["Summary"] == meta["Summary"] and final["Decision"] == "Reject"
    assert final["Reviewer"] == f"area chair ({MODEL})"
    for field in SCORES:
        key = field.capitalize()
        values = [r[key] for r in saved["reviews"]]
        assert final[key] == math.floor(sum(values) / 3 + 0.5), key
    assert [r["Overall"] for r in saved["reviews"]] == [3, 5, 7] and final["Overall"] == 5
    assert [r["Confidence"] for r in saved["reviews"]] == [5, 4, 3] and final["Confidence"] == 4
    assert saved["overall"] == 5 and saved["decision"] == "Reject"
    # The recorded run has no literature: only its related work and citations fail the rubric's checks.
    assert saved["checks"] and {c["name"] for c in saved["checks"] if c["passed"] is False} == \
        {"related_work", "citations"}

    # Every call is in the accounts, in the review role, per reviewer and for the chair.
    ledger = llm.ledger
    assert ledger.by_role["review"].calls == 10 and set(ledger.by_role) == {"review"}
    assert [ledger.subject(f"review:{i}").calls for i in (1, 2, 3)] == [3, 3, 3]
    assert ledger.subject("review:chair").calls == 1


def review_alone(server: ScriptedLLMServer, **fields: Any) -> ReviewReport:
    async def go() -> ReviewReport:
        async with client(server, **fields) as llm:
            reviewers, _ = review_team(llm, 1)
            return await review_submission(from_text(PAPER_TEXT), reviewers=reviewers)
    return asyncio.run(go())


def test_a_form_whose_score_contradicts_its_decision_is_repaired(server: ScriptedLLMServer) -> None:
    server.script("review_paper", Reply(content=json.dumps({"Thought": "t", **form("generalist", Overall=9,
                                                                                   Decision="Reject")})))
    report = review_alone(server)
    first, repair = server.for_action("review_paper")
    assert repair.repair and "Overall 9 contradicts Decision Reject" in body_text(repair.body["messages"][-1])
    assert report.review.overall == 3 and report.review.decision == "Reject"  # the critical persona's answer
    assert report.meta is None and report.reflections == (0,)
    assert "temperature" not in first.body  # a lone reviewer keeps the configured (here: the server's) default


def test_a_server_without_json_schema_gets_the_form_as_json_object_and_in_words(plain_server: ScriptedLLMServer) -> None:
    report = review_alone(plain_server)
    refused, asked = plain_server.requests
    assert refused.outcome == "400" and asked.body["response_format"]["type"] == "json_object"
    assert '"Ethical Concerns"' in body_text(asked.body["messages"][-1])
    assert report.review.reviewer == f"{MODEL} (critical)" and report.review.overall == 3


def test_reasoning_models_get_no_temperature(server: ScriptedLLMServer) -> None:
    assert not takes_temperature("o3-mini") and not takes_temperature("openai/gpt-5") \
        and takes_temperature("gpt-4o-2024-11-20") and takes_temperature("qwen2.5-72b")
    llm = client(server, models={"review": "o3-mini"})
    reviewers, chair = review_team(llm, 4)
    assert [r.temperature for r in reviewers] == [None] * 4 and chair.name == "o3-mini"
    assert [r.persona.key for r in reviewers] == [p.key for p in PERSONAS]
    varied, _ = review_team(client(server), 5)
    assert [r.temperature for r in varied] == [0.75, 0.5, 1.0, 0.75, 0.5]
    assert all(r.client.ledger is varied[0].client.ledger for r in varied)


def test_a_reached_cap_stops_the_review_with_the_reason(paper_run: pathlib.Path,
                                                        server: ScriptedLLMServer) -> None:
    async def go() -> None:
        async with client(server, caps=Caps(max_usd=1.0)) as llm:
            llm.ledger.charge("writeup", "writeup:results", MODEL, Usage(usd=1.5, calls=1))
            reviewers, chair = review_team(llm, 3)
            await areview(paper_run, reviewers=reviewers, chair=chair, reflections=2, write=False)

    with pytest.raises(BudgetExceeded, match=r"LLM cost cap reached: \$1.5000 of \$1.0000 spent"):
        asyncio.run(go())
    assert server.requests == []


def test_a_reviewer_is_named_by_model_and_persona(server: ScriptedLLMServer) -> None:
    reviewer = LLMReviewer(client(server), PERSONAS[1], member=2, temperature=0.3)
    assert reviewer.name == f"{MODEL} (methodologist)"
    assert reviewer.client.config.temperature["review"] == 0.3
