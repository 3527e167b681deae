"""The real-model tier: a real small model (Qwen2.5-Coder-0.5B-Instruct, Q4_K_M, on CPU through
llama-cpp-python's OpenAI-compatible server) drives a tiny local run through the real CLI: it writes the
draft, the repairs and the tuning changes and reviews each node through the server's structured output.

What a model says varies with the model; what is asserted holds whatever it says: the run ends, with a
final journal whose phase is the summary's, exact accounts (every token the server reported, none
estimated, and the sums over ``llm.json`` equal to the summary's), every unusable answer recorded with its
reason, the fallback from ``json_schema`` (this server refuses it) recorded; and for a template run, at
least one good node. Each run prints what the model did (and writes it to ``realmodel-report.json``).

Runs only under ``make realmodel-test`` (marker ``realmodel``; KUBESCIENTIST_REALMODEL=1), not in
``make test``: see the README for why and for its timings.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time
from typing import Any

import pytest
import yaml

from tests.realmodel.llama import MODEL_ALIAS, llama_server

pytestmark = [pytest.mark.realmodel, pytest.mark.timeout(3600)]
HERE = pathlib.Path(__file__).resolve().parent
SUMMED = ("promptTokens", "completionTokens", "totalTokens", "calls", "retries")


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with llama_server(tmp_path_factory.mktemp("llama") / "server.log") as url:
        yield url


def manifest(name: str, url: str, *, template: bool, budgets: tuple[int, int, int, int]) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "idea": {"inline": {"title": "How fast does gradient descent fit a noisy line?",
                            "hypothesis": "A larger learning rate fits y = 3x + 1 in fewer steps."}},
        "objective": {"metric": "val_r2", "direction": "maximize"},
        "stages": [{"name": n, "maxNodes": b} for n, b in zip(("initial", "tuning", "research", "ablation"),
                                                                budgets)],
        "search": {"parallelism": 1, "drafts": 1, "maxDebugDepth": 2},
        "resources": {"deadlineSeconds": 60, "memory": "1Gi"},
        "seeds": 0, "seed": 0,
        # No new node starts after 20 minutes: a small model on a busy CPU takes minutes per answer.
        "budget": {"wallClockSeconds": 1200},
        "writeup": {"enabled": False}, "review": {"enabled": False},
        "llm": {"baseURL": url, "models": {"code": MODEL_ALIAS, "feedback": MODEL_ALIAS},
                # Greedy decoding; bounded answers and generous timeouts for a CPU server with one slot.
                "temperature": 0, "maxOutputTokens": 900, "timeoutSeconds": 900, "answerAttempts": 3},
    }
    if template:
        spec["template"] = {"path": str(HERE / "template")}
    return {"apiVersion": "kubescientist.io/v1alpha1", "kind": "ResearchRun", "metadata": {"name": name},
            "spec": spec}


def run_cli(path: pathlib.Path, workdir: pathlib.Path) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "kubescientist", "run", str(path), "--workdir", str(workdir)],
                          capture_output=True, text=True, timeout=3000,
                          env={**os.environ, "COLUMNS": "160", "KUBESCIENTIST_LLM_API_KEY": ""})
    return done, time.monotonic() - started


def check_records(run: pathlib.Path) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """What holds whatever the model said."""
    summary = json.loads((run / "summary.json").read_text())
    journal = json.loads((run / "journal.json").read_text())
    saved = json.loads((run / "llm.json").read_text())
    assert journal["phase"] in ("succeeded", "failed") and summary["phase"] == journal["phase"]
    assert not [n for n in journal["nodes"].values() if n["status"] in ("pending", "running")]
    total = summary["llm"]["total"]
    for key in SUMMED:
        assert total[key] == sum(c[key] for c in saved["calls"]), key
    assert saved["accounts"] == summary["llm"]
    assert total["estimatedTokens"] == 0  # every token is one the server reported
    for call in saved["calls"]:
        assert all(reason for reason in call["unusable"])
        if call["structured"] is not None and call["fallbacks"]:
            assert call["fallbacks"][0].startswith("json_schema refused (HTTP 500")
    return summary, journal, saved["calls"]


def report(name: str, wall: float, journal: dict[str, Any], calls: list[dict[str, Any]]) -> dict[str, Any]:
    nodes = list(journal["nodes"].values())
    llm_seconds = sum(c["seconds"] for c in calls)
    completion = sum(c["completionTokens"] for c in calls)
    figures = {
        "run": name, "wallSeconds": round(wall, 1), "phase": journal["phase"],
        "nodes": {status: sum(1 for n in nodes if n["status"] == status) for status in ("succeeded", "buggy",
                                                                                         "failed")},
        "actions": [f"{n['id']}:{n['action']}:{n['status']}" for n in nodes],
        "calls": len(calls), "repairedCalls": sum(1 for c in calls if c["repaired"]),
        "unusableAnswers": sum(len(c["unusable"]) for c in calls),
        "failedCalls": sum(1 for c in calls if c["error"]),
        "fallbacks": sorted({f for c in calls for f in c["fallbacks"]}),
        "structuredModes": sorted({c["structured"] for c in calls if c["structured"]}),
        "promptTokens": sum(c["promptTokens"] for c in calls), "completionTokens": completion,
        "llmSeconds": round(llm_seconds, 1),
        "completionTokensPerSecond": round(completion / llm_seconds, 2) if llm_seconds else None,
        "exhaustedEvents": [e["message"] for e in journal["events"] if e["kind"] in ("exhausted", "agent")],
    }
    print(f"\n[realmodel] {json.dumps(figures, indent=1)}", flush=True)
    out = pathlib.Path(os.environ.get("KUBESCIENTIST_REALMODEL_REPORT", "realmodel-report.json"))
    previous = json.loads(out.read_text()) if out.is_file() else {}
    out.write_text(json.dumps({**previous, name: figures}, indent=1) + "\n")
    return figures


def test_template_run_tuned_by_the_real_model(server_url: str, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "real-template.yaml"
    path.write_text(yaml.safe_dump(manifest("real-template", server_url, template=True, budgets=(2, 2, 1, 1))))
    done, wall = run_cli(path, tmp_path / "runs")
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    run = tmp_path / "runs" / "real-template"
    summary, journal, calls = check_records(run)
    figures = report("template", wall, journal, calls)
    assert figures["nodes"]["succeeded"] >= 1, done.stdout[-3000:]
    assert {c["prompt"] for c in calls} >= {"draft", "review_node"}


def test_template_free_draft_and_debug_by_the_real_model(server_url: str, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "real-free.yaml"
    path.write_text(yaml.safe_dump(manifest("real-free", server_url, template=False, budgets=(2, 1, 1, 1))))
    done, wall = run_cli(path, tmp_path / "runs")
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    summary, journal, calls = check_records(tmp_path / "runs" / "real-free")
    report("template-free", wall, journal, calls)
    drafts = [c for c in calls if c["prompt"] == "draft"]
    assert drafts, done.stdout[-3000:]
    if not journal["nodes"]:
        # The model wrote no usable program: each try and why it failed are on record, and the run says so.
        assert all(c["error"].startswith("AnswerError") and len(c["unusable"]) == 3 for c in drafts)
        assert any("no usable program from the model" in e["message"] for e in journal["events"])
