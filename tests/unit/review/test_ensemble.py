"""An ensemble of reviewers with reflection rounds and an area chair, through the protocols."""

import asyncio
import dataclasses

from kubescientist.review import DecisionRule, Review, review_submission, review_with
from kubescientist.review.submission import from_text

PAPER = from_text("A Paper\n\nWe ran 3 seeds: 0.97 ± 0.01.\n\nLimitations\nFew.\n" + "text " * 50)


def form(overall: int, decision: str, who: str, **scores: int) -> Review:
    base = dict(originality=2, quality=2, clarity=2, significance=2, soundness=2, presentation=2, contribution=2)
    base.update(scores)
    return Review(summary=f"{who} summary", strengths=(f"{who} strength",), weaknesses=("few seeds",), questions=(),
                  limitations=(), ethical_concerns=False, overall=overall, confidence=3, decision=decision,
                  reviewer=who, **base)


class ScriptedReviewer:
    """A model stand-in: a first review, then one revision per round until it says it is done."""

    def __init__(self, name: str, drafts: list[Review]) -> None:
        self.name = name
        self.drafts = drafts
        self.rounds: list[int] = []

    async def review(self, submission):
        return self.drafts[0]

    async def reflect(self, submission, draft, attempt, rounds):
        self.rounds.append(attempt)
        done = attempt >= len(self.drafts) - 1
        return self.drafts[min(attempt, len(self.drafts) - 1)], done


class Chair:
    name = "chair-model"

    def __init__(self) -> None:
        self.seen: list[Review] = []

    async def meta_review(self, submission, reviews):
        self.seen = list(reviews)
        return form(9, "Accept", "chair-model", originality=4)


def test_reflection_rounds_stop_when_the_reviewer_is_done():
    reviewer = ScriptedReviewer("a", [form(3, "Reject", "a"), form(4, "Reject", "a"), form(5, "Reject", "a")])
    result = asyncio.run(review_with(PAPER, [reviewer], reflections=5))
    assert reviewer.rounds == [1, 2] and result.reflections == (2,)
    assert result.final.overall == 5 and result.meta is None


def test_the_meta_review_keeps_its_text_and_decision_but_takes_the_ensemble_mean_scores():
    reviewers = [ScriptedReviewer("a", [form(4, "Reject", "a", originality=1)]),
                 ScriptedReviewer("b", [form(6, "Accept", "b", originality=2)]),
                 ScriptedReviewer("c", [form(7, "Accept", "c", originality=2)])]
    chair = Chair()
    result = asyncio.run(review_with(PAPER, reviewers, chair))
    assert [r.reviewer for r in chair.seen] == ["a", "b", "c"]
    assert result.final.overall == 6  # (4 + 6 + 7) / 3 = 5.67, not the chair's 9
    assert result.final.originality == 2  # (1 + 2 + 2) / 3 = 1.67
    assert result.final.decision == "Accept" and result.final.summary == "chair-model summary"
    assert result.final.reviewer == "area chair (chair-model)" and result.meta.overall == 9


def test_without_a_chair_the_ensemble_is_merged_and_decided_by_the_rule():
    reviewers = [ScriptedReviewer("a", [form(5, "Reject", "a")]), ScriptedReviewer("b", [form(6, "Accept", "b")])]
    result = asyncio.run(review_with(PAPER, reviewers))
    assert result.final.overall == 6 and result.final.decision == "Accept"  # 5.5 rounds up, and 6 >= 6
    assert result.final.strengths == ("a strength", "b strength") and result.final.weaknesses == ("few seeds",)
    strict = asyncio.run(review_with(PAPER, reviewers, rule=DecisionRule(threshold=7)))
    assert strict.final.decision == "Reject"


def test_model_reviews_still_carry_the_rubric_checks():
    report = asyncio.run(review_submission(PAPER, reviewers=[ScriptedReviewer("a", [form(7, "Accept", "a")])]))
    assert report.kind == "model" and report.label.startswith("Model review: 1 reviewer")
    assert {c.name for c in report.checks} >= {"seeds", "error_bars", "numbers"}
    assert dataclasses.asdict(report.review)["overall"] == 7
