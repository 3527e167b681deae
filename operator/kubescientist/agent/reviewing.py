"""The review model: ensemble reviewers, reflection rounds and an area chair, plug-ins of ``kubescientist.review``.

    reviewers, chair = review_team(client, 3)     # the Reviewer and AreaChair protocols, role ``review``
    report = await areview(run_dir, reviewers=reviewers, chair=chair, reflections=DEFAULT_REFLECTIONS)

Each reviewer fills the NeurIPS form as a JSON schema (``client.structured``: enforced by servers that can,
validated and repaired once otherwise). Reviewers differ in persona (what they scrutinise first) and, for
models that take one, in sampling temperature, so that the ensemble's reviews are not copies of one
another. Besides the paper's text a reviewer is shown the rubric's measurable checks (seeds, error bars,
traceable numbers, page limit, citations), labelled as automated, so that scores rest on facts a tool
verified rather than on the prose alone.

A reflection round shows the reviewer its draft review and asks it to check it against the paper; it
returns the (possibly revised) form and whether it is done. The area chair reads the ensemble's reviews and
writes the meta-review in the same form; ``kubescientist.review.combine`` then keeps its text and decision
and replaces every score by the ensemble's rounded mean.

Failures propagate (``BudgetExceeded``, ``LLMUnavailable``, ``AnswerError``): a half-model review would be
mislabelled either way, so the caller falls back to the rubric review, which labels itself.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, Callable, Sequence

from kubescientist.agent.answers import ParseError, Schema, strict_object
from kubescientist.agent.llm import LLMClient, Message
from kubescientist.agent.prompts import RenderedPrompt
from kubescientist.review import rubric
from kubescientist.review.form import KEYS, Review, ReviewFormError
from kubescientist.review.submission import Submission

DEFAULT_REFLECTIONS = 2
"""Reflection rounds per reviewer at most (a reviewer that is done stops earlier)."""
MAX_PAPER_CHARS = 60_000
"""Paper text a reviewer reads (about 15k tokens: the main text of a conference paper)."""
MAX_CHAIR_PAPER_CHARS = 20_000
"""Paper text the area chair reads besides the reviews."""
ENSEMBLE_TEMPERATURES = (0.75, 0.5, 1.0)
"""Sampling temperature of ensemble member i (cycled); not sent to models that accept only their default."""
FIXED_TEMPERATURE_MODELS = re.compile(r"(^|/)(o\d|gpt-5)", re.IGNORECASE)
"""Reasoning models that refuse any temperature but their default (OpenAI's o-series and gpt-5)."""
INCONSISTENT = {"Accept": range(1, 4), "Reject": range(8, 11)}
"""Overall scores that contradict the decision (a repair is asked for)."""


@dataclasses.dataclass(frozen=True)
class Example:
    """A reviewed paper shown to a reviewer for calibration (the published AI Scientist reviewer shows one)."""

    paper: str
    """The paper's text (its beginning: ``MAX_EXAMPLE_CHARS``)."""
    review: str
    """Its review, the form as JSON."""


MAX_EXAMPLE_CHARS = 6_000
"""Text of an example paper shown (about 1.5k tokens: abstract, introduction and the start of the method)."""


@dataclasses.dataclass(frozen=True)
class Persona:
    """What a reviewer of the ensemble looks at first."""

    key: str
    """A short name, recorded with the review."""
    focus: str
    """The reviewer's stance, in the system prompt."""


PERSONAS: tuple[Persona, ...] = (
    Persona("critical", "You are a critical and cautious reviewer. When a paper is weak, or you are unsure whether "
            "its claims hold, you give low scores and reject."),
    Persona("methodologist", "You judge the experimental method first: whether the design tests the claim, whether "
            "results are reported over several seeds with error bars, whether baselines, tuning budgets and "
            "ablations are fair, and whether every conclusion follows from the numbers shown."),
    Persona("generalist", "You judge significance and originality first: what the field learns from this paper, "
            "how it relates to prior work, and whether the story is clear to a reader outside the subfield."),
    Persona("reproducibility", "You judge whether the work can be trusted and reproduced: whether the setup, data, "
            "hyperparameters and compute are stated, whether failures and limitations are reported honestly, "
            "and whether anything in the text looks unsupported."),
)


def _score(low: int, high: int) -> dict[str, Any]:
    return {"type": "integer", "enum": list(range(low, high + 1))}


_TEXT_LIST = {"type": "array", "items": {"type": "string"}}
FORM_PROPERTIES: dict[str, Any] = {
    "Summary": {"type": "string"},
    "Strengths": _TEXT_LIST,
    "Weaknesses": _TEXT_LIST,
    **{KEYS[f]: _score(1, 4) for f in ("originality", "quality", "clarity", "significance")},
    "Questions": _TEXT_LIST,
    "Limitations": _TEXT_LIST,
    "Ethical Concerns": {"type": "boolean"},
    **{KEYS[f]: _score(1, 4) for f in ("soundness", "presentation", "contribution")},
    "Overall": _score(1, 10),
    "Confidence": _score(1, 5),
    "Decision": {"type": "string", "enum": ["Accept", "Reject"]},
}
"""The NeurIPS form in its order (the keys of ``kubescientist.review.form``)."""
assert [k for k in FORM_PROPERTIES] == list(KEYS.values())
_THOUGHT = {"Thought": {"type": "string"}}
REVIEW_FORM = Schema("review_form", {**_THOUGHT, **FORM_PROPERTIES})
"""A review: the reviewer's reasoning first (a model writes the fields in order), then the form."""
REFLECTION = Schema("review_reflection", {**_THOUGHT, "Review": strict_object(FORM_PROPERTIES),
                                          "Done": {"type": "boolean"}})
"""A reflection round: the reasoning, the (possibly revised) form, and whether the reviewer is done."""
META_REVIEW = Schema("meta_review", {**_THOUGHT, **FORM_PROPERTIES})


def _review_of(data: dict[str, Any], reviewer: str) -> Review:
    """The form in ``data`` as a Review; form errors and an Overall that contradicts the decision are
    ``ParseError``s, so the model is asked once to repair them."""
    form = {k: v for k, v in data.items() if k != "Thought"}
    try:
        review = Review.from_dict(form, reviewer)
    except ReviewFormError as exc:
        raise ParseError(f"the review form is incomplete: {exc}") from None
    if review.overall in INCONSISTENT[review.decision]:
        raise ParseError(f"Overall {review.overall} contradicts Decision {review.decision}: make them agree "
                         "(1-3 reject, 4 borderline reject, 5 borderline accept, 6 weak accept, 7-10 accept)")
    return dataclasses.replace(review, reviewer=reviewer)


def _form_check(reviewer: str) -> Callable[[dict[str, Any]], None]:
    def check(data: dict[str, Any]) -> None:
        _review_of(data, reviewer)
    return check


def _form_json(review: Review) -> str:
    return json.dumps({k: v for k, v in review.to_dict().items() if k != "Reviewer"}, indent=2)


def _checks(submission: Submission) -> list[dict[str, Any]]:
    """The rubric's measurable checks, for the prompt (each: name, criterion, passed, detail)."""
    return [c.to_dict() for c in rubric.checks(submission)]


def takes_temperature(model: str) -> bool:
    """Whether a model may be sent a sampling temperature (reasoning models refuse any but their own)."""
    return FIXED_TEMPERATURE_MODELS.search(model) is None


def with_temperature(client: LLMClient, temperature: float) -> LLMClient:
    """A client for the ``review`` role at ``temperature``: same accounts (ledger), prompts and connections.

    The new client's own HTTP client is replaced by ``client``'s before it opens a connection, so closing
    ``client`` closes everything and one connection pool serves the whole ensemble.
    """
    config = dataclasses.replace(client.config, temperature={**client.config.temperature, "review": temperature})
    derived = LLMClient(config, client.ledger, prompts=client.prompts)
    derived.openai = client.openai
    return derived


class LLMReviewer:
    """A ``Reviewer``: one ensemble member with its persona (and temperature)."""

    def __init__(self, client: LLMClient, persona: Persona = PERSONAS[0], *, member: int = 1,
                 temperature: float | None = None, include_checks: bool = True,
                 examples: Sequence[Example] = ()) -> None:
        """``member`` numbers the reviewer in the ledger (subject ``review:<member>``); ``temperature``
        None keeps the configured one (or the server's default)."""
        self.client = with_temperature(client, temperature) if temperature is not None else client
        self.model = client.config.model_for("review")
        self.persona = persona
        self.member = member
        self.temperature = temperature
        self.include_checks = include_checks
        self.examples = tuple(examples)
        self._rendered: tuple[Submission, RenderedPrompt] | None = None

    @property
    def name(self) -> str:
        return f"{self.model} ({self.persona.key})"

    def _prompt(self, submission: Submission) -> RenderedPrompt:
        """The review prompt, rendered once per submission (reflection rounds repeat it as history)."""
        if self._rendered is None or self._rendered[0] is not submission:
            prompt = self.client.prompts.render(
                "review_paper", persona=self.persona, title=submission.title,
                paper=_paper_text(submission, MAX_PAPER_CHARS),
                checks=_checks(submission) if self.include_checks else [],
                examples=[{"paper": e.paper[:MAX_EXAMPLE_CHARS], "review": e.review} for e in self.examples])
            self._rendered = (submission, prompt)
        return self._rendered[1]

    async def review(self, submission: Submission) -> Review:
        data = await self.client.structured("review", self._prompt(submission), REVIEW_FORM,
                                            subject=f"review:{self.member}",
                                            check=_form_check(self.name))
        return _review_of(data, self.name)

    async def reflect(self, submission: Submission, draft: Review, attempt: int, rounds: int) -> tuple[Review, bool]:
        history: list[Message] = [{"role": "user", "content": self._prompt(submission).user},
                                  {"role": "assistant", "content": _form_json(draft)}]
        prompt = self.client.prompts.render("reflect_review", persona=self.persona, attempt=attempt, rounds=rounds)

        form_check = _form_check(self.name)
        data = await self.client.structured("review", prompt, REFLECTION, subject=f"review:{self.member}",
                                            history=history, check=lambda d: form_check(d["Review"]))
        return _review_of(data["Review"], self.name), bool(data["Done"])


class LLMAreaChair:
    """An ``AreaChair``: the meta-review over the ensemble's reviews, in the same form."""

    def __init__(self, client: LLMClient, *, include_checks: bool = True) -> None:
        self.client = client
        self.model = client.config.model_for("review")
        self.include_checks = include_checks

    @property
    def name(self) -> str:
        return self.model

    async def meta_review(self, submission: Submission, reviews: Sequence[Review]) -> Review:
        prompt = self.client.prompts.render(
            "meta_review", title=submission.title, paper=_paper_text(submission, MAX_CHAIR_PAPER_CHARS),
            checks=_checks(submission) if self.include_checks else [],
            reviews=[{"reviewer": r.reviewer, "form": _form_json(r)} for r in reviews])
        data = await self.client.structured("review", prompt, META_REVIEW, subject="review:chair",
                                            check=_form_check(self.name))
        return _review_of(data, self.name)


def _paper_text(submission: Submission, chars: int) -> str:
    """The paper's text, pages joined; the head when it is long (the main text comes first)."""
    text = submission.text.replace("\f", "\n")
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    if len(text) <= chars:
        return text
    return text[:chars] + f"\n[... the remaining {len(text) - chars} characters (references, appendix) cut ...]"


def review_team(client: LLMClient, reviewers: int, *,
                temperatures: Sequence[float] | None = ENSEMBLE_TEMPERATURES,
                personas: Sequence[Persona] = PERSONAS,
                examples: Sequence[Example] = ()) -> tuple[list[LLMReviewer], LLMAreaChair]:
    """``reviewers`` ensemble members (personas and temperatures cycled) and their area chair.

    Temperatures are sent only to models that take one (see ``takes_temperature``); ``temperatures=None``
    sends none. With one reviewer the member has the first persona and the configured temperature.
    """
    if reviewers < 1:
        raise ValueError("at least one reviewer is needed")
    model = client.config.model_for("review")
    vary = temperatures if temperatures and reviewers > 1 and takes_temperature(model) else None
    team = [LLMReviewer(client, personas[i % len(personas)], member=i + 1,
                        temperature=vary[i % len(vary)] if vary else None, examples=examples)
            for i in range(reviewers)]
    return team, LLMAreaChair(client)


__all__ = ["DEFAULT_REFLECTIONS", "ENSEMBLE_TEMPERATURES", "Example", "LLMAreaChair", "LLMReviewer", "PERSONAS", "Persona",
           "REFLECTION", "REVIEW_FORM", "review_team", "takes_temperature", "with_temperature"]
