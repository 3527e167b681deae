"""The record of one node run (`<node_dir>/result.json`) and its Kubernetes termination message."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from experiment_runtime.metrics import Metrics, MetricsError, parse_metrics

RESULT_FILE = "result.json"
TERMINATION_MESSAGE_BYTES = 4096
"""Kubernetes keeps at most this much of a container's termination message."""

NodeStatus = Literal["succeeded", "failed", "timeout", "killed"]
_STATUSES = ("succeeded", "failed", "timeout", "killed")


@dataclass(frozen=True)
class NodeResult:
    """How one node's program ran and what it reported."""

    status: NodeStatus
    """succeeded; failed (bad exit or bad metrics); timeout (deadline); killed (quota or a signal)."""

    buggy: bool
    """True unless the program ran to completion and reported valid metrics."""

    buggy_reason: str | None
    """Why the node is buggy, for the agent that debugs it: the error line, the limit it broke."""

    exit_code: int | None
    """The program's exit status, None when a signal ended it."""

    signal: int | None
    """The signal that ended the program, if one did."""

    duration_seconds: float
    """Wall-clock seconds the program itself ran."""

    overhead_seconds: float
    """Seconds spent around the program: copying code, spawning, collecting outputs."""

    started_at: str
    """When the run started, RFC 3339 UTC."""

    finished_at: str
    """When the run finished, RFC 3339 UTC."""

    code_hash: str
    """Content hash ("sha256:<hex>") of the code and config that ran; see node.code_hash."""

    stdout_bytes: int
    """Bytes the program wrote to stdout (stdout.txt keeps a bounded head and tail)."""

    stderr_bytes: int
    """Bytes the program wrote to stderr (stderr.txt keeps a bounded head and tail)."""

    stdout_truncated: bool
    """True when stdout.txt lacks part of the output."""

    stderr_truncated: bool
    """True when stderr.txt lacks part of the output."""

    peak_disk_bytes: int
    """Largest disk use of the work dir seen."""

    max_rss_bytes: int
    """Peak resident memory of the program's largest process."""

    cpu_seconds: float
    """CPU time the program used."""

    plots: list[str]
    """Plots copied to `<node_dir>/plots/`, as paths relative to it (and to out_dir)."""

    metrics: Metrics | None
    """The validated metrics, present exactly when the node succeeded."""

    protections: dict[str, Any] = field(default_factory=dict)
    """What contained the program (`experiment_runtime.isolation.Protections.to_json()`); empty in old records."""

    def to_json(self) -> dict[str, Any]:
        record = {name: getattr(self, name) for name in self.__dataclass_fields__ if name != "metrics"}
        record["plots"] = list(self.plots)
        record["metrics"] = self.metrics.to_json() if self.metrics else None
        record["metrics_source"] = self.metrics.source if self.metrics else None
        return record

    def termination_message(self) -> str:
        """One line of JSON, at most 4096 bytes, for the pod's termination message.

        Keys follow the ExperimentNode status (camelCase). When the line is too long the metric
        summary goes first, then the reason is shortened, so it always stays valid JSON.
        """
        message: dict[str, Any] = {
            "status": self.status,
            "buggy": self.buggy,
            "buggyReason": self.buggy_reason,
            "durationSeconds": round(self.duration_seconds, 3),
            "codeHash": self.code_hash,
            "metrics": self.metrics.finals() if self.metrics else None,
        }
        line = _one_line(message)
        if len(line.encode()) > TERMINATION_MESSAGE_BYTES:
            message["metrics"] = None
            line = _one_line(message)
        while len(line.encode()) > TERMINATION_MESSAGE_BYTES:
            # Cut in bytes, as the bound is; JSON escapes can still overshoot, hence the loop.
            reason = message["buggyReason"].encode()
            keep = max(0, len(reason) - (len(line.encode()) - TERMINATION_MESSAGE_BYTES) - 16)
            message["buggyReason"] = reason[:keep].decode("utf-8", errors="ignore") + "..."
            line = _one_line(message)
        return line


def write_result(result: NodeResult, node_dir: Path) -> None:
    (node_dir / RESULT_FILE).write_text(json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8")


def load_result(node_dir: Path) -> NodeResult:
    """Reads `<node_dir>/result.json` back; raises ValueError naming the field when it is malformed."""
    path = node_dir / RESULT_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: invalid JSON: {err}") from err
    return parse_result(data, str(path))


def parse_result(data: Any, where: str) -> NodeResult:
    """A result record (``NodeResult.to_json()``) read back; raises ValueError naming ``where`` and the field."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: must be a JSON object")
    path = where
    check = _Fields(where, data)
    metrics = None
    if data.get("metrics") is not None:
        try:
            metrics = parse_metrics(data["metrics"], source=check.text("metrics_source"))
        except MetricsError as err:
            raise ValueError(f"{path}: metrics: {err}") from err
    status = check.text("status")
    if status not in _STATUSES:
        raise ValueError(f"{path}: status: must be one of {', '.join(_STATUSES)}, got {status!r}")
    plots = data.get("plots")
    if not (isinstance(plots, list) and all(isinstance(p, str) for p in plots)):
        raise ValueError(f"{path}: plots: must be a list of strings")
    return NodeResult(
        status=status,
        buggy=check.flag("buggy"),
        buggy_reason=check.text("buggy_reason", optional=True),
        exit_code=check.integer("exit_code", optional=True),
        signal=check.integer("signal", optional=True),
        duration_seconds=check.number("duration_seconds"),
        overhead_seconds=check.number("overhead_seconds"),
        started_at=check.text("started_at"),
        finished_at=check.text("finished_at"),
        code_hash=check.text("code_hash"),
        stdout_bytes=check.integer("stdout_bytes"),
        stderr_bytes=check.integer("stderr_bytes"),
        stdout_truncated=check.flag("stdout_truncated"),
        stderr_truncated=check.flag("stderr_truncated"),
        peak_disk_bytes=check.integer("peak_disk_bytes"),
        max_rss_bytes=check.integer("max_rss_bytes"),
        cpu_seconds=check.number("cpu_seconds"),
        plots=plots,
        metrics=metrics,
        protections=data["protections"] if isinstance(data.get("protections"), dict) else {},
    )


def _one_line(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


class _Fields:
    """Typed reads of result.json fields, each failure naming the file and the field."""

    def __init__(self, path: str, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data

    def _get(self, name: str, types: tuple[type, ...], what: str, optional: bool) -> Any:
        value = self.data.get(name)
        if value is None and optional:
            return None
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            raise ValueError(f"{self.path}: {name}: must be {what}, got {value!r}")
        return value

    def text(self, name: str, optional: bool = False) -> Any:
        return self._get(name, (str,), "a string", optional)

    def flag(self, name: str) -> bool:
        return bool(self._get(name, (bool,), "true or false", False))

    def integer(self, name: str, optional: bool = False) -> Any:
        return self._get(name, (int,), "an integer", optional)

    def number(self, name: str) -> float:
        return float(self._get(name, (int, float), "a number", False))
