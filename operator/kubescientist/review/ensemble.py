"""Several reviewers, reflection rounds and an area chair's meta-review, behind two small protocols.

A ``Reviewer`` writes a review and, given its draft, may revise it (a reflection round; it says when it is
done). An ``AreaChair`` writes the meta-review from the ensemble. The combined review takes its text and
decision from the meta-review and every score as the rounded mean of the ensemble's, as the AI Scientist's
reviewer does: a chair cannot then move the scores the reviewers gave. Reviewers work concurrently.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from typing import Protocol, Sequence

from kubescientist.review.form import Decision, DecisionRule, Review
from kubescientist.review.submission import Submission


class Reviewer(Protocol):
    """One reviewer of the ensemble (the rubric offline, a model online)."""

    @property
    def name(self) -> str:
        """``rubric`` or the model's name, recorded with each review."""
        ...

    async def review(self, submission: Submission) -> Review: ...

    async def reflect(self, submission: Submission, draft: Review, attempt: int, rounds: int) -> tuple[Review, bool]:
        """Round ``attempt`` of ``rounds``: a revised review, and whether the reviewer is done."""
        ...


class AreaChair(Protocol):
    """Writes the meta-review that reconciles the ensemble."""

    @property
    def name(self) -> str: ...

    async def meta_review(self, submission: Submission, reviews: Sequence[Review]) -> Review: ...


@dataclasses.dataclass(frozen=True)
class EnsembleResult:
    """The ensemble's reviews and their combination."""

    final: Review
    """The combined review (the single review when there is one reviewer and no chair)."""
    reviews: tuple[Review, ...]
    """Each reviewer's review after its reflection rounds."""
    meta: Review | None
    """The area chair's meta-review, before the scores were replaced by the ensemble means."""
    reflections: tuple[int, ...]
    """How many reflection rounds each reviewer took."""


async def review_with(submission: Submission, reviewers: Sequence[Reviewer], chair: AreaChair | None = None,
                      reflections: int = 0, rule: DecisionRule = DecisionRule()) -> EnsembleResult:
    """Every reviewer reviews (concurrently) and reflects up to ``reflections`` rounds; the chair reconciles."""
    if not reviewers:
        raise ValueError("at least one reviewer is needed")
    results = await asyncio.gather(*(_one(r, submission, reflections) for r in reviewers))
    reviews = tuple(review for review, _ in results)
    rounds = tuple(taken for _, taken in results)
    if len(reviews) == 1 and chair is None:
        return EnsembleResult(reviews[0], reviews, None, rounds)
    meta = await chair.meta_review(submission, reviews) if chair is not None else None
    return EnsembleResult(combine(reviews, meta, rule), reviews, meta, rounds)


async def _one(reviewer: Reviewer, submission: Submission, reflections: int) -> tuple[Review, int]:
    review = await reviewer.review(submission)
    for attempt in range(1, reflections + 1):
        review, done = await reviewer.reflect(submission, review, attempt, reflections)
        if done:
            return review, attempt
    return review, reflections


def _mean(values: Sequence[int]) -> int:
    # Half rounds up (not to even): a 5.5 average is the better score, as a reader would round it.
    return int(math.floor(sum(values) / len(values) + 0.5))


def combine(reviews: Sequence[Review], meta: Review | None, rule: DecisionRule = DecisionRule()) -> Review:
    """Scores: rounded ensemble means. Text and decision: the meta-review's, else merged and by ``rule``."""

    def mean(field: str) -> int:
        return _mean([getattr(r, field) for r in reviews])

    def merged(field: str) -> tuple[str, ...]:
        return tuple(dict.fromkeys(item for r in reviews for item in getattr(r, field)))

    base = meta if meta is not None else reviews[0]
    combined = dataclasses.replace(
        base, originality=mean("originality"), quality=mean("quality"), clarity=mean("clarity"),
        significance=mean("significance"), soundness=mean("soundness"), presentation=mean("presentation"),
        contribution=mean("contribution"), overall=mean("overall"), confidence=mean("confidence"))
    if meta is not None:
        return dataclasses.replace(combined, reviewer=f"area chair ({meta.reviewer})" if meta.reviewer
                                   else "area chair")
    combined = dataclasses.replace(
        combined, summary="\n\n".join(dict.fromkeys(r.summary for r in reviews)), strengths=merged("strengths"),
        weaknesses=merged("weaknesses"), questions=merged("questions"), limitations=merged("limitations"),
        ethical_concerns=any(r.ethical_concerns for r in reviews), reviewer="ensemble")
    if rule.use_decision_field:
        accept = sum(r.decision == "Accept" for r in reviews) * 2 > len(reviews)
    else:
        accept = rule.accept(combined)
    decision: Decision = "Accept" if accept else "Reject"
    return dataclasses.replace(combined, decision=decision)
