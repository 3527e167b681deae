"""The number checker: numbers in prose match recorded values up to their rounding, or are caught."""

from kubescientist.paper.numbers import Fact, Facts, check, enforce, find_numbers, mask

FACTS = Facts([Fact(0.97338, "n0004 val_accuracy final"), Fact(0.00174, "tuning standard error"),
               Fact(0.003162, "n0004 config lr"), Fact(1000, "n0004 last step"), Fact(-0.5542, "ablation delta"),
               Fact(3, "seeds")])


def statuses(text: str) -> list[tuple[str, str]]:
    return [(f.text, f.status) for f in check(text, FACTS)]


def test_a_number_absent_from_the_metrics_is_caught():
    findings = check(r"The tuned model reaches $0.973 \pm 0.002$ and, we claim, 0.42 on held-out data.", FACTS)
    assert [(f.text, f.status) for f in findings] == [("0.973", "matched"), ("0.002", "matched"),
                                                      ("0.42", "unverified")]
    assert r"\unverified{0.42}" in enforce(r"reaches 0.42 on", findings[2:])


def test_rounding_is_tolerated_but_false_precision_is_not():
    assert statuses("0.97 0.973 0.9734 97.3\\% 97 percent") == [
        ("0.97", "matched"), ("0.973", "matched"), ("0.9734", "matched"), ("97.3\\%", "matched"),
        ("97 percent", "matched")]
    # Only a number marked as a percentage is read as one: a bare 97 is not the recorded 0.97338.
    assert statuses("97 of them") == [("97", "unverified")]
    # 0.9700 claims four decimals the record does not have: it is corrected to the recorded value.
    assert check("0.9700", FACTS)[0].status == "rewritten"
    assert check("0.9700", FACTS)[0].replacement == "0.9734"


def test_near_miss_is_rewritten_to_the_recorded_value():
    text = "a mean of 0.9741 over seeds"
    findings = check(text, FACTS)
    assert findings[0].status == "rewritten" and findings[0].source == "n0004 val_accuracy final"
    assert enforce(text, findings) == "a mean of 0.9734 over seeds"


def test_signs_scientific_notation_and_thousands_separators():
    assert statuses(r"drops by $-0.5542$; lr $3.162\times 10^{-3}$ for 1{,}000 steps, 1,000 in all, 3 seeds") == [
        ("0.5542", "matched"), (r"3.162\times 10^{-3}", "matched"), ("1{,}000", "matched"), ("1,000", "matched"),
        ("3", "matched")]


def test_latex_that_is_not_prose_is_not_checked():
    text = (r"See Figure~\ref{fig:12} and \citet{smith2020} \includegraphics[width=0.45\linewidth]{f2.pdf} "
            r"\begin{tabular}{@{}l2r@{}} \vspace{12pt} node n0007 % a comment 77.7" "\n")
    assert find_numbers(text) == []
    assert len(mask(text)) == len(text)


def test_flagged_numbers_are_not_flagged_twice():
    once = enforce("it reaches 0.42", check("it reaches 0.42", FACTS))
    assert check(once, FACTS) == []
