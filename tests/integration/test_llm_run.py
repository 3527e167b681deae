"""The LLM loop end to end through the real CLI: a template-free local run against the scripted
OpenAI-compatible server (real HTTP, the real openai client), the budget cap, and ``kubescientist ideas``."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest

from harness import ROOT, cli, load
from tests.llmserver import Reply, ScriptedLLMServer

MODEL = "scripted-model"


@pytest.fixture
def server() -> Any:
    with ScriptedLLMServer() as running:
        yield running


def llm_manifest(name: str, url: str, **llm: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubescientist.io/v1alpha1", "kind": "ResearchRun", "metadata": {"name": name},
        "spec": {
            "idea": {"inline": {"title": "Delayed generalization on synthetic data",
                                "hypothesis": "A smaller learning rate delays generalization."}},
            "objective": {"metric": "val_acc", "direction": "maximize"},
            "stages": [{"name": n, "maxNodes": b} for n, b in
                       zip(("initial", "tuning", "research", "ablation"), (3, 2, 2, 2))],
            "search": {"parallelism": 2, "drafts": 1},
            "resources": {"deadlineSeconds": 60, "memory": "2Gi"},
            "seeds": 1, "seed": 0,
            "llm": {"baseURL": url, "models": {"code": MODEL, "feedback": MODEL}, **llm},
        },
    }


@pytest.fixture(autouse=True)
def llm_env(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The key and a price table, as a user sets them (the CLI subprocess inherits them)."""
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({MODEL: {"input": 1.0, "output": 4.0}}))
    monkeypatch.setenv("KUBESCIENTIST_LLM_API_KEY", "test-key")
    monkeypatch.setenv("KUBESCIENTIST_LLM_PRICES", str(prices))


def test_template_free_run_completes_four_stages_with_a_debug_fix(server: ScriptedLLMServer, tmp_path: pathlib.Path,
                                                                  write_manifest: Any) -> None:
    server.script("draft", Reply(status=429, headers={"Retry-After": "0.1"}))
    server.script("review_node", Reply(status=500), Reply(drop=True))
    manifest = write_manifest(llm_manifest("llm-run", server.url))
    done = cli("run", str(manifest), "--workdir", str(tmp_path / "runs"))
    assert done.returncode == 0, done.stdout + done.stderr
    run = tmp_path / "runs" / "llm-run"
    summary, journal = load(run / "summary.json"), load(run / "journal.json")
    assert summary["phase"] == "succeeded"
    assert [s["status"] for s in summary["stages"]] == ["done"] * 4
    nodes = journal["nodes"]
    draft = nodes["n0000"]
    assert draft["action"] == "draft" and draft["status"] == "buggy" and "KeyError" in draft["outcome"]["reason"]
    fix = next(n for n in nodes.values() if n["action"] == "debug")
    assert fix["parent"] == "n0000" and fix["status"] == "succeeded"
    assert (run / "nodes" / fix["id"] / "program" / "experiment.py").is_file()
    # The programs ran without the API key the runner holds.
    assert "api key visible: False" in (run / "nodes" / fix["id"] / "stdout.txt").read_text()
    llm = summary["llm"]
    assert llm["total"]["totalTokens"] > 0 and llm["total"]["usd"] > 0 and llm["total"]["retries"] == 3
    assert llm["byRole"]["code"]["calls"] > 0 and llm["byRole"]["feedback"]["calls"] > 0
    # Every call is charged to a node, or to a stage for the judgements of its best node and its goal.
    judged = {f"stage:{name}" for name in ("tuning", "research", "ablation")}
    assert set(llm["byNode"]) <= set(nodes) | judged
    assert judged & set(llm["byNode"])
    stages = {s["name"]: s for s in journal["stages"]}
    assert any("judged:" in (stages[name]["end_reason"] or "") for name in ("tuning", "research", "ablation"))
    log = (run / "llm.log").read_text()
    assert "HTTP 429 rate limited, Retry-After 0.1s" in log and "HTTP 500" in log and "connection failed" in log
    calls = load(run / "llm.json")["calls"]
    assert {c["prompt"] for c in calls} >= {"draft", "debug", "review_node", "select_best"}
    assert all(c["version"] for c in calls)
    assert "LLM:" in done.stdout and "3 retries" in done.stdout


def test_at_the_llm_budget_cap_no_new_work_starts(server: ScriptedLLMServer, tmp_path: pathlib.Path,
                                                   write_manifest: Any) -> None:
    # The idea comes from an ideas file, as `kubescientist ideas` writes it.
    (tmp_path / "ideas.json").write_text(json.dumps([{"name": "slow_grok", "title": "Slow grokking under label noise",
                                                      "shortHypothesis": "Label noise delays grokking."}]))
    spec = llm_manifest("llm-cap", server.url, maxTokens=15000)
    spec["spec"]["idea"] = {"ideasFile": {"path": "ideas.json", "name": "slow_grok"}}
    manifest = write_manifest(spec)
    done = cli("run", str(manifest), "--workdir", str(tmp_path / "runs"))
    run = tmp_path / "runs" / "llm-cap"
    summary, journal = load(run / "summary.json"), load(run / "journal.json")
    llm = summary["llm"]
    assert llm["stopped"].startswith("LLM token cap reached"), done.stdout + done.stderr
    assert any(e["kind"] == "budget" and "LLM token cap reached" in e["message"] for e in journal["events"])
    assert "stopped: LLM token cap reached" in done.stdout
    # The cap was crossed by the last call that went out: nothing was sent once it was reached.
    calls = load(run / "llm.json")["calls"]
    sent = [c for c in calls if not (c["error"] or "").startswith("BudgetExceeded") or c["totalTokens"]]
    assert sum(c["totalTokens"] for c in sent[:-1]) < 15000 <= llm["total"]["totalTokens"]
    assert len(server.requests) == sum(c["calls"] + c["retries"] for c in calls)
    finished = [n for n in journal["nodes"].values() if n["status"] in ("succeeded", "buggy")]
    assert finished and all((run / "nodes" / n["id"] / "result.json").is_file() for n in finished)
    assert not [n for n in journal["nodes"].values() if n["status"] in ("pending", "running")]
    assert "Slow grokking under label noise" in str(server.for_action("draft")[0].body["messages"][-1]["content"])


def test_ideas_with_the_offline_corpus(server: ScriptedLLMServer, tmp_path: pathlib.Path) -> None:
    out = tmp_path / "ideas.json"
    topic, corpus = ROOT / "examples" / "topics" / "grokking.md", ROOT / "examples" / "literature" / "grokking.json"
    args = ("ideas", str(topic), "--out", str(out), "--literature", "offline", "--corpus", str(corpus),
            "--base-url", server.url, "--model", MODEL, "--count", "2", "--reflections", "1")
    done = cli(*args)
    assert done.returncode == 0, done.stdout + done.stderr
    ideas = load(out)
    assert len(ideas) == 2 and len({i["name"] for i in ideas}) == 2
    titles = {p["title"] for p in json.loads(corpus.read_text())["papers"]}
    for entry in ideas:
        assert entry["novelty"]["verdict"] == "novel" and entry["novelty"]["backend"] == "offline"
        assert entry["novelty"]["papers"] and all(p["title"] in titles for p in entry["novelty"]["papers"])
    assert "novel (2 papers cited)" in done.stdout
    again = cli(*args[:-4], "--count", "1", "--reflections", "0")  # extends the file
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(load(out)) == 3


def test_ideas_from_a_v1_template_start_from_its_seeds(server: ScriptedLLMServer, tmp_path: pathlib.Path) -> None:
    template = tmp_path / "line_fit"
    template.mkdir()
    for path in (ROOT / "tests" / "fixtures" / "v1_template").iterdir():
        (template / path.name).write_bytes(path.read_bytes())
    corpus = ROOT / "examples" / "literature" / "grokking.json"
    done = cli("ideas", str(template), "--literature", "offline", "--corpus", str(corpus), "--base-url", server.url,
               "--model", MODEL, "--count", "1", "--reflections", "0")
    assert done.returncode == 0, done.stdout + done.stderr
    out = tmp_path / "line_fit.ideas.json"  # beside the folder: the template itself stays as it was
    ideas = load(out)
    assert [i.get("Name") or i.get("name") for i in ideas][:2] == ["momentum", "lr_schedule"]
    assert ideas[:2] == json.loads((template / "seed_ideas.json").read_text()) and len(ideas) == 3
    first = server.for_action("ideation")[0].body["messages"]
    assert "You are an ambitious AI PhD student" in first[0]["content"]
    assert "Topic: line fit" in first[1]["content"] and "- momentum: " in first[1]["content"]
    assert sorted(p.name for p in template.iterdir()) == ["experiment.py", "plot.py", "prompt.json", "seed_ideas.json"]
