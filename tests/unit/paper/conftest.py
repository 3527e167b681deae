"""Fixtures for the paper tests: the recorded run, and its paper written once per session."""

from __future__ import annotations

import pathlib
import shutil

import pytest

from kubescientist.paper import PaperResult, write_paper
from paper_support import FIXTURE


@pytest.fixture
def run_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    """A private copy of the recorded run (writing the paper adds files to it)."""
    target = tmp_path / "grokking-small"
    shutil.copytree(FIXTURE, target)
    return target


@pytest.fixture(scope="session")
def written(tmp_path_factory: pytest.TempPathFactory) -> PaperResult:
    """The offline paper of the recorded run, written once: compiling takes seconds."""
    if shutil.which("pdflatex") is None:
        pytest.skip("texlive is not installed")
    target = tmp_path_factory.mktemp("written") / "grokking-small"
    shutil.copytree(FIXTURE, target)
    return write_paper(target)
