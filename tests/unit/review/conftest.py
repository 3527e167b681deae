"""Fixtures for the review tests: a run whose paper has been written (once per session)."""

from __future__ import annotations

import pathlib
import shutil

import pytest

from kubescientist.paper import write_paper
from review_support import FIXTURE


@pytest.fixture(scope="session")
def paper_run(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A copy of the recorded run with its offline paper written (do not modify: shared by the session)."""
    if shutil.which("pdflatex") is None:
        pytest.skip("texlive is not installed")
    target = tmp_path_factory.mktemp("reviewed") / "grokking-small"
    shutil.copytree(FIXTURE, target)
    write_paper(target)
    return target
