"""Fixtures for the node runtime tests: work dirs and an interpreter the sandbox user can reach."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from experiment_runtime import Limits, SandboxError, execute, prepare_workdir


@pytest.fixture
def work_root() -> Iterator[Path]:
    """A directory the sandbox user can traverse (pytest's own tmp dirs are 0700 when run as root)."""
    root = Path(tempfile.mkdtemp(prefix="ks-runtime-test-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def python() -> Iterator[str]:
    """An interpreter the sandbox user can run: this one, or the system's when this one lives
    under a private directory (a pyenv under /root, as on the development machines)."""
    root = Path(tempfile.mkdtemp(prefix="ks-runtime-python-"))
    root.chmod(0o755)
    limits = Limits(deadline_seconds=30)
    try:
        for candidate in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"):
            work = root / str(abs(hash(candidate)))
            work.mkdir()
            prepare_workdir(work, limits)
            try:
                if os.path.exists(candidate) and execute([candidate, "-c", "pass"], work, {}, limits).exit_code == 0:
                    yield candidate
                    return
            except SandboxError:
                continue
        pytest.skip("no interpreter the sandbox user can run")
    finally:
        shutil.rmtree(root, ignore_errors=True)
