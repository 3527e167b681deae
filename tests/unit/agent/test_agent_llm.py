"""The LLM client against the scripted server, over real HTTP with the real openai client: retries,
backoff, what is not retried, the key, accounting of retries."""

from __future__ import annotations

import asyncio
import logging

import pytest

from agent_helpers import client
from kubescientist.agent.config import RetryPolicy
from kubescientist.agent.errors import LLMUnavailable
from kubescientist.agent.prompts import RenderedPrompt
from kubescientist.agent.proposer import REVIEW
from tests.llmserver import Reply, ScriptedLLMServer

PROMPT = RenderedPrompt("review_node", "1", "You review.", "action: review_node\nThe run: exited normally")


def ask(server: ScriptedLLMServer, **fields: object) -> tuple[dict[str, object], object]:
    async def go() -> tuple[dict[str, object], object]:
        async with client(server, **fields) as llm:
            data = await llm.structured("feedback", PROMPT, REVIEW, subject="n0001")
            return data, llm.ledger
    return asyncio.run(go())


def test_transient_failures_are_retried_and_logged(server: ScriptedLLMServer, caplog: pytest.LogCaptureFixture) -> None:
    server.script("review_node", Reply(status=429, headers={"Retry-After": "0.2"}), Reply(status=500),
                  Reply(drop=True), Reply(delay=3.0), Reply(status=503))
    caplog.set_level(logging.WARNING, logger="kubescientist.agent.llm")
    data, ledger = ask(server, timeout_seconds=0.5)
    assert data["buggy"] is False
    assert [r.outcome for r in server.requests] == ["429", "500", "drop", "timeout", "503", "200"]
    retries = [r.getMessage() for r in caplog.records if "LLM retry" in r.getMessage()]
    assert len(retries) == 5
    assert "HTTP 429 rate limited, Retry-After 0.2s; waiting 0.20s" in retries[0]
    assert "HTTP 500" in retries[1]
    assert "connection failed" in retries[2]
    assert "timed out (no answer within 0.5s)" in retries[3]
    assert "HTTP 503" in retries[4]
    assert all("review_node@1" in r and "subject n0001" in r for r in retries)
    call = ledger.calls[-1]  # type: ignore[attr-defined]
    assert call.usage.retries == 5 and call.usage.calls == 1 and len(call.retry_reasons) == 5
    assert ledger.total.retries == 5  # type: ignore[attr-defined]


def test_retry_after_is_waited_for(server: ScriptedLLMServer) -> None:
    server.script("review_node", Reply(status=429, headers={"Retry-After": "0.3"}))
    ask(server)
    first, second = server.requests
    assert second.at - first.at >= 0.3 - 0.03  # arrival times jitter a little


def test_gives_up_after_the_attempts_with_the_last_reason(server: ScriptedLLMServer) -> None:
    server.script("review_node", *[Reply(status=502, error="bad gateway")] * 6)
    with pytest.raises(LLMUnavailable, match=r"gave up after 3 attempts; last failure: HTTP 502: bad gateway"):
        ask(server, retry=RetryPolicy(attempts=3, base_delay=0.01))
    assert len(server.requests) == 3


@pytest.mark.parametrize("reply", [Reply(status=401, error="bad key"), Reply(status=404, error="no such model"),
                                   Reply(status=429, code="insufficient_quota", error="out of credit")])
def test_final_failures_are_not_retried(server: ScriptedLLMServer, reply: Reply) -> None:
    server.script("review_node", reply)
    with pytest.raises(LLMUnavailable, match=reply.error):
        ask(server)
    assert len(server.requests) == 1


def test_the_key_is_sent_as_a_bearer_token() -> None:
    with ScriptedLLMServer(api_key="sk-right") as server:
        ask(server, api_key="sk-right")
        assert server.requests[-1].headers["Authorization"] == "Bearer sk-right"
        with pytest.raises(LLMUnavailable, match="HTTP 401"):
            ask(server, api_key="sk-wrong")


def test_missing_usage_is_estimated_and_flagged(server: ScriptedLLMServer) -> None:
    server.script("review_node", Reply(no_usage=True))
    _, ledger = ask(server)
    total = ledger.total  # type: ignore[attr-defined]
    assert total.total_tokens > 0 and total.estimated_tokens == total.total_tokens


def test_timeouts_and_limits_reach_the_request(server: ScriptedLLMServer) -> None:
    ask(server, max_output_tokens=321, temperature={"feedback": 0.2})
    body = server.requests[-1].body
    assert body["max_completion_tokens"] == 321 and body["temperature"] == 0.2
    assert body["model"] == "scripted-model"
    ask(server, max_output_tokens=99, output_limit_param="max_tokens")
    assert server.requests[-1].body["max_tokens"] == 99
