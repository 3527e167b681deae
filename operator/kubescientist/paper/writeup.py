"""Write a run's paper: figures, tables, sections, checks, LaTeX, PDF, all under ``<run>/paper/``.

    result = write_paper("runs/quickstart")                  # offline: no model anywhere
    result = await awrite_paper(run_dir, writer=my_llm_writer, fixer=my_llm_fixer)

Each section comes from the ``SectionWriter`` (the offline writer by default); whatever it returns is made to
fit (``sanitize``), its citations resolved against the literature records, its ``\\ref`` labels against the
paper's figures and tables, and its numbers checked against the run's facts. A model writer gets its
untraceable numbers back as feedback for ``revisions`` rounds; what is still untraceable is flagged in the
PDF and counted in ``paper.json``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import difflib
import json
import pathlib
import re
import shutil
import time
from typing import Any, Mapping, Sequence

from kubescientist.paper import citations, latex, numbers, offline
from kubescientist.paper.analysis import RunAnalysis, analyse, register_references
from kubescientist.paper.build import BuildReport, DeterministicFixer, LatexFixer, build, preflight
from kubescientist.paper.citations import Reference
from kubescientist.paper.figures import Figure, draw_all
from kubescientist.paper.fmt import escape, label
from kubescientist.paper.records import load
from kubescientist.paper.sections import (GUIDANCE, HEADINGS, SECTIONS, OfflineWriter, SectionName,
                                          SectionRequest, SectionWriter, sanitize)
from kubescientist.paper.tables import Table, build_all

PAPER_DIR = "paper"
REPORT_FILE = "paper.json"
REFERENCES_FILE = "references.json"
PAGE_LIMIT = 8
"""Main-text pages (references and appendix excluded), as at most major ML venues."""
SUPPORTING = frozenset({"search", "variants", "config", "best"})
"""Figures and tables that go to the appendix first when the main text is over the page limit."""


@dataclasses.dataclass(frozen=True)
class SectionReport:
    """What the checks found in one section."""

    name: SectionName
    """The section."""
    numbers: tuple[numbers.Finding, ...]
    """Every number in it and whether it matched a recorded fact."""
    citation_fixes: tuple[citations.CitationFix, ...]
    """Unknown ``\\cite`` keys mapped or removed."""
    ref_fixes: tuple[str, ...]
    """Unknown ``\\ref`` labels mapped or removed."""
    attempts: int
    """How many times the writer wrote it."""


@dataclasses.dataclass(frozen=True)
class PaperResult:
    """The written paper and everything checked on the way."""

    directory: pathlib.Path
    """``<run>/paper``: the PDF and its complete sources."""
    pdf: pathlib.Path
    """``<run>/paper/paper.pdf``."""
    tex: pathlib.Path
    """``<run>/paper/paper.tex``."""
    title: str
    """The paper's title (plain text)."""
    writer: str
    """Who wrote the sections: ``offline`` or the model."""
    figures: tuple[str, ...]
    """Figure files (stems) under ``figures/``."""
    tables: tuple[str, ...]
    """Table labels."""
    references: tuple[str, ...]
    """Cite keys in ``references.bib``."""
    sections: tuple[SectionReport, ...]
    """Per-section check results."""
    build: BuildReport
    """The LaTeX build."""
    page_limit: int
    """The main-text page limit checked."""
    moved_to_appendix: tuple[str, ...]
    """Figures and tables moved to the appendix because the main text was over the limit."""
    seconds: float
    """Wall time of the whole writeup."""

    @property
    def unverified(self) -> list[numbers.Finding]:
        return [f for s in self.sections for f in s.numbers if f.status == "unverified"]

    @property
    def within_page_limit(self) -> bool:
        return self.build.main_pages <= self.page_limit

    def describe(self) -> str:
        """One line for a person: where the PDF is, its length against the limit, and the number check."""
        checked = sum(len(s.numbers) for s in self.sections)
        limit = "within" if self.within_page_limit else "OVER"
        return (f"{self.pdf} ({self.build.pages} pages, {self.build.main_pages} of main text, {limit} the limit of "
                f"{self.page_limit}); {checked} numbers checked, {len(self.unverified)} untraceable; written by "
                f"{self.writer} in {self.seconds:.1f} s")

    def to_dict(self) -> dict[str, Any]:
        checked = [f for s in self.sections for f in s.numbers]
        return {
            "schema": "kubescientist.io/paper/v1",
            "title": self.title,
            "writer": self.writer,
            "pdf": self.pdf.name,
            "tex": self.tex.name,
            "figures": list(self.figures),
            "tables": list(self.tables),
            "references": list(self.references),
            "numbers": {
                "checked": len(checked),
                "matched": sum(f.status == "matched" for f in checked),
                "rewritten": sum(f.status == "rewritten" for f in checked),
                "unverified": sum(f.status == "unverified" for f in checked),
            },
            "pages": {"total": self.build.pages, "main": self.build.main_pages, "limit": self.page_limit,
                      "withinLimit": self.within_page_limit, "movedToAppendix": list(self.moved_to_appendix)},
            "sections": [{"name": s.name, "attempts": s.attempts,
                          "numbers": [{k: v for k, v in f.to_dict().items() if k not in ("start", "end")}
                                      for f in s.numbers],
                          "citationFixes": [dataclasses.asdict(c) for c in s.citation_fixes],
                          "refFixes": list(s.ref_fixes)} for s in self.sections],
            "build": {**self.build.to_dict(), "pdf": self.pdf.name},
            "seconds": self.seconds,
        }


def write_paper(run_dir: pathlib.Path | str, **options: Any) -> PaperResult:
    """Synchronous ``awrite_paper`` for callers without an event loop (the CLI, the local runner)."""
    return asyncio.run(awrite_paper(run_dir, **options))


async def awrite_paper(run_dir: pathlib.Path | str, *, writer: SectionWriter | None = None,
                       fixer: LatexFixer | None = None, literature: Sequence[Reference] = (),
                       page_limit: int = PAGE_LIMIT, revisions: int = 1, max_fixes: int = 5) -> PaperResult:
    """Write, check and compile the paper of the run in ``run_dir`` into ``run_dir/paper/``.

    ``literature`` adds references to those in ``literature.json``. Raises ``RecordsError`` for a folder
    that is not a run, ``ToolMissing`` before any work when LaTeX is not installed, and
    ``LatexBuildError`` (with the log excerpt) when the paper does not compile within ``max_fixes`` repairs.
    """
    started = time.monotonic()
    preflight()
    writer = writer or OfflineWriter()
    records = load(run_dir)
    analysis = analyse(records)
    out = records.root / PAPER_DIR
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    references = citations.unique([*records.literature, *literature])
    register_references(analysis.facts, references)
    figures = draw_all(analysis, out / "figures")
    tables = build_all(analysis)
    drafts = offline.drafts(analysis, figures, tables, references)
    labels = offline.labels(figures, tables)
    known_labels = [*labels, *(f"sec:{name}" for name in SECTIONS), "sec:appendix"]
    context = offline.digest(analysis)
    reports = await asyncio.gather(*(
        _section(name, writer, analysis, drafts[name], context, references, labels, known_labels, revisions)
        for name in SECTIONS))
    bodies = {name: body for name, (body, _) in zip(SECTIONS, reports)}
    section_reports = [report for _, report in reports]
    _reference_everything(bodies, figures, tables)
    unverified = sum(f.status == "unverified" for r in section_reports for f in r.numbers)
    tex = out / "paper.tex"
    tex.write_text(latex.render("paper.tex.j2", _context(analysis, bodies, figures, tables, references,
                                                         writer.name, unverified)), encoding="utf-8")
    if references:
        (out / "references.bib").write_text(citations.bibtex(references), encoding="utf-8")
        # The records behind the .bib, so that a reviewer can trace the paper's numbers as the writer did.
        (out / REFERENCES_FILE).write_text(json.dumps({"references": [r.to_dict() for r in references]}, indent=2)
                                           + "\n", encoding="utf-8")
    latex.copy_style(out)
    fixer = fixer or DeterministicFixer()
    report = await build(out, tex.name, fixer, max_fixes=max_fixes)
    moved: list[str] = []
    if report.main_pages > page_limit:
        # Over the limit: the floats that support the argument rather than carry it move to the appendix,
        # where the references to them still lead. What is still over is reported, not cut.
        figures = [dataclasses.replace(f, section="appendix") if f.name in SUPPORTING else f for f in figures]
        tables = [dataclasses.replace(t, section="appendix") if t.name in SUPPORTING else t for t in tables]
        moved = [f.name for f in figures if f.name in SUPPORTING] + [t.name for t in tables if t.name in SUPPORTING]
        tex.write_text(latex.render("paper.tex.j2", _context(analysis, bodies, figures, tables, references,
                                                             writer.name, unverified)), encoding="utf-8")
        report = await build(out, tex.name, fixer, max_fixes=max_fixes)
    result = PaperResult(
        directory=out, pdf=out / "paper.pdf", tex=tex, title=records.idea.title, writer=writer.name,
        figures=tuple(f.name for f in figures), tables=tuple(t.label for t in tables),
        references=tuple(r.key for r in references), sections=tuple(section_reports), build=report,
        page_limit=page_limit, moved_to_appendix=tuple(moved), seconds=round(time.monotonic() - started, 3))
    (out / REPORT_FILE).write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
    return result


async def _section(name: SectionName, writer: SectionWriter, analysis: RunAnalysis, draft: str, context: str,
                   references: Sequence[Reference], labels: Mapping[str, str], known_labels: list[str],
                   revisions: int) -> tuple[str, SectionReport]:
    feedback: tuple[str, ...] = ()
    attempts = 0
    while True:
        attempts += 1
        request = SectionRequest(
            section=name, title=analysis.records.idea.title, guidance=GUIDANCE[name], context=context,
            draft=draft, facts=tuple(analysis.facts), references=tuple(references), labels=labels,
            feedback=feedback)
        text = sanitize(await writer.write(request))
        text, cite_fixes = citations.resolve(text, [r.key for r in references])
        text, ref_fixes = fix_refs(text, known_labels)
        findings = numbers.check(text, analysis.facts)
        feedback = tuple(
            f"The number {f.text} matches no recorded value; state only numbers from the facts, rounded "
            f"(at ...{text[max(0, f.start - 60):f.end + 20]}...)" for f in findings if f.status == "unverified"
        ) + tuple(f"\\cite key {c.key} is not among the references; cite only their keys"
                  for c in cite_fixes if c.replacement is None)
        if not feedback or attempts > revisions or isinstance(writer, OfflineWriter):
            break
    return numbers.enforce(text, findings), SectionReport(name, tuple(findings), tuple(cite_fixes),
                                                          tuple(ref_fixes), attempts)


_REF = re.compile(r"(?:(?:Figure|Fig\.|Table|Tab\.|Section|Sec\.|Appendix)~?\s*)?\\(ref|autoref|cref|Cref|pageref)"
                  r"\{([^}]*)\}")


def fix_refs(text: str, known: Sequence[str]) -> tuple[str, list[str]]:
    """``\\ref`` labels that name nothing mapped to the evident label or removed (never a printed ``??``)."""
    fixes: list[str] = []

    def fix(match: re.Match[str]) -> str:
        key = match.group(2)
        if key in known:
            return match.group(0)
        close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.75)
        if close:
            fixes.append(f"{key} -> {close[0]}")
            return match.group(0).replace("{" + key + "}", "{" + close[0] + "}")
        fixes.append(f"{key} removed")
        return ""

    return _REF.sub(fix, text), fixes


def _reference_everything(bodies: dict[SectionName, str], figures: Sequence[Figure], tables: Sequence[Table]) -> None:
    """Every main-text figure and table is referred to from its section (a model may forget one)."""
    text = "\n".join(bodies.values())
    items = [("Figure", f.label, f.section) for f in figures] + [("Table", t.label, t.section) for t in tables]
    for word, label, place in items:
        if place == "appendix" or "\\ref{" + label + "}" in text:
            continue
        section: SectionName = "setup" if place == "setup" else "ablations" if place == "ablations" else "results"
        bodies[section] += f"\n\nSee {word}~\\ref{{{label}}}."


def _group(figures: Sequence[Figure]) -> list[list[Figure]]:
    """Half-width figures side by side in pairs (in order of their first), anything else on its own."""
    groups: list[list[Figure]] = []
    waiting: list[Figure] | None = None
    for figure in figures:
        if figure.width >= 0.5:
            groups.append([figure])
        elif waiting is not None:
            waiting.append(figure)
            waiting = None
        else:
            waiting = [figure]
            groups.append(waiting)
    return groups


def _context(analysis: RunAnalysis, bodies: dict[SectionName, str], figures: Sequence[Figure],
             tables: Sequence[Table], references: Sequence[Reference], writer: str, unverified: int
             ) -> dict[str, Any]:
    records = analysis.records
    place = {"setup": "setup", "results": "results", "ablations": "ablations"}
    sections = []
    for name in SECTIONS:
        if name == "abstract":
            continue
        sections.append({
            "name": name, "heading": HEADINGS[name], "body": bodies[name],
            "tables": [t for t in tables if place.get(t.section) == name],
            "figures": _group([f for f in figures if place.get(f.section) == name]),
        })
    how = "offline, without a language model" if writer == "offline" else f"with {escape(writer)}"
    note = (rf"Written automatically by kubescientist ({how}) from the records of run "
            rf"\texttt{{{escape(records.name)}}}; every number in the text was checked against them.")
    if unverified:
        note += r" Numbers marked \unverified{} could not be traced to a recorded value."
    appendix_tables = [t for t in tables if t.section == "appendix"]
    appendix_figures = [f for f in figures if f.section == "appendix"]
    appendix = []
    if any(t.name == "nodes" for t in appendix_tables):
        appendix.append(r"Table~\ref{tab:nodes} lists every node of the search with what it tried and its "
                        r"outcome; the run's journal holds the full record, including why each node was created.")
    for figure in appendix_figures:
        if figure.pdf is None:
            appendix.append(rf"Figure~\ref{{{figure.label}}} reproduces a plot written by the experiment program "
                            r"itself for the run's result.")
    model = "offline, without a language model" if writer == "offline" else f"with {writer}"
    disclosure = (f"Generated by AI: written by kubescientist ({model}) from the records of the automated research "
                  f"run {records.name}; no person wrote or checked it.")
    keywords = ["automated research", "kubescientist", label(analysis.metric), records.template.name or records.name,
                "seed statistics", "ablations"]
    return {
        "pdf": {"title": escape(records.idea.title), "author": f"kubescientist (run {escape(records.name)})",
                "subject": escape(records.idea.hypothesis.strip() or records.idea.title),
                "keywords": ", ".join(escape(k) for k in keywords if k), "disclosure": escape(disclosure)},
        "title": escape(records.idea.title),
        "author": r"kubescientist \\ \normalfont\small automated research run \texttt{" + escape(records.name) + "}",
        "venue": r"Preprint. Written automatically by kubescientist.",
        "note": note,
        "abstract": bodies["abstract"],
        "sections": sections,
        "bibliography": bool(references),
        "appendix_text": " ".join(appendix),
        "appendix_tables": appendix_tables,
        "appendix_figures": appendix_figures,
    }
