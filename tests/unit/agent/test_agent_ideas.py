"""Ideation against the scripted server with the offline corpus: ideas with literature searches,
reflection rounds, diversity, and novelty verdicts that cite the papers behind them."""

from __future__ import annotations

import asyncio
import json
import pathlib
from typing import Any

import pytest

from agent_helpers import client
from kubescientist.agent.context import Idea
from kubescientist.agent.errors import AgentError
from experiment_runtime import load_template
from kubescientist.agent.ideas import (Ideator, find_idea, load_ideas, merge_ideas, parse_topic, repeats,
                                       topic_from_template)
from kubescientist.agent.literature import OfflineCorpus
from tests.llmserver import Reply, ScriptedLLMServer
from tests.llmserver.scenarios import idea

EXAMPLES = pathlib.Path(__file__).resolve().parents[3] / "examples"
TOPIC = parse_topic((EXAMPLES / "topics" / "grokking.md").read_text())
CORPUS_TITLES = {p.title for p in OfflineCorpus.from_path(EXAMPLES / "literature" / "grokking.json").papers}


def ideate(server: ScriptedLLMServer, count: int, earlier: list[dict[str, Any]] | None = None,
           **kw: Any) -> list[dict[str, Any]]:
    async def go() -> list[dict[str, Any]]:
        async with client(server) as llm:
            ideator = Ideator(llm, OfflineCorpus.from_path(EXAMPLES / "literature" / "grokking.json"), **kw)
            return await ideator.generate(TOPIC, count, earlier or [])
    return asyncio.run(go())


def test_the_sample_topic_parses() -> None:
    assert TOPIC.title == "What controls when small transformers grok?"
    assert TOPIC.keywords[0] == "grokking" and "weight decay" in TOPIC.keywords
    assert TOPIC.tldr.startswith("Small transformers") and "modular addition" in TOPIC.abstract
    assert parse_topic("## Title\nA topic\n## Notes\nextra words").abstract == "extra words"
    with pytest.raises(AgentError, match="TOPIC.md: no title"):
        parse_topic("## Abstract\nno title here")


def test_ideas_with_novelty_verdicts_and_cited_papers(server: ScriptedLLMServer) -> None:
    ideas = ideate(server, 2, reflections=2, searches=2, novelty_rounds=3)
    assert [i["name"] for i in ideas] == ["grokking_weight_decay_schedules_1", "grokking_label_noise_2"]
    for entry in ideas:
        assert set(entry) >= {"name", "title", "shortHypothesis", "relatedWork", "abstract", "experiments", "risks",
                              "novelty", "literature", "topic"}
        verdict = entry["novelty"]
        assert verdict["verdict"] == "novel" and verdict["backend"] == "offline"
        assert verdict["papers"] and all(p["title"] in CORPUS_TITLES for p in verdict["papers"])
        assert verdict["queries"] == [entry["title"], "grokking weight decay"] and verdict["prompt"] == "novelty@1"
        assert entry["literature"] and all(p["title"] in CORPUS_TITLES for p in entry["literature"])
    # One conversation per idea: search, finalize on the results, reflect (the model says it is done after
    # one of the two rounds), then the novelty check searches once more and decides.
    assert [r.action for r in server.requests[:5]] == ["ideation", "ideation", "reflection", "novelty", "novelty"]
    assert "Reflection round 1 of 2" in str(server.requests[2].body["messages"][-1]["content"])
    assert len(server.requests[2].body["messages"]) == 6  # system, then the whole conversation so far
    first = str(server.requests[1].body["messages"][-1]["content"])
    assert 'search results for "grokking modular arithmetic transformers"' in first and "[P1]" in first
    # The second idea's prompt lists the first, so it must differ.
    second = next(r for r in server.requests if r.action == "ideation" and "Ideas already proposed" in
                  str(r.body["messages"][1]["content"]))
    assert "grokking_weight_decay_schedules_1" in str(second.body["messages"][1]["content"])


def test_a_repeated_idea_is_sent_back_once(server: ScriptedLLMServer) -> None:
    earlier = [dict(idea(1))]
    # The model first finalizes a copy of the earlier idea: the repair asks for a different one.
    copy = json.dumps({"thought": "t", "action": "finalize", "query": None, "idea": idea(1), "done": True})
    server.script("ideation", Reply(content=copy))
    server.script("reflection", Reply(content=json.dumps({"thought": "t", "action": "finalize", "query": None,
                                                          "idea": idea(2), "done": True})))
    [made] = ideate(server, 1, earlier, reflections=1)
    assert made["name"] == "grokking_label_noise_2"
    repair = next(r for r in server.requests if r.repair)
    assert "repeats the earlier idea 'grokking_weight_decay_schedules_1'" in str(repair.body["messages"][-1]["content"])


def test_unknown_paper_labels_are_refused(server: ScriptedLLMServer) -> None:
    server.script("novelty", Reply(content=json.dumps({"decision": "not_novel", "query": None, "reason": "r",
                                                       "papers": ["P99"]})))
    [made] = ideate(server, 1, reflections=0)
    repair = next(r for r in server.requests if r.repair)
    assert "unknown paper label(s) ['P99']" in str(repair.body["messages"][-1]["content"])
    assert made["novelty"]["verdict"] == "novel"


def test_no_decision_within_the_rounds_is_undecided(server: ScriptedLLMServer) -> None:
    search = json.dumps({"decision": "search", "query": "more", "reason": "unsure", "papers": []})
    server.script("novelty", Reply(content=search), Reply(content=search))
    [made] = ideate(server, 1, reflections=0, novelty_rounds=2)
    assert made["novelty"]["verdict"] == "undecided" and made["novelty"]["papers"] == []
    assert "no decision within 2 rounds" in made["novelty"]["reason"]


def test_ideas_files_merge_and_load() -> None:
    merged = merge_ideas([{"name": "a", "title": "A"}], [{"name": "a", "title": "B"}, {"name": "c", "title": "C"}])
    assert [m["name"] for m in merged] == ["a", "a_2", "c"]
    entries = load_ideas(json.dumps(merged))
    assert find_idea(entries, "a_2").title == "B"
    with pytest.raises(AgentError, match="no idea named 'zzz' \\(there are: a, a_2, c\\)"):
        find_idea(entries, "zzz")
    v2 = {"Name": "x", "Title": "T", "Short Hypothesis": "H", "Experiments": ["e1"],
          "Risk Factors and Limitations": "r"}
    assert Idea.from_entry(v2) == Idea(title="T", name="x", hypothesis="H", experiments=("e1",), risks=("r",))
    assert repeats({"name": "n", "title": "How label noise shapes grokking"},
                   [{"name": "m", "title": "How label noise shapes grokking (2)"}]) == "m"


V1 = pathlib.Path(__file__).resolve().parents[2] / "fixtures" / "v1_template"


def test_a_v1_template_topic_brings_its_system_text_code_and_seed_ideas(server: ScriptedLLMServer) -> None:
    template = load_template(V1)
    topic = topic_from_template("v1_template", template.prompt, (V1 / "experiment.py").read_text())
    assert topic.title == "v1 template" and topic.abstract.startswith("You are given a tiny experiment")
    seeds = [dict(i) for i in template.seed_ideas]

    async def go() -> list[dict[str, Any]]:
        async with client(server) as llm:
            ideator = Ideator(llm, OfflineCorpus.from_path(EXAMPLES / "literature" / "grokking.json"),
                              reflections=1, searches=1, novelty_check=False)
            return await ideator.generate(topic, 1, seeds)

    [made] = asyncio.run(go())
    assert made["name"] not in ("momentum", "lr_schedule")
    conversation = [r for r in server.requests if r.action in ("ideation", "reflection")]
    assert len(conversation) >= 3  # search, finalize on the results, reflect
    for request in conversation:  # every turn's system prompt carries the template's system text
        assert "You are an ambitious AI PhD student" in str(request.body["messages"][0]["content"])
    first = str(conversation[0].body["messages"][1]["content"])
    # The seeds are the ideas already proposed (v1 spelling: Name, Title, Experiment); the code is shown.
    assert "- momentum: Does Heavy-Ball Momentum Speed Up Line Fitting" in first
    assert "Add heavy-ball momentum" in first and "- lr_schedule: Cosine Learning-Rate Decay" in first
    assert "def fit(target, rng):" in first and "fits a straight line by plain gradient descent" in first
    # A new idea that repeats a seed (v1 keys) is recognised as a repeat.
    assert repeats({"name": "heavy_ball", "title": seeds[0]["Title"]}, seeds) == "momentum"


def test_a_v1_template_without_a_task_description_cannot_give_a_topic() -> None:
    with pytest.raises(AgentError, match="^tpl/prompt.json: task_description: needed"):
        topic_from_template("tpl", {"system": "s"}, "code")
    with pytest.raises(AgentError, match="task_description"):
        topic_from_template("tpl", None, "code")
