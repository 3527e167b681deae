"""Node Jobs for Kueue: created suspended with the queue label, and a WorkloadPriorityClass per kind of node.

With ``spec.queueName`` a node Job is created suspended: Kueue admits it when the ClusterQueue behind the
LocalQueue has quota for its pod (GPUs included) and unsuspends it; until then, and again after a preemption
(Kueue suspends the Job, its pod is deleted and not counted as a failure), the operator sees the node as
waiting (``outcomes.observe``). The same Job runs when admitted again: a preempted node is never duplicated
and never counted against the search. Seed re-evaluations may carry another priority class than the
exploratory nodes (``spec.queuePriority``), so that the runs whose numbers end in the paper are not the ones
preempted.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from kubescientist.core.spec import RunSpec

PRIORITY_LABEL = 'kueue.x-k8s.io/priority-class'


def queued(job: Mapping[str, Any], spec: RunSpec, action: str) -> dict[str, Any]:
    """`job` suspended and labelled for Kueue when the run names a queue; as it is otherwise."""
    out = copy.deepcopy(dict(job))
    if not spec.raw.get('queueName'):
        return out
    out['spec']['suspend'] = True
    priority = spec.raw.get('queuePriority') or {}
    name = (priority.get('seeds') or priority.get('search')) if action == 'seed' else priority.get('search')
    if name:
        out['metadata']['labels'][PRIORITY_LABEL] = str(name)
    return out
