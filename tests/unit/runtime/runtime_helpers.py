"""Helpers for the node runtime tests: toy templates and prepared work dirs."""

from __future__ import annotations

import textwrap
from pathlib import Path

from experiment_runtime import Limits, prepare_workdir

# A manifest whose entrypoint is experiment.py; tests write the program itself.
MANIFEST = """\
apiVersion: kubescientist.io/v1alpha1
kind: ExperimentTemplate
name: toy
description: a toy template for tests
entrypoint: experiment.py
searchSpace:
  hyperparameters:
    lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true, default: 1.0e-3}
"""

# Prepended to every test program: argument parsing and a helper that writes valid metrics.
PRELUDE = """\
import argparse, json, os, sys, time
parser = argparse.ArgumentParser()
parser.add_argument("--out_dir", required=True)
parser.add_argument("--config")
args = parser.parse_args()
os.makedirs(args.out_dir, exist_ok=True)
def write_metrics(final=0.97, name="metrics.json"):
    doc = {"datasets": {"mod97": {"val_acc": {"final": final, "direction": "maximize"}}}}
    with open(os.path.join(args.out_dir, name), "w") as f:
        json.dump(doc, f)
"""


def native_template(root: Path, body: str, manifest: str = MANIFEST) -> Path:
    """Writes a native template whose experiment.py is PRELUDE + `body`; returns its folder."""
    code = root / "template"
    code.mkdir()
    (code / "kubescientist.yaml").write_text(manifest)
    (code / "experiment.py").write_text(PRELUDE + textwrap.dedent(body))
    return code


def workdir(root: Path, limits: Limits) -> Path:
    """An empty work dir prepared for the sandbox user."""
    work = root / "work"
    work.mkdir()
    prepare_workdir(work, limits)
    return work
