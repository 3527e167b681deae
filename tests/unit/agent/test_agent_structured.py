"""Structured answers: JSON schema where the server enforces it, JSON in a fenced block where it does not,
validation, and the repair attempts; code answers without a code block."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from agent_helpers import client
from kubescientist.agent.answers import ParseError, extract_code, parse_json
from kubescientist.agent.errors import AnswerError
from kubescientist.agent.llm import LLMClient
from kubescientist.agent.prompts import PromptLibrary
from kubescientist.agent.proposer import REVIEW
from tests.llmserver import Reply, ScriptedLLMServer

PROMPTS = PromptLibrary()
GOOD = {"buggy": False, "reason": None, "summary": "fine"}


def review(server: ScriptedLLMServer, times: int = 1, **fields: Any) -> tuple[list[dict[str, Any]], LLMClient]:
    prompt = PROMPTS.render("review_node", node={"id": "n0001", "action": "draft", "stage": "initial"},
                            idea={"title": "t", "hypothesis": "", "abstract": "", "description": "",
                                  "experiments": (), "risks": ()},
                            status="exited normally", reason="", metrics={}, code="print(1)\n",
                            output={"stdout": "", "stderr": ""})

    async def go() -> tuple[list[dict[str, Any]], LLMClient]:
        llm = client(server, **fields)
        async with llm:
            out = [await llm.structured("feedback", prompt, REVIEW, subject="n0001") for _ in range(times)]
        return out, llm
    return asyncio.run(go())


def test_json_schema_is_asked_of_a_server_that_supports_it(server: ScriptedLLMServer) -> None:
    [data], llm = review(server)
    body = server.requests[0].body
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"] == REVIEW.schema
    assert body["response_format"]["json_schema"]["strict"] is True
    assert llm.ledger.calls[0].structured == "json_schema" and not llm.ledger.calls[0].repaired
    assert set(data) == {"buggy", "reason", "summary"}


def test_falls_back_to_json_object_where_json_schema_is_refused(plain_server: ScriptedLLMServer) -> None:
    [first, second], llm = review(plain_server, times=2)
    formats = [(r.outcome, (r.body.get("response_format") or {}).get("type")) for r in plain_server.requests]
    # The first call learns the server cannot; the second goes straight to the fallback.
    assert formats == [("400", "json_schema"), ("200", "json_object"), ("200", "json_object")]
    fallback = plain_server.requests[1].body
    assert fallback["response_format"]["schema"] == REVIEW.schema
    assert "```json" in fallback["messages"][-1]["content"]  # servers that do not enforce it read it here
    assert [c.structured for c in llm.ledger.calls] == ["json_object", "json_object"]
    assert llm.ledger.calls[0].fallbacks == ["json_schema refused (HTTP 400: response_format of type json_schema "
                                             "is not supported by this server); using json_object"]
    assert llm.ledger.calls[1].fallbacks == []
    assert first == second


def test_falls_back_to_fenced_json_where_both_formats_are_refused() -> None:
    with ScriptedLLMServer(json_schema=False, json_object=False) as server:
        [first, second], llm = review(server, times=2)
    formats = [(r.outcome, (r.body.get("response_format") or {}).get("type")) for r in server.requests]
    assert formats == [("400", "json_schema"), ("400", "json_object"), ("200", None), ("200", None)]
    assert '"additionalProperties": false' in server.requests[2].body["messages"][-1]["content"]
    assert [c.structured for c in llm.ledger.calls] == ["prompt", "prompt"]
    assert len(llm.ledger.calls[0].fallbacks) == 2 and first == second


def test_a_500_refusing_json_schema_falls_back_at_once_without_retries() -> None:
    # llama-cpp-python's server answers json_schema with HTTP 500 and a validation message.
    refusal = (500, "Input should be 'text' or 'json_object'")
    with ScriptedLLMServer(json_schema=False, refusal=refusal) as server:
        [data], llm = review(server, times=1)
        [again], _ = review(server, times=1)
    formats = [(r.outcome, (r.body.get("response_format") or {}).get("type")) for r in server.requests]
    assert formats[:2] == [("500", "json_schema"), ("200", "json_object")]
    call = llm.ledger.calls[0]
    assert call.structured == "json_object" and call.retry_reasons == [] and call.usage.retries == 0
    assert "json_schema refused (HTTP 500" in call.fallbacks[0] and "'json_object'" in call.fallbacks[0]
    assert data == again and data["summary"]


def test_a_500_naming_nothing_is_retried_in_the_same_mode(server: ScriptedLLMServer) -> None:
    server.script("review_node", Reply(status=500, error="internal error"))
    [_], llm = review(server)
    formats = [(r.outcome, (r.body.get("response_format") or {}).get("type")) for r in server.requests]
    assert formats == [("500", "json_schema"), ("200", "json_schema")]
    assert llm.ledger.calls[0].fallbacks == [] and llm.ledger.calls[0].usage.retries == 1


def test_server_enforcing_mode_does_not_fall_back(plain_server: ScriptedLLMServer) -> None:
    from kubescientist.agent.errors import LLMUnavailable
    with pytest.raises(LLMUnavailable, match="json_schema is not supported"):
        review(plain_server, structured_outputs="json_schema")


def test_prompt_mode_never_sends_a_schema(server: ScriptedLLMServer) -> None:
    review(server, structured_outputs="prompt")
    assert "response_format" not in server.requests[0].body


def test_malformed_json_is_repaired_once(server: ScriptedLLMServer) -> None:
    server.script("review_node", Reply(content='{"buggy": false, "summary": "cut off'))
    [data], llm = review(server)
    assert data["summary"]
    first, repair = server.requests
    assert not first.repair and repair.repair
    text = repair.body["messages"][-1]["content"]
    assert "action: review_node" in text and "the JSON is malformed" in text
    # The repair sees the broken answer it is asked to fix.
    assert repair.body["messages"][-2] == {"role": "assistant", "content": '{"buggy": false, "summary": "cut off'}
    assert llm.ledger.calls[0].repaired and llm.ledger.calls[0].usage.calls == 2


def test_schema_violations_are_named_in_the_repair(server: ScriptedLLMServer) -> None:
    server.script("review_node", Reply(content=json.dumps({"buggy": "no", "summary": "x", "reason": None})))
    review(server)
    assert "at $.buggy: 'no' is not of type 'boolean'" in server.requests[1].body["messages"][-1]["content"]


def test_unusable_answers_are_retried_up_to_the_attempt_limit(server: ScriptedLLMServer) -> None:
    server.script("review_node", Reply(content="I think it is fine."), Reply(content="Still prose."))
    [data], llm = review(server)  # the default allows three answers: the third (the default responder's) is used
    assert data["summary"] and len(server.requests) == 3
    call = llm.ledger.calls[0]
    assert call.repaired and call.usage.calls == 3 and len(call.unusable) == 2
    assert all("no JSON object found" in reason for reason in call.unusable)
    # Each repair carries only the latest unusable answer, not the whole failed history.
    assert server.requests[2].body["messages"][-2] == {"role": "assistant", "content": "Still prose."}
    assert len(server.requests[2].body["messages"]) == len(server.requests[1].body["messages"])


def test_the_last_unusable_answer_fails_the_call(server: ScriptedLLMServer) -> None:
    server.script("review_node", Reply(content="I think it is fine."), Reply(content="Still prose."))
    with pytest.raises(AnswerError, match="unusable answer after 2 attempts") as info:
        review(server, answer_attempts=2)
    assert info.value.answers == ("I think it is fine.", "Still prose.")
    assert len(server.requests) == 2


def test_parse_json_finds_the_object() -> None:
    schema = REVIEW.schema
    assert parse_json(json.dumps(GOOD), schema) == GOOD
    assert parse_json(f"Sure.\n```json\n{json.dumps(GOOD)}\n```\nDone.", schema) == GOOD
    assert parse_json(f"The verdict is {json.dumps(GOOD)} as asked.", schema) == GOOD
    with pytest.raises(ParseError, match="no JSON object"):
        parse_json("nothing here", schema)
    with pytest.raises(ParseError, match="required property"):
        parse_json('{"buggy": true}', schema)


def test_extract_code_takes_the_whole_program() -> None:
    text = "Plan.\n```python\nx = 1\n```\nand the program:\n```python\nimport os\n\nprint(os.sep)\n```\n"
    assert extract_code(text) == "import os\n\nprint(os.sep)\n"
    with pytest.raises(ParseError, match="no ```python fenced block"):
        extract_code("just words")
    with pytest.raises(ParseError, match="not closed"):
        extract_code("```python\nprint(1)\n")
    with pytest.raises(ParseError, match="does not compile: .* line 1"):
        extract_code("```python\ndef f(:\n```\n")


def test_python_literals_in_json_are_read() -> None:
    # Small models write True/None and single quotes; the meaning is clear.
    text = "```json\n{'buggy': True, 'reason': None, 'summary': \"it is true\"}\n```"
    assert parse_json(text, REVIEW.schema) == {"buggy": True, "reason": None, "summary": "it is true"}
    mixed = '{"buggy": false, "reason": null, "summary": "null stays a word: true"}'
    assert parse_json(mixed, REVIEW.schema)["summary"] == "null stays a word: true"
    with pytest.raises(ParseError, match="the JSON is malformed"):
        parse_json('{"buggy": __import__("os")}', REVIEW.schema)
