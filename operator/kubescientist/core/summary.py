"""The run's summary: best node per stage with seed statistics, counts. Pure: built from the journal."""

from __future__ import annotations

import collections
from typing import Any

from typing import Iterable

from kubescientist.core.journal import Journal, Node, StageRecord
from kubescientist.core.objective import SeedStats, seed_stats, sort_key
from kubescientist.core.spec import RunSpec

STATUSES = ("pending", "running", "succeeded", "buggy", "failed")


def stage_seed_stats(journal: Journal, record: StageRecord) -> SeedStats | None:
    """The stage best's metric over its own run and its seed re-evaluations that produced a value.

    A stage that kept its root reports the seeds of the stage that found that node.
    """
    if record.best is None:
        return None
    owner = next((s for s in journal.stages if s.best == record.best and s.best != s.root), record)
    runs = [journal.nodes[record.best], *(journal.nodes[i] for i in owner.seed_nodes)]
    values = [n.metric for n in runs if n.good and n.metric is not None]
    return seed_stats(values) if values else None


def node_counts(nodes: Iterable[Node]) -> dict[str, int]:
    counts: collections.Counter[str] = collections.Counter(n.status for n in nodes)
    return {"total": sum(counts.values()), **{s: counts[s] for s in STATUSES}}


def run_best(spec: RunSpec, journal: Journal) -> Node | None:
    """The run's best node: the stage best with the best seed mean (or metric, without seeds).

    Ablations are left out: they measure what a component contributes to the best model, and a model with
    a component switched off is not the research's result even when it scores higher. A stage that kept
    its root adds no candidate of its own.
    """
    candidates = []
    for record in journal.stages:
        if record.best is None or record.best == record.root or record.name == "ablation":
            continue
        stats = stage_seed_stats(journal, record)
        value = stats.mean if stats is not None else journal.nodes[record.best].metric
        if value is not None:
            candidates.append((sort_key(value, spec.objective.direction), journal.nodes[record.best].seq,
                               record.best))
    return journal.nodes[min(candidates)[2]] if candidates else None


def summarize(spec: RunSpec, journal: Journal) -> dict[str, Any]:
    """A JSON-ready summary of the search (the adapter adds names, paths and timings)."""
    stages = []
    for record in journal.stages:
        nodes = list(journal.in_stage(record.name, seeds=True))
        best = journal.nodes.get(record.best) if record.best else None
        stats = stage_seed_stats(journal, record)
        seed_runs = [journal.nodes[i] for i in record.seed_nodes]
        stages.append({
            "name": record.name,
            "status": record.status,
            "root": record.root,
            "endReason": record.end_reason,
            "nodes": node_counts(nodes),
            "actions": dict(collections.Counter(n.action for n in nodes)),
            "best": None if best is None else {
                "node": best.id, "action": best.action, "metric": best.metric,
                "config": best.config.to_dict(), "metrics": best.outcome.metrics if best.outcome else {},
            },
            "seeds": None if stats is None else {
                "mean": stats.mean, "stderr": stats.stderr, "n": stats.n, "values": list(stats.values),
                "nodes": [record.best, *record.seed_nodes],
                "failed": [n.id for n in seed_runs if n.status in ("buggy", "failed")],
            },
        })
    overall = run_best(spec, journal)
    overall_stats = None
    if overall is not None:
        owner = next(s for s in journal.stages if s.best == overall.id)
        seeds = stage_seed_stats(journal, owner)
        overall_stats = None if seeds is None else {"mean": seeds.mean, "stderr": seeds.stderr, "n": seeds.n}
    return {
        "phase": journal.phase,
        "message": journal.message,
        "objective": {"metric": spec.objective.metric, "direction": spec.objective.direction,
                      "aggregation": spec.objective.aggregation, "value": spec.objective.value},
        "best": None if overall is None else {
            "node": overall.id, "stage": overall.stage, "metric": overall.metric,
            "config": overall.config.to_dict(), "seeds": overall_stats,
        },
        "nodes": node_counts(journal.nodes.values()),
        "stages": stages,
    }

