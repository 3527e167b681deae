"""Review a paper (a PDF, or a run's paper) and write ``review.json``.

    report = review("runs/quickstart")              # -> runs/quickstart/review.json (rubric review offline)
    report = review("paper.pdf", reviewers=[...], chair=..., reflections=3)

The rubric's checks are always run and recorded, also beside model reviews: they are facts a reader of
the review can verify. Offline the rubric is the only reviewer, and the review says so.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import pathlib
from typing import Any, Literal, Sequence

from kubescientist.review import rubric
from kubescientist.review.ensemble import AreaChair, Reviewer, review_with
from kubescientist.review.form import DecisionRule, Review
from kubescientist.review.submission import Submission, SubmissionError, from_pdf, from_run

REVIEW_FILE = "review.json"


@dataclasses.dataclass(frozen=True)
class ReviewReport:
    """The review of one paper, with how it was made."""

    kind: Literal["rubric", "model"]
    """``rubric`` when no model reviewed (offline), ``model`` otherwise."""
    label: str
    """What kind of review this is, in words (the rubric's says it judges no novelty)."""
    review: Review
    """The final review (the meta-review's text with the ensemble's mean scores, or the single review)."""
    reviews: tuple[Review, ...]
    """Every reviewer's review."""
    meta: Review | None
    """The area chair's meta-review, if there was one."""
    checks: tuple[rubric.Check, ...]
    """The rubric's measurable checks."""
    rule: DecisionRule
    """The decision rule benchmarks apply to this review."""
    paper: str
    """The reviewed PDF."""
    reflections: tuple[int, ...]
    """Reflection rounds each reviewer took."""

    @property
    def accepted(self) -> bool:
        return self.review.decision == "Accept"

    def describe(self) -> str:
        """One line for a person: the decision, the score and, for a rubric, the checks failed."""
        failed = [c.name for c in self.checks if c.passed is False]
        text = f"{self.review.decision} (Overall {self.review.overall}/10, {self.kind} review)"
        return text + (f"; failed checks: {', '.join(failed)}" if failed else "; every measurable check passed")

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": "kubescientist.io/review/v1",
            "kind": self.kind,
            "label": self.label,
            "paper": self.paper,
            "decision": self.review.decision,
            "overall": self.review.overall,
            "review": self.review.to_dict(),
            "reviews": [r.to_dict() for r in self.reviews],
            "metaReview": self.meta.to_dict() if self.meta else None,
            "reflections": list(self.reflections),
            "checks": [c.to_dict() for c in self.checks],
            "decisionRule": self.rule.describe(),
        }


def review(target: pathlib.Path | str, **options: Any) -> ReviewReport:
    """Synchronous ``areview`` for callers without an event loop."""
    return asyncio.run(areview(target, **options))


async def areview(target: pathlib.Path | str, *, reviewers: Sequence[Reviewer] = (), chair: AreaChair | None = None,
                  reflections: int = 0, rule: DecisionRule = DecisionRule(), page_limit: int | None = None,
                  write: bool = True) -> ReviewReport:
    """Review a PDF or a run folder's paper; writes ``<run>/review.json`` (or ``<pdf stem>.review.json``).

    Raises ``SubmissionError`` when there is no readable paper.
    """
    path = pathlib.Path(target)
    submission = from_run(path) if path.is_dir() else from_pdf(path)
    report = await review_submission(submission, reviewers=reviewers, chair=chair, reflections=reflections,
                                     rule=rule, page_limit=page_limit)
    if write:
        if path.is_dir():
            out = path / REVIEW_FILE
        elif submission.run_dir is not None:
            out = submission.run_dir / REVIEW_FILE
        else:
            out = path.with_name(f"{path.stem}.{REVIEW_FILE}")
        out.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    return report


async def review_submission(submission: Submission, *, reviewers: Sequence[Reviewer] = (),
                            chair: AreaChair | None = None, reflections: int = 0,
                            rule: DecisionRule = DecisionRule(), page_limit: int | None = None) -> ReviewReport:
    """Review an already loaded submission (the benchmark's papers are text only)."""
    found = tuple(rubric.checks(submission, page_limit))
    offline = not reviewers
    # A rubric reviews the same way every time: an ensemble of copies would only repeat it.
    team: Sequence[Reviewer] = reviewers or [rubric.RubricReviewer(page_limit, rule)]
    result = await review_with(submission, team, chair, reflections, rule)
    return ReviewReport(
        kind="rubric" if offline else "model",
        label=rubric.LABEL if offline else f"Model review: {len(team)} reviewer(s)"
        + (", meta-review by an area chair" if chair else "") + f", {reflections} reflection round(s) at most.",
        review=result.final, reviews=result.reviews, meta=result.meta, checks=found, rule=rule,
        paper=str(submission.pdf) if submission.pdf else "", reflections=result.reflections)


__all__ = ["REVIEW_FILE", "ReviewReport", "SubmissionError", "areview", "review", "review_submission"]
