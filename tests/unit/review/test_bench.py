"""review-bench reproduces hand-computed agreement metrics, with its decision rule stated."""

import json

import pytest

from kubescientist.review import BenchError, DecisionRule, Review, bench
from kubescientist.review.bench import auc

# (human decision, Overall, the review's own Decision)
PAPERS = [("Accept", 8, "Accept"), ("Accept", 6, "Accept"), ("Accept", 5, "Reject"), ("Accept", 3, "Reject"),
          ("Reject", 7, "Accept"), ("Reject", 5, "Reject"), ("Reject", 4, "Reject"), ("Reject", 2, "Reject"),
          ("Reject", 6, "Reject")]


@pytest.fixture
def labelled(tmp_path):
    path = tmp_path / "bench.jsonl"
    path.write_text("\n".join(json.dumps({"id": f"p{i}", "text": "...", "decision": human,
                                          "review": {"Overall": overall, "Decision": decision}})
                              for i, (human, overall, decision) in enumerate(PAPERS)) + "\n")
    return path


def test_overall_threshold_rule_reproduces_the_hand_computed_metrics(labelled):
    # Overall >= 6 accepts p0 p1 (true accepts), p4 p8 (false accepts): TP 2, FN 2, FP 2, TN 3.
    m = bench(labelled).metrics
    assert (m.tp, m.fn, m.fp, m.tn) == (2, 2, 2, 3)
    assert m.balanced_accuracy == pytest.approx((2 / 4 + 3 / 5) / 2)  # 0.55
    assert m.f1 == pytest.approx(0.5) and m.precision == pytest.approx(0.5) and m.recall == pytest.approx(0.5)
    assert m.accuracy == pytest.approx(5 / 9) and m.fpr == pytest.approx(0.4) and m.fnr == pytest.approx(0.5)
    # AUC by hand over the 4 x 5 pairs: 8 beats all 5; 6 beats 5, 4, 2 and ties 6; 5 beats 4, 2, ties 5; 3 beats 2.
    assert m.auc == pytest.approx((5 + 3.5 + 2.5 + 1) / 20)  # 0.6
    assert m.rule == "accept iff Overall >= 6 (Overall on the 1-10 NeurIPS scale)"
    assert m.to_dict()["confusion"]["accept"] == {"accept": 2, "reject": 2}


def test_decision_field_rule_reproduces_the_hand_computed_metrics(labelled):
    # p8 has Overall 6 but Decision Reject: under this rule it is a true reject. TP 2, FN 2, FP 1, TN 4.
    m = bench(labelled, rule=DecisionRule(use_decision_field=True)).metrics
    assert (m.tp, m.fn, m.fp, m.tn) == (2, 2, 1, 4)
    assert m.balanced_accuracy == pytest.approx(0.65)
    assert m.f1 == pytest.approx(4 / 7)
    assert m.auc == pytest.approx(0.6)  # the AUC ranks by Overall whatever the rule
    assert "Decision field" in m.table()


class KeywordReviewer:
    """A scripted reviewer through the protocol: accepts papers that report error bars."""

    name = "keyword"

    async def review(self, submission):
        overall = 7 if "±" in submission.text else 3
        return Review(summary="", strengths=(), weaknesses=(), questions=(), limitations=(), ethical_concerns=False,
                      originality=2, quality=2, clarity=2, significance=2, soundness=2, presentation=2,
                      contribution=2, overall=overall, confidence=3, decision="Accept" if overall >= 6 else "Reject")

    async def reflect(self, submission, draft, attempt, rounds):
        return draft, True


def test_papers_are_reviewed_through_the_reviewer_protocol(tmp_path):
    path = tmp_path / "texts.jsonl"
    rows = [{"text": "0.9 ± 0.1", "decision": "Accept"}, {"text": "0.9", "decision": "Accept"},
            {"text": "0.5 ± 0.2", "accept": False}, {"text": "0.5", "accept": False}]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    result = bench(path, reviewers=[KeywordReviewer()])
    assert [p.predicted for p in result.predictions] == [True, False, True, False]
    assert result.metrics.balanced_accuracy == pytest.approx(0.5) and result.metrics.auc == pytest.approx(0.5)


def test_the_rubric_reviews_bare_texts_offline(tmp_path):
    path = tmp_path / "texts.jsonl"
    path.write_text(json.dumps({"text": "Title\nWe use 5 seeds, 0.9 ± 0.1.\nLimitations\n" + "x " * 60,
                                "decision": "Accept"}) + "\n")
    result = bench(path)
    assert result.metrics.n == 1 and result.predictions[0].overall >= 1


def test_malformed_files_name_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "x", "decision": "Accept"}\n{"text": "y", "decision": "maybe"}\n')
    with pytest.raises(BenchError, match="bad.jsonl:2: decision"):
        bench(path)


def test_auc_needs_both_classes():
    assert auc([1, 2], [True, True]) is None
    assert auc([1, 2, 3], [False, True, True]) == 1.0
