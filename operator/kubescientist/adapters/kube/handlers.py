"""The kopf handlers: one daemon per ResearchRun that reconciles it, and nudges from its children.

The recipe of kopf's author for level-based operators: a per-object daemon computes the actual state and
acts on it; low-level event handlers on the children only wake that daemon (an ``asyncio.Event`` per run,
kept in the operator's memo), and indexes keep the children (ExperimentNodes, Jobs, pods) by run so that a
pass makes no list call at all: it works from what the watches already delivered. A run is reconciled when something about it changed, and every ``resync_seconds`` anyway:
a missed event costs latency, never correctness.

Watches of Jobs, pods and ExperimentNodes are filtered server-side by the ``app.kubernetes.io/managed-by``
label, so the operator does not stream every pod of the cluster.

Run it with ``python -m kubescientist.adapters.kube`` (see ``__main__``) or ``kopf run -m
kubescientist.adapters.kube.handlers``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import json
import logging
import time
from collections.abc import Mapping
from typing import Any, cast

import kopf

from kubescientist.adapters import metrics
from kubescientist.adapters.kube import clients, config, naming
from kubescientist.adapters.kube.reconciling import Children, Reconciler

DEBOUNCE_SECONDS = 0.1
"""After a wake-up, wait this long so that a burst of events (a Job and its pod finishing) makes one pass."""
ERROR_BACKOFF_SECONDS = (2.0, 5.0, 10.0, 30.0, 60.0)
"""Pauses after consecutive failed passes."""
MANAGED = {naming.MANAGED_BY_LABEL: naming.MANAGED_BY}


@dataclasses.dataclass
class Operator:
    """What the handlers share, kept in kopf's memo."""

    reconciler: Reconciler
    settings: config.Settings
    pool: concurrent.futures.ThreadPoolExecutor
    """The threads passes run in (``settings.reconcile_workers``), apart from kopf's and asyncio's own."""
    wakers: dict[tuple[str, str], asyncio.Event] = dataclasses.field(default_factory=dict)
    finished_seen: dict[str, float] = dataclasses.field(default_factory=dict)
    """Pod uid -> when its watch first showed it finished (epoch seconds): reaction latency's start, to the
    millisecond (the container's ``finishedAt`` has one-second resolution)."""

    def waker(self, namespace: str, name: str) -> asyncio.Event:
        return self.wakers.setdefault((namespace, name), asyncio.Event())

    def nudge(self, namespace: str, run: str) -> None:
        event = self.wakers.get((namespace, run))
        if event is not None:
            event.set()


def _operator(memo: Any) -> Operator:
    return cast(Operator, memo['operator'])


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: Any, logger: kopf.Logger, **_: Any) -> None:
    own = config.from_env()
    settings.persistence.finalizer = naming.FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=naming.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=naming.GROUP, key='last-handled-configuration')
    settings.posting.reporting_component = naming.COMPONENT
    settings.posting.level = logging.WARNING
    selector = f'{naming.MANAGED_BY_LABEL}={naming.MANAGED_BY}'
    for resource in (('batch', 'jobs'), ('v1', 'pods'), (naming.GROUP, naming.NODES)):
        settings.watching.label_selectors[resource] = selector
    clients.load_config()
    metrics.serve_from_env()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=own.reconcile_workers, thread_name_prefix='pass')
    lanes = concurrent.futures.ThreadPoolExecutor(max_workers=own.reconcile_workers, thread_name_prefix='outbox')
    memo['operator'] = Operator(reconciler=Reconciler(clients.ApiKube(), own, lanes=lanes), settings=own, pool=pool)
    logger.info("kubescientist operator: node image %s, resync every %ss", own.node_image, own.resync_seconds)


@kopf.index(naming.GROUP, naming.VERSION, naming.NODES, labels=MANAGED)
async def nodes_by_run(namespace: str | None, name: str, uid: str, labels: Mapping[str, str],
                       status: kopf.Status, **_: Any) -> dict[tuple[str, str], dict[str, Any]] | None:
    """ExperimentNodes by (namespace, run): name, uid and status, for the run's passes."""
    run = labels.get(naming.RUN_LABEL)
    if not run or namespace is None:
        return None
    return {(namespace, run): {'name': name, 'uid': uid, 'status': json.loads(json.dumps(dict(status)))}}


def _child(body: kopf.Body) -> dict[str, Any]:
    """A plain copy of a Job or pod without what no pass reads (managed fields, annotations)."""
    meta = body.get('metadata', {})
    return {'metadata': {k: meta.get(k) for k in ('name', 'namespace', 'uid', 'labels', 'creationTimestamp',
                                                  'deletionTimestamp')},
            'spec': json.loads(json.dumps(dict(body.get('spec', {})))),
            'status': json.loads(json.dumps(dict(body.get('status', {}))))}


@kopf.index('batch', 'v1', 'jobs', labels=MANAGED)
async def jobs_by_run(namespace: str | None, labels: Mapping[str, str], body: kopf.Body,
                      **_: Any) -> dict[tuple[str, str], dict[str, Any]] | None:
    """The run's Jobs by (namespace, run), as the watch delivered them."""
    run = labels.get(naming.RUN_LABEL)
    if not run or namespace is None:
        return None
    return {(namespace, run): _child(body)}


@kopf.index('v1', 'pods', labels=MANAGED)
async def pods_by_run(namespace: str | None, labels: Mapping[str, str], body: kopf.Body, uid: str, memo: Any,
                      **_: Any) -> dict[tuple[str, str], dict[str, Any]] | None:
    """The run's pods by (namespace, run); a finished pod carries when the operator first saw it finished."""
    run = labels.get(naming.RUN_LABEL)
    if not run or namespace is None:
        return None
    pod = _child(body)
    if pod['status'].get('phase') in ('Succeeded', 'Failed'):
        seen = _operator(memo).finished_seen
        pod['seenFinished'] = seen.setdefault(uid, time.time())
        if len(seen) > 100_000:  # bounded: the oldest stamps are of pods long folded
            for key in list(seen)[:50_000]:
                del seen[key]
    return {(namespace, run): pod}


@kopf.daemon(naming.GROUP, naming.VERSION, naming.RUNS, cancellation_timeout=5.0)
async def run_daemon(body: kopf.Body, namespace: str | None, name: str, stopped: kopf.DaemonStopped, memo: Any,
                     logger: kopf.Logger, **kwargs: Any) -> None:
    """Reconcile one run for as long as it exists: when nudged, and every resync period."""
    assert namespace is not None, "ResearchRuns are namespaced"
    index: kopf.Index[tuple[str, str], dict[str, Any]] = kwargs['nodes_by_run']
    jobs: kopf.Index[tuple[str, str], dict[str, Any]] = kwargs['jobs_by_run']
    pods: kopf.Index[tuple[str, str], dict[str, Any]] = kwargs['pods_by_run']
    loop = asyncio.get_running_loop()
    operator = _operator(memo)
    wake = operator.waker(namespace, name)
    failures = 0
    try:
        while not stopped:
            wake.clear()
            # A private copy: kopf updates the live body from the watch while the pass runs in a thread.
            run = json.loads(json.dumps(dict(body)))
            indexed = [dict(n) for n in index.get((namespace, name), [])]
            children = Children(jobs=list(jobs.get((namespace, name), [])), pods=list(pods.get((namespace, name), [])))
            began = time.monotonic()
            try:
                delay = await loop.run_in_executor(operator.pool, operator.reconciler.reconcile, run, indexed,
                                                   children)
                metrics.reconcile_finished(time.monotonic() - began, ok=True)
                failures = 0
            except Exception as err:  # noqa: BLE001 - a failed pass is retried; the run says why
                metrics.reconcile_finished(time.monotonic() - began, ok=False)
                logger.exception("reconcile of %s/%s failed", namespace, name)
                await loop.run_in_executor(operator.pool, operator.reconciler.report_error, run, err)
                delay = ERROR_BACKOFF_SECONDS[min(failures, len(ERROR_BACKOFF_SECONDS) - 1)]
                failures += 1
            await _pause(wake, stopped, delay)
            if not stopped:
                await asyncio.sleep(DEBOUNCE_SECONDS)
    finally:
        operator.wakers.pop((namespace, name), None)
        if body.get('metadata', {}).get('deletionTimestamp'):
            operator.reconciler.forget(namespace, name)
            metrics.run_forgotten(namespace, name)


async def _pause(wake: asyncio.Event, stopped: kopf.DaemonStopped, seconds: float) -> None:
    """Until the run is nudged, its daemon is stopped, or ``seconds`` pass."""

    async def until_stopped() -> None:
        await stopped.wait()

    tasks = {asyncio.ensure_future(wake.wait()), asyncio.ensure_future(until_stopped())}
    try:
        await asyncio.wait(tasks, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


@kopf.on.event(naming.GROUP, naming.VERSION, naming.RUNS)
async def run_changed(body: kopf.Body, namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    """A spec edit (suspend, budgets, parallelism) wakes the run; its own status writes do not."""
    observed = body.get('status', {}).get('observedGeneration')
    if namespace is not None and body.get('metadata', {}).get('generation') != observed:
        _operator(memo).nudge(namespace, name)


@kopf.on.event(naming.GROUP, naming.VERSION, naming.NODES, labels=MANAGED)
async def node_deleted(labels: Mapping[str, str], namespace: str | None, memo: Any, type: str, **_: Any) -> None:
    """An ExperimentNode deleted by hand wakes its run (which creates it again). Only the operator creates
    them and writes their status, so their other events would only wake a run for its own writes."""
    run = labels.get(naming.RUN_LABEL)
    if run and namespace is not None and type == 'DELETED':
        _operator(memo).nudge(namespace, run)


@kopf.on.event('batch', 'v1', 'jobs', labels=MANAGED)
@kopf.on.event('v1', 'pods', labels=MANAGED)
async def child_changed(labels: Mapping[str, str], namespace: str | None, memo: Any, type: str, **_: Any) -> None:
    """Something of a run changed (a pod finished, a Job completed): wake its run."""
    run = labels.get(naming.RUN_LABEL)
    # type is None for the objects listed at start-up: the daemons' first passes see those anyway.
    if run and namespace is not None and type is not None:
        _operator(memo).nudge(namespace, run)
