"""The import layering (core <- agent <- adapters <- cli; the pod side apart) holds, as import-linter checks it."""

import pathlib

from importlinter.application.use_cases import lint_imports
from importlinter.application.user_options import UserOptions  # noqa: F401  (import-linter's public API)

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_import_contracts_are_kept(monkeypatch):
    monkeypatch.chdir(ROOT)
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml")) is True
