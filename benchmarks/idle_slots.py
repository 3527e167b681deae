"""Idle slots: the real engine on a simulated clock, asynchronous refill against lock-step batches.

(a) The four-stage workload: ~64 search nodes (stages of 8, 16, 16 and 8 nodes; 8 drafts), 8 slots, node
    durations lognormal with sigma 0.5, 3 seed re-evaluations per stage, 10% of search nodes crash. Over
    ``--draws`` draws it prints, for async refill and for v2-style lock-step, the median makespan relative
    to the lower bound max(sum(d)/k, max(d)), the share of draws within 15% of it, the speed-up of async
    over lock-step, and slot utilisation (overall, and while work remains: until the last node starts).
(b) A scripted LLM: every proposal takes ``--propose`` seconds (10), nodes take ``--node`` seconds (30),
    4 slots. Proposals made one at a time between launches against proposals prepared ahead while
    nodes run (up to one per slot in flight).

    python benchmarks/idle_slots.py [--draws 200] [--seed-candidates N]
"""

from __future__ import annotations

import argparse
import statistics

from simulation import World, drive, median, workload_spec


def four_stages(draws: int, extra: dict[str, object]) -> None:
    rows = {}
    for mode in ("async", "lockstep"):
        ratios, util, util_work, spans, nodes = [], [], [], [], []
        for draw in range(draws):
            spec = workload_spec(seed=draw, search=extra)
            result = drive(spec, World(draw=draw), mode=mode)
            ratios.append(result.makespan / result.lower_bound)
            util.append(result.utilisation)
            util_work.append(result.utilisation_while_work_remains)
            spans.append(result.makespan)
            nodes.append(len(result.journal.nodes))
        rows[mode] = (ratios, util, util_work, spans, nodes)
        within = sum(1 for r in ratios if r <= 1.15) / draws
        print(f"{mode:9s} makespan/bound median {median(ratios):.3f} (p90 {sorted(ratios)[int(0.9 * draws)]:.3f}), "
              f"within 15%: {within:.0%} of draws; utilisation {median(util):.1%} overall, "
              f"{median(util_work):.1%} while work remains; nodes per run median {median(nodes):.0f}")
    speedups = [lock / fast for fast, lock in zip(rows["async"][3], rows["lockstep"][3])]
    print(f"async over lock-step: median speed-up {statistics.median(speedups):.2f}x, "
          f"{sum(1 for s in speedups if s >= 1.5) / draws:.0%} of draws reach 1.5x")


def scripted_llm(propose: float, node: float, extra: dict[str, object]) -> None:
    spec = workload_spec(slots=4, drafts=4, search=extra)
    world = World(draw=0, sigma=0.0, mean_seconds=node)
    for mode, lookahead in (("async", 0), ("lookahead", 4)):
        result = drive(spec, world, mode=mode, propose_seconds=propose, lookahead=lookahead)
        print(f"scripted LLM ({propose:g} s per proposal, {node:g} s nodes, 4 slots), {mode:9s}: "
              f"utilisation {result.utilisation:.1%} overall, {result.utilisation_while_work_remains:.1%} while "
              f"work remains; makespan {result.makespan:.0f} s for {len(result.journal.nodes)} nodes "
              f"(bound {result.lower_bound:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--propose", type=float, default=10.0)
    parser.add_argument("--node", type=float, default=30.0)
    parser.add_argument("--seed-candidates", type=int, default=None,
                        help="spec.search.seedCandidates (engines that have it)")
    args = parser.parse_args()
    extra: dict[str, object] = {}
    if args.seed_candidates is not None:
        extra["seedCandidates"] = args.seed_candidates
    four_stages(args.draws, extra)
    scripted_llm(args.propose, args.node, extra)


if __name__ == "__main__":
    main()
