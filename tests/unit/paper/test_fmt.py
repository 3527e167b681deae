"""Formatting: numbers rounded to their error bar, LaTeX escaping, the markdown subset."""

from kubescientist.paper.fmt import count, escape, label, markdown, mean_pm, number


def test_mean_is_rounded_to_the_precision_of_its_standard_error():
    assert mean_pm(0.967233, 0.001742, 3) == r"$0.967 \pm 0.002$"
    assert mean_pm(0.96685, 0.000826, 3) == r"$0.9668 \pm 0.0008$"
    assert mean_pm(12.345, 0.15, 5) == r"$12.35 \pm 0.15$"
    assert mean_pm(0.5, 0.0, 1) == "0.5"


def test_numbers_use_math_mode_for_signs_and_powers_of_ten():
    assert number(0.003162) == "0.003162"
    assert number(-0.5542) == "$-0.5542$"
    assert number(0.0014, sign=True) == "$+0.0014$"
    assert number(3.833e-4) == r"$3.833\times 10^{-4}$"
    assert number(64.0) == "64"


def test_escape_and_markdown():
    assert escape("a_b & 50% #1 {x} ~ ^") == r"a\_b \& 50\% \#1 \{x\} \textasciitilde{} \textasciicircum{}"
    assert markdown("We study **mod** `a_b` and *x*.\n\n- one\n- two") == (
        "We study \\textbf{mod} \\texttt{a\\_b} and \\emph{x}.\n\n\\begin{itemize}\n\\item one\n\\item two\n"
        "\\end{itemize}")


def test_labels_and_counts_read_as_prose():
    assert label("val_accuracy") == "validation accuracy"
    assert count(1, "node") == "one node" and count(3, "seed") == "three seeds" and count(18, "node") == "18 nodes"


def test_identical_seeds_are_flagged_not_printed_as_plus_minus_zero():
    from kubescientist.paper.fmt import mean_pm

    assert mean_pm(2991.36824480, 0.0, 3) == "2991 (identical over 3 seeds)"
    assert mean_pm(0.9, 0.0, 1) == "0.9"
