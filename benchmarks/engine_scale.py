"""The engine at scale: a ``--nodes`` node search (10,000 by default) with per-call costs and save costs.

The real engine drives a synthetic search (always something new to propose, 10% crashes, 8 slots, 3 seeds)
to ``--nodes`` nodes; every ``plan``, ``commit`` and ``complete`` call is timed. Prints the median and p95
per call for each tenth of the run (cost should not grow with the tree) and over the whole run, and engine
CPU per node. Then the journal's save: the local store's cost per save (it writes only what changed since the
last save) at each node count, and a whole-journal rewrite at the end for comparison; with ``--old-save``
(an engine without the store) only whole rewrites are timed, at a few sizes.

    python benchmarks/engine_scale.py [--nodes 10000] [--old-save]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import tempfile
import time
from collections import defaultdict

from simulation import SyntheticProposer, World, quantile, workload_spec

from kubescientist.core.engine import Engine
from kubescientist.core.journal import Journal


def run(nodes: int, save_every: bool, folder: pathlib.Path) -> None:
    spec = workload_spec(stage_nodes=(50, nodes // 2, nodes // 3, nodes), slots=8, drafts=8, max_total=nodes)
    engine = Engine(spec, Journal())
    proposer = SyntheticProposer(variants=50)
    world = World(draw=0, sigma=0.0)
    store = _store(folder) if save_every else None
    costs: dict[str, list[tuple[int, float]]] = defaultdict(list)
    saves: list[tuple[int, float]] = []
    running: list[str] = []
    clock = time.perf_counter

    def save() -> None:
        if store is None:
            return
        t = clock()
        store.save(engine.journal)
        saves.append((len(engine.journal.nodes), clock() - t))

    while True:
        while len(running) < spec.search.parallelism:
            node = engine.next_pending()
            if node is None:
                t = clock()
                plan = engine.plan(0.0)
                costs["plan"].append((len(engine.journal.nodes), clock() - t))
                if plan is None:
                    break
                proposal = proposer.propose(plan, engine.journal) if plan.config is None else None
                t = clock()
                node = engine.commit(plan, proposal)
                costs["commit"].append((len(engine.journal.nodes), clock() - t))
                if node is None:
                    continue
            engine.start(node.id)
            running.append(node.id)
            save()
        if not running:
            break
        node_id = running.pop(0)
        outcome = world.outcome(engine.journal.nodes[node_id])
        t = clock()
        engine.complete(node_id, outcome)
        costs["complete"].append((len(engine.journal.nodes), clock() - t))
        save()
    total = len(engine.journal.nodes)
    print(f"{total} nodes, phase {engine.journal.phase}: {engine.journal.message[:80]}")
    for name in ("plan", "commit", "complete"):
        values = [c for _, c in costs[name]]
        print(f"  {name:8s} {len(values):6d} calls: median {statistics.median(values) * 1e6:8.1f} us, "
              f"p95 {quantile(values, 0.95) * 1e6:8.1f} us")
        windows = []
        for k in range(10):
            low, high = total * k // 10, total * (k + 1) // 10
            window = [c for n, c in costs[name] if low <= n < high or (k == 9 and n == total)]
            if window:
                windows.append(f"{statistics.median(window) * 1e6:.0f}")
        print(f"           median us per tenth of the run: {' '.join(windows)}")
    engine_total = sum(c for values in costs.values() for _, c in values)
    per_node = [sum(c for n, c in costs[name] if total * 9 // 10 <= n) for name in costs]
    last_tenth = total - total * 9 // 10
    print(f"  engine CPU per node: {engine_total / total * 1e3:.3f} ms over the run, "
          f"{sum(per_node) / last_tenth * 1e3:.3f} ms in the last tenth")
    if saves:
        values = [c for _, c in saves]
        print(f"  store.save  {len(values)} saves: median {statistics.median(values) * 1e3:.3f} ms, "
              f"p95 {quantile(values, 0.95) * 1e3:.3f} ms, max {max(values) * 1e3:.1f} ms; "
              f"{sum(1 for v in values if v > 0.01)} over 10 ms (the log folded into a new snapshot)")
        for k in (10, 100, 1000, 10000):
            near = [c for n, c in saves if k <= n < k * 1.1]
            if near:
                print(f"    near {k:5d} nodes: median {statistics.median(near) * 1e3:.3f} ms")
    whole_rewrite(engine.journal, folder)


def whole_rewrite(journal: Journal, folder: pathlib.Path) -> None:
    """What a save cost before the store: the whole journal as JSON, written to a file."""
    path = folder / "journal-whole.json"
    t = time.perf_counter()
    path.write_text(json.dumps(journal.to_dict(), indent=1, default=str))
    print(f"  whole-journal rewrite at {len(journal.nodes)} nodes: {(time.perf_counter() - t) * 1e3:.0f} ms, "
          f"{path.stat().st_size / 1e6:.1f} MB")


def _store(folder: pathlib.Path):  # type: ignore[no-untyped-def]
    from kubescientist.adapters.local.journal_store import JournalStore
    return JournalStore(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--old-save", action="store_true", help="time whole rewrites only (engine before the store)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run(args.nodes, not args.old_save, pathlib.Path(tmp))


if __name__ == "__main__":
    main()
