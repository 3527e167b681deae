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
from kubescientist.agent.ideas import Ideator, find_idea, load_ideas, merge_ideas, parse_topic, repeats
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
