"""Accounting per role, per node and per run with a price table; hard caps that stop new LLM work."""

from __future__ import annotations

import asyncio
import json
import pathlib

import pytest

from agent_helpers import client, node, proposer, research
from kubescientist.agent.accounting import Caps, Ledger, PriceTable, Usage
from kubescientist.agent.errors import BudgetExceeded, ConfigError
from kubescientist.agent.llm import LLMClient
from kubescientist.agent.proposer import LLMProposer, plan_subject
from kubescientist.core.journal import Journal
from kubescientist.core.plan import Plan
from tests.llmserver import Reply, ScriptedLLMServer

PRICES = PriceTable.from_mapping({"scripted-model": {"input": 2.0, "output": 8.0}, "cheap-*": {"input": 0.1,
                                                                                              "output": 0.4}})
DRAFT = Plan("initial", "draft", None, "draft 1 of 1", "0:0:0:0")


def test_cost_is_counted_per_role_per_node_and_per_run(server: ScriptedLLMServer) -> None:
    server.script("draft", Reply(usage=(1000, 500)))
    server.script("review_node", Reply(usage=(2000, 100)))

    async def go() -> Ledger:
        agent = proposer(server, prices=PRICES)
        journal = Journal()
        proposal = await agent.propose(DRAFT, journal)
        assert proposal is not None
        agent.client.ledger.rename(plan_subject(DRAFT), "n0000")
        done = node(journal, "draft")
        await agent.review_node(done, done.outcome)  # type: ignore[arg-type]
        await agent.client.aclose()
        return agent.client.ledger

    ledger = asyncio.run(go())
    code_usd = (1000 * 2.0 + 500 * 8.0) / 1e6
    review_usd = (2000 * 2.0 + 100 * 8.0) / 1e6
    assert ledger.by_role["code"].usd == pytest.approx(code_usd)
    assert ledger.by_role["feedback"].usd == pytest.approx(review_usd)
    assert ledger.total.usd == pytest.approx(code_usd + review_usd)
    assert ledger.total.prompt_tokens == 3000 and ledger.total.completion_tokens == 600
    assert set(ledger.by_subject) == {"n0000"}  # the proposal's cost moved to the node it became
    assert ledger.by_subject["n0000"].calls == 2
    summary = ledger.to_dict()
    assert summary["total"]["usd"] == pytest.approx(code_usd + review_usd)
    assert summary["byRole"]["code"]["promptTokens"] == 1000 and summary["unpricedModels"] == []
    assert [c.prompt for c in ledger.calls] == ["draft", "review_node"]
    assert [c.version for c in ledger.calls] == ["3", "1"] and all(c.subject == "n0000" for c in ledger.calls)


def test_an_unknown_model_counts_tokens_only(server: ScriptedLLMServer) -> None:
    server.script("review_node", Reply(usage=(100, 10)))

    async def go() -> Ledger:
        agent = proposer(server, prices=PriceTable.from_mapping({"other": {"input": 1, "output": 1}}))
        done = node(Journal())
        await agent.review_node(done, done.outcome)  # type: ignore[arg-type]
        await agent.client.aclose()
        return agent.client.ledger

    ledger = asyncio.run(go())
    assert ledger.total.usd == 0.0 and ledger.total.unpriced_tokens == 110
    assert ledger.to_dict()["unpricedModels"] == ["scripted-model"]


def test_price_globs_and_errors(tmp_path: pathlib.Path) -> None:
    assert PRICES.price("cheap-mini") is not None and PRICES.price("gpt-unknown") is None
    table = PriceTable.from_mapping({"a-*": {"input": 1, "output": 1}, "a-b-*": {"input": 2, "output": 2}})
    assert table.price("a-b-c").input == 2  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match=r"prices: m.output: must be a number >= 0"):
        PriceTable.from_mapping({"m": {"input": 1, "output": -1}})
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"m": {"input": 1}}))
    with pytest.raises(ConfigError, match="prices.json: m: must be"):
        PriceTable.from_file(path)


def test_token_cap_stops_new_work_and_says_why(server: ScriptedLLMServer) -> None:
    server.script("draft", Reply(usage=(900, 200)))

    async def go() -> tuple[LLMProposer, str]:
        agent = proposer(server, caps=Caps(max_tokens=1000))
        journal = Journal()
        assert await agent.propose(DRAFT, journal) is not None  # under the cap when it started
        with pytest.raises(BudgetExceeded) as info:
            await agent.propose(Plan("initial", "draft", None, "draft 2", "0:1:0:0"), journal)
        done = node(journal)
        with pytest.raises(BudgetExceeded):
            await agent.review_node(done, done.outcome)  # type: ignore[arg-type]
        await agent.client.aclose()
        return agent, info.value.reason

    agent, reason = asyncio.run(go())
    assert reason == "LLM token cap reached: 1100 of 1000 tokens used; no new LLM work starts"
    assert len(server.requests) == 1  # nothing was sent after the cap
    assert agent.client.ledger.to_dict()["stopped"] == reason
    assert agent.client.ledger.calls[-1].error.startswith("BudgetExceeded")  # type: ignore[union-attr]


def test_cost_cap_and_metric_fallback_of_best_choice(server: ScriptedLLMServer) -> None:
    server.script("review_node", Reply(usage=(1_000_000, 0)))  # $2.00

    async def go() -> tuple[str, str]:
        agent = proposer(server, prices=PRICES, caps=Caps(max_usd=1.5))
        journal = Journal()
        a, b = node(journal, metric=0.7), node(journal, metric=0.8)
        await agent.review_node(a, a.outcome)  # type: ignore[arg-type]
        best = await agent.select_best("initial", journal)  # judged by the metric: the cap is reached
        await agent.client.aclose()
        assert b.id == best.node
        return best.by, best.reason

    by, reason = asyncio.run(go())
    assert by == "metric" and "LLM cost cap reached: $2.0000 of $1.5000 spent" in reason
    assert len(server.requests) == 1


def test_concurrent_work_past_the_cap_is_refused(server: ScriptedLLMServer) -> None:
    server.script("review_node", Reply(usage=(500, 0), delay=0.2), Reply(usage=(500, 0), delay=0.2))

    async def go() -> list[object]:
        llm: LLMClient = client(server, caps=Caps(max_tokens=800))
        agent = LLMProposer(llm, research())
        journal = Journal()
        done = [node(journal) for _ in range(2)]
        # Two reviews in flight together both started under the cap; the third starts after it.
        first = await asyncio.gather(*(agent.review_node(n, n.outcome) for n in done),  # type: ignore[arg-type]
                                     return_exceptions=True)
        later = await asyncio.gather(agent.review_node(done[0], done[0].outcome),  # type: ignore[arg-type]
                                     return_exceptions=True)
        await llm.aclose()
        return [*first, *later]

    results = asyncio.run(go())
    assert [type(r).__name__ for r in results] == ["NodeReview", "NodeReview", "BudgetExceeded"]
    assert len(server.requests) == 2


def test_ledger_survives_a_restart() -> None:
    ledger = Ledger(caps=Caps(max_tokens=10))
    ledger.charge("code", "n0001", "m", Usage(prompt_tokens=8, completion_tokens=4, calls=1))
    with pytest.raises(BudgetExceeded):
        ledger.check()
    again = Ledger(caps=Caps(max_tokens=10))
    again.restore(json.loads(json.dumps(ledger.to_dict())))
    assert again.total.total_tokens == 12 and again.by_role["code"].calls == 1
    with pytest.raises(BudgetExceeded, match="token cap reached"):
        again.check()
