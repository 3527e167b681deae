"""Why queued node Jobs wait: Kueue's own words, from the Workloads it keeps for them.

A node Job of a run with ``spec.queueName`` is created suspended; Kueue makes a Workload for it (labelled with
the Job's uid) and says on that Workload why it is not admitted yet: its ``QuotaReserved`` condition is False
with a message such as "couldn't assign flavors to pod set main: insufficient unused quota for nvidia.com/gpu
in flavor fake-gpu, 5 more needed". The Jobs come from the operator's watch; the Workloads are listed once per
pass, only when the run has suspended node Jobs, and only those Jobs' Workloads (by the uid label).

Pure functions over plain dicts, except that the reconciler makes the one list call with ``selector``.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

WORKLOADS = ('kueue.x-k8s.io/v1beta2', 'workloads')
"""Kueue's Workloads (api version, plural)."""
JOB_UID_LABEL = 'kueue.x-k8s.io/job-uid'
"""The label Kueue puts on the Workload of a Job: the Job's uid."""
MAX_LISTED = 100
"""At most this many Job uids in one selector (a bounded request); Jobs beyond it wait with a generic message."""
UNKNOWN = "the Job is suspended; Kueue has not said why yet"
"""Why a queued node waits when Kueue has not said (yet) on its Workload."""


def suspended(job: Mapping[str, Any]) -> bool:
    """Whether a Job waits for admission: suspended (by its creator or by Kueue after a preemption) and not
    complete. Its pod, if one is left, ended because of the suspension and is no outcome of the node."""
    if not (job.get('spec') or {}).get('suspend'):
        return False
    return not any(c.get('type') == 'Complete' and c.get('status') == 'True'
                   for c in (job.get('status') or {}).get('conditions') or ())


def selector(job_uids: Iterable[str]) -> str | None:
    """The label selector of the Workloads of these Jobs (the first ``MAX_LISTED``, sorted), or None if none."""
    uids = sorted(set(job_uids))[:MAX_LISTED]
    return f"{JOB_UID_LABEL} in ({','.join(uids)})" if uids else None


def reason(workload: Mapping[str, Any]) -> str | None:
    """Why Kueue has not admitted a Workload: the message of its False ``QuotaReserved`` condition (no quota,
    preempted, no such queue), else of a False ``Admitted`` one (admission checks pending); None if admitted
    or if Kueue has said nothing yet."""
    conditions = {c.get('type'): c for c in (workload.get('status') or {}).get('conditions') or ()}
    for kind in ('QuotaReserved', 'Admitted'):
        entry = conditions.get(kind)
        if entry is not None and entry.get('status') == 'False' and entry.get('message'):
            return str(entry['message'])
    return None


def reasons_by_job(workloads: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Job uid -> why its Workload waits, for the Workloads that say."""
    out: dict[str, str] = {}
    for workload in workloads:
        uid = ((workload.get('metadata') or {}).get('labels') or {}).get(JOB_UID_LABEL)
        why = reason(workload)
        if uid and why:
            out[str(uid)] = why
    return out


@dataclasses.dataclass(frozen=True)
class Waiting:
    """A run's nodes that wait for admission, and why."""

    count: int = 0
    """Node Jobs suspended, waiting for Kueue to admit them."""
    message: str = ''
    """Kueue's reason for most of them (with how many wait for another reason), empty when none waits."""


def waiting(reasons: Sequence[str | None]) -> Waiting:
    """The run's view of its waiting nodes, from each one's reason (None: Kueue has said nothing yet).

    The message is Kueue's most frequent reason (ties: the first in sorted order, so that passes agree);
    other reasons are counted, not listed, so the run's status stays bounded however many nodes wait.
    """
    if not reasons:
        return Waiting()
    told = collections.Counter(r for r in reasons if r)
    if not told:
        return Waiting(len(reasons), UNKNOWN)
    top, _ = min(told.items(), key=lambda item: (-item[1], item[0]))
    others = len(reasons) - told[top]
    return Waiting(len(reasons), top + (f" (and {others} waiting for another reason)" if others else ""))
