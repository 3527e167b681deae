"""Figures (PDF and PNG) and tables are generated from the records, with seeds as mean ± s.e."""

from kubescientist.paper.analysis import analyse
from kubescientist.paper.figures import draw_all
from kubescientist.paper.records import load
from kubescientist.paper.tables import build_all

from paper_support import FIXTURE


def test_every_figure_has_a_vector_and_a_raster_version(tmp_path):
    figures = draw_all(analyse(load(FIXTURE)), tmp_path)
    assert [f.name for f in figures] == ["stages", "curves", "search", "variants", "ablations", "program0"]
    for figure in figures:
        assert figure.png.stat().st_size > 1000
        if figure.pdf is not None:
            assert figure.pdf.read_bytes().startswith(b"%PDF")
    assert "standard error over 3 seeds" in figures[0].caption


def test_tables_carry_the_recorded_values():
    analysis = analyse(load(FIXTURE))
    tables = {t.name: t for t in build_all(analysis)}
    assert set(tables) == {"stages", "best", "config", "variants", "ablations", "nodes"}
    assert r"\mathbf{0.967 \pm 0.002}" in tables["stages"].body  # the run's result, in bold
    assert "0.4128" in tables["ablations"].body and "$-0.5542$" in tables["ablations"].body
    assert "buggy" in tables["nodes"].body
