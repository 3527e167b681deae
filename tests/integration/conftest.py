"""Fixtures for integration tests."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
import yaml


@pytest.fixture
def write_manifest(tmp_path: pathlib.Path):
    def write(obj: dict[str, Any]) -> pathlib.Path:
        path = tmp_path / f"{obj['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(obj))
        return path
    return write
