"""The whole writeup: a compiled paper whose every number comes from the run, offline or from a writer model."""

import json
import re
import subprocess

import pytest

from kubescientist.paper import PaperResult, Reference, SectionRequest, write_paper
from kubescientist.paper.fmt import mean_pm
from paper_support import needs_latex

pytestmark = needs_latex


def pdf_text(result: PaperResult) -> str:
    return subprocess.run(["pdftotext", "-enc", "UTF-8", str(result.pdf), "-"], capture_output=True, check=True,
                          text=True).stdout


def test_page_one_renders_with_the_title_and_a_metric_from_the_summary(written, tmp_path):
    subprocess.run(["pdftoppm", "-png", "-r", "60", "-f", "1", "-l", "1", str(written.pdf), str(tmp_path / "page")],
                   check=True)
    png = next(tmp_path.glob("page*.png"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    page_one = subprocess.run(["pdftotext", "-f", "1", "-l", "1", "-enc", "UTF-8", str(written.pdf), "-"],
                              capture_output=True, check=True, text=True).stdout
    summary = json.loads((written.directory.parent / "summary.json").read_text())
    seeds = summary["best"]["seeds"]
    expected = mean_pm(seeds["mean"], seeds["stderr"], seeds["n"]).strip("$").replace(r"\pm", "±")
    assert "Weight Decay Drives Grokking in Tiny Transformers" in page_one
    assert expected == "0.967 ± 0.002" and expected in " ".join(page_one.split())


def test_every_number_in_the_offline_paper_is_a_recorded_fact(written):
    report = json.loads((written.directory / "paper.json").read_text())
    assert report["numbers"]["checked"] > 50
    assert report["numbers"]["unverified"] == 0 and report["numbers"]["rewritten"] == 0
    assert report["writer"] == "offline"


def test_the_paper_is_complete_and_within_its_page_limit(written):
    assert written.build.ok and written.build.fixes == [] and written.build.warnings == []
    assert written.within_page_limit and 3 <= written.build.main_pages <= written.build.pages
    for name in ("paper.tex", "paper.pdf", "kspaper.sty", "figures/stages.pdf", "figures/stages.png"):
        assert (written.directory / name).is_file(), name
    source = written.tex.read_text()
    for label in re.findall(r"\\label\{((?:fig|tab):[^}]*)\}", source):
        assert source.count("\\ref{" + label + "}") >= 1, f"{label} is never referred to"
    text = pdf_text(written)
    assert "??" not in text and "[?]" not in text
    for heading in ("Abstract", "Introduction", "Related Work", "Method", "Experimental Setup", "Results",
                    "Ablations", "Limitations", "Conclusion"):
        assert heading in text
    assert "No literature search was run" in text


class ScriptedWriter:
    """Stands in for the writer model: it invents a number and a citation, and fixes the number when told."""

    name = "scripted-model"

    def __init__(self) -> None:
        self.requests: list[SectionRequest] = []

    async def write(self, request: SectionRequest) -> str:
        self.requests.append(request)
        if request.section == "results":
            if request.feedback:
                return request.draft + "\n\nThe stubborn claim stays: 0.4242 on unseen primes."
            return request.draft + "\n\n" + (r"On unseen primes it reaches 0.4242~\citep{fake2024}, "
                                               r"see Figure~\ref{fig:stage}.")
        if request.section == "related_work":
            return ("```latex\n\\section{Related Work}\nGrokking was first reported by \\citet{power2022grokking}, "
                    "and later by \\citet{ghost2023}.\n```")
        return request.draft


def test_a_writer_model_cannot_smuggle_in_numbers_or_references(run_dir):
    literature = [Reference(key="power2022grokking", title="Grokking: Generalization Beyond Overfitting on Small "
                            "Algorithmic Datasets", authors=("Alethea Power", "Yuri Burda"), year=2022,
                            venue="arXiv preprint")]
    writer = ScriptedWriter()
    result = write_paper(run_dir, writer=writer, literature=literature)
    results = next(s for s in result.sections if s.name == "results")
    related = next(s for s in result.sections if s.name == "related_work")
    assert results.attempts == 2  # the untraceable number went back to the writer once
    retried = [r for r in writer.requests if r.feedback]
    assert sorted(r.section for r in retried) == ["related_work", "results"]
    assert any("0.4242" in f for r in retried for f in r.feedback)
    assert any("ghost2023" in f for r in retried for f in r.feedback)
    assert [f.text for f in result.unverified] == ["0.4242"]
    assert [(f.key, f.replacement) for f in related.citation_fixes] == [("ghost2023", None)]
    source = result.tex.read_text()
    assert r"\unverified{0.4242}" in source and "ghost2023" not in source and "```" not in source
    assert (result.directory / "references.bib").read_text().startswith("@article{power2022grokking,")
    text = pdf_text(result)
    assert "Power and Burda" in text or "Power" in text
    assert "[?]" not in text and "??" not in text
    assert "with scripted-model" in " ".join(text.split())
    report = json.loads((result.directory / "paper.json").read_text())
    assert report["numbers"]["unverified"] == 1 and report["references"] == ["power2022grokking"]


def test_every_request_carries_the_facts_and_the_draft(run_dir):
    writer = ScriptedWriter()
    write_paper(run_dir, writer=writer)
    first = {r.section: r for r in writer.requests}
    assert set(first) == {"abstract", "introduction", "related_work", "method", "setup", "results", "ablations",
                          "limitations", "conclusion"}
    results = first["results"]
    assert "fig:stages" in results.labels and "tab:stages" in results.labels
    assert any(f.source.startswith("tuning best") for f in results.facts)
    assert "Stage 2 tuning" in results.context and results.draft


def test_a_folder_that_is_not_a_run_fails_before_any_work(tmp_path):
    from kubescientist.paper import RecordsError
    with pytest.raises(RecordsError):
        write_paper(tmp_path)


def test_a_run_that_found_nothing_still_gets_an_honest_paper(tmp_path, monkeypatch):
    import importlib.util

    from paper_support import FIXTURE as recorded
    spec = importlib.util.spec_from_file_location("make_fixture", recorded.parent / "make_fixture.py")
    make_fixture = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_fixture)
    monkeypatch.setattr(make_fixture, "RUN", tmp_path / "broken")
    monkeypatch.setattr(make_fixture, "program", lambda config: "ImportError: no module named torch")
    make_fixture.main()
    result = write_paper(tmp_path / "broken")
    text = " ".join(pdf_text(result).split())
    assert "The search produced no working result" in text and "ImportError: no module named torch" in text
    assert result.unverified == [] and result.figures == ()


def test_over_the_page_limit_supporting_floats_move_to_the_appendix(run_dir):
    result = write_paper(run_dir, page_limit=4)
    assert set(result.moved_to_appendix) == {"search", "variants", "config", "best"}
    source = result.tex.read_text()
    appendix = source[source.index("\\appendix"):]
    for label in ("fig:search", "fig:variants", "tab:config", "tab:best"):
        assert "\\label{" + label + "}" in appendix
    report = json.loads((result.directory / "paper.json").read_text())
    assert report["pages"]["main"] == result.build.main_pages and report["pages"]["limit"] == 4
    assert report["pages"]["withinLimit"] == (result.build.main_pages <= 4)


def test_references_to_labels_that_do_not_exist_are_mapped_or_removed():
    from kubescientist.paper.writeup import fix_refs
    text, fixes = fix_refs(r"See Figure~\ref{fig:stage} and Table~\ref{tab:nope}.", ["fig:stages", "tab:stages"])
    assert text == r"See Figure~\ref{fig:stages} and ."
    assert fixes == ["fig:stage -> fig:stages", "tab:nope removed"]


def test_an_ai_scientist_v1_template_is_described_from_its_prompt_json(run_dir):
    import json as json_
    import shutil as shutil_

    from kubescientist.paper.records import load

    shutil_.rmtree(run_dir / "template")
    (run_dir / "template").mkdir()
    (run_dir / "template" / "prompt.json").write_text(json_.dumps({
        "system": "You are an ambitious AI PhD student.",
        "task_description": "You are given an SEIR epidemic model\n of a city; it reports the infected peak."}))
    assert load(run_dir).template.description == "You are given an SEIR epidemic model of a city; it reports the " \
                                                 "infected peak."
