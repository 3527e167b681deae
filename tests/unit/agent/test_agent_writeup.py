"""The writeup model through the real openai client and the scripted server: sections written one by one
from what each request carries, an invented number caught and revised away, a LaTeX error repaired from the
log excerpt and the offending lines, and a token cap that turns the rest of the writeup offline."""

from __future__ import annotations

import asyncio
import json
import pathlib
import re
import shutil
import subprocess
from typing import Iterator

import pytest

from agent_helpers import MODEL, client
from kubescientist.agent.accounting import Caps, Usage
from kubescientist.agent.errors import BudgetExceeded
from kubescientist.agent.llm import LLMClient
from kubescientist.agent.prompts import PromptLibrary
from kubescientist.agent.writeup import (FIX_AFTER, FIX_BEFORE, MAX_FACTS, MAX_REFERENCES, LLMLatexFixer,
                                         LLMSectionWriter, _fact_lines, _window)
from kubescientist.paper import LatexError, PaperResult, Reference, SectionName, SectionRequest, awrite_paper
from kubescientist.paper.numbers import Fact
from tests.llmserver import Reply, ScriptedLLMServer
from tests.llmserver.writeup import scripted_sections

FIXTURE = pathlib.Path(__file__).resolve().parents[2] / "fixtures" / "runs" / "grokking-small"
needs_latex = pytest.mark.skipif(shutil.which("pdflatex") is None or shutil.which("pdftotext") is None,
                                 reason="texlive and poppler-utils are not installed (see the Makefile)")
INVENTED = "On unseen primes it even reaches 4242.5."
BAD_MACRO = r"Weight decay is \emphh{the} key."
# The results section invents a number (and drops it when told); the conclusion uses a macro that does not exist.
WRITER = scripted_sections({"results": (INVENTED, ""), "conclusion": (BAD_MACRO, "")})


@pytest.fixture
def run_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    target = tmp_path / "grokking-small"
    shutil.copytree(FIXTURE, target)
    return target


@pytest.fixture
def writing_server() -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer({"write_section": WRITER}) as running:
        yield running


def write(run_dir: pathlib.Path, llm: LLMClient) -> tuple[PaperResult, LLMSectionWriter, LLMLatexFixer]:
    async def go() -> tuple[PaperResult, LLMSectionWriter, LLMLatexFixer]:
        async with llm:
            writer, fixer = LLMSectionWriter(llm), LLMLatexFixer(llm)
            return await awrite_paper(run_dir, writer=writer, fixer=fixer), writer, fixer
    return asyncio.run(go())


def pdf_text(result: PaperResult) -> str:
    return subprocess.run(["pdftotext", "-enc", "UTF-8", str(result.pdf), "-"], capture_output=True, check=True,
                          text=True).stdout


def user_text(body: dict[str, object]) -> str:
    messages = body["messages"]
    assert isinstance(messages, list)
    return str(messages[-1]["content"])


@needs_latex
def test_the_model_writes_each_section_and_an_invented_number_is_revised_away(
        run_dir: pathlib.Path, writing_server: ScriptedLLMServer) -> None:
    llm = client(writing_server)
    result, writer, fixer = write(run_dir, llm)

    # Each section was asked for once, with what its request carries; results a second time, to revise.
    asked = [user_text(r.body) for r in writing_server.for_action("write_section")]
    sections = [text.split("\n")[1] for text in asked]
    assert sorted(sections) == sorted([f"section: {s.name}" for s in result.sections] + ["section: results"])
    first_results, revision = [t for t in asked if t.startswith("action: write_section\nsection: results\n")]
    assert "--- draft (" in first_results and "--- your previous attempt ---" not in first_results
    assert "0.967233  (tuning best: val_accuracy mean over seeds)" in first_results
    assert "There are no references: cite nothing." in first_results and "- fig:curves: " in first_results
    # The checker caught the invented number; the revision shows it, with the attempt it came from.
    assert "The number 4242.5 matches no recorded value" in revision and INVENTED in revision
    attempts = {s.name: s.attempts for s in result.sections}
    assert attempts == {**{s.name: 1 for s in result.sections}, "results": 2}
    assert not result.unverified and "4242.5" not in pdf_text(result)
    report = json.loads((result.directory / "paper.json").read_text())
    assert report["writer"] == MODEL and writer.fallbacks == {}
    assert report["numbers"]["unverified"] == 0 and report["numbers"]["checked"] > 50

    # The LaTeX error was repaired by the model, from the log excerpt and the numbered offending lines.
    [fix] = writing_server.for_action("fix_latex")
    shown = user_text(fix.body)
    assert "Undefined control sequence." in shown and "--- log excerpt ---" in shown
    line = next(n for n, text in enumerate(result.tex.read_text().split("\n"), 1) if "key." in text)
    assert f"{line}: {BAD_MACRO}" in shown
    assert result.build.fixes == [f"{MODEL}: paper.tex:{line}: Undefined control sequence."]
    assert r"Weight decay is \emph{the} key." in result.tex.read_text() and fixer.fallbacks == []
    assert "Weight decay is the key." in " ".join(pdf_text(result).split())

    # Every call is in the run's accounts, in the writeup role.
    ledger = llm.ledger
    assert ledger.by_role["writeup"].calls == 11 and set(ledger.by_role) == {"writeup"}
    assert ledger.subject("writeup:results").calls == 2 and ledger.subject("writeup:latex").calls == 1
    assert {c.prompt for c in ledger.calls} == {"write_section", "fix_latex"}


@needs_latex
def test_a_token_cap_turns_the_rest_of_the_writeup_offline(run_dir: pathlib.Path,
                                                            writing_server: ScriptedLLMServer) -> None:
    # Nine sections of 3500 tokens each pass a 20000-token cap together (each started under it); the revision
    # of the results section and the LaTeX repair come after it.
    writing_server.script("write_section", *[Reply(usage=(3000, 500)) for _ in range(9)])
    llm = client(writing_server, caps=Caps(max_tokens=20_000))
    result, writer, fixer = write(run_dir, llm)

    assert [r.action for r in writing_server.requests] == ["write_section"] * 9  # nothing after the cap
    reason = llm.ledger.stopped  # how far past the cap depends on how many answers were in when it was checked
    assert reason is not None and re.fullmatch(r"LLM token cap reached: \d+ of 20000 tokens used; no new LLM "
                                               r"work starts", reason)
    assert writer.fallbacks == {"results": reason} and llm.ledger.total.total_tokens == 31_500
    assert result.writer == f"{MODEL}; offline: results"
    assert json.loads((result.directory / "paper.json").read_text())["writer"] == result.writer
    # The results section fell back to its offline draft: the invented number is gone, nothing is flagged.
    assert not result.unverified and "4242.5" not in pdf_text(result)
    # The LaTeX error went to the deterministic fixer, and the build report says why.
    assert fixer.fallbacks == [reason]
    [fix] = result.build.fixes
    assert fix.startswith(f"deterministic (after {MODEL}: LLM token cap reached") and "Undefined control" in fix
    assert r"Weight decay is {the} key." in result.tex.read_text()
    assert result.build.ok


def request(section: SectionName = "results", feedback: tuple[str, ...] = ()) -> SectionRequest:
    return SectionRequest(section=section, title="T", guidance="g", context="c", draft="We reach 0.5.",
                          facts=(Fact(0.5, "a result"),), references=(), labels={}, feedback=feedback)


def test_prompts_are_versioned_and_bounded() -> None:
    prompts = PromptLibrary()
    assert prompts.version("write_section") == "1" and prompts.version("fix_latex") == "1"
    facts = [Fact(i + 0.25, f"fact {i}") for i in range(5000)]
    draft = "We reach 4321.25 here. " + "d" * 100_000
    shown = _fact_lines(facts, draft)
    assert len(shown) == MAX_FACTS and shown[0] == "4321.25  (fact 4321)"  # the draft's own numbers first
    references = tuple(Reference(key=f"k{i}", title="t", abstract="a" * 5000) for i in range(200))
    prompt = prompts.render("write_section", section="results", title="T", guidance="g", context="c" * 100_000,
                            draft=draft, facts=shown, facts_total=len(facts), references=references[:MAX_REFERENCES],
                            labels={"fig:a": "x" * 5000}, feedback=("f" * 5000,) * 50, previous="p" * 100_000)
    assert prompt.user.startswith("action: write_section\nsection: results\n")
    assert f"({MAX_FACTS} of 5000; value" in prompt.user and len(prompt.user) < 90_000, len(prompt.user)
    # The fixer sees whole lines (its answer replaces them), as many around the error as a budget allows.
    lines = ["short"] * 20 + ["p" * 5000] * 3 + ["ERROR " + "e" * 20_000] + ["a" * 100] * 10
    assert _window(lines, 24) == (21, 28)  # two long lines before fit the budget, four short ones after
    assert _window(["x"] * 30, 15) == (14 - FIX_BEFORE, 15 + FIX_AFTER) and _window(["x"], 1) == (0, 1)
    error = LatexError("Undefined control sequence.", "paper.tex", 24, "x" * 5000, "log\n" * 100_000)
    numbered = [(n + 1, lines[n]) for n in range(*_window(lines, 24))]
    fix = prompts.render("fix_latex", error=error, first=numbered[0][0], last=numbered[-1][0], numbered=numbered)
    assert fix.user.startswith("action: fix_latex\n") and len(fix.user) < 40_000, len(fix.user)
    assert "24: ERROR " + "e" * 20_000 + "\n" in fix.user


def test_without_fallback_a_reached_cap_is_an_error(server: ScriptedLLMServer) -> None:
    async def go() -> None:
        async with client(server, caps=Caps(max_tokens=10)) as llm:
            llm.ledger.charge("code", "n0001", MODEL, Usage(prompt_tokens=10, calls=1))  # the search spent it
            strict, lenient = LLMSectionWriter(llm, fallback=False), LLMSectionWriter(llm)
            with pytest.raises(BudgetExceeded, match="token cap reached"):
                await strict.write(request())
            assert await lenient.write(request()) == "We reach 0.5."
            assert lenient.name == f"{MODEL}; offline: results"
    asyncio.run(go())
    assert server.requests == []


def latex_error(line: int = 3, file: str = "paper.tex") -> LatexError:
    return LatexError("Undefined control sequence.", file, line, r"Weight \emphh", "! excerpt")


SOURCE = "\\documentclass{article}\n\\begin{document}\nWeight \\emphh{decay}.\n\\end{document}"


def fix(server: ScriptedLLMServer, error: LatexError, source: str = SOURCE) -> tuple[str | None, LLMLatexFixer]:
    async def go() -> tuple[str | None, LLMLatexFixer]:
        async with client(server) as llm:
            fixer = LLMLatexFixer(llm)
            return await fixer.fix(source, error), fixer
    return asyncio.run(go())


def test_the_fixer_corrects_only_the_lines_it_showed(server: ScriptedLLMServer) -> None:
    # A model that copies the line numbers it was shown still gives LaTeX back.
    server.script("fix_latex", Reply(content="```latex\n1: \\documentclass{article}\n2: \\begin{document}\n"
                                             "3: Weight \\emph{decay}.\n4: \\end{document}\n```"))
    fixed, fixer = fix(server, latex_error())
    assert fixed == SOURCE.replace("emphh", "emph") and fixer.name == MODEL
    # Lines 1 to 7 are shown; the answer drops the blank line that ends them, which still parts the paragraphs.
    source = "\\documentclass{article}\n\\begin{document}\nWeight \\emphh{decay}.\na\nb\nc\n\nTail.\n\\end{document}"
    server.script("fix_latex", Reply(content="```latex\n\\documentclass{article}\n\\begin{document}\n"
                                             "Weight \\emph{decay}.\na\nb\nc\n```"))
    fixed, _ = fix(server, latex_error(), source)
    assert fixed == source.replace("emphh", "emph")
    assert "Lines 1 to 7 of paper.tex" in user_text(server.for_action("fix_latex")[-1].body)


def test_an_unusable_fix_goes_to_the_deterministic_fixer(server: ScriptedLLMServer) -> None:
    unchanged = "```latex\n" + SOURCE + "\n```"
    dropped = "```latex\nWeight \\emph{decay}.\n```"  # loses \begin{document}
    server.script("fix_latex", Reply(content=dropped), Reply(content=unchanged), Reply(content=unchanged))
    fixed, fixer = fix(server, latex_error())
    first, repair, again = server.for_action("fix_latex")
    assert repair.repair and again.repair and "keep the document's structure" in user_text(repair.body)
    assert fixed == SOURCE.replace("\\emphh", "")  # the deterministic repair
    assert fixer.name.startswith(f"deterministic (after {MODEL}: fix_latex@1: unusable answer")
    assert len(fixer.fallbacks) == 1 and "lines are unchanged" in fixer.fallbacks[0]


def test_an_error_outside_the_paper_source_is_not_sent(server: ScriptedLLMServer) -> None:
    fixed, fixer = fix(server, latex_error(file="paper.bbl"))
    assert fixed is None and server.requests == []
    assert "not on a line of paper.tex (paper.bbl:3)" in fixer.fallbacks[0]
