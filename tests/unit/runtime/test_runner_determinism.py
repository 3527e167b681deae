"""Two local runs of one manifest with the same seed write the same journal.

Real runs: the local runner drives the engine through ``adapters.driving`` and each node is a real
sandboxed executor. What is measured (durations, resource use, timestamps) differs from run to run by
nature and is left out of the comparison; everything the engine decided (nodes, configs, parents, stages,
outcomes, events) must be identical. One slot, so that the order nodes finish in is the same too.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import yaml

from kubescientist.adapters.local.runner import LocalRunner, SilentReporter
from kubescientist.core.journal import Details

PROGRAM = """\
import argparse, json, os
parser = argparse.ArgumentParser()
parser.add_argument("--out_dir")
parser.add_argument("--config")
args = parser.parse_args()
config = json.load(open(args.config))
os.makedirs(args.out_dir, exist_ok=True)
lr = config["params"]["lr"]
if lr > 0.05:
    raise SystemExit("diverged: lr too high")
value = 0.5 + 0.001 * config["seed"] + lr
doc = {"datasets": {"toy": {"acc": {"final": value, "direction": "maximize"}}}}
json.dump(doc, open(os.path.join(args.out_dir, "metrics.json"), "w"))
"""

TEMPLATE = """\
apiVersion: kubescientist.io/v1alpha1
kind: ExperimentTemplate
name: toy
description: a quick deterministic program
entrypoint: experiment.py
searchSpace:
  hyperparameters:
    lr: {type: float, low: 0.001, high: 0.1, log: true, default: 0.01}
"""

MEASURED = {f.name for f in dataclasses.fields(Details)} - {"status", "exit_code", "code_hash", "plots", "attempt",
                                                             "job", "adopted", "review", "plot_feedback"}
"""Details fields that measure the machine (times, sizes, resource use) rather than record a decision."""


def manifest(root: Path, seed: int) -> Path:
    template = root / "template"
    template.mkdir(exist_ok=True)
    (template / "kubescientist.yaml").write_text(TEMPLATE)
    (template / "experiment.py").write_text(PROGRAM)
    doc = {
        "apiVersion": "kubescientist.io/v1alpha1", "kind": "ResearchRun", "metadata": {"name": "same"},
        "spec": {
            "idea": {"inline": {"title": "same seed, same journal"}},
            "template": {"path": str(template)},
            "objective": {"metric": "acc", "direction": "maximize"},
            "stages": [{"name": n, "maxNodes": b} for n, b in
                       zip(("initial", "tuning", "research", "ablation"), (2, 4, 1, 1))],
            "search": {"parallelism": 1, "drafts": 2},
            "resources": {"deadlineSeconds": 60, "memory": "1Gi"},
            "seeds": 2, "seed": seed,
            "writeup": {"enabled": False}, "review": {"enabled": False},
        },
    }
    path = root / "same.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def decided(journal: dict[str, Any]) -> dict[str, Any]:
    """The journal without what was measured."""
    for node in journal["nodes"].values():
        outcome = node.get("outcome")
        if outcome is not None:
            outcome.pop("duration_seconds")
            for name in MEASURED:
                outcome["details"].pop(name)
    return journal


def run_once(root: Path, seed: int) -> dict[str, Any]:
    root.mkdir()
    runner = LocalRunner(manifest(root, seed), root / "runs", SilentReporter())
    runner.execute()
    return decided(json.loads((root / "runs" / "same" / "journal.json").read_text()))


def test_two_runs_with_one_seed_write_the_same_journal(work_root: Path) -> None:
    first = run_once(work_root / "a", seed=7)
    second = run_once(work_root / "b", seed=7)
    assert first["phase"] == "succeeded" and len(first["nodes"]) >= 6
    assert {n["action"] for n in first["nodes"].values()} >= {"draft", "tune", "seed"}
    assert first == second


def test_another_seed_decides_otherwise(work_root: Path) -> None:
    # The comparison above means something only if the seed reaches the decisions.
    first = run_once(work_root / "a", seed=7)
    other = run_once(work_root / "b", seed=8)
    assert [n["config"] for n in first["nodes"].values()] != [n["config"] for n in other["nodes"].values()]
