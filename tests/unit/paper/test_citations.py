"""Citations come only from literature records; unknown keys are fixed or removed, never left."""

from kubescientist.paper.citations import Reference, bibtex, cited_keys, resolve, unique


def test_unknown_keys_are_mapped_to_the_evident_reference_or_removed():
    text = r"As shown before~\citep{Power2022Grokking, made_up_2031}, and by \citet{nobody99}, grokking occurs."
    fixed, fixes = resolve(text, ["power2022grokking"])
    assert fixed == r"As shown before~\citep{power2022grokking}, and by , grokking occurs."
    assert [(f.key, f.replacement) for f in fixes] == [("Power2022Grokking", "power2022grokking"),
                                                      ("made_up_2031", None), ("nobody99", None)]
    assert cited_keys(fixed) == ["power2022grokking"]


def test_a_citation_left_without_keys_disappears_with_its_tie():
    fixed, _ = resolve(r"Grokking is known~\cite{ghost}.", [])
    assert fixed == "Grokking is known."


def test_bibtex_is_built_from_the_records_and_escaped():
    refs = unique([
        Reference.from_dict({"title": "Grokking: Generalization Beyond Overfitting on Small Algorithmic Datasets",
                             "authors": [{"name": "Alethea Power"}, {"name": "Yuri Burda"}], "year": 2022,
                             "venue": "arXiv & friends", "url": "https://arxiv.org/abs/2201.02177"}),
        Reference.from_dict({"title": "Grokking: generalization beyond overfitting on small algorithmic datasets"}),
    ])
    assert [r.key for r in refs] == ["power2022grokking"]
    bib = bibtex(refs)
    assert "@article{power2022grokking," in bib
    assert r"journal = {arXiv \& friends}" in bib and r"\url{https://arxiv.org/abs/2201.02177}" in bib
