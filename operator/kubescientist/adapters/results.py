"""The one translator from what reported a node attempt's end to the engine's ``Outcome``.

Three things report an end, and each becomes an ``Outcome`` here and nowhere else:

- the runtime's full record (``NodeResult``, ``result.json``): read from the node's folder locally, from
  object storage in the cluster;
- a pod's termination message (``Report``), the same record in short, when the full one is not there;
- an ExperimentNode's status (``Adopted``), which recorded the end of an attempt the journal missed.

A failure of the machine rather than the program is ``infrastructure(reason, ...)``. What the adapter knows
around the record (the Job, when the container ran, how long the executor took) comes in as ``where``, a
``Details`` whose set fields are kept; the translator never guesses them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from experiment_runtime import NodeResult
from kubescientist.core.journal import Details, Outcome

REASON_CHARS = 1500
"""How much of a log tail or message goes into an infrastructure reason (status truncates further)."""


@dataclasses.dataclass(frozen=True)
class Report:
    """A pod's termination message: the runtime's result with final metric values only."""

    data: Mapping[str, Any]
    """The parsed message (``status``, ``buggy``, ``buggyReason``, ``durationSeconds``, ``codeHash``, ``metrics``)."""


@dataclasses.dataclass(frozen=True)
class Adopted:
    """An ExperimentNode's status that records the end of the attempt (the API was ahead of the journal)."""

    status: Mapping[str, Any]
    """The ExperimentNode's ``status``."""


Source = NodeResult | Report | Adopted


def outcome(source: Source, where: Details | None = None) -> Outcome:
    """The engine's outcome of a finished attempt, with ``where``'s set fields in its details."""
    if isinstance(source, NodeResult):
        result = _from_result(source)
    elif isinstance(source, Report):
        result = _from_report(source.data)
    else:
        result = _from_status(source.status)
    result.details = merged(result.details, where)
    return result


def infrastructure(reason: str, where: Details | None = None) -> Outcome:
    """A failure of the machine rather than the program: retried by the engine, never counted as buggy."""
    return Outcome(buggy=False, infrastructure=True, reason=reason[:REASON_CHARS], details=merged(Details(), where))


def merged(details: Details, where: Details | None) -> Details:
    """``details`` with every field ``where`` sets (differs from the default) taken from ``where``."""
    if where is None:
        return details
    blank = Details()
    changes = {f.name: getattr(where, f.name) for f in dataclasses.fields(Details)
               if getattr(where, f.name) != getattr(blank, f.name)}
    return dataclasses.replace(details, **changes)


def _from_result(result: NodeResult) -> Outcome:
    # Curves stay in the node's own metrics.json; the journal keeps the numbers.
    metrics = {} if result.metrics is None else {
        dataset: {name: {k: v for k, v in value.to_json().items() if k != "curve"} for name, value in per.items()}
        for dataset, per in result.metrics.datasets.items()}
    details = Details(status=result.status, exit_code=result.exit_code, code_hash=result.code_hash,
                      overhead_seconds=result.overhead_seconds, cpu_seconds=result.cpu_seconds,
                      max_rss_bytes=result.max_rss_bytes, stdout_bytes=result.stdout_bytes,
                      stderr_bytes=result.stderr_bytes, plots=list(result.plots),
                      started_at=result.started_at, finished_at=result.finished_at)
    return Outcome(buggy=result.buggy, reason=result.buggy_reason, metrics=metrics if not result.buggy else {},
                   duration_seconds=result.duration_seconds, details=details)


def _from_report(report: Mapping[str, Any]) -> Outcome:
    finals = report.get("metrics") or {}
    metrics = {str(dataset): {str(name): {"final": value} for name, value in per.items()}
               for dataset, per in finals.items() if isinstance(per, Mapping)}
    buggy = bool(report.get("buggy")) or report.get("status") != "succeeded"
    reason = report.get("buggyReason") or (None if not buggy else f"program ended with status {report.get('status')}")
    duration = report.get("durationSeconds")
    code_hash = report.get("codeHash")
    details = Details(status=str(report.get("status")), code_hash=str(code_hash) if code_hash else None,
                      artifact_errors=[str(e) for e in report.get("artifactErrors") or ()])
    return Outcome(buggy=buggy, reason=reason, metrics=metrics if not buggy else {},
                   duration_seconds=float(duration) if isinstance(duration, (int, float)) else None, details=details)


def _from_status(status: Mapping[str, Any]) -> Outcome:
    phase = status.get("phase")
    reason = status.get("buggyReason") or status.get("message")
    details = Details(adopted=True)
    if phase == "Failed":
        return Outcome(buggy=False, infrastructure=True, reason=reason, details=details)
    metrics = {dataset: {name: {"final": value} for name, value in per.items()}
               for dataset, per in (status.get("metrics") or {}).items()}
    return Outcome(buggy=phase == "Buggy", reason=reason if phase == "Buggy" else None,
                   metrics=metrics if phase == "Succeeded" else {}, duration_seconds=status.get("durationSeconds"),
                   details=details)


def adopted(status: Mapping[str, Any] | None, attempt: int) -> Adopted | None:
    """The ExperimentNode status as a source, when it records the end of ``attempt`` (the API wins)."""
    status = status or {}
    if status.get("phase") not in ("Succeeded", "Buggy", "Failed") or status.get("attempts") != attempt:
        return None
    return Adopted(status)


__all__ = ["Adopted", "Report", "Source", "adopted", "infrastructure", "merged", "outcome"]
