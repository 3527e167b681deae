"""The rubric review: measurable checks, labelled as a rubric review, written to review.json."""

import json
import shutil

from kubescientist.review import LABEL, RubricReviewer, review
from kubescientist.review.rubric import checks
from kubescientist.review.submission import Submission, from_pdf
from review_support import FIXTURE, needs_latex


@needs_latex
def test_the_offline_paper_passes_every_check_and_says_it_is_a_rubric_review(paper_run):
    report = review(paper_run)
    assert report.kind == "rubric" and report.label == LABEL
    assert report.review.summary.startswith("Rubric review:")
    assert {c.name: c.passed for c in report.checks} == {
        "seeds": True, "error_bars": True, "figures": True, "numbers": True, "pages": True, "citations": True,
        "limitations": True}
    assert report.review.decision == "Accept" and report.review.overall == 6
    assert report.review.originality == 2 and report.review.confidence == 2
    written = json.loads((paper_run / "review.json").read_text())
    assert written["kind"] == "rubric" and written["decision"] == "Accept"
    assert written["review"]["Decision"] == "Accept" and written["review"]["Reviewer"] == "rubric"
    assert written["decisionRule"].startswith("accept iff Overall >= 6")


@needs_latex
def test_a_pdf_away_from_its_run_cannot_have_its_numbers_traced(paper_run, tmp_path):
    pdf = tmp_path / "submitted.pdf"
    shutil.copyfile(paper_run / "paper" / "paper.pdf", pdf)
    report = review(pdf)
    found = {c.name: c for c in report.checks}
    assert found["numbers"].passed is None and "cannot be traced" in found["numbers"].detail
    assert found["seeds"].passed and found["figures"].passed and found["pages"].passed
    assert report.review.confidence == 1
    assert (tmp_path / "submitted.review.json").is_file()


def test_untraceable_numbers_are_found_with_the_run_records():
    source = ("\\begin{document}\\section{Results} The tuned model reaches $0.967 \\pm 0.002$ and "
              "\\unverified{0.4242} on unseen primes, and 0.9389 for n0000.\\end{document}")
    submission = Submission(text="Results\nLimitations\nover 3 seeds ±", title="t", source=source, run_dir=FIXTURE)
    numbers = next(c for c in checks(submission) if c.name == "numbers")
    assert numbers.passed is False and numbers.detail == "3 of 4 numbers match recorded values; untraceable: 0.4242"


def test_a_weak_paper_fails_the_floor_and_is_rejected():
    paper = Submission(text="Great Results\n\nWe ran 2 seeds and got 0.91 [?].\n\nFigure 1: Accuracy.\n\fMore.\n",
                       title="Great Results")
    review_ = RubricReviewer().grade(paper, checks(paper))
    found = {c.name: c.passed for c in checks(paper)}
    assert found == {"seeds": False, "error_bars": False, "figures": False, "numbers": None, "pages": True,
                     "citations": False, "limitations": False}
    assert review_.overall == 1 and review_.decision == "Reject" and review_.soundness == 1
    assert any("not assessed by a rubric" in w.lower() for w in review_.weaknesses)


def test_a_missing_paper_says_how_to_write_it(tmp_path):
    import pytest

    from kubescientist.review import SubmissionError
    with pytest.raises(SubmissionError, match="kubescientist writeup"):
        review(tmp_path)
    with pytest.raises(SubmissionError, match="no such file"):
        from_pdf(tmp_path / "nothing.pdf")


@needs_latex
def test_a_paper_citing_the_literature_search_passes_the_citation_and_number_checks(tmp_path):
    from kubescientist.paper import write_paper

    run = tmp_path / "grokking-small"
    shutil.copytree(FIXTURE, run)
    papers = [{"id": "power2022grokking", "title": "Grokking: Generalization Beyond Overfitting on Small Algorithmic "
               "Datasets", "authors": ["Alethea Power", "Yuri Burda"], "year": 2022, "venue": "arXiv"},
              {"id": "0123456789abcdef0123456789abcdef01234567", "title": "Language Models are Unsupervised "
               "Multitask Learners (GPT-2)", "authors": ["Alec Radford"], "year": 2019, "venue": "OpenAI"}]
    (run / "literature.json").write_text(json.dumps({"papers": papers}))
    paper = write_paper(run)
    assert paper.references == ("power2022grokking", "radford2019language")  # a hash id gets a readable key
    report = review(run)
    found = {c.name: c for c in report.checks}
    assert found["citations"].passed and found["citations"].detail == "2 cited work(s), all resolved"
    assert found["numbers"].passed, found["numbers"].detail
