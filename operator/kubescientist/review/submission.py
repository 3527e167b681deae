"""What a reviewer reads: the paper's text, and, when the paper came from a run, its sources and records.

A PDF's text comes from ``pdftotext`` (poppler-utils), page by page. A PDF that sits in ``<run>/paper/``
brings its run along, so that the rubric can trace the paper's numbers to the run's metrics; a PDF from
anywhere else is reviewed on its text alone.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
import shutil
import subprocess
from typing import Any, Mapping

from kubescientist.paper.writeup import PAPER_DIR, REPORT_FILE

PDFTOTEXT_TIMEOUT_S = 60
MIN_TEXT_CHARS = 100
"""Less text than this means the PDF is scanned or broken: there is nothing to review."""


class SubmissionError(Exception):
    """The paper cannot be read (missing, not a PDF, no text); the message says what to do."""


@dataclasses.dataclass(frozen=True)
class Submission:
    """A paper under review."""

    text: str
    """The paper's text; pages separated by form feeds when it came from a PDF."""
    title: str
    """The title (the paper's report, else its first line)."""
    pdf: pathlib.Path | None = None
    """The PDF, when reviewing one."""
    source: str | None = None
    """The LaTeX source, when it sits beside the PDF."""
    bibliography: str | None = None
    """``references.bib`` beside the source."""
    run_dir: pathlib.Path | None = None
    """The run the paper was written from."""
    report: Mapping[str, Any] | None = None
    """The writer's ``paper.json``."""

    @property
    def pages(self) -> list[str]:
        return self.text.split("\f") if "\f" in self.text else [self.text]

    def main_pages(self) -> int | None:
        """Pages of main text: the writer's count, else the page where the references or appendix begin."""
        if self.report is not None:
            main = self.report.get("pages", {}).get("main")
            if isinstance(main, int) and main > 0:
                return main
        if "\f" not in self.text:
            return None
        for number, page in enumerate(self.pages, start=1):
            if re.search(r"^\s*(References|Bibliography)\s*$", page, re.MULTILINE | re.IGNORECASE):
                return number
        return len([p for p in self.pages if p.strip()])


def pdf_text(pdf: pathlib.Path) -> str:
    if shutil.which("pdftotext") is None:
        raise SubmissionError("pdftotext not found: install poppler-utils (apt-get install -y poppler-utils)")
    try:
        result = subprocess.run(["pdftotext", "-enc", "UTF-8", str(pdf), "-"], capture_output=True,
                                timeout=PDFTOTEXT_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise SubmissionError(f"{pdf}: pdftotext took longer than {PDFTOTEXT_TIMEOUT_S} s") from None
    if result.returncode != 0:
        raise SubmissionError(f"{pdf}: not a readable PDF ({result.stderr.decode(errors='replace').strip()})")
    return result.stdout.decode("utf-8", errors="replace")


def from_pdf(pdf: pathlib.Path | str) -> Submission:
    pdf = pathlib.Path(pdf)
    if not pdf.is_file():
        raise SubmissionError(f"{pdf}: no such file")
    text = pdf_text(pdf)
    if len(text.strip()) < MIN_TEXT_CHARS:
        raise SubmissionError(f"{pdf}: only {len(text.strip())} characters of text (scanned or broken PDF?)")
    folder = pdf.parent
    source_path = folder / (pdf.stem + ".tex")
    bib_path = folder / "references.bib"
    report_path = folder / REPORT_FILE
    report = json.loads(report_path.read_text(encoding="utf-8")) if report_path.is_file() else None
    run_dir = folder.parent if folder.name == PAPER_DIR and (folder.parent / "summary.json").is_file() else None
    return Submission(
        text=text, title=_title(text, report), pdf=pdf,
        source=source_path.read_text(encoding="utf-8") if source_path.is_file() else None,
        bibliography=bib_path.read_text(encoding="utf-8") if bib_path.is_file() else None,
        run_dir=run_dir, report=report)


def from_run(run_dir: pathlib.Path | str) -> Submission:
    pdf = pathlib.Path(run_dir) / PAPER_DIR / "paper.pdf"
    if not pdf.is_file():
        raise SubmissionError(f"{pdf}: no paper yet; write it first with `kubescientist writeup {run_dir}`")
    return from_pdf(pdf)


def from_text(text: str, title: str = "") -> Submission:
    """A paper known only by its text (the reviewer benchmark's papers)."""
    return Submission(text=text, title=title or _title(text, None))


def _title(text: str, report: Mapping[str, Any] | None) -> str:
    if report is not None and report.get("title"):
        return str(report["title"])
    return next((line.strip() for line in text.splitlines() if line.strip()), "")
