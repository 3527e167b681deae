"""Command line of the node runtime, the entry point of a node's pod.

    python -m experiment_runtime pod --code-url URL --config-json JSON [--put-url NAME=URL ...] ...
    python -m experiment_runtime run-node --code DIR --node-dir DIR --config FILE \\
        [--deadline SECONDS] [--memory BYTES] [--max-file-bytes BYTES] [--max-processes N] \\
        [--max-output-bytes BYTES] [--max-disk-bytes BYTES] [--shm-bytes BYTES] [--kill-grace SECONDS] \\
        [--sandbox-uid UID] [--sandbox-gid GID] [--keep-root] [--python PATH] \\
        [--cpus N] [--network] [--hide DIR ...] [--dataset SOURCE:TARGET ...] [--env NAME=VALUE ...] \\
        [--program-arg=ARG ...]

Prints the node's result (result.json) on stdout and exits 0 whatever the program did: a buggy
node is a result, and the record says so. Exits 1 when the node could not be run at all. Either
way one line of JSON goes to the termination message file (/dev/termination-log, when the
kubelet provides it) so the operator reads the outcome from the pod status without fetching logs.
Byte sizes accept Kubernetes suffixes (Ki, Mi, Gi, Ti, k, M, G, T).

argparse rather than click: this runs in bare pods, so the runtime keeps to stdlib, psutil, pyyaml.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from experiment_runtime import datasets, pod
from experiment_runtime.binds import Bind
from experiment_runtime.disk import private_mount_namespace
from experiment_runtime.limits import Limits
from experiment_runtime.node import run_node
from experiment_runtime.result import TERMINATION_MESSAGE_BYTES
from experiment_runtime.sandbox import SandboxError

TERMINATION_LOG = Path("/dev/termination-log")

_SUFFIXES = {
    "Ki": 1 << 10,
    "Mi": 1 << 20,
    "Gi": 1 << 30,
    "Ti": 1 << 40,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "pod":
        return pod.run_pod(args)
    if args.command == "fetch-dataset":
        return datasets.main(args)
    # As root the executor mounts the node's scratch tmpfs: in a mount namespace of its own, the mount
    # goes away with the executor even when it is SIGKILLed. Not root: it mounts nothing.
    if os.geteuid() == 0:
        private_mount_namespace()
    try:
        limits = Limits(
            deadline_seconds=args.deadline,
            memory_bytes=args.memory,
            max_file_bytes=args.max_file_bytes,
            max_processes=args.max_processes,
            max_output_bytes=args.max_output_bytes,
            max_disk_bytes=args.max_disk_bytes,
            shm_bytes=args.shm_bytes,
            kill_grace_seconds=args.kill_grace,
            sandbox_uid=args.sandbox_uid,
            sandbox_gid=args.sandbox_gid,
            drop_privileges=not args.keep_root,
            cpus=args.cpus,
            network=args.network,
        )
        config = json.loads(Path(args.config).read_text(encoding="utf-8"))
        if not isinstance(config, dict):
            raise ValueError(f"{args.config}: must be a JSON object")
        result = run_node(Path(args.code), Path(args.node_dir), config, limits, python=args.python,
                          hidden=tuple(Path(p) for p in args.hide), datasets=tuple(args.dataset), env=dict(args.env),
                          program_args=tuple(args.program_arg))
    except (OSError, ValueError, SandboxError) as err:
        message = f"cannot run node: {err}"
        print(message, file=sys.stderr)
        _terminate(args.termination_log, json.dumps({"status": "error", "message": message[:3000]}))
        return 1
    print(json.dumps(result.to_json(), indent=2))
    _terminate(args.termination_log, result.termination_message())
    return 0


def _terminate(path: Path, line: str) -> None:
    # The kubelet creates the file when it wants a message; outside a pod there is none to write.
    if path.exists():
        path.write_bytes(line.encode()[:TERMINATION_MESSAGE_BYTES])


def _bytes(text: str) -> int:
    for suffix, factor in sorted(_SUFFIXES.items(), key=lambda item: -len(item[0])):
        if text.endswith(suffix):
            return int(text[: -len(suffix)]) * factor
    return int(text)


def _bind(text: str) -> Bind:
    source, sep, target = text.rpartition(":")
    if not sep or not source or not target.startswith("/"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected SOURCE:TARGET with an absolute TARGET")
    return Bind(Path(source).resolve(), Path(target))


def _variable(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=VALUE")
    return name, value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m experiment_runtime", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run-node", help="run one node's program and record its result")
    run.add_argument("--code", required=True, help="the node's code folder (a template, possibly changed)")
    run.add_argument("--node-dir", required=True, help="where the node's work dir and outputs go")
    run.add_argument("--config", required=True, help='config.json: {"seed", "params", "variant", "ablation"}')
    run.add_argument("--deadline", type=float, default=Limits.deadline_seconds, help="wall-clock seconds")
    run.add_argument("--memory", type=_bytes, default=None, help="RLIMIT_AS bytes (default: none)")
    run.add_argument(
        "--max-file-bytes", type=_bytes, default=Limits.max_file_bytes, help="largest file the program may write"
    )
    run.add_argument(
        "--max-processes", type=int, default=Limits.max_processes, help="processes and threads the program may add"
    )
    run.add_argument(
        "--max-output-bytes", type=_bytes, default=Limits.max_output_bytes, help="bytes of stdout and of stderr kept"
    )
    run.add_argument(
        "--max-disk-bytes", type=_bytes, default=Limits.max_disk_bytes, help="disk use allowed in the work dir"
    )
    run.add_argument("--shm-bytes", type=_bytes, default=None,
                     help="size of the program's own /dev/shm tmpfs (default: a folder under the disk quota)")
    run.add_argument("--kill-grace", type=float, default=Limits.kill_grace_seconds, help="SIGTERM to SIGKILL")
    # RLIMIT_NPROC counts a uid's tasks across the whole host (all pods too, without user
    # namespaces): give each node's pod its own uid so that node budgets are independent.
    run.add_argument("--sandbox-uid", type=int, default=Limits.sandbox_uid, help="uid to run as when root")
    run.add_argument("--sandbox-gid", type=int, default=Limits.sandbox_gid, help="gid to run as when root")
    run.add_argument("--keep-root", action="store_true",
                     help="when root, do not drop to the sandbox uid (no process limit; see Limits.drop_privileges)")
    run.add_argument("--python", default=sys.executable, help="interpreter that runs the program")
    run.add_argument("--cpus", type=float, default=None, help="CPU share of the node's cgroup (where root)")
    run.add_argument("--network", action="store_true", help="give the program the network (default: loopback only)")
    run.add_argument("--hide", action="append", default=[], metavar="DIR",
                     help="a folder the program must not see (the run's records); repeatable")
    run.add_argument("--dataset", action="append", default=[], type=_bind, metavar="SOURCE:TARGET",
                     help="a folder the program sees read-only at TARGET; repeatable")
    run.add_argument("--env", action="append", default=[], type=_variable, metavar="NAME=VALUE",
                     help="an environment variable of the program; repeatable")
    run.add_argument("--program-arg", action="append", default=[], metavar="ARG",
                     help="an extra argument of the program, after its own (write --program-arg=--flag); repeatable")
    run.add_argument("--termination-log", type=Path, default=TERMINATION_LOG, help=argparse.SUPPRESS)
    pod.add_parser(commands)
    datasets.add_parser(commands)
    return parser


if __name__ == "__main__":
    sys.exit(main())
