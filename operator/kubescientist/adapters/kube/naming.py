"""Names, labels and annotations of the objects the operator creates: one place, so that they never drift.

Every child carries explicit labels only (never a copy of the run's labels: GitOps tools would take the
children for their own resources and prune them). Names are deterministic, so a restarted operator finds
what it created before and a second create of the same object is a harmless 409.
"""

from __future__ import annotations

import hashlib
import re

GROUP = 'kubescientist.io'
VERSION = 'v1alpha1'
API_VERSION = f'{GROUP}/{VERSION}'
RUNS = 'researchruns'
NODES = 'experimentnodes'
CAMPAIGNS = 'researchcampaigns'

RUN_LABEL = 'kubescientist.io/run'
"""The run a child belongs to (the run's name; at most 63 characters by the CRD's CEL rule)."""
NODE_LABEL = 'kubescientist.io/node'
"""The engine's node id (``n0007``) of an ExperimentNode, its Job and its pod."""
ATTEMPT_LABEL = 'kubescientist.io/attempt'
"""Which attempt of a node a Job runs (1, 2, ... after infrastructure failures)."""
ROLE_LABEL = 'kubescientist.io/role'
"""What a Job does: ``node``, ``writeup`` or ``review``."""
MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by'
MANAGED_BY = 'kubescientist'
QUEUE_LABEL = 'kueue.x-k8s.io/queue-name'
FINALIZER = 'kubescientist.io/finalizer'
COMPONENT = 'kubescientist-operator'
"""The reporting component of the operator's Events."""

MAX_LABEL_VALUE = 63
MAX_JOB_NAME = 63
"""A Job's name becomes the ``batch.kubernetes.io/job-name`` label of its pods, so it is a label value."""

_NODE_ID = re.compile(r'^n[0-9]{4,}$')


def run_selector(run: str) -> str:
    """The label selector of everything the operator made for a run."""
    return f'{MANAGED_BY_LABEL}={MANAGED_BY},{RUN_LABEL}={run}'


def node_name(run: str, node_id: str) -> str:
    """The ExperimentNode of engine node ``node_id``: ``<run>-<id>``, e.g. ``grokking-n0007``."""
    return f'{run}-{node_id}'


def node_id_of(run: str, name: str) -> str | None:
    """The engine node id of an ExperimentNode name, or None when it is not one of ``run``'s."""
    prefix = f'{run}-'
    rest = name[len(prefix):] if name.startswith(prefix) else ''
    return rest if _NODE_ID.match(rest) else None


def _bounded(base: str, suffix: str, limit: int) -> str:
    """``<base><suffix>``, with base shortened and made unique by a hash when the whole is too long."""
    if len(base) + len(suffix) <= limit:
        return base + suffix
    digest = hashlib.sha256(base.encode()).hexdigest()[:6]
    keep = limit - len(suffix) - len(digest) - 1
    return f'{base[:keep].rstrip("-")}-{digest}{suffix}'


def job_name(run: str, node_id: str, attempt: int) -> str:
    """The Job of one attempt of a node: ``<run>-<id>-a<attempt>`` (at most 63 characters)."""
    return _bounded(run, f'-{node_id}-a{attempt}', MAX_JOB_NAME)


def stage_job_name(run: str, role: str) -> str:
    """The writeup or review Job of a run: ``<run>-writeup``, ``<run>-review``."""
    return _bounded(run, f'-{role}', MAX_JOB_NAME)


def child_labels(run: str, role: str, node_id: str | None = None, attempt: int | None = None) -> dict[str, str]:
    """The labels of a child object (ExperimentNode, Job, pod template)."""
    labels = {MANAGED_BY_LABEL: MANAGED_BY, RUN_LABEL: run, ROLE_LABEL: role}
    if node_id is not None:
        labels[NODE_LABEL] = node_id
    if attempt is not None:
        labels[ATTEMPT_LABEL] = str(attempt)
    return labels
