"""The import layering holds, as import-linter checks it (contracts in pyproject.toml).

core <- agent <- adapters <- cli on the control side; the engine core imports no I/O, clock or threading
modules; the data side (experiment_runtime, which runs in pods) never imports the control side.
"""

import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_import_contracts_are_kept():
    lint = shutil.which("lint-imports") or str(pathlib.Path(sys.executable).parent / "lint-imports")
    result = subprocess.run([lint, "--config", str(ROOT / "pyproject.toml"), "--no-cache"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
