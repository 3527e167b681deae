"""The review form (NeurIPS style) and the rule that turns a review into a decision.

``Review.to_dict`` writes the form with the keys reviewers and the AI Scientist's reviewer use ("Summary",
"Strengths", ..., "Decision"), so a model can be prompted with the same form it fills and its JSON parsed
back with ``Review.from_dict``; out-of-range scores are clamped rather than trusted.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, Literal, Mapping, Sequence

Decision = Literal["Accept", "Reject"]
FOUR_POINT = ("originality", "quality", "clarity", "significance", "soundness", "presentation", "contribution")
"""The 1-4 scores (low, medium, high, very high / poor, fair, good, excellent)."""
KEYS = {
    "summary": "Summary", "strengths": "Strengths", "weaknesses": "Weaknesses", "originality": "Originality",
    "quality": "Quality", "clarity": "Clarity", "significance": "Significance", "questions": "Questions",
    "limitations": "Limitations", "ethical_concerns": "Ethical Concerns", "soundness": "Soundness",
    "presentation": "Presentation", "contribution": "Contribution", "overall": "Overall",
    "confidence": "Confidence", "decision": "Decision",
}
"""Field name -> the form's key, in the form's order."""


class ReviewFormError(ValueError):
    """A review does not fill the form (the message names the field)."""


@dataclasses.dataclass(frozen=True)
class Review:
    """One filled review form."""

    summary: str
    """What the paper claims and does, in the reviewer's words."""
    strengths: tuple[str, ...]
    """The paper's strengths."""
    weaknesses: tuple[str, ...]
    """The paper's weaknesses."""
    questions: tuple[str, ...]
    """Questions to the authors."""
    limitations: tuple[str, ...]
    """Limitations and potential negative societal impact."""
    ethical_concerns: bool
    """Whether the paper raises ethical concerns."""
    originality: int
    """1-4."""
    quality: int
    """1-4."""
    clarity: int
    """1-4."""
    significance: int
    """1-4."""
    soundness: int
    """1-4."""
    presentation: int
    """1-4."""
    contribution: int
    """1-4."""
    overall: int
    """1-10 (1 very strong reject ... 6 weak accept ... 10 award quality)."""
    confidence: int
    """1-5 (1 low ... 5 absolute)."""
    decision: Decision
    """Accept or Reject; nothing in between."""
    reviewer: str = ""
    """Who wrote it: ``rubric``, a model's name, ``area chair``."""

    def to_dict(self) -> dict[str, Any]:
        form: dict[str, Any] = {}
        for field, key in KEYS.items():
            value = getattr(self, field)
            form[key] = list(value) if isinstance(value, tuple) else value
        form["Reviewer"] = self.reviewer
        return form

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], reviewer: str = "") -> Review:
        """Parse a filled form (keys as in ``KEYS``, in any case); raises ReviewFormError naming a bad field."""
        lowered = {str(k).strip().lower().replace("_", " "): v for k, v in data.items()}
        values: dict[str, Any] = {}
        for field, key in KEYS.items():
            if key.lower() not in lowered:
                raise ReviewFormError(f"{key}: missing")
            value = lowered[key.lower()]
            if field in FOUR_POINT:
                values[field] = _score(key, value, 1, 4)
            elif field == "overall":
                values[field] = _score(key, value, 1, 10)
            elif field == "confidence":
                values[field] = _score(key, value, 1, 5)
            elif field == "decision":
                values[field] = _decision(value)
            elif field == "ethical_concerns":
                values[field] = value if isinstance(value, bool) else str(value).strip().lower() in ("true", "yes")
            elif field == "summary":
                values[field] = str(value).strip()
            else:
                values[field] = _items(value)
        return cls(**values, reviewer=str(data.get("Reviewer", reviewer)) or reviewer)


def _score(key: str, value: Any, low: int, high: int) -> int:
    match = re.match(r"\s*(-?\d+(?:\.\d+)?)", str(value)) if not isinstance(value, bool) else None
    if match is None:
        raise ReviewFormError(f"{key}: must be a number from {low} to {high}, got {value!r}")
    return int(min(high, max(low, round(float(match.group(1))))))


def _decision(value: Any) -> Decision:
    text = str(value).strip().lower()
    if text.startswith("accept"):
        return "Accept"
    if text.startswith("reject"):
        return "Reject"
    raise ReviewFormError(f"Decision: must be Accept or Reject, got {value!r}")


def _items(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        lines = [re.sub(r"^\s*(?:[-*•]|\d+[.)])\s*", "", line) for line in value.splitlines()]
        return tuple(line.strip() for line in lines if line.strip())
    if isinstance(value, Sequence):
        return tuple(str(v).strip() for v in value if str(v).strip())
    return (str(value),) if value else ()


def parse_review_json(text: str, reviewer: str = "") -> Review:
    """The review in a model's answer: the last JSON object in it (fenced or bare)."""
    fenced = re.findall(r"```(?:json)?\s*(\{.*?\})\s*```", text, re.DOTALL)
    candidates = fenced or ([text[text.find("{"):text.rfind("}") + 1]] if "{" in text else [])
    for candidate in reversed(candidates):
        try:
            data = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(data, dict):
            return Review.from_dict(data, reviewer)
    raise ReviewFormError("no JSON object with the review form found in the answer")


@dataclasses.dataclass(frozen=True)
class DecisionRule:
    """How a review becomes accept or reject, stated so that every benchmark number says which rule made it."""

    threshold: int = 6
    """Accept when Overall is at least this (6 is "weak accept" on the NeurIPS scale)."""
    use_decision_field: bool = False
    """Use the review's own Decision field instead of the Overall threshold."""

    def accept(self, review: Review) -> bool:
        if self.use_decision_field:
            return review.decision == "Accept"
        return review.overall >= self.threshold

    def describe(self) -> str:
        if self.use_decision_field:
            return "accept iff the review's Decision field is Accept"
        return f"accept iff Overall >= {self.threshold} (Overall on the 1-10 NeurIPS scale)"
