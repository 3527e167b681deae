"""Shared by the review tests: the recorded run and the LaTeX marker."""

import pathlib
import shutil

import pytest

FIXTURE = pathlib.Path(__file__).resolve().parents[2] / "fixtures" / "runs" / "grokking-small"
needs_latex = pytest.mark.skipif(shutil.which("pdflatex") is None or shutil.which("pdftotext") is None,
                                 reason="texlive and poppler-utils are not installed (see the Makefile)")
