"""How much time the node executor adds around a program (target: under 0.5 s per node).

Runs N trivial nodes (a program that writes metrics.json and exits) through
`experiment_runtime.run_node`, one after another, and prints per-node statistics of:

- overhead_seconds, as recorded by run_node: time outside the program's process lifetime
  (code copy, chown, template check, code hash, spawn, process cleanup, output and metrics
  collection, result writing);
- wall time minus the program's own runtime (measured by the program from its first statement to
  its last), which adds interpreter start-up and exit to the above: everything a node costs
  besides its own work.

    python benchmarks/executor_overhead.py [--nodes 20] [--python PATH] [--without namespaces,cgroup]

`--without` switches sandbox layers off, to see what each costs; the report lists the protections the
nodes ran under and, in words, those missing. For the cost before the sandbox existed, run this script
from a checkout of an earlier commit.

As root, the program runs as the sandbox user, so PATH must be an interpreter that user can
read (not one under /root); `--python /usr/bin/python3` does for the program used here.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from experiment_runtime import Limits, SandboxError, run_node

PROGRAM = """\
import time
started = time.time()
import argparse, json, os
parser = argparse.ArgumentParser()
parser.add_argument("--out_dir")
parser.add_argument("--config")
args = parser.parse_args()
os.makedirs(args.out_dir, exist_ok=True)
own = time.time() - started
metrics = {"datasets": {"toy": {"own_seconds": {"final": own}}}}
with open(os.path.join(args.out_dir, "metrics.json"), "w") as f:
    json.dump(metrics, f)
"""

MANIFEST = """\
apiVersion: kubescientist.io/v1alpha1
kind: ExperimentTemplate
name: trivial
entrypoint: experiment.py
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs the program")
    parser.add_argument("--without", default="", help="comma-separated layers to switch off: namespaces, cgroup")
    args = parser.parse_args()
    off = {layer for layer in args.without.split(",") if layer}
    if off - {"namespaces", "cgroup"}:
        parser.error(f"--without: unknown layers {sorted(off - {'namespaces', 'cgroup'})}")
    limits = Limits(deadline_seconds=60, isolate="namespaces" not in off, use_cgroup="cgroup" not in off)

    root = Path(tempfile.mkdtemp(prefix="ks-overhead-"))
    root.chmod(0o755)  # the sandbox user must reach the node dirs below
    try:
        code = root / "template"
        code.mkdir()
        (code / "kubescientist.yaml").write_text(MANIFEST)
        (code / "experiment.py").write_text(PROGRAM)
        overheads, outside = [], []
        protections: dict[str, object] = {}
        for i in range(args.nodes):
            started = time.monotonic()
            try:
                result = run_node(code, root / f"node-{i}", {"seed": i, "params": {}}, limits, python=args.python)
            except SandboxError as err:
                print(err, file=sys.stderr)
                return 2
            wall = time.monotonic() - started
            if result.buggy or result.metrics is None:
                print(f"node {i} is buggy: {result.buggy_reason}", file=sys.stderr)
                return 1
            own = result.metrics.datasets["toy"]["own_seconds"].final
            overheads.append(result.overhead_seconds)
            outside.append(wall - own)
            protections = result.protections
    finally:
        shutil.rmtree(root, ignore_errors=True)

    report: dict[str, object] = {"nodes": args.nodes, "python": args.python, "uid": os.geteuid(),
                                 "protections": protections}
    for name, values in (("overhead_seconds", overheads), ("wall_minus_program_seconds", outside)):
        ordered = sorted(values)
        report[name] = {
            "mean": round(statistics.fmean(ordered), 4),
            "median": round(statistics.median(ordered), 4),
            "p95": round(ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))], 4),
            "max": round(ordered[-1], 4),
        }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
