"""Shared by the paper tests: where the recorded run lives, and the marker for tests that need LaTeX."""

import pathlib
import shutil

import pytest

FIXTURE = pathlib.Path(__file__).resolve().parents[2] / "fixtures" / "runs" / "grokking-small"
needs_latex = pytest.mark.skipif(shutil.which("pdflatex") is None or shutil.which("pdftotext") is None,
                                 reason="texlive and poppler-utils are not installed (see the Makefile)")
