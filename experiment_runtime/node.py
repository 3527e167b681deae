"""Running one node: its program on its config, in a fresh work dir, judged and recorded.

Layout of a node dir after `run_node`::

    <node_dir>/
      config.json      the node config ({"seed", "params", "variant", "ablation"})
      code/            the program's work dir as it left it (code and outputs, up to `Limits.max_kept_bytes`)
        run/           the program's out_dir (passed as the relative path --out_dir=run)
      dropped.txt      files of the work dir not kept, when there were any
      stdout.txt       bounded stdout (head and tail)
      stderr.txt       bounded stderr
      plots/           every *.png the program wrote under out_dir, same relative paths
      metrics.json     the validated metrics in normalized form (only when the node succeeded)
      result.json      the NodeResult record
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from experiment_runtime import uids
from experiment_runtime.artifacts import collect_plots, keep_tree
from experiment_runtime.binds import Bind, staged, virtualenv_of
from experiment_runtime.disk import scratch
from experiment_runtime.isolation import Protections
from experiment_runtime.limits import Limits
from experiment_runtime.metrics import Metrics, MetricsError, read_metrics
from experiment_runtime.plotting import run_plot
from experiment_runtime.result import NodeResult, NodeStatus, write_result
from experiment_runtime.sandbox import Execution, execute, prepare_workdir
from experiment_runtime.template import TemplateError, command_for, load_template

OUT_DIR = "run"
"""The program's out_dir, relative to its cwd; excluded from the code hash and from copies."""

_SKIPPED_DIRS = ("__pycache__",)
# What a node records when its program never started (its code is not a valid template).
_NEVER_RAN = Execution(
    command=[],
    exit_code=None,
    signal=None,
    timed_out=False,
    killed_reason=None,
    duration_seconds=0.0,
    stdout="",
    stderr="",
    stdout_bytes=0,
    stderr_bytes=0,
    stdout_truncated=False,
    stderr_truncated=False,
    peak_disk_bytes=0,
    max_rss_bytes=0,
    cpu_seconds=0.0,
    uid=-1,
    protections=Protections(namespaces=False, network_isolated=False, cgroup=False, disk_scratch=False,
                            own_uid=False, missing=("the program never ran",)),
)
_REASON_LINE_CHARS = 500
_EAGAIN = "[Errno 11]"
_ENOSPC = "[Errno 28]"
_KEPT_FILE_BYTES_OVER_QUOTA = 1 << 20
_DISK_REASON = "wrote more than"
_SHM_FULL_MARGIN = 1 << 20
"""Disk use this close to the quota means a full disk, whatever else is full."""
_INODE_REASON = "created more than"


def run_node(
    code_dir: Path, node_dir: Path, config: Mapping[str, Any], limits: Limits, python: str = sys.executable,
    hidden: tuple[Path, ...] = (), datasets: tuple[Bind, ...] = (), env: Mapping[str, str] | None = None,
    program_args: tuple[str, ...] = (),
) -> NodeResult:
    """Runs the template program in `code_dir` with `config` under `limits`, in `node_dir`.

    Returns the result for anything the program does (a buggy program is a result, not an error)
    and writes it to `<node_dir>/result.json`. Raises only for problems of the runner itself:
    an unwritable node dir, a sandbox that cannot start (`SandboxError`), a config that is not JSON.
    `python` is the interpreter that runs the program. The program sees neither the node's siblings
    (the other folders of `node_dir`'s parent) nor the folders `hidden` (the run's records). It sees the
    virtualenv of `python`, when it is one, and the `datasets`, read-only, and the variables `env`. A v1 template's plot.py runs
    after a successful experiment (`experiment_runtime.plotting`). `program_args` follow the program's
    own arguments (the run's spec.template.args).

    The program works in a scratch space of its own (a tmpfs where root) holding its work dir, /tmp and
    /dev/shm under one quota (or /dev/shm apart, a tmpfs of `limits.shm_bytes`); when it ends, the work dir
    is copied to `code/` (without following links, up to `limits.max_kept_bytes`) and the scratch space is
    freed, whatever became of the program.
    """
    started = time.monotonic()
    started_at = _now()
    config_json = _canonical(config)
    seed = config.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"config: seed: must be an integer, got {seed!r}")
    digest = code_hash(code_dir, config)
    node_dir.mkdir(parents=True, exist_ok=True)
    # The sandbox user must traverse the node dir to reach its code and read its config.
    node_dir.chmod(0o755)
    for stale in ("code", "plots"):
        shutil.rmtree(node_dir / stale, ignore_errors=True)
    (node_dir / "dropped.txt").unlink(missing_ok=True)
    (node_dir / "plot.txt").unlink(missing_ok=True)
    config_path = node_dir.resolve() / "config.json"
    config_path.write_text(config_json + "\n", encoding="utf-8")
    config_path.chmod(0o644)
    (node_dir / "metrics.json").unlink(missing_ok=True)

    with _own_uid(limits) as limits:
        uid, gid = (limits.sandbox_uid, limits.sandbox_gid) if os.geteuid() == 0 and limits.drop_privileges \
            else (os.getuid(), os.getgid())
        venv = virtualenv_of(python)
        wanted = ((Bind(venv, venv),) if venv is not None else ()) + datasets
        with staged(wanted, node_dir, uid, gid) as ready, \
                scratch(node_dir / "scratch", limits.max_disk_bytes, limits.max_inodes, uid, gid) as space:
            if venv is not None and ready[0].source != venv:
                python = str(ready[0].target / Path(python).relative_to(venv))
            binds = tuple((bind.source, bind.target) for bind in ready)
            work = space.work
            shutil.copytree(code_dir, work, symlinks=True, ignore=_ignored(code_dir), dirs_exist_ok=True)
            (work / OUT_DIR).mkdir(exist_ok=True)
            prepare_workdir(work, limits)
            # Inside its namespaces the program finds its work dir where its code is kept afterwards.
            seen_at = node_dir.resolve() / "code"
            execution = _NEVER_RAN
            metrics: Metrics | None = None
            try:
                template = load_template(work)
            except TemplateError as err:
                status: NodeStatus = "failed"
                # Paths inside the node's copy mean nothing to whoever fixes the code: name files relative to it.
                reason: str | None = str(err).replace(f"{work}{os.sep}", "").replace(str(work), "the code dir")
            else:
                variables = {**(env or {}), "KUBESCIENTIST_CONFIG": str(config_path), "KUBESCIENTIST_SEED": str(seed)}
                def sandboxed(command: list[str]) -> Execution:
                    return execute(command, work, variables, limits, space=space, work_at=seen_at,
                                   read_only=(config_path,), hidden=(node_dir.resolve().parent, *hidden), binds=binds)

                execution = sandboxed(command_for(template, Path(OUT_DIR), config_path, python, program_args))
                status, reason = _judge(execution, limits)
                if reason is None:
                    try:
                        metrics = read_metrics(work / OUT_DIR)
                    except MetricsError as err:
                        status, reason = "failed", str(err)
            plots = collect_plots(work / OUT_DIR, node_dir / "plots")
            if reason is None and template.plot_script is not None:
                plots += run_plot(template.plot_script, work, OUT_DIR, node_dir, python, sandboxed)
            # What broke a disk or inode quota is not copied back: the node keeps its code and small outputs.
            over_quota = reason is not None and reason.startswith((_DISK_REASON, _INODE_REASON))
            dropped = keep_tree(work, node_dir / "code", limits.max_kept_bytes,
                                max_file_bytes=_KEPT_FILE_BYTES_OVER_QUOTA if over_quota else None)
    if dropped:
        (node_dir / "dropped.txt").write_text("".join(f"{name}\n" for name in dropped), encoding="utf-8")

    (node_dir / "stdout.txt").write_text(execution.stdout, encoding="utf-8")
    (node_dir / "stderr.txt").write_text(execution.stderr, encoding="utf-8")
    if metrics is not None:
        (node_dir / "metrics.json").write_text(json.dumps(metrics.to_json(), indent=2) + "\n", encoding="utf-8")

    result = NodeResult(
        status=status,
        buggy=reason is not None,
        buggy_reason=reason,
        exit_code=execution.exit_code,
        signal=execution.signal,
        duration_seconds=execution.duration_seconds,
        overhead_seconds=time.monotonic() - started - execution.duration_seconds,
        started_at=started_at,
        finished_at=_now(),
        code_hash=digest,
        stdout_bytes=execution.stdout_bytes,
        stderr_bytes=execution.stderr_bytes,
        stdout_truncated=execution.stdout_truncated,
        stderr_truncated=execution.stderr_truncated,
        peak_disk_bytes=execution.peak_disk_bytes,
        max_rss_bytes=execution.max_rss_bytes,
        cpu_seconds=execution.cpu_seconds,
        plots=plots,
        metrics=metrics,
        protections=execution.protections.to_json(),
    )
    write_result(result, node_dir)
    return result


@contextlib.contextmanager
def _own_uid(limits: Limits) -> Iterator[Limits]:
    """`limits` with a uid no other running node has, when root drops privileges; as they are otherwise."""
    if os.geteuid() != 0 or not limits.drop_privileges:
        yield limits
        return
    with contextlib.ExitStack() as stack:
        try:
            uid = stack.enter_context(uids.lease())
        except (OSError, uids.NoFreeUid):
            # A read-only /run (some pods): the configured uid, shared; the protections say so.
            yield limits
            return
        yield dataclasses.replace(limits, sandbox_uid=uid, sandbox_gid=uid, own_uid=True)


def code_hash(code_dir: Path, config: Mapping[str, Any]) -> str:
    """The content hash, "sha256:<hex>", of code and config: same program and config, same hash.

    Covers every file's relative path and bytes (a symbolic link's target text, not what it points
    to), in sorted path order, then the canonical JSON of `config`. Skips `__pycache__` dirs and the
    top-level out dir `run/`, which hold outputs rather than code.
    """
    digest = hashlib.sha256()
    for relative, path in _code_files(code_dir):
        if path.is_symlink():
            kind, content = b"link", os.readlink(path).encode()
        else:
            kind, content = b"file", path.read_bytes()
        # Length-prefixed fields, so no two different trees can produce the same byte stream.
        name = relative.encode()
        digest.update(b"%s %d %s %d " % (kind, len(name), name, len(content)))
        digest.update(content)
    config_bytes = _canonical(config).encode()
    digest.update(b"config %d " % len(config_bytes))
    digest.update(config_bytes)
    return f"sha256:{digest.hexdigest()}"


def _code_files(code_dir: Path) -> list[tuple[str, Path]]:
    entries: list[tuple[str, Path]] = []
    for current, dirnames, filenames in os.walk(code_dir):
        here = Path(current)
        skipped = set(_SKIPPED_DIRS) | ({OUT_DIR} if here == code_dir else set())
        linked = [d for d in dirnames if (here / d).is_symlink()]
        dirnames[:] = [d for d in dirnames if d not in skipped and d not in linked]
        for name in filenames + [d for d in linked if d not in skipped]:
            path = here / name
            entries.append((path.relative_to(code_dir).as_posix(), path))
    return sorted(entries)


def _ignored(code_dir: Path) -> Callable[[str, list[str]], set[str]]:
    def ignore(directory: str, names: list[str]) -> set[str]:
        skipped = set(_SKIPPED_DIRS) | ({OUT_DIR} if Path(directory) == code_dir else set())
        return skipped & set(names)

    return ignore


def _judge(execution: Execution, limits: Limits) -> tuple[NodeStatus, str | None]:
    """The node's status and, unless its program ran cleanly, why it is buggy."""
    if execution.killed_reason == "deadline":
        return "timeout", f"deadline of {limits.deadline_seconds:g}s exceeded"
    if execution.killed_reason == "inode_quota" or execution.inodes_left == 0:
        return "killed", f"{_INODE_REASON} {limits.max_inodes} files and folders (the inode limit)"
    last = _last_line(execution.stderr)
    over_disk = execution.killed_reason == "disk_quota" or execution.peak_disk_bytes > limits.max_disk_bytes
    # A sized /dev/shm fills on its own: out of space with room left on the disk is /dev/shm's doing.
    if _ENOSPC in last and not over_disk and limits.shm_bytes is not None \
            and execution.peak_disk_bytes < limits.max_disk_bytes - _SHM_FULL_MARGIN:
        return "failed", f"/dev/shm is full: it holds {limits.shm_bytes} bytes (spec.runtime.shmSize): {last}"
    if over_disk or _ENOSPC in last:
        where = "work dir and /tmp" if limits.shm_bytes is not None else "work dir, /tmp and /dev/shm"
        return "killed", f"{_DISK_REASON} {limits.max_disk_bytes} bytes to disk ({where})"
    if execution.oom_killed:
        return "killed", f"killed for exceeding the memory limit of {limits.memory_bytes} bytes (all its processes)"
    if execution.signal == signal.SIGXFSZ or "File too large" in last:
        detail = f": {last}" if last else ""
        return "failed", f"output file size limit exceeded ({limits.max_file_bytes} bytes){detail}"
    if execution.signal is not None:
        name = signal.Signals(execution.signal).name
        hint = " (out of memory?)" if execution.signal == signal.SIGKILL and not execution.protections.cgroup else ""
        return "killed", f"killed by signal {name}{hint}" + (f": {last}" if last else "")
    if execution.exit_code != 0:
        reason = f"exit code {execution.exit_code}" + (f": {last}" if last else "")
        if last.startswith("MemoryError") and limits.memory_bytes is not None:
            reason += f" (memory limit of {limits.memory_bytes} bytes)"
        elif execution.process_limit_hit:
            reason += f" (process limit of {limits.max_processes} reached)"
        elif _EAGAIN in last:
            reason += f" (process limit of {limits.max_processes} reached?)"
        return "failed", reason
    return "succeeded", None


def _last_line(text: str) -> str:
    """The last non-empty line: for a Python traceback, the exception and its message."""
    for line in reversed(text.splitlines()):
        if line.strip():
            return line.strip()[:_REASON_LINE_CHARS]
    return ""


def _canonical(config: Mapping[str, Any]) -> str:
    try:
        return json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"config: must be JSON (finite numbers, string keys): {err}") from err


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
