"""Pod outcomes classified from Job and pod objects recorded on the real control plane (see recorded/record.py)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from kubescientist.adapters.kube.outcomes import observe, parse_report, publish_result

RECORDED = Path(__file__).parent / "recorded"


def recorded(case: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((RECORDED / f"{case}.json").read_text())
    return data


def classify(case: str, seen_running: bool = False) -> Any:
    data = recorded(case)
    return observe(data["job"], data["pods"], seen_running)


def test_success_is_folded_from_the_termination_message() -> None:
    seen = classify("succeeded")
    assert seen.state == "finished" and seen.outcome is not None
    assert not seen.outcome.buggy and not seen.outcome.infrastructure
    assert seen.outcome.metrics == {"linear": {"val_r2": {"final": 0.9931}}, "shifted": {"val_r2": {"final": 0.9795}}}
    assert seen.outcome.duration_seconds == pytest.approx(0.118)
    assert seen.outcome.details.container_exit_code == 0 and seen.started_at and seen.finished_at


def test_program_error_is_buggy_with_the_programs_reason() -> None:
    outcome = classify("buggy").outcome
    assert outcome.buggy and not outcome.infrastructure
    assert "RuntimeError: params.fail is set" in outcome.reason
    assert outcome.metrics == {}


def test_oom_kill_is_buggy_and_names_the_limit() -> None:
    outcome = classify("oom-killed").outcome
    assert outcome.buggy and not outcome.infrastructure
    assert "out of memory" in outcome.reason and "256Mi" in outcome.reason


@pytest.mark.parametrize("case", ["evicted", "preempted", "node-lost"])
def test_disruptions_are_infrastructure(case: str) -> None:
    seen = classify(case)
    assert seen.state == "finished"
    assert seen.outcome.infrastructure and not seen.outcome.buggy


def test_preemption_reason_is_kept() -> None:
    assert "PreemptionByScheduler" in classify("preempted").outcome.reason


def test_runtime_that_cannot_run_the_node_is_infrastructure() -> None:
    outcome = classify("runtime-error").outcome
    assert outcome.infrastructure and "HTTP 403" in outcome.reason


def test_runtime_crash_without_a_message_is_infrastructure_with_the_log_tail() -> None:
    outcome = classify("crashed-no-message").outcome
    assert outcome.infrastructure and "No module named 'psutil'" in outcome.reason and "exited 2" in outcome.reason


def test_deadline_after_the_program_ran_is_a_buggy_timeout() -> None:
    # The Job controller deleted the pod: only the operator's earlier sighting says it ran.
    outcome = classify("deadline", seen_running=True).outcome
    assert outcome.buggy and outcome.reason.startswith("timeout")


def test_deadline_before_the_pod_ever_ran_is_infrastructure() -> None:
    for case in ("deadline-unscheduled", "deadline"):
        outcome = classify(case).outcome
        assert outcome.infrastructure and "before the node's pod started" in outcome.reason


def test_deadline_with_the_pod_still_listed_uses_its_container_state() -> None:
    data = recorded("deadline")
    pod = copy.deepcopy(recorded("running")["pods"][0])
    seen = observe(data["job"], [pod])
    assert seen.outcome.buggy and seen.outcome.reason.startswith("timeout")


def test_image_pull_failure_waits_and_stalls_with_a_clear_message() -> None:
    seen = classify("image-pull")
    assert seen.state == "pending" and seen.outcome is None
    assert seen.stalled and "cannot pull image registry.invalid/kubescientist/node:rec" in seen.stalled
    assert "ImagePullBackOff" in seen.stalled and "no such host" in seen.stalled


def test_unschedulable_and_running_pods_are_not_outcomes() -> None:
    waiting = classify("unschedulable")
    assert waiting.state == "pending" and "not scheduled yet" in waiting.message and waiting.stalled is None
    running = classify("running")
    assert running.state == "running" and running.started_at and "kwok-gpu" in running.message


def test_a_missing_job_is_missing() -> None:
    assert observe(None, []).state == "missing"


def test_a_completed_job_whose_pod_is_gone_lost_its_result() -> None:
    data = recorded("succeeded")
    seen = observe(data["job"], [])
    assert seen.outcome.infrastructure and "termination message is lost" in seen.outcome.reason


def test_a_suspended_job_is_queued() -> None:
    job = copy.deepcopy(recorded("running")["job"])
    job["spec"]["suspend"] = True
    assert "suspended" in observe(job, []).message


def test_only_json_with_a_status_is_a_report() -> None:
    assert parse_report('{"status":"succeeded"}') == {"status": "succeeded"}
    assert parse_report("Traceback ...\nValueError: x") is None
    assert parse_report('{"no": "status"}') is None
    assert parse_report("") is None


def test_publish_results() -> None:
    data = recorded("succeeded")
    pod = copy.deepcopy(data["pods"][0])
    state = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    state["message"] = '{"status":"succeeded","message":"review: Reject, overall 3","decision":"Reject","overall":3}'
    ok, report, message = publish_result(observe(data["job"], [pod]))
    assert ok and report["decision"] == "Reject" and message.startswith("review")
    state["message"] = '{"status":"error","message":"writeup failed: ToolMissing: pdflatex"}'
    ok, _, message = publish_result(observe(data["job"], [pod]))
    assert not ok and "pdflatex" in message
    ok, _, message = publish_result(observe(recorded("image-pull")["job"], recorded("image-pull")["pods"]))
    assert not ok and "cannot pull image" in message
