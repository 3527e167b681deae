"""The operator's Prometheus metrics: one dedicated registry and the small typed calls that feed it.

The operator calls these functions at the moments it already knows about (a run's phase seen, a node
folded, a Job created, an API call failed); ``serve`` exposes the registry on ``/metrics`` for the
chart's Service and ServiceMonitor. Dashboards and alerts in ``charts/kubescientist`` query exactly these
names, and the tests run every one of those queries against a real Prometheus scraping this registry.

Why a dedicated ``CollectorRegistry`` rather than prometheus-client's global one: imported libraries
cannot leak series into the operator's exposition, and tests build a fresh ``Metrics`` each, so no
state bleeds between them.

Conventions (prometheus.io, "Metric and label naming"): the ``kubescientist_`` prefix, base units in the
name (``_seconds``), ``_total`` on counters, ``_ratio`` for 0..1 fractions. Cardinality stays bounded:
labels are small enums (phase, stage, action, role, verb, resource, code), models (a handful per
installation), and the (namespace, run) of *live* runs, whose series ``run_forgotten`` removes.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Literal
from wsgiref.simple_server import WSGIServer

from prometheus_client import (CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector,
                               disable_created_metrics, generate_latest, start_http_server)

from kubescientist import __version__

RunPhase = Literal['Pending', 'Searching', 'WritingUp', 'Reviewing', 'Succeeded', 'Failed', 'Suspended']
RUN_PHASES: tuple[RunPhase, ...] = ('Pending', 'Searching', 'WritingUp', 'Reviewing', 'Succeeded', 'Failed',
                                    'Suspended')
"""The ResearchRun phases (crds/researchrun.yaml status.phase), each always exported, zeros included."""
CAMPAIGN_RUN_PHASES = ('running', 'succeeded', 'failed')
"""The phases of status.runs of a ResearchCampaign, each exported per campaign."""
NodePhase = Literal['Pending', 'Running', 'Succeeded', 'Buggy', 'Failed']
FinishedPhase = Literal['Succeeded', 'Buggy', 'Failed']
"""How a node ended: Buggy is the program's fault (expected in a search), Failed is the infrastructure's."""
Budget = Literal['nodes', 'wallclock', 'tokens', 'cost']
"""spec.budget.maxTotalNodes, spec.budget.wallClockSeconds, spec.llm.maxTokens, spec.llm.maxCostUSD."""

PORT_ENV = 'KUBESCIENTIST_METRICS_PORT'
"""Port of ``/metrics`` (set by the Helm chart); unset or 0: not served."""
ADDRESS_ENV = 'KUBESCIENTIST_METRICS_ADDRESS'
"""Address to bind (default 0.0.0.0: the Service and Prometheus reach the pod by its IP)."""

# The text format would carry a `<name>_created` gauge beside every counter and histogram: as many series
# again, which nothing here queries (Prometheus 2.x ignores them). The switch is process-wide, and this
# module is only imported by the operator's own process and its tests.
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped upstream

NODE_DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0,
                         14400.0, 28800.0, 86400.0)
"""A node runs from seconds (a crash at import) to a day (a long GPU training); the deadline caps it."""
REACTION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
"""Node finished -> next pod created: sub-second when the operator is nudged, ~resync period when not."""
RECONCILE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""One reconciliation pass: API lists and object-storage writes, usually well under a second."""


@dataclasses.dataclass
class _RunSeries:
    """The per-run series that exist now, so that ``run_forgotten`` removes exactly those."""

    phase: RunPhase | None = None
    node_phases: set[str] = dataclasses.field(default_factory=set)
    best: str | None = None
    """The objective metric's name in the best-objective series' ``metric`` label."""
    budgets: set[str] = dataclasses.field(default_factory=set)
    queued: bool = False
    """Whether the run goes through Kueue (its waiting-for-admission series exists)."""


class Metrics:
    """The operator's metrics on their own registry; every method is thread-safe (passes run in threads)."""

    def __init__(self, registry: CollectorRegistry | None = None, *, clock: Callable[[], float] = time.time,
                 process: bool = True) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._clock = clock  # injectable: tests and the e2e simulation age a run's last progress
        self._lock = threading.Lock()
        self._runs: dict[tuple[str, str], _RunSeries] = {}
        r = self.registry
        if process:
            # Memory and CPU of the operator itself (kopf holds every watched object in memory).
            ProcessCollector(registry=r)
        self.build_info = Gauge('kubescientist_build_info', "Always 1; the operator's version as a label.",
                                ['version'], registry=r)
        self.build_info.labels(__version__).set(1)
        self.runs = Gauge('kubescientist_runs', "ResearchRuns served by this operator, by phase.", ['phase'],
                          registry=r)
        for phase in RUN_PHASES:
            self.runs.labels(phase).set(0)
        self.run_phase = Gauge('kubescientist_run_phase', "1 for the phase each live ResearchRun is in.",
                               ['namespace', 'run', 'phase'], registry=r)
        self.run_last_progress = Gauge(
            'kubescientist_run_last_progress_timestamp_seconds',
            "When each live run last made progress (phase change or node finished), Unix seconds; "
            "reset to the operator's start for runs found at start.", ['namespace', 'run'], registry=r)
        self.run_nodes = Gauge('kubescientist_run_nodes', "ExperimentNodes of each live run, by phase.",
                               ['namespace', 'run', 'phase'], registry=r)
        self.run_waiting = Gauge('kubescientist_run_nodes_waiting_for_admission',
                                 "Node Jobs of each live run with a queueName that Kueue has not admitted yet.",
                                 ['namespace', 'run'], registry=r)
        self.run_best = Gauge('kubescientist_run_best_objective',
                              "The objective value of each live run's best node (label metric: its name).",
                              ['namespace', 'run', 'metric'], registry=r)
        self.run_budget = Gauge('kubescientist_run_budget_usage_ratio',
                                "Fraction of each live run's budget spent (1 = cap reached).",
                                ['namespace', 'run', 'budget'], registry=r)
        self.nodes_finished = Counter('kubescientist_nodes_finished_total',
                                      "ExperimentNodes finished, by stage, action and outcome phase.",
                                      ['stage', 'action', 'phase'], registry=r)
        self.node_duration = Histogram('kubescientist_node_duration_seconds',
                                       "Run time of finished nodes' programs, by stage and outcome phase.",
                                       ['stage', 'phase'], buckets=NODE_DURATION_BUCKETS, registry=r)
        self.reaction = Histogram('kubescientist_reaction_latency_seconds',
                                  "From a node finishing to the next node's Job being created.",
                                  buckets=REACTION_BUCKETS, registry=r)
        self.gpu = Counter('kubescientist_gpu_seconds_total',
                           "GPU-seconds held by finished node pods (run time x GPUs requested), by namespace.",
                           ['namespace'], registry=r)
        self.llm_tokens = Counter('kubescientist_llm_tokens_total', "LLM tokens used, by role, model and type.",
                                  ['role', 'model', 'type'], registry=r)
        self.llm_cost = Counter('kubescientist_llm_cost_usd_total',
                                "LLM cost in US dollars as far as prices are known, by role and model.",
                                ['role', 'model'], registry=r)
        self.llm_requests = Counter('kubescientist_llm_requests_total', "LLM requests made, by role and model.",
                                    ['role', 'model'], registry=r)
        self.api_errors = Counter('kubescientist_kubernetes_api_errors_total',
                                  "Failed Kubernetes API calls of the operator, by verb, resource and HTTP code "
                                  "(0: the server was not reached).", ['verb', 'resource', 'code'], registry=r)
        self.api_writes = Counter('kubescientist_kubernetes_api_writes_total',
                                  "Kubernetes API writes the operator made (create, patch, delete), by verb and "
                                  "resource.", ['verb', 'resource'], registry=r)
        self.campaign_runs = Gauge('kubescientist_campaign_runs',
                                   "ResearchRuns of each live ResearchCampaign, by phase (running, succeeded, failed).",
                                   ['namespace', 'campaign', 'phase'], registry=r)
        self.campaign_tokens = Gauge('kubescientist_campaign_llm_tokens',
                                     "LLM tokens used by each live campaign (its runs and its ideation).",
                                     ['namespace', 'campaign'], registry=r)
        self.campaign_cost = Gauge('kubescientist_campaign_llm_cost_usd',
                                   "Estimated LLM US dollars spent by each live campaign (runs and ideation).",
                                   ['namespace', 'campaign'], registry=r)
        self.campaign_gpu = Gauge('kubescientist_campaign_gpu_seconds',
                                  "GPU-seconds held by the nodes of each live campaign's runs.",
                                  ['namespace', 'campaign'], registry=r)
        self._campaigns: set[tuple[str, str]] = set()
        self.reconcile = Histogram('kubescientist_reconcile_duration_seconds',
                                   "Duration of reconciliation passes, by result (ok or error).", ['result'],
                                   buckets=RECONCILE_BUCKETS, registry=r)

    # -- runs --------------------------------------------------------------------------------------------

    def _series(self, namespace: str, run: str) -> _RunSeries:
        key = (namespace, run)
        series = self._runs.get(key)
        if series is None:
            series = self._runs[key] = _RunSeries()
            # A run found now (created, or there before an operator restart) starts its progress clock now,
            # so a "stuck run" alert needs a whole threshold of silence after a restart, never less.
            self.run_last_progress.labels(namespace, run).set(self._clock())
        return series

    def _count_phases(self) -> None:
        counts = dict.fromkeys(RUN_PHASES, 0)
        for series in self._runs.values():
            if series.phase is not None:
                counts[series.phase] += 1
        for phase, count in counts.items():
            self.runs.labels(phase).set(count)

    def run_phase_changed(self, namespace: str, run: str, phase: RunPhase) -> None:
        """The run is in ``phase``. Idempotent: call it after every pass, or only on changes."""
        with self._lock:
            series = self._series(namespace, run)
            if series.phase == phase:
                return
            if series.phase is not None:
                self.run_phase.remove(namespace, run, series.phase)
                self.run_last_progress.labels(namespace, run).set(self._clock())
            series.phase = phase
            self.run_phase.labels(namespace, run, phase).set(1)
            self._count_phases()

    def run_nodes_counted(self, namespace: str, run: str, counts: Mapping[str, int]) -> None:
        """The run's node counts by phase (status.nodes: pending, running, succeeded, buggy, failed)."""
        with self._lock:
            series = self._series(namespace, run)
            for key, value in counts.items():
                if key == 'total':
                    continue
                phase = key[:1].upper() + key[1:]
                self.run_nodes.labels(namespace, run, phase).set(value)
                series.node_phases.add(phase)

    def nodes_waiting(self, namespace: str, run: str, count: int) -> None:
        """How many of a queued run's node Jobs wait for Kueue's admission (status.nodes.waitingForAdmission)."""
        with self._lock:
            self._series(namespace, run).queued = True
            self.run_waiting.labels(namespace, run).set(count)

    def best_metric(self, namespace: str, run: str, metric: str, value: float) -> None:
        """The objective value of the run's best node (``metric``: spec.objective.metric)."""
        with self._lock:
            series = self._series(namespace, run)
            if series.best is not None and series.best != metric:
                self.run_best.remove(namespace, run, series.best)
            series.best = metric
            self.run_best.labels(namespace, run, metric).set(value)

    def budget_usage(self, namespace: str, run: str, budget: Budget, used: float, limit: float | None) -> None:
        """How much of one budget the run spent; ``limit`` None or <= 0 means no such cap (no series)."""
        with self._lock:
            series = self._series(namespace, run)
            if limit is None or limit <= 0:
                if budget in series.budgets:
                    self.run_budget.remove(namespace, run, budget)
                    series.budgets.discard(budget)
                return
            self.run_budget.labels(namespace, run, budget).set(max(used, 0.0) / limit)
            series.budgets.add(budget)

    def run_forgotten(self, namespace: str, run: str) -> None:
        """The run was deleted: drop its series (the per-run label stays bounded by live runs)."""
        with self._lock:
            series = self._runs.pop((namespace, run), None)
            if series is None:
                return
            if series.phase is not None:
                self.run_phase.remove(namespace, run, series.phase)
            for phase in series.node_phases:
                self.run_nodes.remove(namespace, run, phase)
            if series.best is not None:
                self.run_best.remove(namespace, run, series.best)
            for budget in series.budgets:
                self.run_budget.remove(namespace, run, budget)
            if series.queued:
                self.run_waiting.remove(namespace, run)
            self.run_last_progress.remove(namespace, run)
            self._count_phases()

    # -- campaigns ---------------------------------------------------------------------------------------

    def campaign_observed(self, namespace: str, campaign: str, runs: Mapping[str, int], tokens: int, usd: float,
                          gpu_seconds: float) -> None:
        """A campaign's runs by phase and the budget it used, as its last pass saw them."""
        with self._lock:
            for phase in CAMPAIGN_RUN_PHASES:
                self.campaign_runs.labels(namespace, campaign, phase).set(int(runs.get(phase, 0)))
            self.campaign_tokens.labels(namespace, campaign).set(tokens)
            self.campaign_cost.labels(namespace, campaign).set(usd)
            self.campaign_gpu.labels(namespace, campaign).set(gpu_seconds)
            self._campaigns.add((namespace, campaign))

    def campaign_forgotten(self, namespace: str, campaign: str) -> None:
        """The campaign was deleted: drop its series."""
        with self._lock:
            if (namespace, campaign) not in self._campaigns:
                return
            self._campaigns.discard((namespace, campaign))
            for phase in CAMPAIGN_RUN_PHASES:
                self.campaign_runs.remove(namespace, campaign, phase)
            for gauge in (self.campaign_tokens, self.campaign_cost, self.campaign_gpu):
                gauge.remove(namespace, campaign)

    # -- nodes -------------------------------------------------------------------------------------------

    def node_finished(self, stage: str, action: str, phase: FinishedPhase, duration_seconds: float | None, *,
                      namespace: str | None = None, run: str | None = None) -> None:
        """A node's outcome was folded. With (namespace, run), it also counts as that run's progress."""
        self.nodes_finished.labels(stage, action, phase).inc()
        if duration_seconds is not None and duration_seconds >= 0:
            self.node_duration.labels(stage, phase).observe(duration_seconds)
        if namespace is not None and run is not None:
            with self._lock:
                self._series(namespace, run)
                self.run_last_progress.labels(namespace, run).set(self._clock())

    def reaction_latency(self, seconds: float) -> None:
        """Seconds from a node finishing (its pod's end) to the next node's Job being created."""
        if seconds >= 0:
            self.reaction.observe(seconds)

    def gpu_seconds(self, namespace: str, seconds: float) -> None:
        """GPU-seconds a finished node held: its run time times the GPUs it requested."""
        if seconds > 0:
            self.gpu.labels(namespace).inc(seconds)

    # -- LLM, API, passes -------------------------------------------------------------------------------

    def llm_usage(self, role: str, model: str, prompt_tokens: int, completion_tokens: int,
                  usd: float | None) -> None:
        """One LLM request's usage; ``usd`` None when the model has no known price (tokens still count)."""
        self.llm_requests.labels(role, model).inc()
        self.llm_tokens.labels(role, model, 'prompt').inc(max(prompt_tokens, 0))
        self.llm_tokens.labels(role, model, 'completion').inc(max(completion_tokens, 0))
        if usd is not None and usd > 0:
            self.llm_cost.labels(role, model).inc(usd)
        else:
            self.llm_cost.labels(role, model)  # the series exists (at 0) so cost panels show the model

    def api_error(self, verb: str, resource: str, code: int = 0) -> None:
        """A Kubernetes API call failed (``code``: HTTP status, 0 when the server was not reached)."""
        self.api_errors.labels(verb, resource, str(code)).inc()

    def api_write(self, verb: str, resource: str) -> None:
        """The operator asked the API to change something (counted whether or not it succeeded)."""
        self.api_writes.labels(verb, resource).inc()

    def reconcile_finished(self, seconds: float, ok: bool) -> None:
        """One reconciliation pass ended, well or with an exception."""
        self.reconcile.labels('ok' if ok else 'error').observe(max(seconds, 0.0))

    # -- exposition --------------------------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The text exposition format, as ``/metrics`` serves it."""
        return generate_latest(self.registry)

    def serve(self, port: int, address: str = '0.0.0.0') -> WSGIServer:
        """Serve ``/metrics`` from a daemon thread; returns the server (``shutdown()`` stops it)."""
        server, _ = start_http_server(port, address, registry=self.registry)
        return server


METRICS = Metrics()
"""The operator's metrics. The module-level functions below feed this instance."""

run_phase_changed = METRICS.run_phase_changed
run_nodes_counted = METRICS.run_nodes_counted
nodes_waiting = METRICS.nodes_waiting
run_forgotten = METRICS.run_forgotten
best_metric = METRICS.best_metric
budget_usage = METRICS.budget_usage
node_finished = METRICS.node_finished
reaction_latency = METRICS.reaction_latency
gpu_seconds = METRICS.gpu_seconds
llm_usage = METRICS.llm_usage
api_error = METRICS.api_error
api_write = METRICS.api_write
reconcile_finished = METRICS.reconcile_finished
campaign_observed = METRICS.campaign_observed
campaign_forgotten = METRICS.campaign_forgotten


def serve_from_env(env: Mapping[str, str] | None = None, metrics: Metrics = METRICS) -> WSGIServer | None:
    """Serve ``/metrics`` on ``$KUBESCIENTIST_METRICS_PORT`` (the chart sets it); None when unset or 0."""
    env = os.environ if env is None else env
    raw = env.get(PORT_ENV, '').strip()
    if not raw or int(raw) == 0:
        return None
    return metrics.serve(int(raw), env.get(ADDRESS_ENV, '').strip() or '0.0.0.0')
