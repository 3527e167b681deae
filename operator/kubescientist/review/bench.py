"""The reviewer benchmark: how well reviews predict human accept/reject decisions.

Input is JSONL, one paper per line::

    {"id": "iclr-123", "text": "<the paper's text>", "decision": "Accept"}

``decision`` may also be a boolean ``accept``; a line may carry a precomputed ``review`` (the form, at least
``Overall`` and ``Decision``) to score reviews made elsewhere. Accept is the positive class. Reported:
balanced accuracy, F1, precision, recall, FPR, FNR, accuracy, the confusion matrix, and the ROC AUC of the
Overall score, with the decision rule stated (the AI Scientist's paper used Overall >= 6).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import pathlib
from typing import Any, Mapping, Sequence

from kubescientist.review.ensemble import AreaChair, Reviewer
from kubescientist.review.form import DecisionRule, Review, ReviewFormError
from kubescientist.review.reviewing import review_submission
from kubescientist.review.submission import from_text


class BenchError(ValueError):
    """The benchmark file is malformed (the message names the line)."""


@dataclasses.dataclass(frozen=True)
class BenchItem:
    """One labelled paper."""

    id: str
    """Its identifier (the line number when the file gives none)."""
    text: str
    """The paper's text."""
    accept: bool
    """The human decision."""
    review: Mapping[str, Any] | None = None
    """A review made elsewhere, scored instead of reviewing the text."""


@dataclasses.dataclass(frozen=True)
class Prediction:
    """What the reviewer said about one paper."""

    id: str
    """The paper."""
    accept: bool
    """The human decision."""
    predicted: bool
    """The decision under the rule."""
    overall: float
    """The review's Overall score (the AUC's ranking score)."""


@dataclasses.dataclass(frozen=True)
class BenchMetrics:
    """Agreement of the predicted decisions with the human ones (accept = positive)."""

    n: int
    """Papers."""
    tp: int
    """Accepted by both."""
    fp: int
    """Accepted by the reviewer, rejected by humans."""
    tn: int
    """Rejected by both."""
    fn: int
    """Rejected by the reviewer, accepted by humans."""
    accuracy: float
    """(tp + tn) / n."""
    balanced_accuracy: float
    """Mean of the true-positive and true-negative rates (robust to the accept rate)."""
    precision: float
    """tp / (tp + fp); 0 when nothing was accepted."""
    recall: float
    """tp / (tp + fn): the true-positive rate."""
    f1: float
    """Harmonic mean of precision and recall."""
    fpr: float
    """fp / (fp + tn)."""
    fnr: float
    """fn / (fn + tp)."""
    auc: float | None
    """ROC AUC of Overall against the human decision (ties count half); None with one class only."""
    rule: str
    """The decision rule, in words."""

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["confusion"] = {"rows": "human decision", "columns": "predicted decision",
                             "accept": {"accept": self.tp, "reject": self.fn},
                             "reject": {"accept": self.fp, "reject": self.tn}}
        return data

    def table(self) -> str:
        """The confusion matrix and metrics as plain text."""
        auc = "n/a" if self.auc is None else f"{self.auc:.3f}"
        return "\n".join([
            f"decision rule: {self.rule}",
            f"{'':>16}{'pred. accept':>14}{'pred. reject':>14}",
            f"{'human accept':>16}{self.tp:>14}{self.fn:>14}",
            f"{'human reject':>16}{self.fp:>14}{self.tn:>14}",
            f"n={self.n}  balanced accuracy={self.balanced_accuracy:.3f}  F1={self.f1:.3f}  AUC={auc}  "
            f"accuracy={self.accuracy:.3f}  precision={self.precision:.3f}  recall={self.recall:.3f}  "
            f"FPR={self.fpr:.3f}  FNR={self.fnr:.3f}",
        ])


def _ratio(a: int, b: int) -> float:
    return a / b if b else 0.0


def metrics(predictions: Sequence[Prediction], rule: DecisionRule) -> BenchMetrics:
    tp = sum(p.accept and p.predicted for p in predictions)
    fp = sum(not p.accept and p.predicted for p in predictions)
    tn = sum(not p.accept and not p.predicted for p in predictions)
    fn = sum(p.accept and not p.predicted for p in predictions)
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    return BenchMetrics(
        n=len(predictions), tp=tp, fp=fp, tn=tn, fn=fn, accuracy=_ratio(tp + tn, len(predictions)),
        balanced_accuracy=(recall + _ratio(tn, tn + fp)) / 2, precision=precision, recall=recall,
        f1=2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        fpr=_ratio(fp, fp + tn), fnr=_ratio(fn, fn + tp),
        auc=auc([p.overall for p in predictions], [p.accept for p in predictions]), rule=rule.describe())


def auc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """The probability that a random accepted paper scores above a random rejected one (ties: half)."""
    positives = [s for s, y in zip(scores, labels) if y]
    negatives = [s for s, y in zip(scores, labels) if not y]
    if not positives or not negatives:
        return None
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def read(path: pathlib.Path | str) -> list[BenchItem]:
    items = []
    for number, line in enumerate(pathlib.Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except ValueError as exc:
            raise BenchError(f"{path}:{number}: not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise BenchError(f"{path}:{number}: must be a JSON object")
        items.append(_item(data, f"{path}:{number}", str(number)))
    if not items:
        raise BenchError(f"{path}: no papers")
    return items


def _item(data: Mapping[str, Any], where: str, default_id: str) -> BenchItem:
    text = data.get("text", data.get("paper"))
    review = data.get("review")
    if not isinstance(text, str) and review is None:
        raise BenchError(f"{where}: text: the paper's text is required (or a precomputed review)")
    if "decision" in data:
        decision = str(data["decision"]).strip().lower()
        if decision not in ("accept", "reject"):
            raise BenchError(f"{where}: decision: must be Accept or Reject, got {data['decision']!r}")
        accept = decision == "accept"
    elif isinstance(data.get("accept"), bool):
        accept = data["accept"]
    else:
        raise BenchError(f"{where}: decision: the human decision (Accept/Reject) is required")
    return BenchItem(id=str(data.get("id", default_id)), text=text if isinstance(text, str) else "", accept=accept,
                     review=review if isinstance(review, Mapping) else None)


@dataclasses.dataclass(frozen=True)
class BenchResult:
    """A benchmark run."""

    metrics: BenchMetrics
    """The agreement metrics."""
    predictions: tuple[Prediction, ...]
    """Per paper."""

    def to_dict(self) -> dict[str, Any]:
        return {"metrics": self.metrics.to_dict(), "predictions": [dataclasses.asdict(p) for p in self.predictions]}


def bench(path: pathlib.Path | str, **options: Any) -> BenchResult:
    """Synchronous ``abench``."""
    return asyncio.run(abench(path, **options))


async def abench(path: pathlib.Path | str, *, reviewers: Sequence[Reviewer] = (), chair: AreaChair | None = None,
                 reflections: int = 0, rule: DecisionRule = DecisionRule(), concurrency: int = 4) -> BenchResult:
    """Review every paper of the file (or score its precomputed review) and compare with the human decisions."""
    items = read(path)
    limit = asyncio.Semaphore(concurrency)

    async def predict(item: BenchItem) -> Prediction:
        if item.review is not None:
            try:
                review = Review.from_dict(_complete(item.review))
            except ReviewFormError as exc:
                raise BenchError(f"{path}: paper {item.id}: review: {exc}") from None
            # An ensemble's mean Overall (5.4) ranks finer than the form's integer: the AUC keeps it.
            raw = item.review.get("Overall", review.overall)
            score = float(raw) if isinstance(raw, (int, float)) else float(review.overall)
            return Prediction(item.id, item.accept, rule.accept(review), score)
        else:
            async with limit:
                report = await review_submission(from_text(item.text), reviewers=reviewers, chair=chair,
                                                 reflections=reflections, rule=rule)
            review = report.review
        return Prediction(item.id, item.accept, rule.accept(review), float(review.overall))

    predictions = tuple(await asyncio.gather(*(predict(i) for i in items)))
    return BenchResult(metrics(predictions, rule), predictions)


def _complete(review: Mapping[str, Any]) -> dict[str, Any]:
    """A precomputed review needs only Overall and Decision: the rest of the form is filled in empty."""
    filler: dict[str, Any] = {"Summary": "", "Strengths": [], "Weaknesses": [], "Questions": [], "Limitations": [],
                              "Ethical Concerns": False, "Confidence": 1,
                              **{k: 1 for k in ("Originality", "Quality", "Clarity", "Significance", "Soundness",
                                                "Presentation", "Contribution")}}
    if "Decision" not in review and "decision" not in review and "Overall" in review:
        filler["Decision"] = "Accept" if float(review["Overall"]) >= DecisionRule().threshold else "Reject"
    return {**filler, **review}
