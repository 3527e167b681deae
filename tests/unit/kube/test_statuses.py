"""Status of ExperimentNodes and ResearchRuns: metav1.Condition semantics, bounds, phases."""

from __future__ import annotations

from kubescientist.adapters.kube import statuses
from kubescientist.adapters.kube.outcomes import Observation
from kubescientist.core.journal import Journal, Node, NodeConfig, Outcome
from kubescientist.core.spec import run_spec_from_dict

SPEC = run_spec_from_dict({"idea": {"inline": {"title": "t"}}, "objective": {"metric": "acc"},
                           "stages": [{"name": n, "maxNodes": 2} for n in ("initial", "tuning", "research", "ablation")]})


def test_transition_time_changes_only_with_the_status() -> None:
    first = statuses.set_condition([], "Ready", False, "Searching", "m", 1, "2026-01-01T00:00:00Z")
    same = statuses.set_condition([first], "Ready", False, "Other", "m2", 2, "2026-01-01T00:05:00Z")
    flipped = statuses.set_condition([same], "Ready", True, "Succeeded", "done", 2, "2026-01-01T00:09:00Z")
    assert same["lastTransitionTime"] == "2026-01-01T00:00:00Z" and same["observedGeneration"] == 2
    assert flipped["lastTransitionTime"] == "2026-01-01T00:09:00Z" and flipped["status"] == "True"


def node(status: str, outcome: Outcome | None = None, attempts: int = 1) -> Node:
    return Node(id="n0001", seq=1, stage="tuning", action="tune", parent="n0000", config=NodeConfig(seed=0),
                reason="r", status=status, outcome=outcome, attempts=attempts)  # type: ignore[arg-type]


def test_node_status_bounds_metrics_and_reason() -> None:
    metrics = {f"d{i}": {f"m{j}": {"final": float(j), "best": 1.0} for j in range(100)} for i in range(100)}
    outcome = Outcome(buggy=True, reason="x" * 10000, metrics=metrics, duration_seconds=2.0)
    status = statuses.node_status(node("buggy", outcome), statuses.NodeView(job_name="j"), {}, 1, "now")
    assert status["phase"] == "Buggy" and len(status["buggyReason"]) == statuses.MAX_REASON
    assert len(status["metrics"]) == 64 and all(len(v) == 64 for v in status["metrics"].values())
    assert status["conditions"][0]["status"] == "True" and status["jobName"] == "j"


def test_a_started_node_waiting_for_its_pod_is_pending_with_why() -> None:
    view = statuses.NodeView(job_name="j", observation=Observation("pending", "pod p not scheduled yet: 0/2 nodes"))
    status = statuses.node_status(node("running"), view, {}, 1, "now")
    assert status["phase"] == "Pending" and "not scheduled" in status["message"]
    running = statuses.NodeView(job_name="j", observation=Observation("running", "pod p is running", started_at="t0"))
    status = statuses.node_status(node("running"), running, {}, 1, "now")
    assert status["phase"] == "Running" and status["startTime"] == "t0"


def test_run_phases() -> None:
    journal = Journal()
    view = statuses.RunView(spec=SPEC, journal=None, best=None, writeup=statuses.Step(), review=statuses.Step(),
                            start_time=None)
    assert statuses.run_phase(view) == ("Pending", "Starting")
    journal.nodes["n0000"] = node("running")
    view = statuses.RunView(spec=SPEC, journal=journal, best=None, writeup=statuses.Step(), review=statuses.Step(),
                            start_time="t")
    assert statuses.run_phase(view)[0] == "Searching"
    journal.nodes["n0000"] = node("succeeded", Outcome(buggy=False, metric=0.5))
    journal.phase = "succeeded"
    assert statuses.run_phase(view)[0] == "WritingUp"
    done = statuses.Step(phase="succeeded", uri="s3://p")
    view = statuses.RunView(spec=SPEC, journal=journal, best=None, writeup=done, review=statuses.Step(phase="failed"),
                            start_time="t")
    assert statuses.run_phase(view) == ("Failed", "ReviewFailed")
    view = statuses.RunView(spec=SPEC, journal=journal, best=None, writeup=done,
                            review=statuses.Step(phase="disabled"), start_time="t")
    status = statuses.run_status(view, "demo", {}, 3, "now")
    assert status["phase"] == "Succeeded" and status["paper"] == {"uri": "s3://p"}
    assert status["bestNode"] == {"name": "demo-n0001", "stage": "tuning", "metric": 0.5, "seeds": 1}
    assert {c["type"] for c in status["conditions"]} == {"Ready", "Searching", "WritingUp", "Reviewing", "Succeeded",
                                                         "Failed", "Stalled"}
    assert all(c["observedGeneration"] == 3 for c in status["conditions"])
