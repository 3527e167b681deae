"""review-bench on labelled CSV/TSV/JSONL sets with conference decision strings, bootstrap intervals, and a model
reviewer (few-shot examples, reflections, ensemble, area chair) run against the scripted OpenAI-compatible server."""

from __future__ import annotations

import csv
import json
import pathlib
import re
from typing import Iterator

import pytest
from click.testing import CliRunner

from kubescientist.cli import main
from kubescientist.review import BenchError, Columns, bench
from kubescientist.review.bench import auc, parse_decision, read
from tests.llmserver import ScriptedLLMServer
from tests.llmserver.server import Call
from tests.llmserver.writeup import form

DECISIONS = ["Accept (Poster)", "Accept (Oral)", "Reject", "Accept (Spotlight)", "Reject", "Desk Reject",
             "Reject", "Accept (Poster)", "Withdrawn", "Reject"]


def _papers() -> list[dict[str, str]]:
    """Accepted papers report error bars (±) in their text; a review keyed on that separates them."""
    return [{"paper_id": f"iclr-{i}", "body": f"Paper {i}. We report 0.9{i} " + ("± 0.01 over 5 seeds."
             if d.startswith("Accept") else "from one run."), "outcome": d} for i, d in enumerate(DECISIONS)]


def _write_csv(path: pathlib.Path, delimiter: str = ",") -> pathlib.Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["paper_id", "body", "outcome"], delimiter=delimiter)
        writer.writeheader()
        writer.writerows(_papers())
    return path


def test_decision_strings_map_to_accept_or_reject() -> None:
    assert [parse_decision(d, "x") for d in ("Accept (Poster)", "accept: oral", "REJECT", "Desk Reject",
                                              "Withdrawn", True, "false", "1")] == \
        [True, True, False, False, False, True, False, True]
    with pytest.raises(BenchError, match=r"x: decision: 'Maybe' is neither an accept"):
        parse_decision("Maybe", "x")


def test_csv_and_tsv_with_a_column_mapping(tmp_path: pathlib.Path) -> None:
    columns = Columns(id="paper_id", text="body", decision="outcome")
    for path in (_write_csv(tmp_path / "set.csv"), _write_csv(tmp_path / "set.tsv", "\t")):
        items = read(path, columns)
        assert [i.accept for i in items] == [d.startswith("Accept") for d in DECISIONS]
        assert items[0].id == "iclr-0" and "± 0.01" in items[0].text
    with pytest.raises(BenchError, match=r"no column 'decision' \(the header has paper_id, body, outcome\)"):
        read(tmp_path / "set.csv")


def test_jsonl_is_split_on_newlines_only(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "set.jsonl"
    # json.dumps keeps U+2028 and U+0085 as they are with ensure_ascii=False: str.splitlines would cut there.
    rows = [{"text": "first part\u2028second part\x85third", "decision": "Accept (Poster)"},
            {"text": "plain", "decision": "Reject"}]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    items = read(path)
    assert len(items) == 2 and items[0].text == rows[0]["text"] and items[0].accept


def test_rank_auc_equals_the_pairwise_definition() -> None:
    scores, labels = [8, 6, 5, 3, 7, 5, 4, 2, 6], [True] * 4 + [False] * 5
    pairs = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, yp in zip(scores, labels) if yp
                for n, yn in zip(scores, labels) if not yn)
    assert auc(scores, labels) == pytest.approx(pairs / 20)


def test_offline_bench_on_a_csv_reports_bootstrap_intervals(tmp_path: pathlib.Path) -> None:
    path = _write_csv(tmp_path / "set.csv")
    result = bench(path, columns=Columns(id="paper_id", text="body", decision="outcome"), resamples=200, seed=1)
    m = result.metrics
    assert m.n == 10 and m.bootstrap == 200
    low, high = m.intervals["balanced_accuracy"]  # type: ignore[misc]
    assert 0.0 <= low <= m.balanced_accuracy <= high <= 1.0
    assert "Mann-Whitney" in m.auc_kind and "95% percentile bootstrap" in m.table()
    again = bench(path, columns=Columns(id="paper_id", text="body", decision="outcome"), resamples=200, seed=1)
    assert again.metrics.intervals == m.intervals  # seeded: reproducible


def _keyed_review(call: Call) -> str:
    """The paper under review is the last one in the prompt (examples come before it): error bars -> accept."""
    paper = call.first_user.rsplit("--- the paper", 1)[-1]
    accept = "±" in paper
    persona = re.search(r"^persona: (\w+)$", call.first_user, re.MULTILINE)
    return json.dumps({"Thought": "Checked for error bars.", **form(
        persona.group(1) if persona else "", Overall=7 if accept else 3, Decision="Accept" if accept else "Reject")})


@pytest.fixture
def server() -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer({"review_paper": _keyed_review}) as running:
        yield running


def test_a_model_reviewer_runs_the_bench_against_an_openai_compatible_server(
        tmp_path: pathlib.Path, server: ScriptedLLMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("KUBESCIENTIST_LLM_API_KEY", raising=False)
    path = _write_csv(tmp_path / "set.csv")
    examples = tmp_path / "examples.jsonl"
    examples.write_text(json.dumps({"body": "An example paper with ± error bars.", "outcome": "Accept (Poster)",
                                    "review": form("critical")}) + "\n")  # the same columns as the set
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(main, [
        "review-bench", str(path), "--id-column", "paper_id", "--text-column", "body", "--decision-column",
        "outcome", "--base-url", server.url, "--model", "scripted-model", "--reviewers", "2", "--reflections", "1",
        "--few-shot", str(examples), "--bootstrap", "100", "--json", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "model scripted-model: 2 reviewer(s), 1 reflection(s), 1 few-shot example(s), area chair" in result.output
    assert re.search(r"LLM: \d+ calls, \d+ \+ \d+ tokens", result.output)
    saved = json.loads(out.read_text())
    assert saved["metrics"]["n"] == 10 and saved["metrics"]["auc"] is not None
    assert saved["metrics"]["intervals"]["balanced_accuracy"] is not None
    # 10 papers x (2 reviewers x (1 review + 1 reflection) + 1 area chair) calls, on the bench's own ledger.
    assert saved["llm"]["total"]["calls"] == 10 * (2 * 2 + 1)
    prompts = [str(r.body["messages"][-1]["content"]) for r in server.requests if r.action == "review_paper"]
    assert prompts and all("example paper 1" in p and "An example paper with" in p for p in prompts)
