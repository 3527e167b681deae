"""Stage gates in local mode: a run whose engine waits at a gate stops (everything saved) and says how to
approve; ``approve_gate`` records the approval in the run folder's spec, and ``--resume`` goes on from it."""

from __future__ import annotations

import pathlib

import yaml

from kubescientist.adapters.local.rundir import RunDir
from kubescientist.adapters.manifest import ManifestError, validate_object
from kubescientist.core.engine import Engine


class GatePaused(Exception):
    """The run waits for a person's approval of a stage (spec.gates); nothing is lost."""


def raise_if_paused(engine: Engine, run_dir: pathlib.Path) -> None:
    """Raises ``GatePaused`` with what to do when the engine waits at a gate."""
    gate = engine.awaiting_approval()
    if gate is not None:
        raise GatePaused(f"{engine.gate_message(gate)}: kubescientist approve {run_dir} {gate.name}, then run it "
                         "again with --resume")


def approve_gate(run_dir: pathlib.Path, stage: str) -> str:
    """Add ``stage`` to the run's spec.approvedGates in its run.yaml; returns what changed."""
    path = RunDir(run_dir).manifest
    try:
        obj = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ManifestError(f"{path}: not a readable run manifest ({exc})") from None
    spec = obj.get("spec") if isinstance(obj, dict) else None
    if not isinstance(spec, dict):
        raise ManifestError(f"{path}: spec: missing")
    if stage in spec.get("approvedGates", []):
        return f"stage {stage} of {run_dir.name} was already approved"
    spec["approvedGates"] = [*spec.get("approvedGates", []), stage]
    valid = validate_object("ResearchRun", obj)  # names the field: a stage that is not gated, or no stage
    path.write_text(yaml.safe_dump(valid, sort_keys=False))
    return f"stage {stage} of {run_dir.name} approved"
