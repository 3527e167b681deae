"""One translator from a finished node to the engine's Outcome, whichever way the result came.

A real node program runs; its result then reaches ``adapters.results`` the three ways it can: the full
record (local runs; ``result.json`` in the cluster), the pod's termination message, and an ExperimentNode
status that recorded it. The verdict, the metric and the details' single spelling must agree.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from experiment_runtime import Limits, parse_result, run_node
from kubescientist.adapters import results
from kubescientist.adapters.kube import statuses
from kubescientist.core.journal import Details, Journal, Node, NodeConfig, Outcome
from runtime_helpers import native_template

CONFIG = {"seed": 3, "params": {"lr": 0.01}}


def finished_node(outcome: Outcome) -> Node:
    node = Node(id="n0001", seq=1, stage="initial", action="draft", parent=None, config=NodeConfig(seed=3),
                reason="", status="succeeded" if not outcome.buggy else "buggy", outcome=outcome, attempts=1)
    return node


def test_the_three_sources_of_a_result_agree(work_root: Path, python: str) -> None:
    code = native_template(work_root, "print('training'); write_metrics(0.91)\n")
    result = run_node(code, work_root / "node", CONFIG, Limits(deadline_seconds=20), python=python)

    full = results.outcome(result, Details(wall_seconds=1.25))
    short = results.outcome(results.Report(json.loads(result.termination_message())), Details(container_exit_code=0))
    status = statuses.node_status(finished_node(full), statuses.NodeView(), {}, 1, "2026-01-01T00:00:00Z", False)
    adopted = results.adopted({**status, "attempts": 1}, attempt=1)
    assert adopted is not None and results.adopted({**status, "attempts": 1}, attempt=2) is None
    from_status = results.outcome(adopted)

    for outcome in (full, short, from_status):
        assert not outcome.buggy and not outcome.infrastructure
        assert outcome.metrics["mod97"]["val_acc"]["final"] == 0.91
    assert full.metrics["mod97"]["val_acc"]["best"] == 0.91 and "curve" not in full.metrics["mod97"]["val_acc"]
    assert round(full.duration_seconds or 0, 3) == short.duration_seconds == from_status.duration_seconds
    assert full.details.status == short.details.status == "succeeded"
    assert full.details.exit_code == 0 and full.details.wall_seconds == 1.25 and full.details.stdout_bytes > 0
    assert short.details.container_exit_code == 0 and short.details.code_hash == result.code_hash
    assert from_status.details.adopted and not full.details.adopted

    # What the cluster reads back from object storage is the same record as the local runner's.
    stored = parse_result(json.loads((work_root / "node" / "result.json").read_text()), "s3://bucket/result.json")
    assert results.outcome(stored, Details(wall_seconds=1.25)) == full

    # One spelling in the journal, and it reads back as it was written.
    journal = Journal()
    journal.add(finished_node(full))
    data = json.loads(json.dumps(journal.to_dict()))
    assert set(data["nodes"]["n0001"]["outcome"]["details"]) == {f.name for f in dataclasses.fields(Details)}
    assert Journal.from_dict(data).nodes["n0001"].outcome == full


def test_a_buggy_program_is_buggy_from_every_source(work_root: Path, python: str) -> None:
    code = native_template(work_root, "raise ValueError('loss is NaN')\n")
    result = run_node(code, work_root / "node", CONFIG, Limits(deadline_seconds=20), python=python)
    full = results.outcome(result)
    short = results.outcome(results.Report(json.loads(result.termination_message())))
    for outcome in (full, short):
        assert outcome.buggy and "loss is NaN" in (outcome.reason or "") and outcome.metrics == {}
    assert full.details.exit_code == 1 and full.details.status == short.details.status == "failed"


def test_journals_written_before_one_spelling_still_read() -> None:
    legacy = {"status": "timeout", "exitCode": None, "overheadSeconds": 0.2, "wallSeconds": 3.0, "plots": ["a.png"],
              "job": "DeadlineExceeded", "startedAt": "t0", "plotFeedback": {"valid": True}, "unknown": 1}
    details = Details.from_dict(legacy)
    assert details == Details(status="timeout", overhead_seconds=0.2, wall_seconds=3.0, plots=["a.png"],
                              job_condition="DeadlineExceeded", started_at="t0", plot_feedback={"valid": True})
    assert Details.from_dict({"job": "run-n0001-a1", "exit_code": 2}) == Details(job="run-n0001-a1", exit_code=2)


def test_an_infrastructure_failure_keeps_where_it_happened() -> None:
    failed = results.infrastructure("x" * 5000, Details(pod="p", job="j"))
    assert failed.infrastructure and not failed.buggy and len(failed.reason or "") == results.REASON_CHARS
    assert (failed.details.pod, failed.details.job) == ("p", "j")
