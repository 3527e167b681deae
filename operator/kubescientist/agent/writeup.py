"""The writeup model: the paper's sections and the repair of LaTeX errors, as plug-ins of ``kubescientist.paper``.

    writer = LLMSectionWriter(client)             # the SectionWriter protocol, role ``writeup``
    fixer = LLMLatexFixer(client)                 # the LatexFixer protocol, role ``writeup``
    result = await awrite_paper(run_dir, writer=writer, fixer=fixer)

The writer writes one section per request, from what the request carries and nothing else: the run's
records, the offline draft (correct but plain), the facts (the only numbers it may state), the reference
keys (the only works it may cite) and the figure and table labels. The paper checks every answer afterwards
and hands untraceable numbers back as ``feedback`` for a revision; the writer then also sees its previous
attempt, so that it corrects it instead of starting over.

No new LLM work once it cannot be paid for or reached: when the ledger's cap is reached, the endpoint is
gone (retries used up) or two answers in a row are unusable, the section falls back to its offline draft.
The paper is still written, checked and compiled; the writer's ``name`` (recorded in ``paper.json`` and on
the first page) then says which sections were written offline and ``fallbacks`` says why. A reached cap or
a failed endpoint is final for the writer: every later section falls back at once, without a request.
(``fallback=False`` makes them errors instead.)

The fixer sees the log excerpt and a numbered window of the source around the error, and returns that
window corrected; it never rewrites the whole paper. The caller's loop bounds how often it is asked. When
the model cannot help (cap, endpoint, an unusable answer) the deterministic fixer takes over for that
error, and the fixer's ``name`` says so in the build report.
"""

from __future__ import annotations

import logging
import re
from typing import Sequence

from kubescientist.agent.answers import ParseError, fenced_blocks
from kubescientist.agent.errors import AnswerError, BudgetExceeded, LLMUnavailable
from kubescientist.agent.llm import LLMClient
from kubescientist.paper.build import STRUCTURAL, DeterministicFixer, LatexError, LatexFixer
from kubescientist.paper.numbers import Fact, Facts, check
from kubescientist.paper.sections import SECTIONS, SectionName, SectionRequest

log = logging.getLogger("kubescientist.agent.writeup")

MAX_FACTS = 400
"""Facts listed in a section prompt; beyond this, the ones the draft states come first."""
MAX_REFERENCES = 40
"""References listed in a section prompt (their keys are all that may be cited)."""
FIX_BEFORE = 8
"""Source lines shown to the fixer before the line LaTeX names (an error is often noticed late)."""
FIX_AFTER = 4
"""Source lines shown after it."""
FIX_CHARS = 12_000
"""Characters of source the fixer is shown at most, besides the error's own line (lines are shown whole)."""
LATEX_LANGS = ("latex", "tex", "")
"""Fenced-block languages read as LaTeX."""

_SECTION_FORMAT = "Reply with the section's body only (no \\section heading), in one ```latex fenced block."
_FIX_FORMAT = "Reply with the corrected lines, all of them and nothing else, in one ```latex fenced block."


def _latex_block(text: str, what: str) -> str:
    """The LaTeX of an answer: its (longest) ```latex block; a bare answer is taken whole."""
    blocks = [body for lang, body in fenced_blocks(text) if lang in LATEX_LANGS]
    if blocks:
        return max(blocks, key=len).strip("\n")
    if "```" in text:
        raise ParseError(f"the ```latex block is not closed: the answer was cut off; send {what} again, "
                         "shorter if need be")
    if not text.strip():
        raise ParseError(f"the answer is empty: send {what} in one ```latex fenced block")
    return text.strip("\n")


def _fact_lines(facts: Sequence[Fact], draft: str, limit: int = MAX_FACTS) -> list[str]:
    """The facts as prompt lines, the draft's own first (they are what the section is about), then by value."""
    first: list[Fact] = []
    if len(facts) > limit:
        known = Facts(facts)
        stated = {f.source for f in check(draft, known) if f.status == "matched" and f.source}
        first = [f for f in facts if f.source in stated]
    chosen = list(dict.fromkeys([*first, *facts]))[:limit]
    return [f"{f.value:.6g}  ({f.source})" for f in chosen]


class LLMSectionWriter:
    """A ``SectionWriter``: one section per request, in the ``writeup`` role; offline draft as fallback."""

    def __init__(self, client: LLMClient, *, fallback: bool = True) -> None:
        """``fallback=False`` lets a reached cap or a failed endpoint propagate instead (``AgentError``)."""
        self.client = client
        self.model = client.config.model_for("writeup")  # fails now (ConfigError), not mid-paper
        self.fallback = fallback
        self.fallbacks: dict[SectionName, str] = {}
        """Sections written offline, with why (the cap, the endpoint, an unusable answer)."""
        self._previous: dict[SectionName, str] = {}
        self._stopped: str | None = None

    @property
    def name(self) -> str:
        if not self.fallbacks:
            return self.model
        offline = [s for s in SECTIONS if s in self.fallbacks]
        return f"{self.model}; offline: {', '.join(offline)}"

    async def write(self, request: SectionRequest) -> str:
        section = request.section
        if self._stopped is not None:
            return self._offline(request, self._stopped)
        previous = self._previous.get(section) if request.feedback else None
        prompt = self.client.prompts.render(
            "write_section", section=section, title=request.title, guidance=request.guidance,
            context=request.context, draft=request.draft, facts=_fact_lines(request.facts, request.draft),
            facts_total=len(request.facts), references=request.references[:MAX_REFERENCES],
            labels=dict(request.labels), feedback=request.feedback, previous=previous)
        try:
            text = await self.client.ask("writeup", prompt, lambda t: _latex_block(t, "the section"),
                                         subject=f"writeup:{section}", answer_format=_SECTION_FORMAT)
        except (BudgetExceeded, LLMUnavailable) as exc:
            if not self.fallback:
                raise
            self._stopped = str(exc)
            return self._offline(request, str(exc))
        except AnswerError as exc:
            if not self.fallback:
                raise
            return self._offline(request, str(exc))
        self._previous[section] = text
        return text

    def _offline(self, request: SectionRequest, reason: str) -> str:
        """The draft, which is what the offline writer writes; a revision keeps the draft too (it is checked)."""
        if request.section not in self.fallbacks:
            log.warning("section %s: written offline (%s)", request.section, reason)
        self.fallbacks[request.section] = reason
        return request.draft


def _window(lines: Sequence[str], line: int, budget: int = FIX_CHARS) -> tuple[int, int]:
    """The 0-based, end-exclusive range of lines shown around the 1-based ``line``: up to ``FIX_BEFORE``
    lines before and ``FIX_AFTER`` after, as far as ``budget`` characters allow. Lines are never cut (the
    answer replaces them whole), so the error's own line is shown whatever its length."""
    start, end, size = line - 1, line, 0
    grew = True
    while grew:
        grew = False
        if start > 0 and line - 1 - start < FIX_BEFORE and size + len(lines[start - 1]) <= budget:
            start -= 1
            size += len(lines[start])
            grew = True
        if end < len(lines) and end - line < FIX_AFTER and size + len(lines[end]) <= budget:
            size += len(lines[end])
            end += 1
            grew = True
    return start, end


class LLMLatexFixer:
    """A ``LatexFixer``: the model corrects a window of lines around the error; the deterministic fixer is
    the fallback when it cannot (and for errors outside ``paper.tex``, which the window cannot show)."""

    def __init__(self, client: LLMClient, *, fallback: LatexFixer | None = None) -> None:
        self.client = client
        self.model = client.config.model_for("writeup")
        self.backup: LatexFixer = fallback or DeterministicFixer()
        self.fallbacks: list[str] = []
        """Why the model did not fix an error, one entry per error it left to the fallback."""
        self._by = self.model
        self._stopped: str | None = None

    @property
    def name(self) -> str:
        """Who made the latest fix: the model, or the fallback (the build report names each fix's maker)."""
        return self._by

    async def fix(self, source: str, error: LatexError) -> str | None:
        lines = source.split("\n")
        if self._stopped is not None:
            return await self._fallback(source, error, self._stopped)
        if error.line is None or error.file != "paper.tex" or not 1 <= error.line <= len(lines):
            return await self._fallback(source, error, f"the error is not on a line of paper.tex "
                                                       f"({error.file}:{error.line})")
        start, end = _window(lines, error.line)
        window = lines[start:end]
        kept = [line for line in window if STRUCTURAL.search(line)]
        prompt = self.client.prompts.render(
            "fix_latex", error=error, first=start + 1, last=end,
            numbered=[(start + 1 + i, text) for i, text in enumerate(window)])

        def parse(text: str) -> list[str]:
            fixed = _latex_block(text, "the corrected lines").split("\n")
            # A leading "42: " copied from the numbered view is not LaTeX.
            if all(re.match(rf"\s*{n}[:|]\s?", t) for n, t in zip(range(start + 1, end + 1), fixed)):
                fixed = [re.sub(r"^\s*\d+[:|]\s?", "", t) for t in fixed]
            # Blank lines at the window's edges separate paragraphs; an answer's edges are not reliable.
            fixed = _blank_edges(window, _strip_blank(fixed))
            if fixed == window:
                raise ParseError("the lines are unchanged, so the error would recur: change what causes "
                                 f"\"{error.message}\"")
            lost = [line.strip() for line in kept if line.strip() not in (t.strip() for t in fixed)]
            if lost:
                raise ParseError(f"keep the document's structure: the line {lost[0]!r} must stay as it is")
            return fixed

        try:
            fixed = await self.client.ask("writeup", prompt, parse, subject="writeup:latex",
                                          answer_format=_FIX_FORMAT)
        except (BudgetExceeded, LLMUnavailable) as exc:
            self._stopped = str(exc)
            return await self._fallback(source, error, str(exc))
        except AnswerError as exc:
            return await self._fallback(source, error, str(exc))
        self._by = self.model
        return "\n".join([*lines[:start], *fixed, *lines[end:]])

    async def _fallback(self, source: str, error: LatexError, reason: str) -> str | None:
        self.fallbacks.append(reason)
        log.warning("LaTeX error %s:%s (%s) left to the %s fixer: %s", error.file, error.line, error.message,
                    self.backup.name, reason)
        self._by = f"{self.backup.name} (after {self.model}: {_short(reason)})"
        return await self.backup.fix(source, error)


def _strip_blank(lines: list[str]) -> list[str]:
    while lines and not lines[0].strip():
        lines = lines[1:]
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    return lines


def _blank_edges(window: Sequence[str], lines: list[str]) -> list[str]:
    """``lines`` with the window's leading and trailing blank lines."""
    lead = next((i for i, line in enumerate(window) if line.strip()), len(window))
    trail = next((i for i, line in enumerate(reversed(window)) if line.strip()), 0) if lead < len(window) else 0
    return [*window[:lead], *lines, *window[len(window) - trail:]]


def _short(reason: str, chars: int = 120) -> str:
    reason = " ".join(reason.split())
    return reason if len(reason) <= chars else reason[:chars - 3] + "..."


__all__ = ["LLMLatexFixer", "LLMSectionWriter", "MAX_FACTS", "MAX_REFERENCES"]
