"""The rubric review: what can be measured about a paper, checked, and mapped onto the review form.

It is labelled as what it is. A rubric can tell whether results carry error bars over enough seeds, whether
every figure is referred to, whether the numbers trace back to recorded metrics, whether the main text
fits the page limit and whether every citation resolves. It cannot judge novelty, significance or whether
the method is right: those scores stay at the midpoint with a note, and the decision only says whether the
measurable floor is met. Each check is True (passed), False (failed) or None (cannot be assessed from
what the submission provides, e.g. traceability without the run's records).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Sequence

from kubescientist.paper import citations, numbers
from kubescientist.paper.analysis import analyse, register_references
from kubescientist.paper.records import RecordsError, load, load_literature
from kubescientist.paper.writeup import PAGE_LIMIT, REFERENCES_FILE
from kubescientist.review.form import Decision, DecisionRule, Review
from kubescientist.review.submission import Submission

LABEL = ("Rubric review: automated checks of what can be measured (seeds, error bars and significance tests, "
         "related work, figure references, traceable numbers, page limit, citations), not a judgement of novelty, "
         "significance or correctness.")
MIN_SEEDS = 3
GATES = ("seeds", "significance", "related_work")
"""Checks without which no paper is accepted, whatever else passes: the rubric's stated bar."""
GATED_OVERALL = 4
"""Overall at most when a gate fails: "borderline reject"."""
MAX_SUBSCORE = 3
"""A rubric never gives a 4 ("excellent"): it checks a floor, it cannot judge excellence."""
UNASSESSED_SCORE = 2
"""The score given where a rubric cannot judge (originality, significance, contribution): the midpoint."""
PASS_OVERALL = 6
"""Overall when every assessable check passes: "weak accept", the floor a rubric can vouch for."""


@dataclasses.dataclass(frozen=True)
class Check:
    """One measurable criterion and its outcome."""

    name: str
    """Short identifier, e.g. ``seeds``."""
    criterion: str
    """What is required, in words."""
    passed: bool | None
    """True, False, or None when it cannot be assessed."""
    detail: str
    """What was found."""

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def checks(submission: Submission, page_limit: int | None = None) -> list[Check]:
    """Every rubric check on ``submission``."""
    limit = page_limit or _report_limit(submission) or PAGE_LIMIT
    return [_seeds(submission), _error_bars(submission), _significance(submission), _related_work(submission),
            _figures(submission), _numbers(submission), _pages(submission, limit), _citations(submission),
            _limitations(submission)]


def _report_limit(submission: Submission) -> int | None:
    if submission.report is None:
        return None
    limit = submission.report.get("pages", {}).get("limit")
    return limit if isinstance(limit, int) else None


def _seeds(s: Submission) -> Check:
    criterion = f"the main result is the mean over at least {MIN_SEEDS} seeds"
    if s.run_dir is not None:
        try:
            best = load(s.run_dir).summary.get("best") or {}
        except RecordsError as exc:
            return Check("seeds", criterion, None, f"run records unreadable: {exc}")
        n = (best.get("seeds") or {}).get("n", 1 if best else 0)
        return Check("seeds", criterion, n >= MIN_SEEDS,
                     f"the main result (node {best.get('node', '?')}) rests on {n} seed(s)"
                     + ("" if n >= MIN_SEEDS else f", fewer than the {MIN_SEEDS} required"))
    counts = [int(m) for m in re.findall(r"(\d+)\s+(?:random\s+)?seeds", s.text)]
    counts += [_WORDS[w] for w in re.findall(r"\b(" + "|".join(_WORDS) + r")\s+(?:random\s+)?seeds", s.text, re.I)
               if w in _WORDS]
    if not counts:
        return Check("seeds", criterion, False, "neither the Results nor the Experimental Setup section states a "
                     "number of seeds")
    most = max(counts)
    return Check("seeds", criterion, most >= MIN_SEEDS, f"the text states at most {most} seeds"
                 + ("" if most >= MIN_SEEDS else f", fewer than the {MIN_SEEDS} required"))


_WORDS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10}


def _error_bars(s: Submission) -> Check:
    criterion = "results are reported with error bars (± or standard error/deviation)"
    shown = len(re.findall(r"±|\\pm|\+/-|standard (?:error|deviation)|std\.? err", s.text, re.I))
    return Check("error_bars", criterion, shown > 0,
                 f"{shown} error-bar mention(s) found" if shown else
                 "no result in the Results section or its tables carries a ± or a standard error")


_SIGNIFICANCE = re.compile(r"confidence interval|\b\d+\s*%\s*(?:CI|interval)|t-test|Welch|\bp\s*[<=>]\s*0?\.\d|"
                           r"statistically significant|bootstrap|within (?:the )?noise|permutation test|"
                           r"significance test|not significant|Mann.Whitney|Wilcoxon", re.I)


def _significance(s: Submission) -> Check:
    criterion = "differences between results are tested (a significance test or confidence interval)"
    found = sorted({m.group(0).lower() for m in _SIGNIFICANCE.finditer(s.text)})
    if found:
        return Check("significance", criterion, True, f"the text states {', '.join(found[:4])}")
    return Check("significance", criterion, False, "the Results section compares results without a significance "
                 "test, confidence interval or within-noise statement")


_HEADING = re.compile(r"^\s*(?:\d+(?:\.\d+)?\s+)?([A-Z][A-Za-z ,&-]{2,60})\s*$", re.MULTILINE)
_CITATION = re.compile(r"\[\d+(?:\s*[,–-]\s*\d+)*\]|\([A-Z][A-Za-z'-]+(?: et al\.| and [A-Z][A-Za-z'-]+)?,? \d{4}[a-z]?"
                       r"(?:[;,] [^)]*)?\)|\bet al\.")


def section_text(text: str, name: str) -> str | None:
    """The text of the numbered section called ``name`` (up to the next numbered heading), if there is one."""
    start = re.search(rf"^\s*(?:\d+(?:\.\d+)?\s+)?{re.escape(name)}\s*$", text, re.MULTILINE | re.IGNORECASE)
    if start is None:
        return None
    rest = text[start.end():]
    following = re.search(r"^\s*\d+\s+[A-Z][A-Za-z ,&-]{2,60}\s*$", rest, re.MULTILINE)
    return rest[:following.start()] if following else rest


def _related_work(s: Submission) -> Check:
    criterion = "the paper relates itself to prior work: a Related Work section citing at least one work"
    if s.source is not None:
        body = _body(s.source)
        head = re.search(r"\\section\*?\{(?:Related Work|Background|Prior Work)\}", body, re.I)
        if head is None:
            return Check("related_work", criterion, False, "the paper has no Related Work section")
        after = body[head.end():]
        nxt = re.search(r"\\section\*?\{", after)
        cited = set(citations.cited_keys(after[:nxt.start()] if nxt else after))
        return Check("related_work", criterion, bool(cited),
                     f"the Related Work section cites {len(cited)} work(s)" if cited else
                     "the Related Work section cites no work")
    section = next((t for t in (section_text(s.text, n) for n in ("Related Work", "Background", "Prior Work"))
                    if t is not None), None)
    if section is None:
        return Check("related_work", criterion, False, "the paper has no Related Work section")
    marks = len(_CITATION.findall(section))
    return Check("related_work", criterion, marks > 0,
                 f"the Related Work section has {marks} citation(s)" if marks else
                 "the Related Work section cites no work")


def _figures(s: Submission) -> Check:
    criterion = "every figure is referred to in the text"
    if s.source is not None:
        body = _body(s.source)
        labels = re.findall(r"\\label\{(fig:[^}]*)\}", body)
        missing = [label for label in labels if not re.search(r"\\(?:ref|autoref|cref|Cref)\{" + re.escape(label)
                                                              + r"\}", body)]
        if not labels:
            return Check("figures", criterion, True, "the paper has no figures")
        return Check("figures", criterion, not missing,
                     f"{len(labels) - len(missing)} of {len(labels)} figures referred to"
                     + (f"; never referred to: {', '.join(missing)}" if missing else ""))
    captions = set(re.findall(r"^\s*Figure\s+(\d+)\s*[:.]", s.text, re.MULTILINE))
    if not captions:
        return Check("figures", criterion, True, "no figure captions found in the text")
    mentions = re.findall(r"(?:Figure|Fig\.)\s+(\d+)", s.text)
    missing = sorted((n for n in captions if mentions.count(n) < 2), key=int)
    return Check("figures", criterion, not missing,
                 f"{len(captions) - len(missing)} of {len(captions)} figures referred to"
                 + (f"; never referred to: Figure {', '.join(missing)}" if missing else ""))


def _numbers(s: Submission) -> Check:
    criterion = "every number in the text matches a recorded metric (up to rounding)"
    if s.run_dir is None or s.source is None:
        return Check("numbers", criterion, None, "the run's records are not available, so numbers cannot be traced")
    try:
        facts = analyse(load(s.run_dir)).facts
        cited = s.pdf.parent / REFERENCES_FILE if s.pdf is not None else None
        if cited is not None and cited.is_file():
            register_references(facts, load_literature(cited))
    except RecordsError as exc:
        return Check("numbers", criterion, None, f"run records unreadable: {exc}")
    # Numbers the writer flagged are still untraceable: unwrap them so that they are counted again.
    body = re.sub(r"\\unverified\{([^}]*)\}", r"\1", _body(s.source))
    findings = numbers.check(body, facts)
    bad = [f for f in findings if f.status != "matched"]
    detail = f"{len(findings) - len(bad)} of {len(findings)} numbers match recorded values"
    if bad:
        detail += "; untraceable: " + ", ".join(f.text for f in bad[:10])
    return Check("numbers", criterion, not bad, detail)


def _pages(s: Submission, limit: int) -> Check:
    criterion = f"the main text fits in {limit} pages"
    main = s.main_pages()
    if main is None:
        return Check("pages", criterion, None, "page count unknown (no PDF)")
    return Check("pages", criterion, main <= limit, f"{main} page(s) of main text")


def _citations(s: Submission) -> Check:
    criterion = "every citation and cross-reference resolves"
    unresolved = re.findall(r"\[\?\]|\(\?\)|\?\?", s.text)
    problems = [f"{len(unresolved)} unresolved mark(s) ([?] or ??) in the text"] if unresolved else []
    if s.source is not None:
        known = set(re.findall(r"@\w+\{([^,\s]+),", s.bibliography or ""))
        unknown = sorted(set(citations.cited_keys(_body(s.source))) - known)
        if unknown:
            problems.append(f"cited but not in references.bib: {', '.join(unknown)}")
        cited = len(set(citations.cited_keys(_body(s.source))))
        if not cited:
            problems.append("the paper cites no work at all (no \\cite in any section)")
        found = f"{cited} cited work(s), all resolved"
    else:
        if not _CITATION.search(s.text):
            problems.append("the text has no citation marks in any section")
        found = "no unresolved marks in the text"
    return Check("citations", criterion, not problems, "; ".join(problems) or found)


def _limitations(s: Submission) -> Check:
    criterion = "the paper states its limitations"
    found = re.search(r"^\s*(?:\d+(?:\.\d+)?\s+)?Limitations\b", s.text, re.MULTILINE | re.IGNORECASE)
    return Check("limitations", criterion, found is not None,
                 "a Limitations section is present" if found else "the paper has no Limitations section")


def _body(source: str) -> str:
    start = source.find(r"\begin{document}")
    return source[start:] if start >= 0 else source


class RubricReviewer:
    """The offline reviewer: the rubric's checks mapped onto the review form."""

    name = "rubric"

    def __init__(self, page_limit: int | None = None, rule: DecisionRule = DecisionRule()) -> None:
        self.page_limit = page_limit
        self.rule = rule

    async def review(self, submission: Submission) -> Review:
        return self.grade(submission, checks(submission, self.page_limit))

    async def reflect(self, submission: Submission, draft: Review, attempt: int, rounds: int) -> tuple[Review, bool]:
        # The checks are deterministic: a second look finds the same things.
        return draft, True

    def grade(self, submission: Submission, found: Sequence[Check]) -> Review:
        by_name = {c.name: c for c in found}

        def score(*names: str) -> int:
            assessed = [by_name[n].passed for n in names if n in by_name and by_name[n].passed is not None]
            if not assessed:
                return UNASSESSED_SCORE
            return 1 + round((MAX_SUBSCORE - 1) * sum(1 for p in assessed if p) / len(assessed))

        assessed = [c for c in found if c.passed is not None]
        failed = [c for c in assessed if not c.passed]
        overall = max(1, PASS_OVERALL - len(failed))
        if len(assessed) < len(found) / 2:
            overall = min(overall, PASS_OVERALL - 1)  # too little could be checked to vouch for the floor
        gates = [c for c in failed if c.name in GATES]
        if gates:
            overall = min(overall, GATED_OVERALL)
        soundness = score("seeds", "error_bars", "significance", "numbers")
        presentation = score("figures", "pages", "citations")
        passed = [c for c in assessed if c.passed]
        unassessed = [c for c in found if c.passed is None]
        decision: Decision = "Accept" if overall >= self.rule.threshold and not gates else "Reject"
        summary = (f"{LABEL} The paper \"{submission.title}\" passes {len(passed)} of {len(found)} checks"
                   + (f" ({len(unassessed)} could not be assessed)" if unassessed else "") + ".")
        return Review(
            summary=summary,
            strengths=tuple(f"{c.criterion}: {c.detail}" for c in passed),
            weaknesses=tuple(f"{c.detail[0].upper()}{c.detail[1:]} (required: {c.criterion})" for c in failed),
            questions=tuple(f"{c.criterion}? ({c.detail})" for c in unassessed),
            limitations=("This is a rubric review; originality, significance and contribution are set to the "
                         "midpoint because a rubric cannot judge them, nor whether the method and claims are right.",
                         *(f"Not accepted whatever else passes: {c.name.replace('_', ' ')} is part of the rubric's "
                           "bar." for c in gates)),
            ethical_concerns=False,
            originality=UNASSESSED_SCORE, quality=soundness,
            clarity=score("figures", "limitations", "citations", "related_work"),
            significance=UNASSESSED_SCORE, soundness=soundness, presentation=presentation,
            contribution=UNASSESSED_SCORE, overall=overall,
            confidence=2 if not unassessed else 1, decision=decision, reviewer=self.name)

