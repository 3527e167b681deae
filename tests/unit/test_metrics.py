"""The operator's Prometheus metrics: names, label sets, series life cycle, exposition and serving.

Each test builds its own ``Metrics`` (its own registry), so nothing leaks between tests or into the
module-level instance the operator uses.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kubescientist.adapters import metrics as m


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def fresh(clock: Clock | None = None) -> m.Metrics:
    return m.Metrics(clock=clock or Clock())


def samples(metrics: m.Metrics, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples named ``name`` in the exposition, keyed by their sorted labels."""
    out: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def value(metrics: m.Metrics, name: str, **labels: str) -> float | None:
    return samples(metrics, name).get(tuple(sorted(labels.items())))


def simulate(metrics: m.Metrics) -> None:
    """A small run's worth of updates, touching every metric."""
    metrics.run_phase_changed('ns', 'r1', 'Searching')
    metrics.run_nodes_counted('ns', 'r1', {'total': 3, 'pending': 0, 'running': 1, 'succeeded': 1, 'buggy': 1,
                                           'failed': 0})
    metrics.node_finished('initial', 'draft', 'Succeeded', 12.5, namespace='ns', run='r1')
    metrics.node_finished('initial', 'draft', 'Buggy', 0.7, namespace='ns', run='r1')
    metrics.reaction_latency(0.4)
    metrics.best_metric('ns', 'r1', 'val_r2', 0.93)
    metrics.nodes_waiting('ns', 'r1', 2)
    metrics.gpu_seconds('ns', 25.0)
    metrics.budget_usage('ns', 'r1', 'nodes', 3, 10)
    metrics.llm_usage('code', 'gpt-4o', 1200, 300, 0.006)
    metrics.api_error('create', 'jobs', 409)
    metrics.api_write('post', 'jobs')
    metrics.reconcile_finished(0.12, True)
    metrics.campaign_observed('ns', 'c1', {'running': 1, 'succeeded': 2, 'failed': 0}, 5000, 0.02, 3600.0)


def test_every_metric_name_follows_the_conventions() -> None:
    metrics = fresh()
    simulate(metrics)
    families = {f.name: f for f in text_string_to_metric_families(metrics.exposition().decode())}
    ours = {name: f for name, f in families.items() if name.startswith('kubescientist_')}
    assert set(ours) == {
        'kubescientist_build_info', 'kubescientist_runs', 'kubescientist_run_phase',
        'kubescientist_run_last_progress_timestamp_seconds', 'kubescientist_run_nodes', 'kubescientist_run_nodes_waiting_for_admission',
        'kubescientist_run_best_objective', 'kubescientist_run_budget_usage_ratio', 'kubescientist_nodes_finished',
        'kubescientist_node_duration_seconds', 'kubescientist_reaction_latency_seconds', 'kubescientist_gpu_seconds',
        'kubescientist_llm_tokens', 'kubescientist_llm_cost_usd', 'kubescientist_llm_requests',
        'kubescientist_kubernetes_api_errors', 'kubescientist_kubernetes_api_writes',
        'kubescientist_reconcile_duration_seconds',
        'kubescientist_campaign_runs', 'kubescientist_campaign_llm_tokens', 'kubescientist_campaign_llm_cost_usd',
        'kubescientist_campaign_gpu_seconds'}
    for name, family in ours.items():
        assert re.fullmatch(r'kubescientist_[a-z0-9_]+', name), name
        assert not re.search(r'_(ms|msec|millis|sec|secs|minutes|hours|bytes_total_total)(_|$)', name), name
        if family.type == 'counter':
            # The parser strips _total from counter family names; the samples carry it.
            assert all(s.name.endswith(('_total', '_created')) for s in family.samples), name
        if family.type == 'histogram':
            assert name.endswith('_seconds'), f"{name}: durations are in seconds, the base unit"
    process = [name for name in families if name.startswith('process_')]
    assert 'process_resident_memory_bytes' in process or not process  # absent off Linux


@pytest.mark.skipif(shutil.which('promtool') is None, reason="promtool not installed (apt-get install prometheus)")
def test_promtool_check_metrics_is_clean() -> None:
    metrics = fresh()
    simulate(metrics)
    proc = subprocess.run(['promtool', 'check', 'metrics'], input=metrics.exposition(), capture_output=True,
                          timeout=30)
    assert proc.returncode == 0 and not proc.stdout.strip() and not proc.stderr.strip(), \
        (proc.stdout + proc.stderr).decode()


def test_runs_by_phase_follow_each_runs_current_phase() -> None:
    metrics = fresh()
    assert all(value(metrics, 'kubescientist_runs', phase=p) == 0 for p in m.RUN_PHASES)
    metrics.run_phase_changed('a', 'r1', 'Pending')
    metrics.run_phase_changed('a', 'r1', 'Searching')
    metrics.run_phase_changed('a', 'r1', 'Searching')  # idempotent: called after every pass
    metrics.run_phase_changed('b', 'r1', 'Searching')
    metrics.run_phase_changed('b', 'r2', 'Failed')
    assert value(metrics, 'kubescientist_runs', phase='Searching') == 2
    assert value(metrics, 'kubescientist_runs', phase='Pending') == 0
    assert value(metrics, 'kubescientist_runs', phase='Failed') == 1
    per_run = samples(metrics, 'kubescientist_run_phase')
    assert per_run == {(('namespace', 'a'), ('phase', 'Searching'), ('run', 'r1')): 1.0,
                       (('namespace', 'b'), ('phase', 'Searching'), ('run', 'r1')): 1.0,
                       (('namespace', 'b'), ('phase', 'Failed'), ('run', 'r2')): 1.0}


def test_progress_clock_starts_when_a_run_is_seen_and_moves_on_progress() -> None:
    clock = Clock(1000.0)
    metrics = fresh(clock)
    metrics.run_phase_changed('ns', 'r', 'Searching')
    assert value(metrics, 'kubescientist_run_last_progress_timestamp_seconds', namespace='ns', run='r') == 1000.0
    clock.now = 1500.0
    metrics.run_phase_changed('ns', 'r', 'Searching')  # no change: no progress
    assert value(metrics, 'kubescientist_run_last_progress_timestamp_seconds', namespace='ns', run='r') == 1000.0
    metrics.node_finished('tuning', 'tune', 'Succeeded', 3.0, namespace='ns', run='r')
    assert value(metrics, 'kubescientist_run_last_progress_timestamp_seconds', namespace='ns', run='r') == 1500.0
    clock.now = 2000.0
    metrics.run_phase_changed('ns', 'r', 'WritingUp')
    assert value(metrics, 'kubescientist_run_last_progress_timestamp_seconds', namespace='ns', run='r') == 2000.0
    metrics.node_finished('tuning', 'tune', 'Succeeded', 3.0)  # no run given: counted, no progress recorded
    assert value(metrics, 'kubescientist_run_last_progress_timestamp_seconds', namespace='ns', run='r') == 2000.0


def test_node_outcomes_are_counted_and_timed() -> None:
    metrics = fresh()
    metrics.node_finished('initial', 'draft', 'Succeeded', 12.0)
    metrics.node_finished('initial', 'draft', 'Succeeded', 700.0)
    metrics.node_finished('initial', 'debug', 'Failed', None)  # no duration known (the pod vanished)
    assert value(metrics, 'kubescientist_nodes_finished_total', stage='initial', action='draft',
                 phase='Succeeded') == 2
    assert value(metrics, 'kubescientist_nodes_finished_total', stage='initial', action='debug', phase='Failed') == 1
    assert value(metrics, 'kubescientist_node_duration_seconds_count', stage='initial', phase='Succeeded') == 2
    assert value(metrics, 'kubescientist_node_duration_seconds_sum', stage='initial', phase='Succeeded') == 712.0
    assert value(metrics, 'kubescientist_node_duration_seconds_bucket', stage='initial', phase='Succeeded',
                 le='15.0') == 1
    assert value(metrics, 'kubescientist_node_duration_seconds_count', stage='initial', phase='Failed') is None
    metrics.reaction_latency(0.3)
    metrics.reaction_latency(-1.0)  # a clock skew between pod and operator: ignored, not a negative bucket
    assert value(metrics, 'kubescientist_reaction_latency_seconds_count') == 1
    assert value(metrics, 'kubescientist_reaction_latency_seconds_bucket', le='0.5') == 1


def test_run_forgotten_removes_every_per_run_series() -> None:
    metrics = fresh()
    simulate(metrics)
    metrics.run_phase_changed('ns', 'r2', 'Searching')
    metrics.run_forgotten('ns', 'r1')
    text = metrics.exposition().decode()
    assert 'run="r1"' not in text
    assert 'run="r2"' in text
    assert value(metrics, 'kubescientist_runs', phase='Searching') == 1
    metrics.run_forgotten('ns', 'never-seen')  # harmless
    # Cumulative counters (not per run) survive: rates stay continuous across deletions.
    assert value(metrics, 'kubescientist_gpu_seconds_total', namespace='ns') == 25.0


def test_best_metric_and_budgets() -> None:
    metrics = fresh()
    metrics.best_metric('ns', 'r', 'val_loss', 0.5)
    metrics.best_metric('ns', 'r', 'val_loss', 0.25)
    assert samples(metrics, 'kubescientist_run_best_objective') == {
        (('metric', 'val_loss'), ('namespace', 'ns'), ('run', 'r')): 0.25}
    metrics.best_metric('ns', 'r', 'val_r2', 0.9)  # the objective was renamed: one series, not two
    assert list(samples(metrics, 'kubescientist_run_best_objective')) == [
        (('metric', 'val_r2'), ('namespace', 'ns'), ('run', 'r'))]
    metrics.budget_usage('ns', 'r', 'cost', 18.0, 20.0)
    metrics.budget_usage('ns', 'r', 'nodes', 5, 0)  # no cap: no series
    assert value(metrics, 'kubescientist_run_budget_usage_ratio', namespace='ns', run='r', budget='cost') == 0.9
    assert value(metrics, 'kubescientist_run_budget_usage_ratio', namespace='ns', run='r', budget='nodes') is None
    metrics.budget_usage('ns', 'r', 'cost', 18.0, None)  # the cap was removed from the spec
    assert value(metrics, 'kubescientist_run_budget_usage_ratio', namespace='ns', run='r', budget='cost') is None


def test_node_counts_per_run() -> None:
    metrics = fresh()
    metrics.run_nodes_counted('ns', 'r', {'total': 4, 'pending': 1, 'running': 2, 'succeeded': 1, 'buggy': 0,
                                          'failed': 0})
    got = {dict(k)['phase']: v for k, v in samples(metrics, 'kubescientist_run_nodes').items()}
    assert got == {'Pending': 1, 'Running': 2, 'Succeeded': 1, 'Buggy': 0, 'Failed': 0}


def test_llm_usage_counts_tokens_and_known_costs() -> None:
    metrics = fresh()
    metrics.llm_usage('code', 'gpt-4o', 1000, 200, 0.0045)
    metrics.llm_usage('code', 'gpt-4o', 10, 5, None)  # unpriced call: tokens count, cost does not
    metrics.llm_usage('feedback', 'llama3.1', 50, 20, None)
    assert value(metrics, 'kubescientist_llm_tokens_total', role='code', model='gpt-4o', type='prompt') == 1010
    assert value(metrics, 'kubescientist_llm_tokens_total', role='code', model='gpt-4o', type='completion') == 205
    assert value(metrics, 'kubescientist_llm_cost_usd_total', role='code', model='gpt-4o') == pytest.approx(0.0045)
    assert value(metrics, 'kubescientist_llm_cost_usd_total', role='feedback', model='llama3.1') == 0
    assert value(metrics, 'kubescientist_llm_requests_total', role='code', model='gpt-4o') == 2


def test_api_errors_and_passes() -> None:
    metrics = fresh()
    metrics.api_error('create', 'jobs', 403)
    metrics.api_error('create', 'jobs', 403)
    metrics.api_error('list', 'pods')
    assert value(metrics, 'kubescientist_kubernetes_api_errors_total', verb='create', resource='jobs',
                 code='403') == 2
    assert value(metrics, 'kubescientist_kubernetes_api_errors_total', verb='list', resource='pods', code='0') == 1
    metrics.reconcile_finished(0.2, True)
    metrics.reconcile_finished(3.0, False)
    assert value(metrics, 'kubescientist_reconcile_duration_seconds_count', result='error') == 1


def test_instances_do_not_share_state() -> None:
    a, b = fresh(), fresh()
    a.api_error('get', 'secrets', 404)
    assert value(b, 'kubescientist_kubernetes_api_errors_total', verb='get', resource='secrets', code='404') is None
    assert m.METRICS.registry is not a.registry


def test_serve_exposes_the_registry_over_http() -> None:
    metrics = fresh()
    metrics.api_error('patch', 'researchruns', 500)
    server = m.serve_from_env({m.PORT_ENV: '0', m.ADDRESS_ENV: '127.0.0.1'}, metrics)
    assert server is None  # 0 means "do not serve"
    server = metrics.serve(0, '127.0.0.1')  # port 0: any free port
    try:
        port = server.server_port
        with urllib.request.urlopen(f'http://127.0.0.1:{port}/metrics', timeout=10) as response:
            body = response.read().decode()
        assert 'kubescientist_kubernetes_api_errors_total{code="500",resource="researchruns",verb="patch"} 1.0' in body
    finally:
        server.shutdown()
        server.server_close()


def test_serve_from_env_reads_the_port() -> None:
    assert m.serve_from_env({}) is None
    metrics = fresh()
    server = m.serve_from_env({m.PORT_ENV: str(_free_port()), m.ADDRESS_ENV: '127.0.0.1'}, metrics)
    assert server is not None
    server.shutdown()
    server.server_close()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port: int = sock.getsockname()[1]
        return port


def test_campaign_runs_and_budget_per_campaign_and_forgotten() -> None:
    metrics = fresh()
    metrics.campaign_observed('ns', 'c1', {'running': 1, 'succeeded': 2}, 5000, 0.25, 7200.0)
    assert value(metrics, 'kubescientist_campaign_runs', namespace='ns', campaign='c1', phase='succeeded') == 2
    assert value(metrics, 'kubescientist_campaign_runs', namespace='ns', campaign='c1', phase='failed') == 0
    assert value(metrics, 'kubescientist_campaign_llm_cost_usd', namespace='ns', campaign='c1') == 0.25
    assert value(metrics, 'kubescientist_campaign_gpu_seconds', namespace='ns', campaign='c1') == 7200.0
    metrics.campaign_forgotten('ns', 'c1')
    assert 'campaign="c1"' not in metrics.exposition().decode()
    metrics.campaign_forgotten('ns', 'c1')  # twice is harmless
