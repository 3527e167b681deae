"""The NeurIPS review form: written with the form's keys, parsed back leniently, scores clamped."""

import json

import pytest

from kubescientist.review.form import DecisionRule, Review, ReviewFormError, parse_review_json

FORM = {"Summary": "A paper.", "Strengths": ["clear"], "Weaknesses": "- few seeds\n- one dataset",
        "Originality": 3, "Quality": "3 (good)", "Clarity": 4, "Significance": 2, "Questions": [],
        "Limitations": ["small"], "Ethical Concerns": "no", "Soundness": 3, "Presentation": 3.6,
        "Contribution": 2, "Overall": 12, "Confidence": 4, "Decision": "Reject"}


def test_a_form_is_parsed_leniently_and_clamped():
    review = Review.from_dict(FORM, reviewer="model-x")
    assert review.weaknesses == ("few seeds", "one dataset") and review.quality == 3
    assert review.presentation == 4 and review.overall == 10 and review.ethical_concerns is False
    assert review.reviewer == "model-x"
    assert Review.from_dict(review.to_dict()) == review
    assert list(review.to_dict())[:4] == ["Summary", "Strengths", "Weaknesses", "Originality"]


def test_a_form_with_a_bad_field_names_it():
    with pytest.raises(ReviewFormError, match="Decision: must be Accept or Reject"):
        Review.from_dict({**FORM, "Decision": "borderline"})
    with pytest.raises(ReviewFormError, match="Overall: missing"):
        Review.from_dict({k: v for k, v in FORM.items() if k != "Overall"})


def test_the_review_json_is_found_in_a_model_answer():
    answer = ("THOUGHT: sound but narrow.\n\nREVIEW JSON:\n```json\n"
              + json.dumps({**FORM, "Ethical Concerns": False}) + "\n```\nI am done.")
    assert parse_review_json(answer, "model-x").overall == 10
    with pytest.raises(ReviewFormError, match="no JSON object"):
        parse_review_json("I cannot review this.")


def test_the_decision_rule_is_stated():
    assert DecisionRule().describe() == "accept iff Overall >= 6 (Overall on the 1-10 NeurIPS scale)"
    assert DecisionRule(use_decision_field=True).accept(Review.from_dict({**FORM, "Decision": "Accept"}))
