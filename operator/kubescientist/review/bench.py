"""The reviewer benchmark: how well reviews predict human accept/reject decisions.

Input is a labelled set, one paper per record, as JSONL (split on newlines only: a paper's text may hold
U+2028 and other line separators), CSV or TSV (with a header row)::

    {"id": "iclr-123", "text": "<the paper's text>", "decision": "Accept (Poster)"}

Column mapping (``Columns``; the CLI's ``--id-column``, ``--text-column``, ``--decision-column``,
``--review-column``): ``id`` (optional: the record number), ``text`` (also ``paper``), ``decision`` (or a
boolean ``accept``), and an optional precomputed ``review`` (the form as a JSON object, or a JSON string in a
CSV cell; at least ``Overall``) to score reviews made elsewhere. Decisions map case-insensitively: anything
starting with "accept" ("Accept (Poster)", "Accept (Oral)", "accept-spotlight") is an accept; "reject", "desk
reject", "withdrawn" are rejects; true/false, yes/no and 1/0 are read as accept or not. Accept is the positive
class.

Reported: balanced accuracy, F1, precision, recall, FPR, FNR, accuracy, the confusion matrix, and the ROC AUC
of the Overall score (the probability that an accepted paper's Overall exceeds a rejected one's, ties half:
Mann-Whitney U over n_accept x n_reject), with the decision rule stated (the AI Scientist's paper used
Overall >= 6), each with a 95% percentile bootstrap interval over papers (seeded, so reproducible).
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
import json
import pathlib
import random
import sys
from typing import Any, Literal, Mapping, Sequence

from kubescientist.review.ensemble import AreaChair, Reviewer
from kubescientist.review.form import DecisionRule, Review, ReviewFormError
from kubescientist.review.reviewing import review_submission
from kubescientist.review.submission import from_text


AUC_KIND = ("ROC AUC of the reviews' Overall score against the human decision: the probability that an "
            "accepted paper scores above a rejected one, ties counted half (Mann-Whitney U / (n_accept x n_reject))")


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
    intervals: Mapping[str, tuple[float, float] | None] = dataclasses.field(default_factory=dict)
    """95% percentile bootstrap interval per metric (resampling papers); None where a resample lacks a class."""
    bootstrap: int = 0
    """How many bootstrap resamples the intervals rest on."""
    auc_kind: str = AUC_KIND
    """Which AUC ``auc`` is."""

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["intervals"] = {k: None if v is None else list(v) for k, v in self.intervals.items()}
        data["confusion"] = {"rows": "human decision", "columns": "predicted decision",
                             "accept": {"accept": self.tp, "reject": self.fn},
                             "reject": {"accept": self.fp, "reject": self.tn}}
        return data

    def _value(self, name: str) -> str:
        value = getattr(self, name)
        if value is None:
            return f"{name.replace('_', ' ')}=n/a"
        text = f"{name.replace('_', ' ')}={value:.3f}"
        interval = self.intervals.get(name)
        return text + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")

    def table(self) -> str:
        """The confusion matrix and metrics (with their bootstrap intervals) as plain text."""
        lines = [
            f"decision rule: {self.rule}",
            f"{'':>16}{'pred. accept':>14}{'pred. reject':>14}",
            f"{'human accept':>16}{self.tp:>14}{self.fn:>14}",
            f"{'human reject':>16}{self.fp:>14}{self.tn:>14}",
            f"n={self.n}  " + "  ".join(self._value(m) for m in ("balanced_accuracy", "f1", "auc")),
            "  ".join(self._value(m) for m in ("accuracy", "precision", "recall", "fpr", "fnr")),
            f"AUC: {self.auc_kind}",
        ]
        if self.bootstrap:
            lines.append(f"[...]: 95% percentile bootstrap intervals over {self.bootstrap} resamples of the papers")
        return "\n".join(lines)


def _ratio(a: int, b: int) -> float:
    return a / b if b else 0.0


INTERVAL_METRICS = ("balanced_accuracy", "f1", "auc", "accuracy", "precision", "recall", "fpr", "fnr")


def metrics(predictions: Sequence[Prediction], rule: DecisionRule, *, resamples: int = 0,
            seed: int = 0) -> BenchMetrics:
    """The agreement metrics; with ``resamples``, their 95% percentile bootstrap intervals over papers."""
    point = _point(predictions, rule)
    if resamples <= 0 or not predictions:
        return point
    rng = random.Random(seed)
    samples: dict[str, list[float]] = {m: [] for m in INTERVAL_METRICS}
    for _ in range(resamples):
        drawn = _point([predictions[rng.randrange(len(predictions))] for _ in predictions], rule)
        for name in INTERVAL_METRICS:
            value = getattr(drawn, name)
            if value is not None:
                samples[name].append(value)
    intervals = {name: _percentiles(values) if len(values) >= resamples * 0.9 else None
                 for name, values in samples.items()}
    return dataclasses.replace(point, intervals=intervals, bootstrap=resamples)


def _percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return ordered[int(0.025 * (len(ordered) - 1))], ordered[int(round(0.975 * (len(ordered) - 1)))]


def _point(predictions: Sequence[Prediction], rule: DecisionRule) -> BenchMetrics:
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
    """The probability that a random accepted paper scores above a random rejected one (ties: half), from
    mid-ranks (Mann-Whitney U), so that bootstrapping hundreds of papers stays fast."""
    positives = sum(1 for y in labels if y)
    negatives = len(labels) - positives
    if not positives or not negatives:
        return None
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and scores[order[end + 1]] == scores[order[start]]:
            end += 1
        for k in range(start, end + 1):
            ranks[order[k]] = (start + end) / 2 + 1
        start = end + 1
    rank_sum = sum(r for r, y in zip(ranks, labels) if y)
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


@dataclasses.dataclass(frozen=True)
class Columns:
    """Which field of a labelled set holds what (JSONL keys or CSV/TSV header names)."""

    id: str = "id"
    """The paper's identifier (optional in the file: the record number)."""
    text: str = "text"
    """The paper's text (``paper`` is accepted too)."""
    decision: str = "decision"
    """The human decision (``accept``, a boolean, is accepted too)."""
    review: str = "review"
    """An optional precomputed review (the form; in CSV/TSV a JSON string)."""


Format = Literal["jsonl", "csv", "tsv"]
ACCEPT_WORDS = ("accept", "true", "yes", "1")
REJECT_WORDS = ("reject", "desk reject", "desk rejected", "withdrawn", "false", "no", "0")


def parse_decision(value: Any, where: str) -> bool:
    """A human decision as accept (True) or not: "Accept (Poster)", "Reject", booleans, yes/no, 1/0."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text.startswith("accept") or text in ACCEPT_WORDS:
        return True
    if text.startswith("reject") or text in REJECT_WORDS:
        return False
    raise BenchError(f"{where}: decision: {value!r} is neither an accept (\"Accept\", \"Accept (Poster)\", ...) nor a "
                     "reject (\"Reject\", \"Desk Reject\", \"Withdrawn\")")


def format_of(path: pathlib.Path) -> Format:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    if suffix in (".csv", ".tsv", ".tab"):
        return "csv" if suffix == ".csv" else "tsv"
    raise BenchError(f"{path}: unknown format (the name ends in {suffix or 'nothing'}): use .jsonl, .csv or .tsv, "
                     "or name the format")


def read(path: pathlib.Path | str, columns: Columns = Columns(), fmt: Format | None = None) -> list[BenchItem]:
    """The labelled papers of a JSONL, CSV or TSV file; a malformed record is an error naming it."""
    path = pathlib.Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BenchError(f"{path}: unreadable: {exc}") from None
    kind = fmt or format_of(path)
    items = []
    for number, data in (_jsonl(path, raw) if kind == "jsonl" else _table(path, raw, kind, columns)):
        items.append(_item(data, f"{path}:{number}", str(number), columns))
    if not items:
        raise BenchError(f"{path}: no papers")
    return items


def _jsonl(path: pathlib.Path, raw: str) -> list[tuple[int, Mapping[str, Any]]]:
    records: list[tuple[int, Mapping[str, Any]]] = []
    # Newlines only: str.splitlines would also split at U+2028, U+0085 and form feeds inside a paper's text.
    for number, line in enumerate(raw.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except ValueError as exc:
            raise BenchError(f"{path}:{number}: not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise BenchError(f"{path}:{number}: must be a JSON object")
        records.append((number, data))
    return records


def _table(path: pathlib.Path, raw: str, kind: Format, columns: Columns) -> list[tuple[int, Mapping[str, Any]]]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # a paper's text is one cell
    reader = csv.DictReader(io.StringIO(raw, newline=""), delimiter="," if kind == "csv" else "\t")
    header = reader.fieldnames or []
    for needed in (columns.decision,):
        if needed not in header and "accept" not in header:
            raise BenchError(f"{path}: no column {needed!r} (the header has {', '.join(header) or 'nothing'}); "
                             "name the decision column with --decision-column")
    records: list[tuple[int, Mapping[str, Any]]] = []
    for row in reader:
        data: dict[str, Any] = {k: v for k, v in row.items() if k is not None}
        cell = data.get(columns.review)
        if isinstance(cell, str) and cell.strip():
            try:
                data[columns.review] = json.loads(cell)
            except ValueError as exc:
                raise BenchError(f"{path}:{reader.line_num}: {columns.review}: not a JSON review ({exc})") from None
        elif columns.review in data:
            del data[columns.review]
        records.append((reader.line_num, data))
    return records


def _item(data: Mapping[str, Any], where: str, default_id: str, columns: Columns = Columns()) -> BenchItem:
    text = data.get(columns.text, data.get("paper"))
    review = data.get(columns.review)
    if not isinstance(text, str) and review is None:
        raise BenchError(f"{where}: {columns.text}: the paper's text is required (or a precomputed review)")
    if columns.decision in data and data[columns.decision] not in (None, ""):
        accept = parse_decision(data[columns.decision], where)
    elif data.get("accept") not in (None, ""):
        accept = parse_decision(data["accept"], where)
    else:
        raise BenchError(f"{where}: {columns.decision}: the human decision (Accept/Reject) is required")
    return BenchItem(id=str(data.get(columns.id) or default_id), text=text if isinstance(text, str) else "",
                     accept=accept, review=review if isinstance(review, Mapping) else None)


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
                 reflections: int = 0, rule: DecisionRule = DecisionRule(), concurrency: int = 4,
                 columns: Columns = Columns(), fmt: Format | None = None, resamples: int = 1000,
                 seed: int = 0) -> BenchResult:
    """Review every paper of the file (or score its precomputed review) and compare with the human decisions."""
    items = read(path, columns, fmt)
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
    return BenchResult(metrics(predictions, rule, resamples=resamples, seed=seed), predictions)


def _complete(review: Mapping[str, Any]) -> dict[str, Any]:
    """A precomputed review needs only Overall and Decision: the rest of the form is filled in empty."""
    filler: dict[str, Any] = {"Summary": "", "Strengths": [], "Weaknesses": [], "Questions": [], "Limitations": [],
                              "Ethical Concerns": False, "Confidence": 1,
                              **{k: 1 for k in ("Originality", "Quality", "Clarity", "Significance", "Soundness",
                                                "Presentation", "Contribution")}}
    if "Decision" not in review and "decision" not in review and "Overall" in review:
        filler["Decision"] = "Accept" if float(review["Overall"]) >= DecisionRule().threshold else "Reject"
    return {**filler, **review}
