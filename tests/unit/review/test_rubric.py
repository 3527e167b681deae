"""The rubric review: measurable checks, labelled as a rubric review, written to review.json."""

import json
import shutil

from kubescientist.review import LABEL, RubricReviewer, review
from kubescientist.review.rubric import checks
from kubescientist.review.submission import Submission, from_pdf
from review_support import FIXTURE, needs_latex


@needs_latex
def test_the_offline_paper_without_literature_is_not_accepted_and_says_it_is_a_rubric_review(paper_run):
    """The recorded run has no literature: its paper lacks related work, so the rubric's bar is not met."""
    report = review(paper_run)
    assert report.kind == "rubric" and report.label == LABEL
    assert report.review.summary.startswith("Rubric review:")
    assert {c.name: c.passed for c in report.checks} == {
        "seeds": True, "error_bars": True, "significance": True, "related_work": False, "figures": True,
        "numbers": True, "pages": True, "citations": False, "limitations": True}
    assert report.review.decision == "Reject" and report.review.overall <= 4
    assert any("Related Work section cites no work" in w for w in report.review.weaknesses)
    assert report.review.originality == 2 and report.review.confidence == 2
    assert max(report.review.quality, report.review.clarity, report.review.presentation) <= 3
    written = json.loads((paper_run / "review.json").read_text())
    assert written["kind"] == "rubric" and written["decision"] == "Reject"
    assert written["review"]["Decision"] == "Reject" and written["review"]["Reviewer"] == "rubric"
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
    assert found == {"seeds": False, "error_bars": False, "significance": False, "related_work": False,
                     "figures": False, "numbers": None, "pages": True, "citations": False, "limitations": False}
    assert review_.overall == 1 and review_.decision == "Reject" and review_.soundness == 1
    assert any("not assessed by a rubric" in w.lower() or "cannot judge" in w for w in review_.limitations)


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
    assert found["related_work"].passed and found["significance"].passed
    assert report.review.decision == "Accept"  # the bar is met: seeds, a significance test, related work


GOOD_TEXT = """Weight Decay Drives Grokking

1 Introduction
We ask whether weight decay drives grokking [1]. Results are the mean ± standard error over 3 seeds.

2 Related Work
Power et al. (Power et al., 2022) found grokking on algorithmic data [1]; Nanda et al. explain it [2].

3 Results
The tuned model reaches 0.967 ± 0.002 over 3 seeds; against the first draft the 95% confidence interval of the
difference (Welch t-test) excludes zero. Figure 1 shows the curves.

Figure 1: Validation accuracy during training. As Figure 1 shows, it rises late.

4 Limitations
One template, few seeds.
\fReferences
[1] A. Power et al. Grokking. 2022.
[2] N. Nanda et al. Progress measures for grokking. 2023.
"""


def _decide(text: str):
    paper = Submission(text=text, title="Weight Decay Drives Grokking")
    found = checks(paper)
    return {c.name: c for c in found}, RubricReviewer().grade(paper, found)


def test_a_paper_meeting_the_bar_may_be_accepted_but_never_scored_excellent():
    found, review_ = _decide(GOOD_TEXT)
    assert all(c.passed is not False for c in found.values()), {n: c.detail for n, c in found.items()}
    assert review_.decision == "Accept"
    assert max(review_.quality, review_.clarity, review_.soundness, review_.presentation) <= 3


def test_a_paper_without_related_work_is_not_accepted_and_the_weakness_names_the_section():
    planted = GOOD_TEXT.replace("2 Related Work\nPower et al. (Power et al., 2022) found grokking on algorithmic "
                                "data [1]; Nanda et al. explain it [2].\n\n", "")
    found, review_ = _decide(planted)
    assert found["related_work"].passed is False and review_.decision == "Reject" and review_.overall <= 4
    assert any("has no Related Work section" in w for w in review_.weaknesses)


def test_a_related_work_section_citing_nothing_or_untested_differences_or_two_seeds_are_not_accepted():
    empty = GOOD_TEXT.replace("Power et al. (Power et al., 2022) found grokking on algorithmic data [1]; "
                              "Nanda et al. explain it [2].", "No literature search was run.")
    untested = GOOD_TEXT.replace("against the first draft the 95% confidence interval of the\ndifference "
                                 "(Welch t-test) excludes zero", "it beats the first draft")
    two_seeds = GOOD_TEXT.replace("3 seeds", "2 seeds")
    for text, gate in ((empty, "related_work"), (untested, "significance"), (two_seeds, "seeds")):
        found, review_ = _decide(text)
        assert found[gate].passed is False, gate
        assert review_.decision == "Reject", gate


def test_every_weakness_is_specific():
    paper = Submission(text="Great Results\n\nWe ran 2 seeds and got 0.91 [?].\n\nFigure 1: Accuracy.\n\fMore.\n",
                       title="Great Results")
    review_ = RubricReviewer().grade(paper, checks(paper))
    specific = ("Section", "section", "Figure", "Table", "seed", "±", "[?]", "cite", "citation")
    assert review_.weaknesses and all(any(word in w for word in specific) for w in review_.weaknesses), \
        review_.weaknesses
