"""Integration-test helpers: ResearchRun manifests for a template, and the real CLI as a user runs it."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from typing import Any


ROOT = pathlib.Path(__file__).resolve().parents[2]
GROKKING = ROOT / "examples" / "templates" / "grokking"
V1_TEMPLATE = ROOT / "tests" / "fixtures" / "v1_template"


def manifest(name: str, template: pathlib.Path, *, metric: str, budgets: tuple[int, int, int, int],
             seeds: int, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubescientist.io/v1alpha1",
        "kind": "ResearchRun",
        "metadata": {"name": name},
        "spec": {
            "idea": {"inline": {"title": f"integration test {name}"}},
            "template": {"path": str(template)},
            "objective": {"metric": metric, "direction": spec.pop("direction", "maximize")},
            "stages": [{"name": n, "maxNodes": b} for n, b in
                       zip(("initial", "tuning", "research", "ablation"), budgets)],
            "search": {"parallelism": 2, "drafts": 1},
            "resources": {"deadlineSeconds": 120, "memory": "8Gi"},
            "seeds": seeds,
            "seed": 0,
            **spec,
        },
    }


def cli(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """The real console entrypoint, as a user runs it."""
    env = {**os.environ, "COLUMNS": "160"}
    return subprocess.run([sys.executable, "-m", "kubescientist", *args], capture_output=True, text=True,
                          env=env, timeout=900, **kwargs)


def load(path: pathlib.Path) -> Any:
    return json.loads(path.read_text())
