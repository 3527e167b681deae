"""Stage gates: a run pauses after a gated stage (nothing of the next stage starts, not even early), the
pause is in the journal so a new engine on the same journal (a restart) still waits, and an approval in the
spec lets it go on to the end."""

from __future__ import annotations

import json

from simulate import run_to_end, spec_with
from kubescientist.core.engine import Engine
from kubescientist.core.journal import Journal


def _gated(**overrides: object) -> object:
    return spec_with(max_nodes=3, seeds=1, gates=["tuning"], **overrides)  # type: ignore[arg-type]


def test_a_gated_stage_pauses_the_run_and_survives_a_restart() -> None:
    engine = run_to_end(_gated())  # type: ignore[arg-type]
    journal = engine.journal
    assert not engine.done and journal.phase == "searching"
    assert [s.status for s in journal.stages] == ["done", "done", "waiting", "waiting"]
    assert not list(journal.in_stage("research")), "nothing of the next stage started, not even early"
    assert not journal.any_unfinished() and engine.plan(0.0) is None
    gate = engine.awaiting_approval()
    assert gate is not None and gate.name == "tuning"
    best = journal.nodes[gate.best or ""]
    message = engine.gate_message(gate)
    assert f"best node {best.id} acc=" in message and "(mean of 2 seeds)" in message
    assert "add tuning to spec.approvedGates" in message
    assert any(e.kind == "gate-waiting" for e in journal.events)

    # A restart: a new engine on the journal as stored still waits.
    restored = Journal.from_dict(json.loads(json.dumps(journal.to_dict())))
    again = Engine(_gated(), restored)  # type: ignore[arg-type]
    assert again.awaiting_approval() is not None and again.plan(0.0) is None

    # Approval in the spec (an edit while running, or at the restart) lets it go on to the end.
    again.update_spec(_gated(approvedGates=["tuning"]))  # type: ignore[arg-type]
    assert again.awaiting_approval() is None
    assert again.journal.stage("research").status == "searching"
    assert again.journal.stage("research").root == gate.best
    finished = run_to_end(_gated(approvedGates=["tuning"]), journal=again.journal)  # type: ignore[arg-type]
    assert finished.done and finished.journal.phase == "succeeded"
    assert any(e.kind == "gate-approved" for e in finished.journal.events)


def test_an_approval_given_while_no_process_ran_opens_the_gate_at_start() -> None:
    paused = run_to_end(_gated()).journal  # type: ignore[arg-type]
    engine = Engine(_gated(approvedGates=["tuning"]), paused)  # type: ignore[arg-type]
    assert engine.awaiting_approval() is None and engine.journal.stage("research").status == "searching"


def test_ungated_runs_are_unchanged() -> None:
    plain = run_to_end(spec_with(max_nodes=3, seeds=1))
    assert plain.done and plain.journal.phase == "succeeded" and plain.awaiting_approval() is None
    assert not any(e.kind.startswith("gate") for e in plain.journal.events)
