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


def test_chktex_findings_go_to_the_fix_loop():
    import asyncio

    from kubescientist.paper.build import DeterministicFixer, StyleFinding, _style_fixes

    source = "\\begin{document}\nWe use e.g. the model, i.e. a net.\nRest.\n\\end{document}"
    spacing = [StyleFinding(2, 12, 12, "paper.tex:2:12: warning 12: Interword spacing"),
               StyleFinding(2, 28, 12, "paper.tex:2:28: warning 12: Interword spacing")]
    fixed = asyncio.run(_style_fixes(source, spacing, DeterministicFixer()))
    assert fixed.split("\n")[1] == "We use e.g.\\ the model, i.e.\\ a net."

    class ModelFixer:
        name = "model"

        def __init__(self, answer):
            self.answer = answer

        async def fix(self, source, error):
            assert error.line == 3 and "warning 36" in error.message
            return self.answer(source)

    other = [StyleFinding(3, 1, 36, "paper.tex:3:1: warning 36: You should put a space in front of parenthesis")]
    line_only = asyncio.run(_style_fixes(source, other, ModelFixer(lambda s: s.replace("Rest.", "Rest (fixed)."))))
    assert "Rest (fixed)." in line_only
    rewrites = asyncio.run(_style_fixes(source, other, ModelFixer(lambda s: s.replace("model", "MODEL"))))
    assert rewrites == source  # a style fix may touch only the line chktex names
