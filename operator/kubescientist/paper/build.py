"""Compile the paper: chktex, then pdflatex + bibtex + pdflatex twice, with a bounded fix loop on errors.

On a LaTeX error the ``LatexFixer`` gets the whole source and the error with its log excerpt, and returns
a repaired source (or gives up). A model can fix anything; the offline ``DeterministicFixer`` knows the
common failures (an undefined macro, a stray ``_``, ``&`` or ``#``, a missing file) and otherwise comments
the offending line out. After ``max_fixes`` attempts the build fails with the log excerpt, never silently.
"""

from __future__ import annotations

import asyncio
import dataclasses
import pathlib
import re
import shutil
import time
from typing import Protocol

REQUIRED_TOOLS = ("pdflatex", "bibtex")
LATEX_TIMEOUT_S = 120.0
"""One pdflatex pass of a conference-length paper takes seconds; a hang (waiting on input) must not."""
CHKTEX_ARGS = ("-q", "-n2", "-n8", "-n24", "-n13", "-n1", "-n44")
"""Warnings silenced: non-breaking space before refs, dash lengths, space after labels, intersentence
spacing, command terminated with space, vertical rules in tables: style opinions, not errors."""
STRUCTURAL = re.compile(r"\\(?:documentclass|usepackage\{kspaper\}|begin\{document\}|end\{document\}|maketitle)")


class ToolMissing(Exception):
    """A LaTeX tool is not installed; the message says which and how to install it."""


@dataclasses.dataclass(frozen=True)
class LatexError:
    """The first error of a failed pdflatex pass."""

    message: str
    """The error line, e.g. ``Undefined control sequence.``"""
    file: str
    """The file it occurred in (``paper.tex`` for the paper itself)."""
    line: int | None
    """The line in that file, when LaTeX names one."""
    context: str
    """The source text up to the error as LaTeX shows it (``l.42 ...\\foo``)."""
    excerpt: str
    """The log lines around the error, for a person or a model."""


class LatexFixer(Protocol):
    """Repairs LaTeX source given a compile error."""

    @property
    def name(self) -> str:
        """``deterministic`` or the model's name."""
        ...

    async def fix(self, source: str, error: LatexError) -> str | None:
        """The repaired source, or None to give up."""
        ...


@dataclasses.dataclass
class BuildReport:
    """How the build went."""

    ok: bool = False
    """Whether a PDF was produced."""
    pdf: pathlib.Path | None = None
    """The PDF."""
    pages: int = 0
    """Pages of the PDF."""
    main_pages: int = 0
    """Pages up to the end of the main text (references and appendix excluded)."""
    fixes: list[str] = dataclasses.field(default_factory=list)
    """Each repair of the source, in words."""
    chktex: list[str] = dataclasses.field(default_factory=list)
    """chktex's warnings on the final source."""
    warnings: list[str] = dataclasses.field(default_factory=list)
    """Undefined references or citations and other LaTeX warnings worth a look."""
    error: LatexError | None = None
    """The error the build stopped on, when it failed."""
    seconds: float = 0.0
    """Wall time of the whole build."""
    passes: int = 0
    """pdflatex runs."""

    def to_dict(self) -> dict[str, object]:
        data = dataclasses.asdict(self)
        data["pdf"] = str(self.pdf) if self.pdf else None
        return data


class LatexBuildError(Exception):
    """The paper did not compile within the fix budget; ``report.error.excerpt`` is the log excerpt."""

    def __init__(self, report: BuildReport) -> None:
        error = report.error
        where = f"{error.file}:{error.line}" if error and error.line else (error.file if error else "?")
        super().__init__(f"LaTeX failed at {where}: {error.message if error else 'unknown error'}\n"
                         f"{error.excerpt if error else ''}")
        self.report = report


def preflight() -> None:
    """Fail before any work when a tool is missing (not after the text is written)."""
    missing = [t for t in REQUIRED_TOOLS if shutil.which(t) is None]
    if missing:
        raise ToolMissing(f"{', '.join(missing)} not found: install texlive (Debian: apt-get install -y "
                          "texlive-latex-base texlive-latex-recommended texlive-latex-extra "
                          "texlive-fonts-recommended chktex poppler-utils)")


async def _run(args: list[str], cwd: pathlib.Path, timeout: float = LATEX_TIMEOUT_S) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *args, cwd=cwd, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
        return 124, f"{args[0]} timed out after {timeout:.0f} s"
    return process.returncode if process.returncode is not None else 1, out.decode(errors="replace")


_FILE_LINE_ERROR = re.compile(r"^(?:\./)?([^\s:][^:\n]*\.(?:tex|sty|bbl|cls)):(\d+): (.*)$", re.MULTILINE)
_BANG_ERROR = re.compile(r"^! (.*)$", re.MULTILINE)
_CONTEXT = re.compile(r"^l\.(\d+) (.*)$", re.MULTILINE)


def parse_error(log: str, main: str = "paper.tex") -> LatexError | None:
    """The first error in a pdflatex log (run with ``-file-line-error``)."""
    match = _FILE_LINE_ERROR.search(log) or _BANG_ERROR.search(log)
    if match is None:
        if "Emergency stop" in log or "Fatal error" in log:
            return LatexError("Emergency stop", main, None, "", _excerpt(log, len(log) - 1))
        return None
    if match.re is _FILE_LINE_ERROR:
        file, line, message = pathlib.Path(match.group(1)).name, int(match.group(2)), match.group(3)
    else:
        file, line, message = main, None, match.group(1)
    context_match = _CONTEXT.search(log, match.end())
    context = context_match.group(2) if context_match else ""
    if line is None and context_match:
        line = int(context_match.group(1))
    return LatexError(message.strip(), file, line, context, _excerpt(log, match.start()))


def _excerpt(log: str, at: int, before: int = 3, after: int = 12) -> str:
    lines = log[:at].count("\n")
    all_lines = log.splitlines()
    return "\n".join(all_lines[max(0, lines - before):lines + after])


class DeterministicFixer:
    """The offline repair: targeted fixes for the common errors, else the offending line commented out."""

    name = "deterministic"

    async def fix(self, source: str, error: LatexError) -> str | None:
        return self.repair(source, error)

    def repair(self, source: str, error: LatexError) -> str | None:
        if error.line is None or error.file != "paper.tex":
            return None
        lines = source.split("\n")
        index = error.line - 1
        if not 0 <= index < len(lines):
            return None
        line = lines[index]
        message = error.message
        fixed: str | None = None
        if "Undefined control sequence" in message:
            macro = re.findall(r"\\[A-Za-z@]+", error.context)
            if macro and macro[-1] in line:
                # Dropping the macro name keeps its argument as a plain group: the text survives.
                fixed = re.sub(re.escape(macro[-1]) + r"(?![A-Za-z@])", "", line, count=1)
        elif "Missing $ inserted" in message and "$" not in line:
            fixed = re.sub(r"(?<!\\)([_^])", lambda m: "\\" + m.group(1) + ("{}" if m.group(1) == "^" else ""), line)
        elif "Misplaced alignment tab character" in message:
            fixed = re.sub(r"(?<!\\)&", r"\\&", line)
        elif "You can't use `macro parameter character #'" in message:
            fixed = re.sub(r"(?<!\\)#", r"\\#", line)
        elif "Environment" in message and "undefined" in message:
            name = re.search(r"Environment (\S+) undefined", message)
            if name:
                env = re.escape(name.group(1))
                # Both ends go, or the \end left behind is the next error.
                pattern = re.compile(rf"\\(begin|end)\{{{env}\}}(\[[^\]]*\])?")
                return pattern.sub("", source)
        if fixed is not None and fixed != line:
            lines[index] = fixed
            return "\n".join(lines)
        if STRUCTURAL.search(line) or not line.strip() or line.lstrip().startswith("%"):
            return None
        lines[index] = "% removed by the LaTeX fixer (" + message.replace("\n", " ")[:80] + "): " + line
        return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class _Pass:
    rc: int
    log: str


async def _pdflatex(folder: pathlib.Path, main: str) -> _Pass:
    rc, out = await _run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "-file-line-error", main],
                         folder)
    log_path = folder / (pathlib.Path(main).stem + ".log")
    log = log_path.read_text(errors="replace") if log_path.exists() else out
    return _Pass(rc, log)


async def build(folder: pathlib.Path, main: str = "paper.tex", fixer: LatexFixer | None = None,
                max_fixes: int = 5) -> BuildReport:
    """Compile ``folder/main`` to PDF; raises LatexBuildError with the log excerpt when it cannot."""
    preflight()
    fixer = fixer or DeterministicFixer()
    report = BuildReport()
    started = time.monotonic()
    tex = folder / main
    stem = tex.stem

    async def compile_pass() -> _Pass:
        while True:
            result = await _pdflatex(folder, main)
            report.passes += 1
            if result.rc == 0:
                return result
            error = parse_error(result.log, main) or LatexError(
                f"pdflatex exited {result.rc}", main, None, "", result.log[-2000:])
            report.error = error
            if len(report.fixes) >= max_fixes:
                raise LatexBuildError(report)
            source = tex.read_text(encoding="utf-8")
            repaired = await fixer.fix(source, error)
            if repaired is None or repaired == source:
                raise LatexBuildError(report)
            report.fixes.append(f"{fixer.name}: {error.file}:{error.line}: {error.message}")
            tex.write_text(repaired, encoding="utf-8")
            report.error = None

    try:
        await compile_pass()
        if re.search(r"\\bibdata\{", (folder / f"{stem}.aux").read_text(errors="replace")):
            rc, out = await _run(["bibtex", stem], folder)
            if rc != 0:
                report.warnings.append("bibtex: " + " ".join(out.split())[-300:])
        await compile_pass()
        last = await compile_pass()
    finally:
        report.seconds = round(time.monotonic() - started, 3)
    pdf = folder / f"{stem}.pdf"
    report.ok = pdf.exists()
    report.pdf = pdf if report.ok else None
    pages = re.search(r"Output written on .*?\((\d+) pages?", last.log.replace("\n", ""))
    report.pages = int(pages.group(1)) if pages else 0
    report.main_pages = _main_pages(folder / f"{stem}.aux") or report.pages
    report.warnings += sorted(set(re.findall(r"LaTeX Warning: ((?:Reference|Citation) `[^']*' [^\n]*undefined)",
                                             last.log)))
    if shutil.which("chktex"):
        findings = await _chktex(folder, main)
        source = tex.read_text(encoding="utf-8")
        styled = await _style_fixes(source, findings, fixer)
        if styled != source:
            # The style fixes go through the same compiler; a fix that breaks the build is undone.
            tex.write_text(styled, encoding="utf-8")
            try:
                await compile_pass()
                await compile_pass()
                report.fixes.append(f"chktex: {len(findings)} finding(s) sent to the {fixer.name} fixer")
            except LatexBuildError:
                tex.write_text(source, encoding="utf-8")
                report.error = None
                await compile_pass()
                await compile_pass()
            findings = await _chktex(folder, main)
        report.chktex = [f.message for f in findings]
    else:
        report.warnings.append("chktex not installed: style checks skipped")
    report.seconds = round(time.monotonic() - started, 3)
    return report


@dataclasses.dataclass(frozen=True)
class StyleFinding:
    """One chktex warning."""

    line: int
    """1-based line in the source."""
    column: int
    """1-based column chktex points at."""
    number: int
    """chktex's warning number (12: interword spacing after an abbreviation's full stop, ...)."""
    message: str
    """``paper.tex:LINE:COL: warning N: text``."""


async def _chktex(folder: pathlib.Path, main: str) -> list[StyleFinding]:
    _, out = await _run(["chktex", *CHKTEX_ARGS, "-v0", main], folder)
    findings = []
    for line in out.splitlines():
        match = re.match(r"^(.*?):(\d+):(\d+):(\d+):(.*)$", line)
        if match:
            findings.append(StyleFinding(int(match.group(2)), int(match.group(3)), int(match.group(4)),
                                         f"{main}:{match.group(2)}:{match.group(3)}: warning {match.group(4)}: "
                                         f"{match.group(5).strip()}"))
    return findings


MAX_STYLE_FIXES = 20
"""chktex findings sent to the fixer per paper, at most."""


async def _style_fixes(source: str, findings: list[StyleFinding], fixer: LatexFixer) -> str:
    """chktex's findings repaired: interword spacing by rule; any other finding by a model fixer, whose answer
    is kept only when it changes the one line named (a style fix must not rewrite the paper)."""
    lines = source.split("\n")
    # Right to left within a line, so that each fix leaves the columns of the ones before it valid.
    for finding in sorted(findings, key=lambda f: (f.line, -f.column))[:MAX_STYLE_FIXES]:
        index, at = finding.line - 1, finding.column - 1
        if not 0 <= index < len(lines):
            continue
        line = lines[index]
        if finding.number == 12 and at < len(line) and line[at] == " ":
            lines[index] = line[:at] + "\\ " + line[at + 1:]
            continue
        if fixer.name == "deterministic":
            continue  # its generic repair comments lines out: right for an error, wrong for a style warning
        current = "\n".join(lines)
        repaired = await fixer.fix(current, LatexError(finding.message, "paper.tex", finding.line, line,
                                                       f"chktex {finding.message}\n{line}"))
        if repaired is None:
            continue
        new = repaired.split("\n")
        if len(new) == len(lines) and all(a == b for i, (a, b) in enumerate(zip(lines, new)) if i != index):
            lines = new
    return "\n".join(lines)


def _main_pages(aux: pathlib.Path) -> int | None:
    """The page the main text ends on, from the ``ks:mainend`` label the template places before the references."""
    if not aux.exists():
        return None
    match = re.search(r"\\newlabel\{ks:mainend\}\{\{[^}]*\}\{(\d+)\}", aux.read_text(errors="replace"))
    return int(match.group(1)) if match else None
