"""What a run found, computed once from its records: per-stage results with seed statistics, the variants
and ablations against their reference, aggregated curves, and the registry of facts the prose may state.

Figures, tables and the offline text all read this; none of them computes a number of its own.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import re
from typing import Any, Iterable, Mapping, Sequence

from kubescientist.core.journal import Node, StageRecord
from kubescientist.core.objective import SeedStats, better, seed_stats
from kubescientist.core.spec import STAGE_NAMES, Objective, StageName
from kubescientist.core.stats import compare
from kubescientist.core.summary import node_counts, node_seed_stats, run_best, stage_seed_stats
from kubescientist.paper.citations import Reference
from kubescientist.paper.numbers import Facts
from kubescientist.paper.records import RunRecords


ONSET = 0.9
"""The fraction of a curve's total change that marks when a configuration has (mostly) learned."""


@dataclasses.dataclass(frozen=True)
class CurveStats:
    """A metric's curve over the runs of one configuration (its seeds), step by step."""

    step: tuple[int, ...]
    """Training steps."""
    mean: tuple[float, ...]
    """Mean over the runs at each step."""
    stderr: tuple[float, ...]
    """Standard error over the runs at each step (0 with one run)."""
    n: int
    """How many runs share these steps."""


@dataclasses.dataclass(frozen=True)
class Trial:
    """One search node of a stage, as the paper reports it."""

    node: Node
    """The node."""
    what: str
    """What it tried, in words: the parameter change, the variant or the ablation."""
    value: float | None
    """Its objective value (one seed); None when it did not produce one."""


@dataclasses.dataclass(frozen=True)
class StageResult:
    """One stage's outcome."""

    name: StageName
    """Which stage."""
    index: int
    """1-based position among the four stages."""
    status: str
    """done, failed, skipped, ..."""
    goal: str
    """The stage's goal, as the manifest states it."""
    end_reason: str
    """Why the stage ended."""
    root: Node | None
    """The node the stage started from (the previous stage's best)."""
    best: Node | None
    """The stage's best node."""
    kept_root: bool
    """True when nothing in the stage beat its root."""
    objective: SeedStats | None
    """The best node's objective over its seeds."""
    runs: tuple[Node, ...]
    """The best node and its seed re-evaluations that produced metrics."""
    metrics: Mapping[str, Mapping[str, SeedStats]]
    """dataset -> metric -> final value over ``runs``."""
    curves: Mapping[str, Mapping[str, CurveStats]]
    """dataset -> metric -> curve over ``runs``."""
    counts: Mapping[str, int]
    """Node counts by status, seed runs included."""
    trials: tuple[Trial, ...]
    """The stage's search nodes (no seed runs), in creation order."""
    changes: tuple[tuple[str, Any, Any], ...]
    """``(param, root value, best value)`` for every parameter the best node changed from the root."""
    onsets: Mapping[str, int]
    """dataset -> the first step at which the objective's mean curve has made ``ONSET`` of its total change."""


@dataclasses.dataclass(frozen=True)
class Comparison:
    """A variant or ablation against the node it modifies (same seed, so the difference is paired)."""

    name: str
    """The variant or ablation."""
    description: str
    """What it does, from the template."""
    node: Node
    """The node that ran it."""
    value: float | None
    """Its objective value; None when it failed."""
    delta: float | None
    """``value - reference``; None when either is missing."""


@dataclasses.dataclass(frozen=True)
class RunAnalysis:
    """Everything the paper reports about a run."""

    records: RunRecords
    """The run's records."""
    objective: Objective
    """What the search optimised."""
    stages: tuple[StageResult, ...]
    """The four stages, in order."""
    best: StageResult | None
    """The stage whose best node is the run's result (ablations excluded)."""
    variants: tuple[Comparison, ...]
    """The research agenda's variants against the research stage's root."""
    variant_reference: Node | None
    """The node the variants modify."""
    variant_reference_stats: SeedStats | None
    """Its objective over its seeds: what each variant's delta is measured against."""
    ablations: tuple[Comparison, ...]
    """Each ablation against the ablation stage's root."""
    ablation_reference: Node | None
    """The node the ablations modify (the research result)."""
    ablation_reference_stats: SeedStats | None
    """Its objective over its seeds: what each ablation's delta is measured against (never its single run)."""
    datasets: tuple[str, ...]
    """The datasets the best node reports, in order."""
    counts: Mapping[str, int]
    """Node counts of the whole run by status."""
    facts: Facts
    """Every number the prose may state."""

    def stage(self, name: StageName) -> StageResult:
        return next(s for s in self.stages if s.name == name)

    @property
    def metric(self) -> str:
        return self.objective.metric

    def improves(self, delta: float) -> bool:
        """Whether a change of ``delta`` in the objective is an improvement."""
        return better(delta, 0.0, self.objective.direction)


def analyse(records: RunRecords) -> RunAnalysis:
    """Compute the run's results and its facts from its records."""
    journal, spec = records.journal, records.spec
    stages = tuple(_stage(records, record, i + 1) for i, record in enumerate(journal.stages))
    overall = run_best(spec, journal)
    best = next((s for s in stages if overall is not None and s.best is not None and s.best.id == overall.id
                 and not s.kept_root), None)
    research, ablation = _named(stages, "research"), _named(stages, "ablation")
    variants = _comparisons(records, research, "variant")
    ablations = _comparisons(records, ablation, "ablation")
    datasets = tuple(best.metrics) if best is not None else ()
    analysis = RunAnalysis(
        records=records, objective=spec.objective, stages=stages, best=best, variants=variants,
        variant_reference=research.root if research else None,
        variant_reference_stats=_reference_stats(records, research), ablations=ablations,
        ablation_reference=ablation.root if ablation else None,
        ablation_reference_stats=_reference_stats(records, ablation), datasets=datasets,
        counts=node_counts(journal.nodes.values()), facts=Facts())
    _register_facts(analysis)
    return analysis


def _named(stages: Iterable[StageResult], name: str) -> StageResult | None:
    return next((s for s in stages if s.name == name), None)


def _stage(records: RunRecords, record: StageRecord, index: int) -> StageResult:
    journal = records.journal
    nodes = journal.nodes
    best = nodes.get(record.best) if record.best else None
    root = nodes.get(record.root) if record.root else None
    # A stage that kept its root reports the seeds of the stage that found that node (as the summary does).
    owner = next((s for s in journal.stages if s.best == record.best and s.best != s.root), record)
    runs = tuple(n for n in ([best] if best else []) + [nodes[i] for i in owner.seed_nodes] if n.good)
    stage_spec = next((s for s in records.spec.stages if s.name == record.name), None)
    trials = tuple(Trial(n, _what(records, n), n.metric if n.good else None)
                   for n in journal.in_stage(record.name))
    curves = _curve_stats(records, runs)
    changes: tuple[tuple[str, Any, Any], ...] = ()
    if best is not None and root is not None and best.id != root.id:
        changes = tuple((k, root.config.params.get(k), v) for k, v in best.config.params.items()
                        if root.config.params.get(k) != v)
    return StageResult(
        name=record.name, index=index, status=record.status, goal=stage_spec.goal if stage_spec else "",
        end_reason=record.end_reason or "", root=root, best=best,
        kept_root=best is not None and root is not None and best.id == root.id,
        objective=stage_seed_stats(journal, record), runs=runs,
        metrics=_metric_stats(records, runs), curves=curves,
        counts=node_counts(journal.in_stage(record.name, seeds=True)), trials=trials, changes=changes,
        onsets=_onsets(curves, records.spec.objective.metric))


def _onsets(curves: Mapping[str, Mapping[str, CurveStats]], metric: str) -> dict[str, int]:
    out = {}
    for dataset, metrics in curves.items():
        curve = metrics.get(metric)
        if curve is None or len(curve.mean) < 2 or curve.mean[-1] == curve.mean[0]:
            continue
        start, final = curve.mean[0], curve.mean[-1]
        threshold = start + ONSET * (final - start)
        rising = final > start
        out[dataset] = next(s for s, v in zip(curve.step, curve.mean) if (v >= threshold if rising else v <= threshold))
    return out


def _what(records: RunRecords, node: Node) -> str:
    parent = records.journal.nodes.get(node.parent) if node.parent else None
    if node.action == "variant" and node.config.variant:
        return f"variant {node.config.variant}"
    if node.action == "ablate" and node.config.ablation:
        return f"ablation {node.config.ablation}"
    if node.action == "draft":
        return "first implementation"
    if parent is not None:
        diff = [f"{k} {parent.config.params.get(k)} -> {v}" for k, v in node.config.params.items()
                if parent.config.params.get(k) != v]
        if diff:
            return ", ".join(diff)
    return f"{node.action} of {node.parent}" if node.parent else node.action


def _metric_stats(records: RunRecords, runs: tuple[Node, ...]) -> dict[str, dict[str, SeedStats]]:
    values: dict[str, dict[str, list[float]]] = collections.defaultdict(lambda: collections.defaultdict(list))
    for node in runs:
        for dataset, metrics in records.metrics(node).items():
            for name, entry in metrics.items():
                if _finite(entry.get("final")):
                    values[dataset][name].append(float(entry["final"]))
    return {d: {m: seed_stats(v) for m, v in ms.items()} for d, ms in values.items()}


def _curve_stats(records: RunRecords, runs: tuple[Node, ...]) -> dict[str, dict[str, CurveStats]]:
    curves: dict[str, dict[str, list[tuple[tuple[int, ...], tuple[float, ...]]]]] = (
        collections.defaultdict(lambda: collections.defaultdict(list)))
    for node in runs:
        for dataset, metrics in records.metrics(node).items():
            for name, entry in metrics.items():
                curve = entry.get("curve")
                if isinstance(curve, Mapping) and curve.get("step") and curve.get("value"):
                    curves[dataset][name].append((tuple(curve["step"]), tuple(float(v) for v in curve["value"])))
    out: dict[str, dict[str, CurveStats]] = {}
    for dataset, by_metric in curves.items():
        for name, series in by_metric.items():
            # Seeds of one configuration log at the same steps; a run that does not is left out, not resampled.
            steps = series[0][0]
            same = [values for s, values in series if s == steps]
            stats = [seed_stats(column) for column in zip(*same)]
            out.setdefault(dataset, {})[name] = CurveStats(
                step=steps, mean=tuple(s.mean for s in stats), stderr=tuple(s.stderr for s in stats), n=len(same))
    return out


def _reference_stats(records: RunRecords, stage: StageResult | None) -> SeedStats | None:
    return None if stage is None or stage.root is None else node_seed_stats(records.journal, stage.root)


def _comparisons(records: RunRecords, stage: StageResult | None, field: str) -> tuple[Comparison, ...]:
    """Each variant or ablation against the seed mean of the node it modifies (its single run where it has no
    seeds): its best seed would inflate every difference."""
    if stage is None or stage.root is None:
        return ()
    stats = _reference_stats(records, stage)
    reference = stats.mean if stats is not None else stage.root.metric
    out = []
    for trial in stage.trials:
        name = getattr(trial.node.config, field)
        if not name or trial.node.action not in ("variant", "ablate"):
            continue
        change = records.template.change(name)
        delta = trial.value - reference if trial.value is not None and reference is not None else None
        out.append(Comparison(name=name, description=change.description if change else "", node=trial.node,
                              value=trial.value, delta=delta))
    return tuple(out)


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _register_facts(analysis: RunAnalysis) -> None:
    """Every number the run recorded or the paper derives, with its source."""
    facts, records, spec = analysis.facts, analysis.records, analysis.records.spec
    for node in records.journal.nodes.values():
        for key, value in node.config.params.items():
            if _finite(value):
                facts.add(float(value), f"{node.id} config {key}")
        facts.add(node.config.seed, f"{node.id} seed")
        if node.outcome is not None and _finite(node.outcome.duration_seconds):
            facts.add(float(node.outcome.duration_seconds or 0.0), f"{node.id} duration (s)")
        for dataset, metrics in records.metrics(node).items():
            for name, entry in metrics.items():
                where = f"{node.id} {dataset} {name}"
                for field in ("final", "best", "stderr"):
                    if _finite(entry.get(field)):
                        facts.add(float(entry[field]), f"{where} {field}")
                curve = entry.get("curve")
                if isinstance(curve, Mapping) and curve.get("step"):
                    facts.add(max(curve["step"]), f"{where} last step")
        if node.metric is not None:
            facts.add(node.metric, f"{node.id} objective")
        if node.outcome is not None and node.outcome.reason:
            # A failure's own message (``NaN at step 300``) is a record too, and the paper may quote it.
            for text in re.findall(r"\d+(?:\.\d+)?", node.outcome.reason):
                facts.add(float(text), f"{node.id} failure message")
    for stage in analysis.stages:
        facts.add(stage.index, f"stage number of {stage.name}")
        stats = stage.objective
        if stats is not None:
            facts.add(stats.mean, f"{stage.name} best: {analysis.metric} mean over seeds")
            facts.add(stats.stderr, f"{stage.name} best: {analysis.metric} standard error")
            facts.add(stats.n, f"{stage.name} best: number of seeds")
        for dataset, stats_by_metric in stage.metrics.items():
            for name, s in stats_by_metric.items():
                facts.add(s.mean, f"{stage.name} best: {dataset} {name} mean over seeds")
                facts.add(s.stderr, f"{stage.name} best: {dataset} {name} standard error")
        for status, count in stage.counts.items():
            facts.add(count, f"{stage.name}: {status} nodes")
        facts.add(len(stage.trials), f"{stage.name}: search nodes (seed re-runs not counted)")
        for dataset, step in stage.onsets.items():
            facts.add(step, f"{stage.name} best: {dataset} step reaching {ONSET:.0%} of the curve's change")
        stage_spec = next((s for s in spec.stages if s.name == stage.name), None)
        if stage_spec is not None:
            facts.add(stage_spec.max_nodes, f"{stage.name}: node budget")
    _register_improvements(analysis)
    _register_tests(analysis)
    for group in (analysis.variants, analysis.ablations):
        for c in group:
            if c.delta is not None:
                facts.add(c.delta, f"{c.name}: change of {analysis.metric} against its reference")
                reference = c.value - c.delta if c.value is not None else None
                if reference:
                    facts.add(100 * c.delta / abs(reference), f"{c.name}: relative change (%)")
    for status, count in analysis.counts.items():
        facts.add(count, f"run: {status} nodes")
    facts.add(analysis.counts.get("buggy", 0) + analysis.counts.get("failed", 0), "run: nodes without a result")
    searched = [n for n in records.journal.nodes.values() if n.action != "seed"]
    facts.add(sum(1 for n in searched if n.status in ("buggy", "failed")), "run: search nodes without a result")
    facts.add(len(STAGE_NAMES), "number of stages")
    facts.add(100 * ONSET, "percentage of a curve's change that marks its onset")
    facts.add(len(analysis.datasets), "number of datasets")
    facts.add(len(analysis.variants), "number of variants tried")
    facts.add(len(analysis.ablations), "number of ablations tried")
    facts.add(spec.seeds, "extra seeds per stage best (spec.seeds)")
    facts.add(spec.seeds + 1, "runs per stage best (spec.seeds + 1)")
    facts.add(spec.search.parallelism, "parallelism")
    facts.add(spec.search.drafts, "drafts")
    facts.add(spec.search.debug_probability, "debug probability")
    facts.add(spec.search.max_debug_depth, "maximum debug depth")
    facts.add(spec.resources.deadline_seconds, "deadline per node (s)")
    facts.add(spec.resources.gpus, "GPUs per node")
    facts.add(spec.seed, "run seed")
    for key in ("wall_clock_seconds", "max_total_nodes"):
        value = getattr(spec.budget, key)
        if value is not None:
            facts.add(value, f"budget {key}")
    timings = records.summary.get("timings") or {}
    for key, value in timings.items():
        if _finite(value):
            facts.add(float(value), f"timing {key}")
            facts.add(float(value) / 60, f"timing {key} in minutes")
    idea, template = records.idea, records.template
    texts = [("the idea", f"{idea.title} {idea.hypothesis} {idea.description}"),
             ("the template's description", template.description),
             *((f"the {s.name} stage's goal", s.goal) for s in spec.stages),
             *((f"{c.name}'s description", c.description) for c in (*template.variants, *template.ablations))]
    for where, text in texts:
        # The run's own statement of the problem ("(a + b) mod 97") is on record, and the paper may repeat it.
        for number in re.findall(r"(?<![\w.])\d+(?:\.\d+)?", text):
            facts.add(float(number), f"stated in {where}")
    for change in (*records.template.variants, *records.template.ablations):
        for key, value in change.params.items():
            if _finite(value):
                facts.add(float(value), f"{change.name} sets {key}")
    for name, hyper in records.template.hyperparameters.items():
        for key in ("low", "high", "default"):
            if _finite(hyper.get(key)):
                facts.add(float(hyper[key]), f"template {name} {key}")
        for value in hyper.get("values") or ():
            if _finite(value):
                facts.add(float(value), f"template {name} choice")


def register_references(facts: Facts, references: Sequence[Reference]) -> None:
    """The references' own numbers ("GPT-2", "2022") and their count: the prose may quote them."""
    facts.add(len(references), "number of references")
    for ref in references:
        for text in re.findall(r"\d+(?:\.\d+)?", f"{ref.title} {ref.venue} {ref.year or ''}"):
            facts.add(float(text), f"reference {ref.key}")


def _register_improvements(analysis: RunAnalysis) -> None:
    """Differences between stages' best objective means: how much each stage added, and in total."""
    results = [(s, s.objective) for s in analysis.stages if s.objective is not None and s.name != "ablation"]
    for (earlier, a), (later, b) in zip(results, results[1:]):
        _add_change(analysis, b.mean - a.mean, a.mean, f"{later.name} over {earlier.name}")
    if len(results) > 1:
        (first, a), (last, b) = results[0], results[-1]
        _add_change(analysis, b.mean - a.mean, a.mean, f"{last.name} over {first.name}")
        if analysis.best is not None and analysis.best.objective is not None:
            _add_change(analysis, analysis.best.objective.mean - a.mean, a.mean, f"result over {first.name}")


def _register_tests(analysis: RunAnalysis) -> None:
    """Welch's t-test between every two seed means the paper may compare: the difference and its 95% interval."""
    results = [s.objective for s in analysis.stages if s.objective is not None]
    results += [r for r in (analysis.variant_reference_stats, analysis.ablation_reference_stats) if r is not None]
    analysis.facts.add(95, "confidence level of the intervals (%)")
    for i, a in enumerate(results):
        for b in results[i + 1:]:
            for later, earlier in ((a, b), (b, a)):
                test = compare(later, earlier, analysis.objective.direction)
                analysis.facts.add(test.difference, "difference of two seed means")
                for bound in test.interval or ():
                    analysis.facts.add(bound, "95% interval of a difference of seed means (Welch)")


def _add_change(analysis: RunAnalysis, delta: float, base: float, what: str) -> None:
    analysis.facts.add(delta, f"{analysis.metric} change, {what}")
    if base:
        analysis.facts.add(100 * delta / abs(base), f"{analysis.metric} relative change (%), {what}")


__all__ = ["RunAnalysis", "StageResult", "Comparison", "CurveStats", "Trial", "analyse"]
