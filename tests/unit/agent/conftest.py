"""Fixtures for the agent's tests: the scripted OpenAI-compatible server on a free local port."""

from __future__ import annotations

import os
import pathlib
import shutil
import sys
import tempfile
from typing import Iterator

import pytest

from experiment_runtime import Limits, SandboxError, execute, prepare_workdir
from tests.llmserver import ScriptedLLMServer


@pytest.fixture
def server() -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer() as running:
        yield running


@pytest.fixture
def plain_server() -> Iterator[ScriptedLLMServer]:
    """A server that refuses response_format json_schema with a 400, like many self-hosted ones."""
    with ScriptedLLMServer(json_schema=False) as running:
        yield running


@pytest.fixture
def work_root() -> Iterator[pathlib.Path]:
    """A folder the sandbox user can traverse (pytest's tmp folders are private when run as root)."""
    root = pathlib.Path(tempfile.mkdtemp(prefix="ks-agent-test-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def sandbox_python() -> str:
    """An interpreter the sandbox user can start (this one may live under /root, out of its reach)."""
    root = pathlib.Path(tempfile.mkdtemp(prefix="ks-agent-python-"))
    root.chmod(0o755)
    try:
        for candidate in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"):
            if not os.path.exists(candidate):
                continue
            work = root / f"try{len(os.listdir(root))}"
            work.mkdir()
            limits = Limits(deadline_seconds=30)
            prepare_workdir(work, limits)
            try:
                if execute([candidate, "-c", "pass"], work, {}, limits).exit_code == 0:
                    return candidate
            except SandboxError:
                continue
    finally:
        shutil.rmtree(root, ignore_errors=True)
    pytest.skip("no interpreter the sandbox user can start")
