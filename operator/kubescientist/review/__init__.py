"""The reviewer: a conference-style review of a paper, and a benchmark of reviews against human decisions.

    from kubescientist.review import review
    report = review("runs/quickstart")        # -> runs/quickstart/review.json

Models plug in through ``Reviewer`` and ``AreaChair``; offline the rubric reviewer checks what can be
measured and its review is labelled as a rubric review.
"""

from kubescientist.review.bench import BenchError, BenchMetrics, BenchResult, Columns, abench, bench
from kubescientist.review.ensemble import AreaChair, EnsembleResult, Reviewer, combine, review_with
from kubescientist.review.form import DecisionRule, Review, ReviewFormError, parse_review_json
from kubescientist.review.reviewing import REVIEW_FILE, ReviewReport, areview, review, review_submission
from kubescientist.review.rubric import LABEL, Check, RubricReviewer
from kubescientist.review.submission import Submission, SubmissionError, from_pdf, from_run, from_text

__all__ = [
    "AreaChair", "BenchError", "BenchMetrics", "BenchResult", "Columns", "Check", "DecisionRule", "EnsembleResult", "LABEL",
    "REVIEW_FILE", "Review", "ReviewFormError", "ReviewReport", "Reviewer", "RubricReviewer", "Submission",
    "SubmissionError", "abench", "areview", "bench", "combine", "from_pdf", "from_run", "from_text",
    "parse_review_json", "review", "review_submission", "review_with",
]
