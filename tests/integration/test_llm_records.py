"""The run's records agree with each other whatever ends the run: ``journal.json``'s phase is
``summary.json``'s, and the LLM accounts in ``summary.json`` (and ``llm.json``) are the sums over the calls
``llm.json`` lists, which are the requests the server answered. Through the real CLI and the scripted
OpenAI-compatible server; the succeeded and budget endings of ``test_llm_run`` are checked here too."""

from __future__ import annotations

import json
import pathlib
import signal
import subprocess
import sys
import os
import time
from typing import Any

import pytest

from harness import cli, load
from test_llm_run import llm_manifest
from tests.llmserver import Reply, ScriptedLLMServer
from tests.llmserver.scenarios import code_answer, program

SUMMED = ("promptTokens", "completionTokens", "totalTokens", "calls", "retries")


def assert_records_agree(run: pathlib.Path, server: ScriptedLLMServer) -> dict[str, Any]:
    summary, journal, saved = load(run / "summary.json"), load(run / "journal.json"), load(run / "llm.json")
    assert summary["phase"] == journal["phase"]
    assert saved["accounts"] == summary["llm"]
    total = summary["llm"]["total"]
    for key in SUMMED:
        assert total[key] == sum(call[key] for call in saved["calls"]), key
    answered = [r for r in server.requests if r.outcome == "200"]
    assert total["calls"] == len(answered)
    # Every other request was retried or was a structured mode the server refused (no tokens either way).
    refusals = sum(len(call["fallbacks"]) for call in saved["calls"])
    assert total["retries"] + refusals == sum(1 for r in server.requests if r.outcome != "200")
    return summary


@pytest.fixture
def server() -> Any:
    with ScriptedLLMServer() as running:
        yield running


@pytest.fixture(autouse=True)
def llm_env(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBESCIENTIST_LLM_API_KEY", "test-key")


def no_paper(spec: dict[str, Any]) -> dict[str, Any]:
    spec["spec"]["writeup"] = {"enabled": False}
    spec["spec"]["review"] = {"enabled": False}
    return spec


def test_succeeded_run(server: ScriptedLLMServer, tmp_path: pathlib.Path, write_manifest: Any) -> None:
    server.script("review_node", Reply(status=500))
    manifest = write_manifest(no_paper(llm_manifest("ok", server.url)))
    done = cli("run", str(manifest), "--workdir", str(tmp_path / "runs"))
    assert done.returncode == 0, done.stdout + done.stderr
    summary = assert_records_agree(tmp_path / "runs" / "ok", server)
    assert summary["phase"] == "succeeded" and summary["llm"]["total"]["retries"] == 1


def test_failed_run_with_only_unusable_answers(server: ScriptedLLMServer, tmp_path: pathlib.Path,
                                               write_manifest: Any) -> None:
    server.script("draft", *[Reply(content="Sorry, I cannot help with that.")] * 20)
    spec = no_paper(llm_manifest("bad", server.url, answerAttempts=2))
    manifest = write_manifest(spec)
    done = cli("run", str(manifest), "--workdir", str(tmp_path / "runs"))
    assert done.returncode != 0
    run = tmp_path / "runs" / "bad"
    summary = assert_records_agree(run, server)
    assert summary["phase"] == "failed"
    calls = load(run / "llm.json")["calls"]
    # Every unusable answer is on record with its reason; each call made the two attempts allowed.
    drafts = [c for c in calls if c["prompt"] == "draft"]
    assert drafts and all(len(c["unusable"]) == 2 and c["error"].startswith("AnswerError") for c in drafts)
    assert all("no ```python fenced block" in reason for c in drafts for reason in c["unusable"])


def test_budget_exhausted_run(server: ScriptedLLMServer, tmp_path: pathlib.Path, write_manifest: Any) -> None:
    manifest = write_manifest(no_paper(llm_manifest("cap", server.url, maxTokens=9000)))
    cli("run", str(manifest), "--workdir", str(tmp_path / "runs"))
    summary = assert_records_agree(tmp_path / "runs" / "cap", server)
    assert summary["llm"]["stopped"].startswith("LLM token cap reached")
    assert summary["phase"] in ("succeeded", "failed")


def test_interrupted_run(server: ScriptedLLMServer, tmp_path: pathlib.Path, write_manifest: Any) -> None:
    slow = program("slow", 0.8).replace("import argparse", "import argparse, time\ntime.sleep(60)", 1)
    server.script("draft", Reply(content=code_answer("a slow draft", slow)))
    manifest = write_manifest(no_paper(llm_manifest("stop", server.url)))
    run = tmp_path / "runs" / "stop"
    process = subprocess.Popen([sys.executable, "-m", "kubescientist", "run", str(manifest), "--workdir",
                                str(tmp_path / "runs")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env={**os.environ, "COLUMNS": "160"})
    try:
        deadline = time.monotonic() + 60
        while not (run / "nodes" / "n0000" / "config.json").exists():
            assert time.monotonic() < deadline and process.poll() is None, "the first node never started"
            time.sleep(0.2)
        time.sleep(1.0)  # the node is running and its review not yet asked
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert b"interrupted" in output, output
    summary = assert_records_agree(run, server)
    assert summary["phase"] == "searching" and summary["endedBy"] == "KeyboardInterrupt"
    assert json.loads((run / "journal.json").read_text())["nodes"]["n0000"]["status"] in ("pending", "running")


def test_a_server_answering_500_to_json_schema_still_reviews_every_node(tmp_path: pathlib.Path,
                                                                         write_manifest: Any) -> None:
    # llama-cpp-python's server: json_schema is refused with HTTP 500; json_object with the schema works.
    with ScriptedLLMServer(json_schema=False, refusal=(500, "Input should be 'text' or 'json_object'")) as server:
        manifest = write_manifest(no_paper(llm_manifest("llama", server.url)))
        done = cli("run", str(manifest), "--workdir", str(tmp_path / "runs"))
        assert done.returncode == 0, done.stdout + done.stderr
        run = tmp_path / "runs" / "llama"
        summary = assert_records_agree(run, server)
    assert summary["phase"] == "succeeded"
    refused = [r for r in server.requests if r.outcome == "500"]
    assert len(refused) == 1  # learnt once, no retries of the refusal
    calls = load(run / "llm.json")["calls"]
    structured = [c for c in calls if c["structured"]]
    assert structured and {c["structured"] for c in structured} == {"json_object"}
    assert [c["fallbacks"] for c in structured if c["fallbacks"]] == [[
        "json_schema refused (HTTP 500: Input should be 'text' or 'json_object'); using json_object"]]
    journal = load(run / "journal.json")
    reviewed = [n for n in journal["nodes"].values() if n["outcome"]]
    assert reviewed and all(n["outcome"]["details"]["review"]["by"] == "llm" for n in reviewed)
