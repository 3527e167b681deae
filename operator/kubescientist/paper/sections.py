"""The paper's sections and the seam where a language model plugs in.

A ``SectionWriter`` turns one ``SectionRequest`` into the LaTeX body of one section. The request carries
everything the writer may use: the run's records as text, the offline draft (already correct, only plain),
the facts (every number it may state), the references it may cite and the figures and tables it may refer
to. Whatever it returns is checked afterwards (numbers, citations, LaTeX), so a writer cannot smuggle in
a number or a reference the run does not have. ``OfflineWriter`` returns the draft unchanged.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Literal, Mapping, Protocol

from kubescientist.paper.citations import Reference
from kubescientist.paper.numbers import Fact

SectionName = Literal["abstract", "introduction", "related_work", "method", "setup", "results", "ablations",
                      "limitations", "conclusion"]
SECTIONS: tuple[SectionName, ...] = ("abstract", "introduction", "related_work", "method", "setup", "results",
                                     "ablations", "limitations", "conclusion")
HEADINGS: Mapping[SectionName, str] = {
    "abstract": "Abstract", "introduction": "Introduction", "related_work": "Related Work", "method": "Method",
    "setup": "Experimental Setup", "results": "Results", "ablations": "Ablations", "limitations": "Limitations",
    "conclusion": "Conclusion",
}
GUIDANCE: Mapping[SectionName, str] = {
    "abstract": "One paragraph, at most 200 words: the question, what was run, the main result with its error "
                "bar and seed count, the main ablation finding. No citations, no figure references.",
    "introduction": "Motivate the idea, state the hypothesis, summarise what the run did and list the "
                    "contributions (itemize). Claims must follow from the results.",
    "related_work": "Relate the idea to the given references only, citing them with \\citet/\\citep and the keys "
                    "given. With no references, say plainly that no literature search was run.",
    "method": "The experiment program, the search procedure (stages, selection, seeds), the research agenda "
              "and the ablations.",
    "setup": "Datasets, metrics and objective, budgets, seeds, compute; refer to the configuration table.",
    "results": "The stage outcomes, the result per dataset, training curves, the search and the variants; refer "
               "to every results figure and table by \\ref. State error bars and seed counts; do not call a "
               "difference smaller than its standard error an improvement.",
    "ablations": "What each ablation changes and what that says about the component; refer to the ablation "
                 "figure and table.",
    "limitations": "Honest limitations: seeds, single runs, budget, one program, failed nodes, how the text was "
                   "written.",
    "conclusion": "The answer the run gives to the question, in a few sentences, and what to run next.",
}


@dataclasses.dataclass(frozen=True)
class SectionRequest:
    """What a writer gets to write one section."""

    section: SectionName
    """Which section."""
    title: str
    """The paper's title."""
    guidance: str
    """What belongs in the section."""
    context: str
    """The run's records as plain text: idea, objective, stage outcomes, variants, ablations, counts."""
    draft: str
    """The offline writer's version of the section (LaTeX): every fact in it is correct."""
    facts: tuple[Fact, ...]
    """Every number the section may state, with its source; anything else is flagged."""
    references: tuple[Reference, ...]
    """The works it may cite (by key); any other key is removed."""
    labels: Mapping[str, str]
    """Figure and table labels it may ``\\ref``, with their captions."""
    feedback: tuple[str, ...] = ()
    """Problems with the writer's previous attempt at this section (untraceable numbers, unknown keys)."""


class SectionWriter(Protocol):
    """Writes the LaTeX body of one section (no ``\\section`` heading)."""

    @property
    def name(self) -> str:
        """Who writes: ``offline`` or the model's name, recorded in the paper's report."""
        ...

    async def write(self, request: SectionRequest) -> str: ...


class OfflineWriter:
    """The deterministic writer: the draft assembled from the run's records is the section."""

    name = "offline"

    async def write(self, request: SectionRequest) -> str:
        return request.draft


_FENCE = re.compile(r"^```[a-zA-Z]*\s*$", re.MULTILINE)
_HEADING = re.compile(r"^\s*\\(?:section|chapter)\*?\{[^}]*\}\s*(?:\\label\{[^}]*\}\s*)?", re.MULTILINE)
_DOCUMENT = re.compile(r"\\(?:begin|end)\{(?:document|abstract)\}")
_UNICODE = {"±": r"$\pm$", "−": r"$-$", "×": r"$\times$", "≈": r"$\approx$", "→": r"$\rightarrow$",
            "≤": r"$\leq$", "≥": r"$\geq$", "Δ": r"$\Delta$", "μ": r"$\mu$", "σ": r"$\sigma$"}


def sanitize(text: str) -> str:
    """A model's section made to fit the template: fences, headings and document wrappers removed, bare
    percent signs after numbers escaped (else LaTeX reads the rest of the line as a comment), and symbols
    pdflatex cannot typeset from UTF-8 replaced by their math-mode forms."""
    text = _FENCE.sub("", text)
    text = _HEADING.sub("", text, count=1)
    text = _DOCUMENT.sub("", text)
    text = re.sub(r"(\d)\s?(?<!\\)%", r"\1\\%", text)
    for char, latex in _UNICODE.items():
        text = text.replace(char, latex)
    return text.strip()
