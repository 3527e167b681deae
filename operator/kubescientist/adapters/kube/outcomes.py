"""What a node's Job and pod say about the node: still waiting, running, or finished with which outcome.

Pure functions over the API objects as plain dicts (what ``kubectl get -o json`` prints), so they are
tested on recorded objects. The classification:

- the pod ran the node and left its result in the termination message: that result (a succeeded node,
  or a buggy one: the program crashed, timed out, broke a limit, wrote bad metrics);
- the container was OOM-killed: buggy, "out of memory";
- the Job hit its activeDeadlineSeconds after the program started: buggy, timeout;
- the pod was evicted, preempted, lost with its node (a ``DisruptionTarget`` condition, a kubelet
  eviction, or no pod left at all), the deadline passed before the program ever started, or the
  runtime itself could not run the node (code download failed): infrastructure, retried by the engine
  with a new Job and not counted against the search;
- the image has no node runtime (its command is not found, the runtime's module is missing): infrastructure,
  with a reason that names the image and says so, never a buggy program;
- the runtime found the image lacking a requirement of the run: a configuration error, which fails the
  run (``Details.configuration_error``): no node is buggy and none is debugged or retried;
- the image cannot be pulled (``ErrImagePull``, ``ImagePullBackOff``...): not an outcome: the node
  waits, and the run gets a ``Stalled`` condition that says which image and why.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from kubescientist.adapters.kube import admission
from kubescientist.adapters.results import REASON_CHARS, Report, infrastructure, outcome
from kubescientist.core.journal import Details, Outcome

State = Literal['missing', 'pending', 'running', 'finished']
RawObject = Mapping[str, Any]
LOST_MESSAGE = "pod of the completed Job is gone; its termination message is lost"
"""The reason of an attempt whose result must come from its uploaded result.json, if there is one."""
WAITING_FOR_POD = "waiting for the Job controller to create the pod"
"""A Job without a pod yet, also as soon as it is created (one status write fewer per node)."""

IMAGE_PROBLEMS = frozenset({'ErrImagePull', 'ImagePullBackOff', 'InvalidImageName', 'ErrImageNeverPull',
                            'RegistryUnavailable'})
"""Waiting reasons of a container whose image cannot be pulled: they need a human, not a retry."""
START_PROBLEMS = frozenset({'CreateContainerConfigError', 'CreateContainerError', 'RunContainerError'})
"""Waiting reasons of a container that cannot be started as specified."""
EVICTION_REASONS = frozenset({'Evicted', 'NodeLost', 'Shutdown', 'NodeShutdown', 'Terminated', 'UnexpectedAdmissionError',
                              'OutOfcpu', 'OutOfmemory', 'OutOfpods', 'NodeAffinity'})
"""Pod-level ``status.reason`` values that mean the machine, not the program, ended the pod."""
MISSING_COMMAND = ('executable file not found', 'no such file or directory')
"""What the container runtime says (a StartError) when the image lacks the container's command."""
START_FAILURES = frozenset({'StartError', 'ContainerCannotRun'})
"""Terminated reasons of a container whose process never started (the runtime could not exec the command)."""


@dataclasses.dataclass(frozen=True)
class Observation:
    """A node attempt's state as its Job and pod show it."""

    state: State
    """missing: no Job; pending: not running yet; running; finished: ``outcome`` is set."""
    message: str = ''
    """What is going on, in words (why it waits, what it finished with)."""
    outcome: Outcome | None = None
    """The outcome, once finished."""
    report: Mapping[str, Any] | None = None
    """The parsed termination message, when the pod left one."""
    started_at: str | None = None
    """When the container started (RFC 3339), once known."""
    finished_at: str | None = None
    """When the container ended (RFC 3339), once known."""
    stalled: str | None = None
    """Set when the pod cannot start without help (image pull failure and the like): why."""
    pod_name: str | None = None
    """The pod observed, if any."""
    queued: bool = False
    """The Job is suspended, waiting for admission (Kueue); ``message`` says why, in Kueue's words if known."""


def condition(obj: RawObject, kind: str) -> Mapping[str, Any] | None:
    """The ``status.conditions`` entry of type ``kind`` whose status is True, if any."""
    for entry in obj.get('status', {}).get('conditions') or ():
        if entry.get('type') == kind and entry.get('status') == 'True':
            return dict(entry)
    return None


def latest_pod(pods: Sequence[RawObject]) -> RawObject | None:
    """The newest pod (a Job with backoffLimit 0 has one, but a replaced one may linger)."""
    if not pods:
        return None
    return max(pods, key=lambda p: (p.get('metadata', {}).get('creationTimestamp') or '', p['metadata']['name']))


def container_status(pod: RawObject) -> Mapping[str, Any] | None:
    statuses = pod.get('status', {}).get('containerStatuses') or []
    return statuses[0] if statuses else None


def parse_report(message: str | None) -> Mapping[str, Any] | None:
    """The termination message as JSON (the runtime writes one line of it), or None."""
    if not message:
        return None
    try:
        data = json.loads(message.strip().splitlines()[-1] if message.strip() else '')
    except (ValueError, IndexError):
        return None
    return data if isinstance(data, dict) and 'status' in data else None


def _memory_limit(pod: RawObject) -> str | None:
    containers = pod.get('spec', {}).get('containers') or [{}]
    limit = containers[0].get('resources', {}).get('limits', {}).get('memory')
    return str(limit) if limit is not None else None


def _started(pod: RawObject | None) -> bool:
    """Whether the node's container ever started (so a deadline counts against the program)."""
    if pod is None:
        return False
    status = container_status(pod)
    if status is None:
        return False
    state = status.get('state', {})
    return 'running' in state or 'terminated' in state or bool(status.get('lastState', {}).get('terminated'))


def _times(pod: RawObject | None) -> tuple[str | None, str | None]:
    status = container_status(pod) if pod is not None else None
    if status is None:
        return None, None
    state = status.get('state', {})
    running, terminated = state.get('running') or {}, state.get('terminated') or {}
    return terminated.get('startedAt') or running.get('startedAt'), terminated.get('finishedAt')


def _finished_pod(job: RawObject | None, pod: RawObject, seen_running: bool) -> Observation:
    name = pod['metadata']['name']
    started, finished = _times(pod)
    status = pod.get('status', {})
    disruption = condition(pod, 'DisruptionTarget')
    if disruption is not None:
        why = f"{disruption.get('reason', 'Disrupted')}: {disruption.get('message', '')}".rstrip(': ')
        return Observation('finished', f"pod {name} was disrupted ({why})", infrastructure(
            f"pod disrupted ({why})", Details(pod=name)), pod_name=name, started_at=started, finished_at=finished)
    if status.get('reason') in EVICTION_REASONS:
        why = f"{status['reason']}: {status.get('message', '')}".rstrip(': ')
        return Observation('finished', f"pod {name} ended by its node ({why})", infrastructure(
            f"pod ended by its node ({why})", Details(pod=name)), pod_name=name, started_at=started,
            finished_at=finished)
    container = container_status(pod) or {}
    terminated = container.get('state', {}).get('terminated') or container.get('lastState', {}).get('terminated')
    if not terminated:
        why = status.get('message') or status.get('reason') or f"phase {status.get('phase')}"
        return Observation('finished', f"pod {name} ended without a container result ({why})",
                           infrastructure(f"pod ended without running its container ({why})", Details(pod=name)),
                           pod_name=name, started_at=started, finished_at=finished)
    exit_code = terminated.get('exitCode')
    message = terminated.get('message') or ''
    report = parse_report(message)
    common = {'pod_name': name, 'started_at': started, 'finished_at': finished, 'report': report}
    if terminated.get('reason') == 'OOMKilled':
        limit = _memory_limit(pod)
        reason = "out of memory: the container exceeded its memory limit" + (f" of {limit}" if limit else "") + \
                 " and was OOM-killed"
        oom = Outcome(buggy=True, reason=reason, details=Details(container_exit_code=exit_code,
                                                                  container_reason='OOMKilled'))
        return Observation('finished', reason, oom, **common)
    if report is not None and report.get('status') == 'error' and report.get('configuration') is True:
        reason = str(report.get('message', 'configuration error'))[:REASON_CHARS]
        misconfigured = Outcome(buggy=False, reason=reason,
                                details=Details(container_exit_code=exit_code, configuration_error=True))
        return Observation('finished', reason, misconfigured, **common)
    if report is not None and report.get('status') == 'error':
        reason = f"the node runtime could not run the node: {report.get('message', '')}"
        return Observation('finished', reason, infrastructure(reason, Details(container_exit_code=exit_code)),
                           **common)
    if report is not None:
        reported = outcome(Report(report), Details(container_exit_code=exit_code))
        what = "buggy: " + str(reported.reason) if reported.buggy else "finished"
        return Observation('finished', f"program {what}", reported, **common)
    if job is not None and _deadline_exceeded(job):
        return _deadline(job, pod, seen_running)
    spec = (pod.get('spec', {}).get('containers') or [{}])[0]
    if _lacks_entrypoint(terminated, exit_code, message, spec):
        command = ' '.join([*spec.get('command', []), *spec.get('args', [])[:2]])
        reason = (f"the image {spec.get('image', '?')} cannot run `{command}` (not a node-runtime image?): "
                  f"{terminated.get('reason', 'exit ' + str(exit_code))}: {message.strip()[-REASON_CHARS:]}")
        where = Details(container_exit_code=exit_code, container_reason=terminated.get('reason'))
        return Observation('finished', reason, infrastructure(reason, where), **common)
    tail = f": {message.strip()[-REASON_CHARS:]}" if message.strip() else ""
    reason = f"container exited {exit_code} ({terminated.get('reason', 'no reason')}) without a result{tail}"
    return Observation('finished', reason, infrastructure(reason, Details(container_exit_code=exit_code)), **common)


def _lacks_entrypoint(terminated: Mapping[str, Any], exit_code: Any, message: str, spec: Mapping[str, Any]) -> bool:
    """The container's command could not be started (runtime StartError, shell 126/127), or the interpreter has
    no module of that name (`python -m experiment_runtime` in an image without it): the image is wrong, not
    the program."""
    args = list(spec.get('args') or [])
    if len(args) >= 2 and args[0] == '-m' and f"No module named {args[1]}" in message:
        return True
    not_started = terminated.get('reason') in START_FAILURES or exit_code in (126, 127)
    return not_started and any(sign in message for sign in MISSING_COMMAND)


def _deadline_exceeded(job: RawObject) -> bool:
    failed = condition(job, 'Failed') or condition(job, 'FailureTarget')
    return failed is not None and failed.get('reason') == 'DeadlineExceeded'


def _deadline(job: RawObject, pod: RawObject | None, seen_running: bool) -> Observation:
    seconds = job.get('spec', {}).get('activeDeadlineSeconds')
    name = pod['metadata']['name'] if pod is not None else None
    started, finished = _times(pod)
    if _started(pod) or seen_running:
        reason = f"timeout: the Job's deadline of {seconds}s passed before the program finished"
        return Observation('finished', reason, Outcome(buggy=True, reason=reason,
                                                                   details=Details(job_condition='DeadlineExceeded')),
                           pod_name=name, started_at=started, finished_at=finished)
    reason = f"the Job's deadline of {seconds}s passed before the node's pod started (not scheduled in time?)"
    return Observation('finished', reason, infrastructure(reason), pod_name=name)


def observe(job: RawObject | None, pods: Sequence[RawObject], seen_running: bool = False,
            waits_because: str | None = None) -> Observation:
    """Classify one node attempt from its Job (None when absent) and that Job's pods.

    ``waits_because``: why Kueue has not admitted the Job (``admission.reason`` of its Workload), if known.

    ``seen_running``: the operator saw this attempt's container running before. The Job controller deletes
    the pods of a Job past its deadline, and then nothing in the Job tells a program that overran from a
    pod that never got a machine; this is how the former is told apart (a timeout: buggy) from the latter
    (infrastructure: retried).
    """
    if job is None:
        return Observation('missing', "no Job")
    pod = latest_pod(pods)
    phase = pod.get('status', {}).get('phase') if pod is not None else None
    if admission.suspended(job) and phase != 'Succeeded':
        # Kueue suspended the Job (not admitted yet, or preempted): a pod it ended is not the node's outcome,
        # and the same Job runs again once admitted.
        why = waits_because or admission.UNKNOWN
        return Observation('pending', f"queued, waiting for admission (Kueue): {why}", queued=True)
    if pod is not None and phase in ('Succeeded', 'Failed'):
        return _finished_pod(job, pod, seen_running)
    if _deadline_exceeded(job):
        return _deadline(job, pod, seen_running)
    failed = condition(job, 'Failed')
    if failed is not None:
        # The Job failed and its pod is gone (deleted, garbage-collected with a lost node): nothing ran to a result.
        why = f"{failed.get('reason', 'Failed')}: {failed.get('message', '')}".rstrip(': ')
        return Observation('finished', f"Job failed and its pod is gone ({why})",
                           infrastructure(f"pod lost ({why})", Details(job=job['metadata']['name'])))
    if condition(job, 'Complete') is not None and pod is None:
        return Observation('finished', "Job complete but its pod is gone: the result is lost",
                           infrastructure(LOST_MESSAGE, Details(job=job['metadata']['name'])))
    if pod is None:
        return Observation('pending', WAITING_FOR_POD)
    return _waiting_pod(pod)


def _waiting_pod(pod: RawObject) -> Observation:
    name = pod['metadata']['name']
    started, _ = _times(pod)
    container = container_status(pod) or {}
    waiting = container.get('state', {}).get('waiting') or {}
    reason = waiting.get('reason')
    if reason in IMAGE_PROBLEMS or reason in START_PROBLEMS:
        image = (pod.get('spec', {}).get('containers') or [{}])[0].get('image', '?')
        what = "cannot pull image" if reason in IMAGE_PROBLEMS else "cannot start the container of image"
        detail = f"{what} {image}: {reason}" + (f": {waiting['message']}" if waiting.get('message') else "")
        return Observation('pending', f"pod {name} {detail}", stalled=detail, pod_name=name)
    if pod.get('status', {}).get('phase') == 'Running':
        return Observation('running', f"pod {name} is running on {pod.get('spec', {}).get('nodeName', '?')}",
                           pod_name=name, started_at=started)
    unscheduled = next((c for c in pod.get('status', {}).get('conditions') or ()
                        if c.get('type') == 'PodScheduled' and c.get('status') == 'False'), None)
    if unscheduled is not None:
        return Observation('pending', f"pod {name} not scheduled yet: {unscheduled.get('message') or unscheduled.get('reason')}",
                           pod_name=name)
    return Observation('pending', f"pod {name} is starting", pod_name=name)


def publish_result(observation: Observation) -> tuple[bool, Mapping[str, Any], str]:
    """For a writeup or review Job: (succeeded, its report, a message), from its observation."""
    if observation.state != 'finished':
        return False, {}, observation.stalled or observation.message
    report = observation.report or {}
    if report.get('status') == 'succeeded':
        return True, report, str(report.get('message') or 'done')
    why = report.get('message') or (observation.outcome.reason if observation.outcome else None) or observation.message
    return False, report, str(why)
