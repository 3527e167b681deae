"""One reconciliation pass of a ResearchRun: observed state in, engine decisions out, status written.

Level-based: every pass looks at what exists (the journal in object storage, the run's ExperimentNodes,
Jobs and pods) and moves it one step towards what should exist. Nothing depends on which event woke it
or on the order events came in; a pass that finds nothing to do writes nothing.

Restart safety rests on three rules:

1. Write-ahead. The journal is saved to object storage *before* any object it implies is created: a node
   is committed (and saved) before its ExperimentNode exists, and an attempt is started (and saved) before
   its Job exists. A restarted operator therefore never finds an object the journal does not explain.
2. Deterministic names. ExperimentNode ``<run>-<id>``, Job ``<run>-<id>-a<attempt>``: re-creating what may
   already exist is a 409, which is success. A new Job name only ever comes from a new attempt, which the
   engine grants only after the previous attempt's outcome was folded.
3. The cluster outlives the operator. Nodes the journal says are running keep running while the operator
   is down (the local runner reruns them; the operator must not): after a restart they are reattached to
   their Jobs, and a finished Job is folded exactly as it would have been. An ExperimentNode whose status
   already records the end of the current attempt wins over a journal that does not (the API is ahead).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from experiment_runtime import parse_result
from experiment_runtime.pod import ARTIFACTS
from kubescientist.adapters import metrics, results
from kubescientist.adapters.driving import Step
from kubescientist.adapters.kube import (admission, manifests, naming, node_environment, outcomes, persistence,
                                        queueing, statuses)
from kubescientist.adapters.kube.clients import ApiError, Kube
from kubescientist.adapters.kube.config import Settings
from kubescientist.adapters.kube.outbox import Outbox, Write
from kubescientist.adapters.kube.papers import Papers
from kubescientist.adapters.kube.persistence import RunState
from kubescientist.adapters.kube.storage import S3Config, Store, StorageError
from kubescientist.adapters.kube.templates import TemplateProblem
from kubescientist.core.journal import FINISHED, Details, Node, Outcome
from kubescientist.core.spec import RunSpec, run_spec_from_dict
from kubescientist.core.summary import node_counts

log = logging.getLogger('kubescientist.operator')

WRITERS = 32
"""Threads per operator that make passes' independent API writes concurrently (they mostly wait)."""
JOB_NAME_LABEL = 'batch.kubernetes.io/job-name'
UNSEEN_JOB_SECONDS = 60.0
"""How long a Job this process created counts as existing although the watch has not shown it."""
RUN_EVENTS = {'stage-started': ('Normal', 'StageStarted'), 'stage-ended': ('Normal', 'StageEnded'),
              'budget': ('Normal', 'BudgetExhausted'), 'run-ended': ('Normal', 'SearchEnded'),
              'retry': ('Warning', 'NodeRetried')}
"""Journal events that become Kubernetes Events on the run (the others are in the journal only)."""


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


@dataclasses.dataclass(frozen=True)
class Children:
    """A run's Jobs and pods as the operator's watch indexes hold them (no list call per pass)."""

    jobs: Sequence[Mapping[str, Any]]
    pods: Sequence[Mapping[str, Any]]
    """Each finished one may carry ``seenFinished``: when the watch first showed it finished (epoch seconds)."""


@dataclasses.dataclass
class Pass:
    """What one pass observed and decided."""

    jobs: dict[str, dict[str, Any]]
    pods: dict[str, list[dict[str, Any]]]
    nodes: dict[str, Mapping[str, Any]]
    views: dict[str, statuses.NodeView] = dataclasses.field(default_factory=dict)
    stalled: list[str] = dataclasses.field(default_factory=list)
    decided: Step = dataclasses.field(default_factory=Step)
    """What the driver decided: nodes finished, nodes started."""
    finished_seen: list[float] = dataclasses.field(default_factory=list)
    """When the watch first showed each folded pod finished (epoch seconds), where it says."""
    queued: list[str | None] = dataclasses.field(default_factory=list)
    """For each node whose Job waits for admission (Kueue): why, in Kueue's words (None: not said yet)."""


class Reconciler:
    """Reconciles ResearchRuns; one instance per operator, one pass per run at a time."""

    def __init__(self, kube: Kube, settings: Settings, *,
                 store_factory: Callable[[S3Config, str, str], Store] = Store,
                 clock: Callable[[], datetime.datetime] = utcnow,
                 lanes: concurrent.futures.Executor | None = None) -> None:
        """``lanes``: threads where runs' status writes wait behind their passes (None: a pass makes them
        before it returns, as tests want)."""
        self.kube = kube
        self.settings = settings
        self.store_factory = store_factory
        self.clock = clock
        self.papers = Papers(kube, settings)
        self.writer = concurrent.futures.ThreadPoolExecutor(max_workers=WRITERS, thread_name_prefix='write')
        """Makes a pass's independent API writes (node statuses, Events) at once rather than one after another."""
        self.lanes = lanes
        self.runs: dict[tuple[str, str], RunState] = {}
        self.workloads_unreadable: set[str] = set()
        """Namespaces whose Kueue Workloads could not be listed (said once in the log, not every pass)."""
        self.outboxes: dict[tuple[str, str], Outbox] = {}

    def forget(self, namespace: str, name: str) -> None:
        self.outboxes.pop((namespace, name), None)
        state = self.runs.pop((namespace, name), None)
        if state is not None:
            state.template.close()
            if state.agent is not None:
                state.agent.close()

    # -- the pass --------------------------------------------------------------------------------------

    def reconcile(self, run: Mapping[str, Any], indexed: Sequence[Mapping[str, Any]] = (),
                  children: Children | None = None) -> float:
        """One pass over one run; returns the seconds after which the next unprompted pass is due.

        ``indexed``: the run's ExperimentNodes as the operator's index holds them (name, uid, status);
        ``children``: its Jobs and pods, from the indexes too (None: listed from the API, as at start-up).
        """
        meta = run['metadata']
        namespace, name, generation = meta['namespace'], meta['name'], int(meta.get('generation') or 0)
        if meta.get('deletionTimestamp'):
            self.forget(namespace, name)
            return self.settings.idle_resync_seconds
        previous = run.get('status') or {}
        now = self.clock()
        try:
            spec = run_spec_from_dict(run['spec'])
        except (KeyError, TypeError, ValueError) as err:
            return self._stalled(run, previous, generation, f"spec: cannot be read: {err!r}")
        state = self.runs.get((namespace, name))
        if state is None or state.uid != meta['uid']:
            if state is not None:
                self.forget(namespace, name)
            try:
                state = persistence.load(run, spec, self.kube, self.store_factory(
                    persistence.s3_config(run, self.kube, self.settings.s3_endpoint), namespace, name), now)
            except (persistence.Stalled, StorageError, TemplateProblem) as err:
                return self._stalled(run, previous, generation, str(err), spec)
            self.runs[(namespace, name)] = state
        state.spec = spec
        state.engine.update_spec(spec)
        if (missing := node_environment.dataset_problems(self.kube, namespace, spec)) is not None:
            return self._stalled(run, previous, generation, missing, spec)

        outbox = self.outboxes.setdefault((namespace, name), Outbox(self.lanes, self.writer))
        outbox.settle()
        step = self._look(run, state, indexed, children)
        elapsed = (now - persistence.parse_time(state.start_time)).total_seconds()
        step.decided = state.driver.step(self._fold(run, state, step), elapsed)
        self._save(state, step)
        for node, outcome in step.decided.finished:
            self._count_finished(namespace, name, state, node, outcome)
        self._materialise(run, state, step)
        if state.engine.done and state.journal.phase == 'succeeded':
            self.papers.advance(run, state, step.jobs, step.pods, step.stalled)
        view = statuses.RunView(spec=spec, journal=state.journal, best=state.engine.best(), writeup=state.writeup,
                                review=state.review, start_time=state.start_time,
                                stalled='; '.join(step.stalled) or None,
                                llm=state.agent.accounts() if state.agent is not None else None,
                                llm_stopped=state.llm_stopped, gate=statuses.gate_text(state.engine),
                                waiting=admission.waiting(step.queued))
        outbox.send([*self._node_status_writes(run, state, step, generation, now),
                     *self._event_writes(run, state, step), *self._expiry_writes(run, state, step),
                     *self._run_status_writes(run, view, state.run_status or previous, generation, now, state)])
        phase, _ = statuses.run_phase(view)
        self._observe(namespace, name, state, phase, now, view.waiting.count)
        return self.settings.idle_resync_seconds if phase in ('Succeeded', 'Failed') else self.settings.resync_seconds

    def _look(self, run: Mapping[str, Any], state: RunState, indexed: Sequence[Mapping[str, Any]],
              children: Children | None) -> Pass:
        """The run's Jobs, pods (by Job) and ExperimentNodes as the watches (or, without them, the API) show."""
        namespace, name = run['metadata']['namespace'], run['metadata']['name']
        if children is None:
            selector = naming.run_selector(name)
            children = Children(jobs=self.kube.list('batch/v1', 'jobs', namespace, selector),
                                pods=self.kube.list('v1', 'pods', namespace, selector))
        jobs = {j['metadata']['name']: dict(j) for j in children.jobs}
        for job_name, (job, created) in list(state.unseen_jobs.items()):
            if job_name in jobs or (self.clock() - created).total_seconds() > UNSEEN_JOB_SECONDS:
                del state.unseen_jobs[job_name]  # the watch has it now (or it was deleted meanwhile)
            else:
                jobs[job_name] = job
        pods: dict[str, list[dict[str, Any]]] = {}
        for pod in children.pods:
            pods.setdefault((pod['metadata'].get('labels') or {}).get(JOB_NAME_LABEL, ''), []).append(dict(pod))
        nodes = {n['name']: n for n in indexed}
        names = frozenset(nodes)
        for vanished in [n for n in state.settled if names and n not in names]:
            # Deleted by hand (the index lost it): this pass creates it again from the journal.
            log.warning("ExperimentNode %s/%s vanished; it will be created again", namespace, vanished)
            for kept in (state.settled, state.node_uids, state.written):
                kept.pop(vanished, None)
        for name_, uid in list(state.node_uids.items()):
            nodes.setdefault(name_, {'name': name_, 'uid': uid, 'status': state.written.get(name_, {})})
        return Pass(jobs=jobs, pods=pods, nodes=nodes)

    def _save(self, state: RunState, step: Pass) -> None:
        """Write-ahead: what the driver decided is saved before any object it implies is created."""
        decided = step.decided
        if decided.stopped is not None:
            log.warning("run %s: no new LLM work: %s", state.store.run_prefix, decided.stopped)
            state.llm_stopped = decided.stopped
        if decided.changed:
            state.save_journal()
        elif state.agent is not None:
            state.agent.save()  # LLM calls that changed no journal entry (a stage goal not met) still cost

    def _observe(self, namespace: str, name: str, state: RunState, phase: metrics.RunPhase,
                 now: datetime.datetime, waiting: int) -> None:
        """The run's gauges for Prometheus (idempotent: set from the state every pass)."""
        spec = state.spec
        metrics.run_phase_changed(namespace, name, phase)
        metrics.run_nodes_counted(namespace, name, node_counts(state.journal.nodes.values()))
        if spec.raw.get('queueName'):
            metrics.nodes_waiting(namespace, name, waiting)
        best = state.engine.best()
        if best is not None and best.metric is not None:
            metrics.best_metric(namespace, name, spec.objective.metric, best.metric)
        metrics.budget_usage(namespace, name, 'nodes', len(state.journal.nodes), spec.budget.max_total_nodes)
        started = datetime.datetime.fromisoformat(state.start_time.replace('Z', '+00:00'))
        elapsed = (now - started).total_seconds()
        metrics.budget_usage(namespace, name, 'wallclock', elapsed, spec.budget.wall_clock_seconds)

    # -- folding results ---------------------------------------------------------------------------------

    def _fold(self, run: Mapping[str, Any], state: RunState, step: Pass) -> list[tuple[str, Outcome]]:
        """The outcomes of running nodes whose attempt ended, from their Jobs and pods (or their status)."""
        name = run['metadata']['name']
        finished: list[tuple[str, Outcome]] = []
        running = [n for n in state.journal.unfinished() if n.status == 'running']
        current = {n.id: step.jobs.get(naming.job_name(name, n.id, n.attempts)) for n in running}
        reasons = self._admission_reasons(run['metadata']['namespace'], [j for j in current.values() if j])
        for node in running:
            attempt = node.attempts
            job_name = naming.job_name(name, node.id, attempt)
            node_name = naming.node_name(name, node.id)
            seen = state.written.get(node_name) or step.nodes.get(node_name, {}).get('status') or {}
            seen_running = bool(seen.get('startTime')) and seen.get('attempts') == attempt
            job = current[node.id]
            why = reasons.get(str(job['metadata'].get('uid'))) if job is not None else None
            observation = outcomes.observe(job, step.pods.get(job_name, []), seen_running, why)
            if observation.queued:
                step.queued.append(why)
            artifacts = state.store.uri(state.store.node_key(node.id, attempt))
            step.views[node.id] = statuses.NodeView(job_name=job_name, observation=observation,
                                                    artifacts_uri=artifacts, started_at=observation.started_at)
            if observation.stalled:
                step.stalled.append(f"{node_name}: {observation.stalled}")
            where = Details(job=job_name, attempt=attempt, artifacts=artifacts, started_at=observation.started_at,
                            finished_at=observation.finished_at)
            outcome: Outcome | None = None
            if observation.state == 'finished':
                assert observation.outcome is not None
                outcome = self._result(state, node, attempt, observation, where)
                seen = next((p.get('seenFinished') for p in step.pods.get(job_name, ())
                             if p['metadata']['name'] == observation.pod_name), None)
                if isinstance(seen, (int, float)):
                    step.finished_seen.append(float(seen))
            elif observation.state == 'missing':
                adopted = results.adopted(step.nodes.get(node_name, {}).get('status'), attempt)
                outcome = results.outcome(adopted, where) if adopted is not None else None
            if outcome is not None:
                finished.append((node.id, outcome))
                step.views.pop(node.id, None)
        return finished

    def _admission_reasons(self, namespace: str, jobs: Sequence[Mapping[str, Any]]) -> dict[str, str]:
        """Job uid -> why Kueue has not admitted it, for those of ``jobs`` that wait for admission.

        One list call, and only when some Job waits: the Workloads of exactly those Jobs (by Kueue's uid label).
        Without Kueue's API (not installed, not granted) the nodes wait with a generic message.
        """
        query = admission.selector(str(j['metadata']['uid']) for j in jobs
                                   if admission.suspended(j) and j['metadata'].get('uid'))
        if query is None:
            return {}
        try:
            workloads = self.kube.list(*admission.WORKLOADS, namespace, query)
        except ApiError as err:
            if namespace not in self.workloads_unreadable:
                self.workloads_unreadable.add(namespace)
                log.warning("namespace %s: cannot list Kueue Workloads (%s); queued nodes wait without Kueue's "
                            "reason", namespace, err)
            return {}
        self.workloads_unreadable.discard(namespace)
        return admission.reasons_by_job(workloads)

    def _result(self, state: RunState, node: Node, attempt: int, observation: outcomes.Observation,
                where: Details) -> Outcome:
        """The attempt's outcome: from its uploaded result.json (full metrics, plots, resource use) when the
        pod reported a result or its termination message was lost; from what the pod showed otherwise."""
        observed = observation.outcome
        assert observed is not None
        lost = observed.infrastructure and observed.reason == outcomes.LOST_MESSAGE
        if observation.report is None and not lost:
            return dataclasses.replace(observed, details=results.merged(observed.details, where))
        key = state.store.node_key(node.id, attempt, 'result.json')
        try:
            result = parse_result(state.store.get_json(key), state.store.uri(key))
        except (StorageError, ValueError):
            return dataclasses.replace(observed, details=results.merged(observed.details, where))
        return results.outcome(result, results.merged(observed.details, where))

    @staticmethod
    def _count_finished(namespace: str, run: str, state: RunState, node: Node, outcome: Outcome) -> None:
        phase: metrics.FinishedPhase = 'Failed' if outcome.infrastructure else \
            'Buggy' if outcome.buggy else 'Succeeded'
        metrics.node_finished(node.stage, node.action, phase, outcome.duration_seconds, namespace=namespace, run=run)
        if outcome.duration_seconds and state.spec.resources.gpus:
            metrics.gpu_seconds(namespace, outcome.duration_seconds * state.spec.resources.gpus)

    # -- new work ----------------------------------------------------------------------------------------

    def _materialise(self, run: Mapping[str, Any], state: RunState, step: Pass) -> None:
        """Create what the (saved) journal implies and the API lacks: each node's ExperimentNode, then its Job
        (owned by it); the nodes at once, as the next Jobs are what the run waits for."""
        name = run['metadata']['name']
        missing = [n for n in state.journal.nodes.values() if naming.node_name(name, n.id) not in state.node_uids]
        launched = {n.id for n in step.decided.launches}
        unstarted = []
        for node in state.journal.unfinished():
            view = step.views.get(node.id)
            if node.status != 'running' or naming.job_name(name, node.id, node.attempts) in step.jobs:
                continue
            if node.id not in launched and view is not None and view.observation is not None \
                    and view.observation.state != 'missing':
                continue
            unstarted.append(node)
        wanted = {n.id: n for n in [*missing, *unstarted]}
        unstarted_ids = {n.id for n in unstarted}
        created = list(self.writer.map(lambda node: self._create(run, state, step, node, node.id in unstarted_ids),
                                       wanted.values()))
        self._reacted(step, min((t for t in created if t is not None), default=None))

    def _create(self, run: Mapping[str, Any], state: RunState, step: Pass, node: Node,
                start: bool) -> datetime.datetime | None:
        """The node's ExperimentNode if the API lacks it, then (``start``) the Job of its current attempt;
        returns when the Job was created."""
        meta = run['metadata']
        namespace, name = meta['namespace'], meta['name']
        node_name = naming.node_name(name, node.id)
        if node_name not in state.node_uids:
            code = state.template.code_for(node.config, state.store)
            created = self.kube.create(manifests.experiment_node(name, namespace, manifests.run_owner(name, meta['uid']),
                                                                 state.spec, node, code.hash, code.uri))
            state.node_uids[node_name] = created['metadata']['uid']
            state.written.setdefault(node_name, dict(created.get('status') or {}))
        if not start:
            return None
        job_name = naming.job_name(name, node.id, node.attempts)
        step.jobs[job_name] = self.kube.create(self._node_job(run, state, node))
        state.unseen_jobs[job_name] = (step.jobs[job_name], self.clock())
        step.views[node.id] = statuses.NodeView(
            job_name=job_name, observation=outcomes.Observation('pending', outcomes.WAITING_FOR_POD),
            artifacts_uri=state.store.uri(state.store.node_key(node.id, node.attempts)))
        return self.clock()

    @staticmethod
    def _reacted(step: Pass, now: datetime.datetime | None) -> None:
        """Reaction latency: from the latest node finish this pass folded to the first Job it created (``now``).

        The finish is when the operator's watch first showed the pod finished (to the millisecond); the
        container's finishedAt (one-second resolution) only where the watch did not say.
        """
        if now is None or not step.decided.finished:
            return
        if step.finished_seen:
            metrics.reaction_latency(max(0.0, now.timestamp() - max(step.finished_seen)))
            return
        finishes = [outcome.details.finished_at for _, outcome in step.decided.finished]
        stamps = [persistence.parse_time(f) for f in finishes if f]
        if stamps:
            metrics.reaction_latency(max(0.0, (now - max(stamps)).total_seconds()))

    def _expiry_writes(self, run: Mapping[str, Any], state: RunState, step: Pass) -> list[Write]:
        """Give the Jobs of folded attempts a TTL (their outcomes are saved), so that the finished Jobs and
        pods of a long run do not pile up in the API and in the watches."""
        ttl = self.settings.finished_job_ttl_seconds
        namespace, name = run['metadata']['namespace'], run['metadata']['name']
        writes = []
        for job_name, job in step.jobs.items():
            labels = job['metadata'].get('labels') or {}
            node = state.journal.nodes.get(labels.get(naming.NODE_LABEL, ''))
            if labels.get(naming.ROLE_LABEL) != 'node' or node is None or job_name in state.expired:
                continue
            if job.get('spec', {}).get('ttlSecondsAfterFinished') is not None:
                continue
            if node.status == 'running' and job_name == naming.job_name(name, node.id, node.attempts):
                continue  # the attempt still running (or not folded yet)
            state.expired.add(job_name)
            writes.append(Write(functools.partial(self.kube.patch, 'batch/v1', 'jobs', namespace, job_name,
                                                  {'spec': {'ttlSecondsAfterFinished': ttl}}),
                                functools.partial(_expiry_failed, state, job_name)))
        return writes

    def _node_job(self, run: Mapping[str, Any], state: RunState, node: Node) -> dict[str, Any]:
        meta = run['metadata']
        name = meta['name']
        node_name = naming.node_name(name, node.id)
        store, seconds = state.store, self.settings.presign_seconds
        code = state.template.code_for(node.config, store)
        urls = {artifact: store.presign_put(store.node_key(node.id, node.attempts, artifact), seconds)
                for artifact in ARTIFACTS}
        job = manifests.node_job(name, meta['namespace'], manifests.node_owner(node_name, state.node_uids[node_name]),
                                 state.spec, node, node.attempts, self.settings, store.presign_get(code.key, seconds),
                                 code.sha256, urls)
        job = node_environment.apply(job, state.spec, self.settings,
                                     node_environment.dataset_objects(store, state.spec, seconds))
        return queueing.queued(job, state.spec, node.action)

    # -- status and events -------------------------------------------------------------------------------

    def _node_status_writes(self, run: Mapping[str, Any], state: RunState, step: Pass, generation: int,
                            now: datetime.datetime) -> list[Write]:
        """Status patches of the ExperimentNodes whose status changed, assumed written (undone if not)."""
        meta = run['metadata']
        namespace, name = meta['namespace'], meta['name']
        writes = []
        for node in state.journal.nodes.values():
            node_name = naming.node_name(name, node.id)
            if state.settled.get(node_name) == generation:
                continue  # finished, and its final status is written: nothing can change it now
            previous = state.written.get(node_name) or dict(step.nodes.get(node_name, {}).get('status') or {})
            view = step.views.get(node.id) or finished_view(node, naming.job_name(name, node.id, node.attempts))
            desired = statuses.node_status(node, view, previous, generation, persistence.rfc3339(now), state.spec.suspend)
            final = node.status in FINISHED and node.id not in step.views
            if _same(desired, previous):
                if final:
                    state.settled[node_name] = generation
                continue
            # Keys that vanished must be removed, hence null for them in the merge patch.
            patch: dict[str, Any] = {**{k: None for k in previous if k not in desired}, **desired}
            state.written[node_name] = desired
            if final:
                state.settled[node_name] = generation
            writes.append(Write(functools.partial(self.kube.patch_status, naming.API_VERSION, naming.NODES,
                                                  namespace, node_name, patch),
                                functools.partial(_node_status_failed, state, namespace, node_name)))
        return writes

    def _event_writes(self, run: Mapping[str, Any], state: RunState, step: Pass) -> list[Write]:
        metric = state.spec.objective.metric
        events: list[tuple[str, str, str]] = []
        for node, outcome in step.decided.finished:
            node_name = naming.node_name(run['metadata']['name'], node.id)
            if node.status == 'succeeded':
                value = f"{node.metric:.6g}" if node.metric is not None else "?"
                events.append(('Normal', 'NodeSucceeded', f"{node_name} ({node.action}) succeeded: {metric}={value}"))
            elif node.status == 'buggy':
                events.append(('Warning', 'NodeBuggy', f"{node_name} ({node.action}) is buggy: {outcome.reason or ''}"))
            elif node.status == 'failed':
                events.append(('Warning', 'NodeFailed', f"{node_name} failed for infrastructure reasons: "
                               f"{outcome.reason or ''}"))
        for event in state.journal.events[state.events_seen:]:
            if event.kind in RUN_EVENTS:
                events.append((*RUN_EVENTS[event.kind], event.message))
        state.events_seen = len(state.journal.events)
        return [Write(functools.partial(self.kube.event, run, *event)) for event in events]

    def _run_status_writes(self, run: Mapping[str, Any], view: statuses.RunView, previous: Mapping[str, Any],
                           generation: int, now: datetime.datetime, state: RunState | None = None) -> list[Write]:
        """The run's status patch (and an Event when its phase changes); ``state`` keeps it as assumed written
        (the run's body, from the watch, may not show it yet when the next pass starts)."""
        meta = run['metadata']
        desired = statuses.run_status(view, meta['name'], previous, generation, persistence.rfc3339(now))
        if _same(desired, previous):
            return []
        writes = []
        if statuses.run_phase(view)[0] != previous.get('phase'):
            writes.append(Write(functools.partial(
                self.kube.event, run, 'Warning' if desired['phase'] == 'Failed' else 'Normal',
                f"Phase{desired['phase']}",
                f"phase {previous.get('phase') or '-'} -> {desired['phase']}: {desired.get('message', '')}")))
        patch: dict[str, Any] = {**{k: None for k in previous if k not in desired}, **desired}
        if state is not None:
            state.run_status = desired
        writes.append(Write(functools.partial(self.kube.patch_status, naming.API_VERSION, naming.RUNS,
                                              meta['namespace'], meta['name'], patch),
                            functools.partial(_run_status_failed, state)))
        return writes

    def _write_run_status(self, run: Mapping[str, Any], view: statuses.RunView, previous: Mapping[str, Any],
                          generation: int, now: datetime.datetime) -> None:
        for write in self._run_status_writes(run, view, previous, generation, now):
            write.call()

    def _stalled(self, run: Mapping[str, Any], previous: Mapping[str, Any], generation: int, why: str,
                 spec: RunSpec | None = None) -> float:
        """Report a run that cannot start or go on (status Pending with a Stalled condition)."""
        self._status_unknown(run)
        log.warning("run %s/%s stalled: %s", run['metadata']['namespace'], run['metadata']['name'], why)
        if spec is None:
            status = {'phase': 'Pending', 'observedGeneration': generation, 'message': why[:statuses.MAX_MESSAGE]}
            if previous.get('message') != status['message']:
                self.kube.patch_status(naming.API_VERSION, naming.RUNS, run['metadata']['namespace'],
                                       run['metadata']['name'], status)
            return self.settings.resync_seconds * 3
        view = statuses.RunView(spec=spec, journal=None, best=None, writeup=statuses.Step(), review=statuses.Step(),
                                start_time=previous.get('startTime'), stalled=why)
        self._write_run_status(run, view, previous, generation, self.clock())
        return self.settings.resync_seconds * 3

    def _status_unknown(self, run: Mapping[str, Any]) -> None:
        """The run status is written outside the pass: the next pass compares with the run's body again."""
        state = self.runs.get((run['metadata']['namespace'], run['metadata']['name']))
        if state is not None:
            state.run_status = None

    def report_error(self, run: Mapping[str, Any], error: BaseException) -> None:
        """A pass failed unexpectedly: say so in the run's Stalled condition (the next pass retries)."""
        previous = run.get('status') or {}
        generation = int(run['metadata'].get('generation') or 0)
        now = persistence.rfc3339(self.clock())
        self._status_unknown(run)
        message = f"reconcile error: {type(error).__name__}: {error}"[:statuses.MAX_MESSAGE]
        conditions = [c for c in previous.get('conditions') or () if c.get('type') != 'Stalled']
        conditions.append(statuses.set_condition(previous.get('conditions') or (), 'Stalled', True, 'ReconcileError',
                                                 message, generation, now))
        try:
            self.kube.patch_status(naming.API_VERSION, naming.RUNS, run['metadata']['namespace'],
                                   run['metadata']['name'], {'conditions': conditions, 'message': message,
                                                             'phase': previous.get('phase') or 'Pending'})
        except Exception:  # noqa: BLE001 - reporting must not hide the original error
            log.exception("could not report the error on the run")


def _node_status_failed(state: RunState, namespace: str, node_name: str, error: BaseException) -> bool:
    state.written.pop(node_name, None)
    state.settled.pop(node_name, None)
    if isinstance(error, ApiError) and error.status == 404:
        # Deleted by hand: the next pass creates it again (the journal still has the node).
        log.warning("ExperimentNode %s/%s vanished; it will be created again", namespace, node_name)
        state.node_uids.pop(node_name, None)
        return True
    return False


def _expiry_failed(state: RunState, job_name: str, error: BaseException) -> bool:
    if isinstance(error, ApiError) and error.status == 404:
        return True  # gone already
    state.expired.discard(job_name)
    return False


def _run_status_failed(state: RunState | None, error: BaseException) -> bool:
    if state is not None:
        state.run_status = None
    return isinstance(error, ApiError) and error.status == 404  # the run is being deleted


def finished_view(node: Node, job_name: str) -> statuses.NodeView:
    """What a node's status shows when this pass did not look at its Job (it finished before)."""
    if not node.attempts:
        return statuses.NodeView()
    details = node.outcome.details if node.outcome is not None else Details()
    return statuses.NodeView(job_name=details.job or job_name, artifacts_uri=details.artifacts,
                             plots=tuple(details.plots), started_at=details.started_at,
                             finished_at=details.finished_at)


def _canonical(value: Any) -> Any:
    """JSON as the API server gives it back: integral floats become integers (Go writes 1.0 as 1)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return value


def _same(desired: Mapping[str, Any], previous: Mapping[str, Any]) -> bool:
    """Whether writing ``desired`` over ``previous`` would change nothing (compared as values, not text)."""
    return bool(_canonical(desired) == _canonical(previous))
