"""The LaTeX build and its bounded fix loop: an error is repaired, or the build fails with the log excerpt."""

import asyncio
import pathlib

import pytest

from kubescientist.paper.build import DeterministicFixer, LatexBuildError, LatexError, build, parse_error

from paper_support import needs_latex

PREAMBLE = "\\documentclass{article}\n\\begin{document}\n"


def write(folder: pathlib.Path, body: str) -> None:
    (folder / "paper.tex").write_text(PREAMBLE + body + "\n\\end{document}\n")


class ScriptedFixer:
    """Stands in for the model: returns prepared repairs and records what it was shown."""

    name = "scripted"

    def __init__(self, repairs: list[str]) -> None:
        self.repairs = repairs
        self.errors: list[LatexError] = []

    async def fix(self, source: str, error: LatexError) -> str | None:
        self.errors.append(error)
        return self.repairs.pop(0) if self.repairs else None


@needs_latex
def test_a_scripted_fixer_repairs_the_error_it_is_shown(tmp_path):
    write(tmp_path, "Accuracy 97\\% with \\textbff{weight decay}.")
    fixer = ScriptedFixer([PREAMBLE + "Accuracy 97\\% with \\textbf{weight decay}.\n\\end{document}\n"])
    report = asyncio.run(build(tmp_path, fixer=fixer))
    assert report.ok and report.pages == 1
    assert fixer.errors[0].message == "Undefined control sequence."
    assert fixer.errors[0].line == 3 and "\\textbff" in fixer.errors[0].context
    assert report.fixes == ["scripted: paper.tex:3: Undefined control sequence."]


@needs_latex
def test_the_deterministic_fixer_repairs_common_errors(tmp_path):
    write(tmp_path, "Uses \\unknownmacro{AdamW} on a_b.\n\nTables & more #1.")
    report = asyncio.run(build(tmp_path))
    assert report.ok
    source = (tmp_path / "paper.tex").read_text()
    assert "Uses {AdamW} on a\\_b." in source and "Tables \\& more \\#1." in source
    assert [f.split(": ", 2)[2] for f in report.fixes] == [
        "Undefined control sequence.", "Missing $ inserted.", "Misplaced alignment tab character &.",
        "You can't use `macro parameter character #' in horizontal mode."]


@needs_latex
def test_an_unrepairable_error_fails_with_the_log_excerpt(tmp_path):
    write(tmp_path, "\\begin{itemize}\n\\item never closed")
    with pytest.raises(LatexBuildError) as failure:
        asyncio.run(build(tmp_path, fixer=ScriptedFixer([])))
    message = str(failure.value)
    assert "LaTeX failed at paper.tex" in message and "\\begin{itemize}" in message
    assert failure.value.report.error is not None and failure.value.report.error.excerpt in message


@needs_latex
def test_the_fix_loop_is_bounded(tmp_path):
    write(tmp_path, "\\foo{one}\n\\baz{two}\n\\qux{three}")
    with pytest.raises(LatexBuildError, match="Undefined control sequence") as failure:
        asyncio.run(build(tmp_path, max_fixes=2))
    assert len(failure.value.report.fixes) == 2


def test_errors_are_parsed_from_the_log():
    log = ("(./paper.tex\n./paper.tex:7: Undefined control sequence.\n"
           "l.7 We use \\foo\n             {bar}\nNo pages of output.\n")
    error = parse_error(log)
    assert error is not None
    assert (error.file, error.line, error.message) == ("paper.tex", 7, "Undefined control sequence.")
    assert error.context == "We use \\foo"
    source = "a\nb\nc\nd\ne\nf\nWe use \\foo{bar}\n"
    assert DeterministicFixer().repair(source, error) == "a\nb\nc\nd\ne\nf\nWe use {bar}\n"
