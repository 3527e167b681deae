"""The run's summary: best node per stage and overall by seed mean, every node, ablations, cost. Pure: built
from the journal (and, with an LLM, its accounts)."""

from __future__ import annotations

import collections
from typing import Any, Iterable, Mapping

from kubescientist.core.journal import Journal, Node, StageRecord
from kubescientist.core.objective import SeedStats, seed_stats, sort_key
from kubescientist.core.spec import RunSpec
from kubescientist.core.stats import compare, fmt_delta, fmt_stats, stats_dict

STATUSES = ("pending", "running", "succeeded", "buggy", "failed")


def seed_runs(journal: Journal, node: Node) -> list[Node]:
    """A node and its re-evaluations with other seeds (same program and parameters), in creation order."""
    key = node.config.key()
    return [node, *(n for n in journal.nodes.values()
                    if n.action == "seed" and n.parent == node.id and n.config.key() == key)]


def node_seed_stats(journal: Journal, node: Node) -> SeedStats | None:
    """A node's metric over its own run and its seed re-evaluations that produced a value."""
    values = [n.metric for n in seed_runs(journal, node) if n.good and n.metric is not None]
    return seed_stats(values) if values else None


def stage_seed_stats(journal: Journal, record: StageRecord) -> SeedStats | None:
    """The stage best's metric over its runs (a kept root reports the seeds the root was given)."""
    return None if record.best is None else node_seed_stats(journal, journal.nodes[record.best])


def node_counts(nodes: Iterable[Node]) -> dict[str, int]:
    counts: collections.Counter[str] = collections.Counter(n.status for n in nodes)
    return {"total": sum(counts.values()), **{s: counts[s] for s in STATUSES}}


def run_best(spec: RunSpec, journal: Journal) -> Node | None:
    """The run's best node: the stage best with the best seed mean (its single metric only where it has no
    seeds). Never the maximum over seeds: that is the luckiest seed, not the best configuration.

    Ablations are left out: they measure what a component contributes to the best model, and a model with
    a component switched off is not the research's result even when it scores higher. A stage that kept
    its root adds no candidate of its own.
    """
    candidates = []
    for record in journal.stages:
        if record.best is None or record.best == record.root or record.name == "ablation":
            continue
        stats = stage_seed_stats(journal, record)
        if stats is not None:
            candidates.append((sort_key(stats.mean, spec.objective.direction), journal.nodes[record.best].seq,
                               record.best))
    return journal.nodes[min(candidates)[2]] if candidates else None


def change_of(node: Node, journal: Journal) -> str:
    """What a node tried, in words: its variant or ablation, else its parameters that differ from its parent's."""
    if node.action == "seed":
        return f"seed {node.config.seed}"
    parent = journal.nodes.get(node.parent) if node.parent else None
    if node.config.ablation and (parent is None or node.config.ablation != parent.config.ablation):
        return f"ablation {node.config.ablation}"
    if node.config.variant and (parent is None or node.config.variant != parent.config.variant):
        return f"variant {node.config.variant}"
    if parent is None:
        return "first draft" if node.action == "draft" else node.action
    changed = [f"{k}={node.config.params[k]}" for k in sorted(node.config.params)
               if parent.config.params.get(k) != node.config.params[k]]
    changed += [f"-{k}" for k in sorted(parent.config.params) if k not in node.config.params]
    if node.config.code is not None and node.config.code != parent.config.code:
        changed.append("new code")
    return ", ".join(changed) if changed else "no change"


def _node_cost(accounts: Mapping[str, Any] | None, node_id: str) -> float | None:
    if accounts is None:
        return None
    usage = accounts.get("byNode", {}).get(node_id)
    return float(usage.get("usd", 0.0)) if usage else 0.0


def nodes_table(spec: RunSpec, journal: Journal, accounts: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """One row per node: what it tried and what it got, by seed mean where it was re-evaluated."""
    rows = []
    for node in journal.nodes.values():
        stats = None if node.action == "seed" else node_seed_stats(journal, node)
        seconds = node.outcome.duration_seconds if node.outcome else None
        rows.append({
            "id": node.id, "stage": node.stage, "action": node.action, "parent": node.parent,
            "status": node.status, "change": change_of(node, journal), "metric": node.metric,
            "seeds": None if stats is None or stats.n < 2 else stats_dict(stats),
            "seconds": None if seconds is None else round(seconds, 3),
            "costUSD": _node_cost(accounts, node.id),
            "error": node.outcome.reason if node.outcome and node.status != "succeeded" else None,
        })
    return rows


def ablations(spec: RunSpec, journal: Journal) -> dict[str, Any] | None:
    """Each ablation against the seed mean of the model it was applied to (never against its best seed)."""
    record = next((s for s in journal.stages if s.name == "ablation"), None)
    if record is None or record.root is None:
        return None
    root = journal.nodes[record.root]
    reference = node_seed_stats(journal, root)
    rows = []
    for node in journal.in_stage("ablation"):
        if node.action != "ablate":
            continue
        stats = node_seed_stats(journal, node)
        row: dict[str, Any] = {"node": node.id, "ablation": node.config.ablation, "status": node.status,
                               "metric": None if stats is None else stats_dict(stats)}
        if stats is not None and reference is not None:
            comparison = compare(stats, reference, spec.objective.direction)
            row["delta"] = comparison.difference
            row["deltaText"] = fmt_delta(comparison.difference, max(stats.stderr, reference.stderr) or None)
            row["comparison"] = comparison.to_dict()
        rows.append(row)
    return {"reference": {"node": root.id, "metric": None if reference is None else stats_dict(reference)},
            "ablations": rows}


def cost(journal: Journal, accounts: Mapping[str, Any] | None) -> dict[str, Any]:
    """What the run used: program seconds always; LLM tokens and USD where a model took part (0 offline)."""
    seconds = sum((n.outcome.duration_seconds or 0.0) for n in journal.nodes.values() if n.outcome)
    total = (accounts or {}).get("total", {})
    return {"llm": accounts is not None, "usd": float(total.get("usd", 0.0)),
            "tokens": int(total.get("totalTokens", 0)), "calls": int(total.get("calls", 0)),
            "nodeSeconds": round(seconds, 3),
            "unpricedModels": list((accounts or {}).get("unpricedModels", []))}


def _best_block(spec: RunSpec, journal: Journal, best: Node) -> dict[str, Any]:
    stats = node_seed_stats(journal, best)
    block: dict[str, Any] = {"node": best.id, "stage": best.stage, "action": best.action,
                             "change": change_of(best, journal), "metric": best.metric,
                             "config": best.config.to_dict(),
                             "seeds": None if stats is None else stats_dict(stats),
                             "text": fmt_stats(stats, best.metric)}
    initial = next((s for s in journal.stages if s.name == "initial"), None)
    baseline = journal.nodes.get(initial.best) if initial and initial.best else None
    base_stats = None if baseline is None else node_seed_stats(journal, baseline)
    if baseline is not None and base_stats is not None and stats is not None and baseline.id != best.id:
        block["againstBaseline"] = {"node": baseline.id, "metric": stats_dict(base_stats),
                                    **compare(stats, base_stats, spec.objective.direction).to_dict()}
    return block


def describe_best(summary: Mapping[str, Any]) -> str:
    """One line on the run's best result, the same words wherever it is shown."""
    best = summary.get("best")
    if not best:
        return f"no working node: {summary.get('message')}"
    line = f"best node {best['node']} (stage {best['stage']}, {best['change']}): " \
           f"{summary['objective']['metric']} = {best['text']}"
    against = best.get("againstBaseline")
    if against:
        line += f"; against the first working {against['node']}: {against['verdict']}"
    return line


def summarize(spec: RunSpec, journal: Journal, accounts: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A JSON-ready summary of the search (the adapter adds names, paths and timings). Keys are camelCase."""
    stages = []
    for record in journal.stages:
        nodes = list(journal.in_stage(record.name, seeds=True))
        best = journal.nodes.get(record.best) if record.best else None
        stats = stage_seed_stats(journal, record)
        runs = seed_runs(journal, best) if best else []
        stage: dict[str, Any] = {
            "name": record.name, "status": record.status, "root": record.root, "endReason": record.end_reason,
            "nodes": node_counts(nodes), "actions": dict(collections.Counter(n.action for n in nodes)),
            "best": None if best is None else {
                "node": best.id, "action": best.action, "change": change_of(best, journal), "metric": best.metric,
                "config": best.config.to_dict(), "metrics": best.outcome.metrics if best.outcome else {},
                "text": fmt_stats(stats, best.metric),
            },
            "seeds": None if stats is None else {
                **stats_dict(stats), "nodes": [n.id for n in runs],
                "failed": [n.id for n in runs if n.status in ("buggy", "failed")],
            },
        }
        root = journal.nodes.get(record.root) if record.root else None
        root_stats = None if root is None else node_seed_stats(journal, root)
        if best is not None and root is not None and stats is not None and root_stats is not None \
                and best.id != root.id:
            stage["againstRoot"] = compare(stats, root_stats, spec.objective.direction).to_dict()
        stages.append(stage)
    overall = run_best(spec, journal)
    return {
        "phase": journal.phase,
        "message": journal.message,
        "objective": {"metric": spec.objective.metric, "direction": spec.objective.direction,
                      "aggregation": spec.objective.aggregation, "value": spec.objective.value},
        "best": None if overall is None else _best_block(spec, journal, overall),
        "nodes": node_counts(journal.nodes.values()),
        "stages": stages,
        "nodeTable": nodes_table(spec, journal, accounts),
        "ablations": ablations(spec, journal),
        "cost": cost(journal, accounts),
    }
