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

import dataclasses
import datetime
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from experiment_runtime.pod import ARTIFACTS
from kubescientist.adapters import metrics
from kubescientist.adapters.kube import (manifests, naming, node_environment, outcomes, persistence, queueing,
                                        records, statuses)
from kubescientist.adapters.kube.clients import ApiError, Kube
from kubescientist.adapters.kube.config import Settings
from kubescientist.adapters.kube.persistence import RunState
from kubescientist.adapters.kube.storage import S3Config, Store, StorageError
from kubescientist.adapters.kube.templates import TemplateProblem
from kubescientist.adapters.llm import AgentStopped
from kubescientist.core.journal import Node, Outcome
from kubescientist.core.plan import Plan, Proposal
from kubescientist.core.spec import RunSpec, run_spec_from_dict
from kubescientist.core.summary import node_counts

log = logging.getLogger('kubescientist.operator')

JOB_NAME_LABEL = 'batch.kubernetes.io/job-name'
RUN_EVENTS = {'stage-started': ('Normal', 'StageStarted'), 'stage-ended': ('Normal', 'StageEnded'),
              'budget': ('Normal', 'BudgetExhausted'), 'run-ended': ('Normal', 'SearchEnded'),
              'retry': ('Warning', 'NodeRetried')}
"""Journal events that become Kubernetes Events on the run (the others are in the journal only)."""


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


@dataclasses.dataclass
class Pass:
    """What one pass observed and decided."""

    jobs: dict[str, dict[str, Any]]
    pods: dict[str, list[dict[str, Any]]]
    nodes: dict[str, Mapping[str, Any]]
    views: dict[str, statuses.NodeView] = dataclasses.field(default_factory=dict)
    stalled: list[str] = dataclasses.field(default_factory=list)
    finished: list[Node] = dataclasses.field(default_factory=list)
    changed: bool = False
    reacted: bool = False
    """Whether this pass already measured its reaction latency (at its first Job)."""


class Reconciler:
    """Reconciles ResearchRuns; one instance per operator, one pass per run at a time."""

    def __init__(self, kube: Kube, settings: Settings, *,
                 store_factory: Callable[[S3Config, str, str], Store] = Store,
                 clock: Callable[[], datetime.datetime] = utcnow) -> None:
        self.kube = kube
        self.settings = settings
        self.store_factory = store_factory
        self.clock = clock
        self.runs: dict[tuple[str, str], RunState] = {}

    def forget(self, namespace: str, name: str) -> None:
        state = self.runs.pop((namespace, name), None)
        if state is not None:
            state.template.close()
            if state.agent is not None:
                state.agent.close()

    # -- the pass --------------------------------------------------------------------------------------

    def reconcile(self, run: Mapping[str, Any], indexed: Sequence[Mapping[str, Any]] = ()) -> float:
        """One pass over one run; returns the seconds after which the next unprompted pass is due.

        ``indexed``: the run's ExperimentNodes as the operator's index holds them (name, uid, status).
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

        selector = naming.run_selector(name)
        jobs = {j['metadata']['name']: j for j in self.kube.list('batch/v1', 'jobs', namespace, selector)}
        pods: dict[str, list[dict[str, Any]]] = {}
        for pod in self.kube.list('v1', 'pods', namespace, selector):
            pods.setdefault((pod['metadata'].get('labels') or {}).get(JOB_NAME_LABEL, ''), []).append(pod)
        nodes = {n['name']: n for n in indexed}
        for name_, uid in list(state.node_uids.items()):
            nodes.setdefault(name_, {'name': name_, 'uid': uid, 'status': state.written.get(name_, {})})
        step = Pass(jobs=jobs, pods=pods, nodes=nodes)

        self._fold(run, state, step)
        launches = self._fill(state, step, now)
        if step.changed:
            state.save_journal()
        elif state.agent is not None:
            state.agent.save()  # LLM calls that changed no journal entry (a stage goal not met) still cost
        self._materialise(run, state, step, launches)
        if state.engine.done and state.journal.phase == 'succeeded':
            self._publish(run, state, step)
        self._write_node_statuses(run, state, step, generation, now)
        self._post_events(run, state, step)
        view = statuses.RunView(spec=spec, journal=state.journal, best=state.engine.best(), writeup=state.writeup,
                                review=state.review, start_time=state.start_time,
                                stalled='; '.join(step.stalled) or None,
                                llm=state.agent.accounts() if state.agent is not None else None,
                                llm_stopped=state.llm_stopped)
        self._write_run_status(run, view, previous, generation, now)
        phase, _ = statuses.run_phase(view)
        self._observe(namespace, name, state, phase, now)
        return self.settings.idle_resync_seconds if phase in ('Succeeded', 'Failed') else self.settings.resync_seconds

    def _observe(self, namespace: str, name: str, state: RunState, phase: str, now: datetime.datetime) -> None:
        """The run's gauges for Prometheus (idempotent: set from the state every pass)."""
        spec = state.spec
        metrics.run_phase_changed(namespace, name, cast(metrics.RunPhase, phase))
        metrics.run_nodes_counted(namespace, name, node_counts(state.journal.nodes.values()))
        best = state.engine.best()
        if best is not None and best.metric is not None:
            metrics.best_metric(namespace, name, spec.objective.metric, best.metric)
        metrics.budget_usage(namespace, name, 'nodes', len(state.journal.nodes), spec.budget.max_total_nodes)
        started = datetime.datetime.fromisoformat(state.start_time.replace('Z', '+00:00'))
        elapsed = (now - started).total_seconds()
        metrics.budget_usage(namespace, name, 'wallclock', elapsed, spec.budget.wall_clock_seconds)

    # -- folding results ---------------------------------------------------------------------------------

    def _fold(self, run: Mapping[str, Any], state: RunState, step: Pass) -> None:
        name = run['metadata']['name']
        for node in [n for n in state.journal.nodes.values() if n.status == 'running']:
            attempt = node.attempts
            job_name = naming.job_name(name, node.id, attempt)
            node_name = naming.node_name(name, node.id)
            seen = state.written.get(node_name) or step.nodes.get(node_name, {}).get('status') or {}
            seen_running = bool(seen.get('startTime')) and seen.get('attempts') == attempt
            observation = outcomes.observe(step.jobs.get(job_name), step.pods.get(job_name, []), seen_running)
            step.views[node.id] = statuses.NodeView(job_name=job_name, observation=observation,
                                                    artifacts_uri=state.store.uri(state.store.node_key(node.id, attempt)),
                                                    started_at=observation.started_at)
            if observation.stalled:
                step.stalled.append(f"{naming.node_name(name, node.id)}: {observation.stalled}")
            outcome: Outcome | None = None
            if observation.state == 'finished':
                assert observation.outcome is not None
                outcome = self._enrich(state, node, attempt, observation.outcome)
            elif observation.state == 'missing':
                outcome = adopted_outcome(step.nodes.get(node_name), attempt)
            if outcome is None:
                continue
            if state.agent is not None:
                # The LLM reads the node's uploaded stdout/stderr and may overrule the mechanical verdict.
                outcome = state.agent.review(node, attempt, outcome)
            outcome.details.update({'job': job_name, 'attempt': attempt,
                                    'artifacts': state.store.uri(state.store.node_key(node.id, attempt))})
            for key, value in (('startedAt', observation.started_at), ('finishedAt', observation.finished_at)):
                if value:
                    outcome.details[key] = value
            state.engine.complete(node.id, outcome)
            phase: metrics.FinishedPhase = 'Failed' if outcome.infrastructure else \
                'Buggy' if outcome.buggy else 'Succeeded'
            metrics.node_finished(node.stage, node.action, phase, outcome.duration_seconds,
                                  namespace=run['metadata']['namespace'], run=name)
            if outcome.duration_seconds and state.spec.resources.gpus:
                metrics.gpu_seconds(run['metadata']['namespace'], outcome.duration_seconds * state.spec.resources.gpus)
            step.finished.append(node)
            step.views.pop(node.id, None)
            step.changed = True

    def _enrich(self, state: RunState, node: Node, attempt: int, outcome: Outcome) -> Outcome:
        """Complete an outcome from the attempt's uploaded result: full metrics (best values), plots.

        A pod whose termination message was lost (its completed Job's pod is gone) is judged from its
        uploaded result.json instead, when there is one.
        """
        lost = outcome.infrastructure and 'termination message is lost' in (outcome.reason or '')
        if outcome.infrastructure and not lost:
            return outcome
        store = state.store
        try:
            result = store.get_json(store.node_key(node.id, attempt, 'result.json'))
        except (StorageError, ValueError):
            result = None
        if not isinstance(result, dict):
            return outcome
        if lost:
            report = {'status': result.get('status'), 'buggy': result.get('buggy'),
                      'buggyReason': result.get('buggy_reason'), 'durationSeconds': result.get('duration_seconds'),
                      'codeHash': result.get('code_hash'), 'metrics': None}
            outcome = outcomes.outcome_from_report(report)
        metrics = (result.get('metrics') or {}).get('datasets') if not outcome.buggy else None
        if isinstance(metrics, dict) and metrics:
            outcome.metrics = {dataset: {metric: {k: v for k, v in value.items() if k != 'curve'}
                                         for metric, value in per.items()} for dataset, per in metrics.items()}
        if isinstance(result.get('plots'), list):
            outcome.details['plots'] = [str(p) for p in result['plots']][:statuses.MAX_PLOTS]
        for key in ('exit_code', 'overhead_seconds', 'stdout_bytes', 'stderr_bytes', 'max_rss_bytes', 'cpu_seconds'):
            if key in result:
                outcome.details[key] = result[key]
        return outcome

    # -- new work ----------------------------------------------------------------------------------------

    def _fill(self, state: RunState, step: Pass, now: datetime.datetime) -> list[Node]:
        """Start nodes while slots are free: pending ones first, then whatever the engine plans."""
        if state.spec.suspend:
            return []
        engine = state.engine
        elapsed = (now - persistence.parse_time(state.start_time)).total_seconds()
        running = sum(1 for n in state.journal.nodes.values() if n.status == 'running')
        launches: list[Node] = []
        while running < state.spec.search.parallelism:
            self._judge(state, step)
            node = engine.next_pending()
            if node is None:
                plan = engine.plan(elapsed)
                if plan is None:
                    if state.agent is not None and engine.awaiting_judgement() is not None:
                        continue  # judged at the top of the loop
                    break
                try:
                    proposal = None if plan.config is not None else self._propose(state, plan)
                except AgentStopped as exc:
                    # No new LLM work: the plan is dropped, nothing new starts, running nodes finish.
                    self._agent_stopped(state, step, str(exc))
                    engine.release(plan)
                    engine.stop(str(exc))
                    break
                node = engine.commit(plan, proposal)
                if state.agent is not None:
                    state.agent.committed(plan, node)
                step.changed = True
                if node is None:
                    continue
            node.code_hash = state.template.code_for(node.config, state.store).hash
            engine.start(node.id)
            step.changed = True
            launches.append(node)
            running += 1
        return launches

    def _propose(self, state: RunState, plan: Plan) -> Proposal | None:
        if state.agent is not None:
            return state.agent.propose(plan, state.journal)
        return state.proposer.propose(plan, state.journal)

    def _judge(self, state: RunState, step: Pass) -> None:
        """The LLM's judgements the engine waits for: a stage's best; whether a stage met its goal early."""
        agent, engine = state.agent, state.engine
        if agent is None:
            return
        try:
            record = engine.awaiting_judgement()
            if record is not None:
                engine.judge(record.name, *agent.select_best(engine, record))
                step.changed = True
            stage = engine.current_stage()
            if stage is None or stage.name not in ('tuning', 'research') or stage.goal_met:
                return
            finished = [n for n in engine.journal.in_stage(stage.name) if n.outcome is not None]
            # Asked once per new result, and only while the budget still has nodes the verdict could save.
            if (len(finished) >= 2 and agent.goal_checked.get(stage.name) != len(finished)
                    and len(finished) < state.spec.stage(stage.name).max_nodes):
                agent.goal_checked[stage.name] = len(finished)
                reason = agent.stage_complete(engine, stage)
                if reason:
                    engine.goal_met(stage.name, reason)
                    step.changed = True
        except AgentStopped as exc:
            self._agent_stopped(state, step, str(exc))
            engine.stop(str(exc))
            pending = engine.awaiting_judgement()
            if pending is not None:
                engine.judge(pending.name, '', f"not judged: {exc}")

    @staticmethod
    def _agent_stopped(state: RunState, step: Pass, reason: str) -> None:
        log.warning("run %s: no new LLM work: %s", state.store.run_prefix, reason)
        state.llm_stopped = reason
        step.changed = True

    def _materialise(self, run: Mapping[str, Any], state: RunState, step: Pass, launches: list[Node]) -> None:
        """Create what the (saved) journal implies and the API lacks: ExperimentNodes, then Jobs."""
        meta = run['metadata']
        namespace, name = meta['namespace'], meta['name']
        owner = manifests.run_owner(name, meta['uid'])
        for node in state.journal.nodes.values():
            node_name = naming.node_name(name, node.id)
            if node_name in state.node_uids:
                continue
            code = state.template.code_for(node.config, state.store)
            created = self.kube.create(manifests.experiment_node(name, namespace, owner, state.spec, node,
                                                                 code.hash, code.uri))
            state.node_uids[node_name] = created['metadata']['uid']
            state.written.setdefault(node_name, dict(created.get('status') or {}))
        launched = {n.id for n in launches}
        for node in state.journal.nodes.values():
            if node.status != 'running':
                continue
            job_name = naming.job_name(name, node.id, node.attempts)
            if job_name in step.jobs:
                continue
            view = step.views.get(node.id)
            if node.id not in launched and view is not None and view.observation is not None \
                    and view.observation.state != 'missing':
                continue
            job = self._node_job(run, state, node)
            created = self.kube.create(job)
            self._reacted(step)
            step.jobs[job_name] = created
            step.views[node.id] = statuses.NodeView(
                job_name=job_name, observation=outcomes.Observation('pending', f"Job {job_name} created"),
                artifacts_uri=state.store.uri(state.store.node_key(node.id, node.attempts)))

    def _reacted(self, step: Pass) -> None:
        """Reaction latency: from the latest node finish this pass folded to the first Job it creates."""
        if step.reacted or not step.finished:
            return
        step.reacted = True
        finishes = [n.outcome.details.get('finishedAt') for n in step.finished if n.outcome is not None]
        stamps = [datetime.datetime.fromisoformat(str(f).replace('Z', '+00:00')) for f in finishes if f]
        if stamps:
            metrics.reaction_latency(max(0.0, (utcnow() - max(stamps)).total_seconds()))

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

    # -- writeup and review --------------------------------------------------------------------------

    def _publish(self, run: Mapping[str, Any], state: RunState, step: Pass) -> None:
        meta = run['metadata']
        namespace, name = meta['namespace'], meta['name']
        store, seconds = state.store, self.settings.presign_seconds
        if state.writeup.phase not in ('waiting', 'running') and state.review.phase not in ('waiting', 'running'):
            return
        if not state.records:
            records.write_records(run, state.spec, state.journal, state.template.root, state.store)
            state.records = True
            state.save()
        records_url = store.presign_get(store.run_key('records.tar.gz'), seconds)
        owner = manifests.run_owner(name, meta['uid'])
        if state.writeup.phase in ('waiting', 'running'):
            urls = {'paper.pdf': store.presign_put(store.run_key('paper/paper.pdf'), seconds),
                    'paper.tar.gz': store.presign_put(store.run_key('paper/paper.tar.gz'), seconds)}
            state.writeup = self._step(run, state, step, 'writeup', state.writeup, lambda: manifests.publish_job(
                name, namespace, owner, state.spec, 'writeup', self.settings, records_url, urls),
                store.uri(store.run_key('paper/paper.pdf')))
        if state.writeup.phase == 'succeeded' and state.review.phase in ('waiting', 'running'):
            urls = {'review.json': store.presign_put(store.run_key('review.json'), seconds)}
            paper = store.presign_get(store.run_key('paper/paper.tar.gz'), seconds)
            state.review = self._step(run, state, step, 'review', state.review, lambda: manifests.publish_job(
                name, namespace, owner, state.spec, 'review', self.settings, records_url, urls,
                ['--paper-url', paper, '--reviewers', str(state.spec.reviewers)]),
                store.uri(store.run_key('review.json')))

    def _step(self, run: Mapping[str, Any], state: RunState, step: Pass, role: str, current: statuses.Step,
              build: Callable[[], dict[str, Any]], product: str) -> statuses.Step:
        job_name = naming.stage_job_name(run['metadata']['name'], role)
        job = step.jobs.get(job_name)
        if job is None:
            self.kube.create(build())
            updated = statuses.Step(phase='running', message=f"Job {job_name} created")
            self.kube.event(run, 'Normal', 'WriteupStarted' if role == 'writeup' else 'ReviewStarted',
                            f"{role} Job {job_name} started")
        else:
            observation = outcomes.observe(job, step.pods.get(job_name, []))
            ok, report, message = outcomes.publish_result(observation)
            if observation.state != 'finished':
                if observation.stalled:
                    step.stalled.append(f"{job_name}: {observation.stalled}")
                updated = statuses.Step(phase='running', message=message)
            elif ok:
                overall = report.get('overall')
                decision = report.get('decision')
                updated = statuses.Step(phase='succeeded', message=message, uri=product,
                                        decision=str(decision) if decision else None,
                                        overall=float(overall) if isinstance(overall, (int, float)) else None)
                self.kube.event(run, 'Normal', 'PaperWritten' if role == 'writeup' else 'PaperReviewed',
                                f"{role} done: {message}")
            else:
                updated = statuses.Step(phase='failed', message=f"{role} failed: {message}")
                self.kube.event(run, 'Warning', 'WriteupFailed' if role == 'writeup' else 'ReviewFailed',
                                updated.message)
        if updated.phase != current.phase or updated.uri != current.uri:
            self._save_state_with(state, role, updated)
        return updated

    def _save_state_with(self, state: RunState, role: str, step: statuses.Step) -> None:
        if role == 'writeup':
            state.writeup = step
        else:
            state.review = step
        state.save()

    # -- status and events -------------------------------------------------------------------------------

    def _write_node_statuses(self, run: Mapping[str, Any], state: RunState, step: Pass, generation: int,
                             now: datetime.datetime) -> None:
        meta = run['metadata']
        namespace, name = meta['namespace'], meta['name']
        for node in state.journal.nodes.values():
            node_name = naming.node_name(name, node.id)
            previous = state.written.get(node_name) or dict(step.nodes.get(node_name, {}).get('status') or {})
            view = step.views.get(node.id) or finished_view(node, naming.job_name(name, node.id, node.attempts))
            desired = statuses.node_status(node, view, previous, generation, persistence.rfc3339(now), state.spec.suspend)
            if _same(desired, previous):
                continue
            # Keys that vanished must be removed, hence null for them in the merge patch.
            patch: dict[str, Any] = {**{k: None for k in previous if k not in desired}, **desired}
            try:
                self.kube.patch_status(naming.API_VERSION, naming.NODES, namespace, node_name, patch)
            except ApiError as err:
                if err.status != 404:
                    raise
                # Deleted by hand: the next pass creates it again (the journal still has the node).
                log.warning("ExperimentNode %s/%s vanished; it will be created again", namespace, node_name)
                state.node_uids.pop(node_name, None)
                state.written.pop(node_name, None)
                continue
            state.written[node_name] = desired

    def _post_events(self, run: Mapping[str, Any], state: RunState, step: Pass) -> None:
        metric = state.spec.objective.metric
        for node in step.finished:
            node_name = naming.node_name(run['metadata']['name'], node.id)
            outcome = node.outcome
            if node.status == 'succeeded':
                value = f"{node.metric:.6g}" if node.metric is not None else "?"
                self.kube.event(run, 'Normal', 'NodeSucceeded', f"{node_name} ({node.action}) succeeded: {metric}={value}")
            elif node.status == 'buggy':
                self.kube.event(run, 'Warning', 'NodeBuggy', f"{node_name} ({node.action}) is buggy: "
                                f"{outcome.reason if outcome else ''}")
            elif node.status == 'failed':
                self.kube.event(run, 'Warning', 'NodeFailed', f"{node_name} failed for infrastructure reasons: "
                                f"{outcome.reason if outcome else ''}")
        for event in state.journal.events[state.events_seen:]:
            if event.kind in RUN_EVENTS:
                kind, reason = RUN_EVENTS[event.kind]
                self.kube.event(run, kind, reason, event.message)
        state.events_seen = len(state.journal.events)

    def _write_run_status(self, run: Mapping[str, Any], view: statuses.RunView, previous: Mapping[str, Any],
                          generation: int, now: datetime.datetime) -> None:
        meta = run['metadata']
        desired = statuses.run_status(view, meta['name'], previous, generation, persistence.rfc3339(now))
        if _same(desired, previous):
            return
        if statuses.run_phase(view)[0] != previous.get('phase'):
            self.kube.event(run, 'Warning' if desired['phase'] == 'Failed' else 'Normal', f"Phase{desired['phase']}",
                            f"phase {previous.get('phase') or '-'} -> {desired['phase']}: {desired.get('message', '')}")
        patch: dict[str, Any] = {**{k: None for k in previous if k not in desired}, **desired}
        self.kube.patch_status(naming.API_VERSION, naming.RUNS, meta['namespace'], meta['name'], patch)

    def _stalled(self, run: Mapping[str, Any], previous: Mapping[str, Any], generation: int, why: str,
                 spec: RunSpec | None = None) -> float:
        """Report a run that cannot start or go on (status Pending with a Stalled condition)."""
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

    def report_error(self, run: Mapping[str, Any], error: BaseException) -> None:
        """A pass failed unexpectedly: say so in the run's Stalled condition (the next pass retries)."""
        previous = run.get('status') or {}
        generation = int(run['metadata'].get('generation') or 0)
        now = persistence.rfc3339(self.clock())
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


def finished_view(node: Node, job_name: str) -> statuses.NodeView:
    """What a node's status shows when this pass did not look at its Job (it finished before)."""
    details = node.outcome.details if node.outcome is not None else {}
    if not node.attempts:
        return statuses.NodeView()
    return statuses.NodeView(job_name=str(details.get('job') or job_name),
                             artifacts_uri=details.get('artifacts'), plots=tuple(details.get('plots') or ()),
                             started_at=details.get('startedAt'), finished_at=details.get('finishedAt'))


def adopted_outcome(indexed: Mapping[str, Any] | None, attempt: int) -> Outcome | None:
    """The outcome an ExperimentNode's status records for ``attempt``, if it records one (the API wins)."""
    status = (indexed or {}).get('status') or {}
    phase = status.get('phase')
    if phase not in ('Succeeded', 'Buggy', 'Failed') or status.get('attempts') != attempt:
        return None
    metrics = {dataset: {name: {'final': value} for name, value in per.items()}
               for dataset, per in (status.get('metrics') or {}).items()}
    reason = status.get('buggyReason') or status.get('message')
    if phase == 'Failed':
        return Outcome(buggy=False, infrastructure=True, reason=reason, details={'adopted': True})
    return Outcome(buggy=phase == 'Buggy', reason=reason if phase == 'Buggy' else None,
                   metrics=metrics if phase == 'Succeeded' else {}, duration_seconds=status.get('durationSeconds'),
                   details={'adopted': True})


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
    """Whether writing ``desired`` over ``previous`` would change nothing."""
    return json.dumps(_canonical(desired), sort_keys=True, default=str) == \
        json.dumps(_canonical(previous), sort_keys=True, default=str)
