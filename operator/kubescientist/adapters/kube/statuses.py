"""The status of ExperimentNodes and ResearchRuns, computed from the journal and what the pods showed.

Pure functions. A node's status mirrors its journal entry (plus where its pod is); a run's status is
bounded however large the tree: counts, the best node, the stage, conditions, costs and a message; the
tree itself lives in the ExperimentNodes and the journal in object storage. Conditions follow
metav1.Condition: ``lastTransitionTime`` changes only when ``status`` does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from kubescientist.adapters.kube import naming
from kubescientist.adapters.kube.admission import Waiting
from kubescientist.adapters.kube.outcomes import Observation
from kubescientist.core.engine import Engine
from kubescientist.core.journal import Journal, Node
from kubescientist.core.objective import sort_key
from kubescientist.core.spec import RunSpec
from kubescientist.adapters.metrics import RunPhase
from kubescientist.core.summary import node_counts, stage_seed_stats

MAX_DATASETS = 64
MAX_METRICS = 64
MAX_PLOTS = 32
MAX_REASON = 4000
MAX_MESSAGE = 4096

NODE_PHASES = {'pending': 'Pending', 'running': 'Running', 'succeeded': 'Succeeded', 'buggy': 'Buggy',
               'failed': 'Failed'}


def _clip(text: str | None, limit: int) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 3] + '...'


def set_condition(previous: Sequence[Mapping[str, Any]], kind: str, status: bool, reason: str, message: str,
                  generation: int, now: str) -> dict[str, Any]:
    """One condition, keeping the previous ``lastTransitionTime`` when ``status`` did not change."""
    value = 'True' if status else 'False'
    before = next((c for c in previous if c.get('type') == kind), None)
    since = before['lastTransitionTime'] if before is not None and before.get('status') == value else now
    return {'type': kind, 'status': value, 'reason': reason, 'message': _clip(message, MAX_MESSAGE) or '',
            'observedGeneration': generation, 'lastTransitionTime': since}


@dataclasses.dataclass(frozen=True)
class NodeView:
    """What the operator knows of a node beyond the journal."""

    job_name: str | None = None
    """The Job of the node's current attempt."""
    observation: Observation | None = None
    """What its Job and pod showed in this pass."""
    artifacts_uri: str | None = None
    """The folder of the current attempt's outputs."""
    plots: tuple[str, ...] = ()
    """Plots the node wrote (relative to artifacts_uri)."""
    started_at: str | None = None
    finished_at: str | None = None


def node_status(node: Node, view: NodeView, previous: Mapping[str, Any], generation: int, now: str,
                suspended: bool = False) -> dict[str, Any]:
    """The ExperimentNode status of an engine node."""
    phase = NODE_PHASES[node.status]
    observation = view.observation
    outcome = node.outcome
    if node.status == 'running' and (observation is None or observation.state != 'running'):
        phase = 'Pending'
    if node.status == 'pending':
        if node.attempts and outcome is None:
            message = "waiting to be started again after an infrastructure failure"
        else:
            message = "suspended: waiting for spec.suspend to be cleared" if suspended else "waiting for a free slot"
    elif node.status == 'running':
        message = observation.message if observation is not None else "starting"
    elif node.status == 'succeeded':
        message = "finished" + (f": objective {node.metric:.6g}" if node.metric is not None else "")
    else:
        message = (outcome.reason if outcome else None) or node.status
    status: dict[str, Any] = {'phase': phase, 'attempts': node.attempts, 'message': _clip(message, MAX_MESSAGE)}
    if view.job_name:
        status['jobName'] = view.job_name
    status['buggy'] = node.status == 'buggy'
    if node.status == 'buggy' and outcome is not None and outcome.reason:
        status['buggyReason'] = _clip(outcome.reason, MAX_REASON)
    if node.metric is not None and node.status == 'succeeded':
        status['metric'] = node.metric
    if outcome is not None and outcome.metrics:
        status['metrics'] = {
            dataset: {name: value['final'] for name, value in list(per.items())[:MAX_METRICS]
                      if isinstance(value.get('final'), (int, float)) and not isinstance(value.get('final'), bool)}
            for dataset, per in list(outcome.metrics.items())[:MAX_DATASETS]}
    if outcome is not None and outcome.duration_seconds is not None:
        status['durationSeconds'] = round(max(outcome.duration_seconds, 0.0), 3)
    started = view.started_at or (observation.started_at if observation is not None else None) or \
        (outcome.details.started_at if outcome else None)
    finished = view.finished_at or (outcome.details.finished_at if outcome else None)
    if started:
        status['startTime'] = started
    if finished and node.status in ('succeeded', 'buggy', 'failed'):
        status['completionTime'] = finished
    if view.artifacts_uri:
        status['artifacts'] = {'uri': view.artifacts_uri, 'stdout': 'stdout.txt', 'stderr': 'stderr.txt',
                               'plots': list(view.plots[:MAX_PLOTS])}
    done = node.status in ('succeeded', 'buggy', 'failed')
    status['conditions'] = [set_condition(previous.get('conditions') or (), 'Ready', done, phase,
                                          "result recorded" if done else message, generation, now)]
    return status


@dataclasses.dataclass(frozen=True)
class Step:
    """How the writeup or the review went."""

    phase: Literal['disabled', 'waiting', 'running', 'succeeded', 'failed'] = 'waiting'
    message: str = ''
    uri: str | None = None
    """Where its product is (paper.pdf, review.json)."""
    decision: str | None = None
    """The review's decision."""
    overall: float | None = None
    """The review's overall score."""
    weaknesses: tuple[str, ...] | None = None
    """The review's first weaknesses (a campaign's feedback to its next round)."""

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
                if v is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, default: Step) -> Step:
        if not data:
            return default
        fields = {k: v for k, v in data.items() if k in {f.name for f in dataclasses.fields(cls)}}
        if fields.get('weaknesses') is not None:
            fields['weaknesses'] = tuple(fields['weaknesses'])
        return cls(**fields)


@dataclasses.dataclass(frozen=True)
class RunView:
    """What the operator knows of a run beyond the journal."""

    spec: RunSpec
    journal: Journal | None
    best: Node | None
    writeup: Step
    review: Step
    start_time: str | None
    stalled: str | None = None
    """Why the run cannot go on without help (image pull failure, a bad template, no storage)."""
    problem: str | None = None
    """A failure that ends the run before or outside the search."""
    llm: Mapping[str, Any] | None = None
    """The run's LLM accounts (``Ledger.to_dict``); None for an offline run."""
    llm_stopped: str | None = None
    """Why no new LLM work starts (a cap reached, the endpoint gone), once that happened."""
    gate: str | None = None
    """The stage gate the run waits at, with its best node and metric (``Engine.gate_message``); None if none."""
    waiting: Waiting = Waiting()
    """The run's nodes whose Jobs wait for admission (Kueue), and why."""


def gate_text(engine: Engine) -> str | None:
    """What the run waits for at a stage gate (spec.gates), or None."""
    record = engine.awaiting_approval()
    return None if record is None else engine.gate_message(record)


def run_phase(view: RunView) -> tuple[RunPhase, str]:
    """The phase and the reason (CamelCase) it is in."""
    journal = view.journal
    if view.problem is not None:
        return 'Failed', 'InvalidSpec'
    if journal is None:
        return 'Pending', 'Starting'
    if journal.phase == 'searching' or journal.unfinished():
        return ('Suspended', 'Suspended') if view.spec.suspend and journal.phase == 'searching' \
            else ('Searching', 'Searching')
    if journal.phase == 'failed':
        return 'Failed', 'SearchFailed'
    for step, (active, failed) in ((view.writeup, ('WritingUp', 'WriteupFailed')),
                                   (view.review, ('Reviewing', 'ReviewFailed'))):
        if step.phase == 'failed':
            return 'Failed', failed
        if step.phase in ('waiting', 'running'):
            return active, active  # type: ignore[return-value]
    return 'Succeeded', 'Succeeded'


def best_node(spec: RunSpec, journal: Journal, engine_best: Node | None) -> dict[str, Any] | None:
    """The run's best node: the engine's choice (seed means) once a stage has ended, else the best so far."""
    if engine_best is not None:
        owner = next((s for s in journal.stages if s.best == engine_best.id), None)
        stats = stage_seed_stats(journal, owner) if owner is not None else None
        node = engine_best
    else:
        good = [n for n in journal.nodes.values() if n.good]
        if not good:
            return None
        node = min(good, key=lambda n: (sort_key(n.metric or 0.0, spec.objective.direction), n.seq))
        stats = None
    out: dict[str, Any] = {'name': node.id, 'stage': node.stage}
    if stats is not None:
        out.update(metric=stats.mean, stderr=stats.stderr, seeds=stats.n)
    elif node.metric is not None:
        out.update(metric=node.metric, seeds=1)
    return out


def run_status(view: RunView, run_name: str, previous: Mapping[str, Any], generation: int, now: str) -> dict[str, Any]:
    """The ResearchRun status."""
    phase, reason = run_phase(view)
    journal = view.journal
    before = previous.get('conditions') or ()
    queued = bool(view.spec.raw.get('queueName'))
    status: dict[str, Any] = {'phase': phase, 'observedGeneration': generation}
    if view.start_time:
        status['startTime'] = view.start_time
    message = view.problem or ''
    if journal is not None:
        counts = node_counts(journal.nodes.values())
        status['nodes'] = {**counts, 'waitingForAdmission': view.waiting.count} if queued else counts
        stage = next((s for s in journal.stages if s.status == 'searching'), None) or next(
            (s for s in reversed(journal.stages) if s.status in ('done', 'failed')), None)
        if stage is not None:
            status['stage'] = stage.name
        best = best_node(view.spec, journal, view.best)
        if best is not None:
            status['bestNode'] = {**best, 'name': naming.node_name(run_name, best['name'])}
        gpu_seconds = sum((n.outcome.duration_seconds or 0.0) for n in journal.nodes.values() if n.outcome)
        total = (view.llm or {}).get('total') or {}
        status['cost'] = {'gpuSeconds': round(gpu_seconds * view.spec.resources.gpus, 3),
                          'promptTokens': int(total.get('promptTokens') or 0),
                          'completionTokens': int(total.get('completionTokens') or 0),
                          'usd': round(float(total.get('usd') or 0.0), 6)}
        if not message:
            message = _run_message(view, phase, counts, best)
    elif view.stalled and not message:
        message = view.stalled
    if view.writeup.uri:
        status['paper'] = {'uri': view.writeup.uri}
    if view.review.uri:
        review: dict[str, Any] = {'uri': view.review.uri}
        if view.review.decision:
            review['decision'] = view.review.decision
        if view.review.overall is not None:
            review['overall'] = view.review.overall
        if view.review.weaknesses:
            review['weaknesses'] = list(view.review.weaknesses)
        status['review'] = review
    if phase in ('Succeeded', 'Failed'):
        status['completionTime'] = previous.get('completionTime') or now
    status['message'] = _clip(message, MAX_MESSAGE)

    def cond(kind: str, value: bool, why: str, text: str = '') -> dict[str, Any]:
        return set_condition(before, kind, value, why, text or message, generation, now)

    searching = phase in ('Searching', 'Suspended', 'Pending')
    search_reason = {'Searching': 'Searching', 'Suspended': 'Suspended', 'Pending': 'Starting'}.get(phase)
    if search_reason is None:
        search_reason = 'SearchFailed' if reason in ('SearchFailed', 'InvalidSpec') else 'SearchComplete'
    search_text = journal.message if journal is not None and journal.phase != 'searching' else message
    status['conditions'] = [
        cond('Ready', phase == 'Succeeded', 'Succeeded' if phase == 'Succeeded' else reason),
        cond('Searching', phase == 'Searching', search_reason, search_text),
        cond('WritingUp', phase == 'WritingUp', _step_reason(view.writeup, 'Writeup'),
             _step_text(view.writeup, 'writeup')),
        cond('Reviewing', phase == 'Reviewing', _step_reason(view.review, 'Review'), _step_text(view.review, 'review')),
        cond('Succeeded', phase == 'Succeeded', 'Succeeded' if phase == 'Succeeded' else
             ('Failed' if phase == 'Failed' else 'InProgress')),
        cond('Failed', phase == 'Failed', reason if phase == 'Failed' else
             ('Succeeded' if phase == 'Succeeded' else 'InProgress')),
        cond('Stalled', view.stalled is not None, 'CannotProceed' if view.stalled else 'AsExpected',
             view.stalled or 'no problem seen'),
    ]
    if view.llm_stopped:
        # Why the search started no new node (a cap, the endpoint): in the condition and the message.
        status['conditions'].append(cond('LLMStopped', True, 'LLMBudgetExceeded' if 'cap reached' in
                                         view.llm_stopped else 'LLMUnavailable', view.llm_stopped))
        if view.llm_stopped not in status['message']:
            status['message'] = _clip(f"{message}; no new LLM work: {view.llm_stopped}", MAX_MESSAGE)
    if view.spec.gates:  # only runs with gates carry the condition
        status['conditions'].append(cond('AwaitingApproval', view.gate is not None,
                                         'StageGate' if view.gate else 'NotWaiting',
                                         view.gate or 'no stage gate is waiting for approval'))
    if queued:  # only runs that go through Kueue carry the condition
        status['conditions'].append(cond('Queued', view.waiting.count > 0,
                                         'WaitingForAdmission' if view.waiting.count else 'NoneWaiting',
                                         queued_text(view.waiting)))
        if view.waiting.count and searching:
            status['message'] = _clip(f"{status['message']}; {queued_text(view.waiting)}", MAX_MESSAGE)
    if view.gate and phase == 'Searching':
        status['message'] = _clip(f"awaiting approval: {view.gate}", MAX_MESSAGE)
    if searching and view.stalled:
        status['message'] = _clip(f"stalled: {view.stalled}", MAX_MESSAGE)
    return status


def queued_text(waiting: Waiting) -> str:
    """What the run's ``Queued`` condition says."""
    if not waiting.count:
        return "no node waits for admission"
    nodes = "1 node waits" if waiting.count == 1 else f"{waiting.count} nodes wait"
    return f"{nodes} for admission (Kueue): {waiting.message}"


def _step_text(step: Step, what: str) -> str:
    if step.phase == 'disabled':
        return f"the {what} is disabled in the spec"
    if step.phase == 'waiting':
        return f"the {what} starts when the previous step has finished"
    return step.message or step.phase


def _step_reason(step: Step, what: str) -> str:
    return {'disabled': 'Disabled', 'waiting': 'NotStarted', 'running': f'{what}Running',
            'succeeded': f'{what}Succeeded', 'failed': f'{what}Failed'}[step.phase]


def _run_message(view: RunView, phase: RunPhase, counts: Mapping[str, int], best: Mapping[str, Any] | None) -> str:
    journal = view.journal
    assert journal is not None
    metric = view.spec.objective.metric
    shown = f"; best {best['name']} {metric}={best['metric']:.6g}" if best and best.get('metric') is not None else ""
    tally = (f"{counts['total']} nodes: {counts['running']} running, {counts['pending']} pending, "
             f"{counts['succeeded']} succeeded, {counts['buggy']} buggy, {counts['failed']} failed")
    if phase in ('Searching', 'Suspended'):
        stage = next((s.name for s in journal.stages if s.status == 'searching'), 'final nodes')
        return f"{phase.lower()} ({stage}): {tally}{shown}"
    if phase == 'WritingUp':
        return f"search complete ({journal.message}); writing the paper"
    if phase == 'Reviewing':
        return f"paper written ({view.writeup.uri}); reviewing it"
    if phase == 'Failed':
        for step in (view.writeup, view.review):
            if step.phase == 'failed':
                return step.message or "a step after the search failed"
        return journal.message or "the search failed"
    review = view.review
    verdict = f"; review: {review.decision} ({review.overall})" if review.decision else ""
    return f"{journal.message}{verdict}"
