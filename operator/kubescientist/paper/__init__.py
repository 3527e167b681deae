"""The paper: a compiled LaTeX paper about a finished run, every number traced to the run's records.

    from kubescientist.paper import write_paper
    result = write_paper("runs/quickstart")      # -> runs/quickstart/paper/paper.pdf (+ sources, paper.json)

A language model plugs in through two small protocols, ``SectionWriter`` (the text of one section) and
``LatexFixer`` (repair of a compile error); without them the paper is written and repaired offline.
"""

from kubescientist.paper.build import (BuildReport, DeterministicFixer, LatexBuildError, LatexError, LatexFixer,
                                       ToolMissing)
from kubescientist.paper.citations import Reference
from kubescientist.paper.numbers import Fact, Facts, Finding
from kubescientist.paper.records import RecordsError, RunRecords, load, load_literature
from kubescientist.paper.sections import SECTIONS, OfflineWriter, SectionName, SectionRequest, SectionWriter
from kubescientist.paper.writeup import PAPER_DIR, REPORT_FILE, PaperResult, awrite_paper, write_paper

__all__ = [
    "BuildReport", "DeterministicFixer", "Fact", "Facts", "Finding", "LatexBuildError", "LatexError", "LatexFixer",
    "OfflineWriter", "PAPER_DIR", "PaperResult", "REPORT_FILE", "RecordsError", "Reference", "RunRecords",
    "SECTIONS", "SectionName", "SectionRequest", "SectionWriter", "ToolMissing", "awrite_paper", "load",
    "load_literature", "write_paper",
]
