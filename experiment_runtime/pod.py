"""The entrypoint of a node's pod: fetch the code, run the node, hand the outputs back.

    python -m experiment_runtime pod --code-url URL [--code-sha256 HEX] --config-json JSON \\
        [--put-url NAME=URL ...] [--put-urls-file FILE] [--deadline SECONDS] \\
        [--work-dir DIR] [--termination-log PATH] [--keep-root] [--env NAME=VALUE ...] [--dataset PATH ...] \\
        [--requirement REQ ...]

A node's pod holds no credential. Its code arrives as a gzipped tarball behind a presigned GET URL
(checked against `--code-sha256` when given); its outputs leave through presigned PUT URLs, one per
artefact name (`ARTIFACTS`); its outcome reaches the operator as the container's termination message:
one line of JSON of at most 4096 bytes (`NodeResult.termination_message()`), written to
/dev/termination-log, where the kubelet picks it up. So the operator reads every node's result from
the pod status without reading logs or holding a connection to the pod.

Exit status: 0 whenever the node ran, whatever its program did (a buggy program is a result, the
message says so); 1 when the node could not be run at all (the code could not be fetched, the
config is not JSON): then the message is `{"status": "error", "message": ...}` and the operator
counts it as an infrastructure failure, not a bug of the program.

The helpers (`fetch`, `unpack`, `pack`, `put`) are the whole client side of presigned URLs, shared
with the writeup and review pods: plain urllib, bounded retries, no S3 SDK.

Paths that belong to the container, not to the command line, default from the environment so that a
stand-in kubelet (the e2e harness) can run the same command in a scratch folder:
KUBESCIENTIST_WORK_DIR (default /work), KUBESCIENTIST_TERMINATION_LOG (default /dev/termination-log),
KUBESCIENTIST_KEEP_ROOT=1 (as --keep-root; only for a root runner whose interpreter the sandbox user
cannot reach; a pod runs as non-root and never needs it).
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from experiment_runtime import requirements
from experiment_runtime.binds import Bind
from experiment_runtime.limits import Limits, max_file_bytes_for
from experiment_runtime.node import run_node
from experiment_runtime.result import TERMINATION_MESSAGE_BYTES, NodeResult
from experiment_runtime.sandbox import SandboxError

ARTIFACTS = ("stdout.txt", "stderr.txt", "metrics.json", "result.json", "plots.tar.gz")
"""What a node's pod uploads, when its node dir has it (plots.tar.gz: the plots/ folder, packed)."""

WORK_DIR_ENV = "KUBESCIENTIST_WORK_DIR"
TERMINATION_LOG_ENV = "KUBESCIENTIST_TERMINATION_LOG"
KEEP_ROOT_ENV = "KUBESCIENTIST_KEEP_ROOT"
DEFAULT_WORK_DIR = Path("/work")
DEFAULT_TERMINATION_LOG = Path("/dev/termination-log")

HTTP_TIMEOUT_SECONDS = 60.0
"""Per request: a presigned transfer that stalls this long is tried again."""
HTTP_RETRY_DELAYS = (1.0, 3.0, 9.0)
"""Pauses between the attempts of one transfer (so four attempts in all)."""
MAX_CODE_BYTES = 256 * 1024 * 1024
"""The largest code tarball a pod accepts (a template is code, not data)."""


class TransferError(Exception):
    """A presigned download or upload failed for good; the message names the artefact, never the URL."""


# ------------------------------------------------------------------------------------------- transfers


def _request(request: urllib.request.Request, what: str, limit: int | None = None) -> bytes:
    last = ""
    for delay in (*HTTP_RETRY_DELAYS, None):
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS) as response:
                data: bytes = response.read(limit + 1) if limit is not None else response.read()
                if limit is not None and len(data) > limit:
                    raise TransferError(f"{what}: larger than {limit} bytes")
                return data
        except urllib.error.HTTPError as err:
            last = f"HTTP {err.code} {err.reason}"
            # A refused signature or a missing object does not heal by retrying; a busy server may.
            if err.code < 500 and err.code != 429:
                break
        except (urllib.error.URLError, OSError) as err:
            last = str(getattr(err, "reason", err))
        if delay is not None:
            time.sleep(delay)
    raise TransferError(f"{what}: {last}")


def fetch(url: str, what: str, sha256: str | None = None, limit: int = MAX_CODE_BYTES) -> bytes:
    """GET a presigned URL; checks the content's sha256 (hex) when given."""
    data = _request(urllib.request.Request(url, method="GET"), f"download of {what}", limit)
    if sha256 is not None:
        digest = hashlib.sha256(data).hexdigest()
        if digest != sha256.removeprefix("sha256:"):
            raise TransferError(f"download of {what}: sha256 {digest} does not match the expected {sha256}")
    return data


def put(url: str, data: bytes, what: str, content_type: str = "application/octet-stream") -> None:
    """PUT bytes to a presigned URL."""
    request = urllib.request.Request(url, data=data, method="PUT", headers={"Content-Type": content_type})
    _request(request, f"upload of {what}")


def unpack(data: bytes, dest: Path) -> None:
    """Extract a gzipped tarball into dest, refusing absolute paths, '..', devices and links out of dest."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, filter="data")
            else:
                # Pythons before 3.11.4 (Debian bookworm's 3.11.2) lack extraction filters: check by hand.
                tar.extractall(dest, members=_safe_members(tar, dest))
    except (tarfile.TarError, OSError, EOFError) as err:
        raise TransferError(f"cannot unpack the tarball: {err}") from err


def _safe_members(tar: tarfile.TarFile, dest: Path) -> list[tarfile.TarInfo]:
    """Regular files and folders that land inside dest; anything else refuses the whole tarball."""
    root = dest.resolve()
    members = tar.getmembers()
    for member in members:
        target = (root / member.name).resolve()
        if not (member.isfile() or member.isdir()) or member.name.startswith("/") or not target.is_relative_to(root):
            raise tarfile.TarError(f"refusing member {member.name!r}: only files and folders inside the tarball's root")
        member.mode &= 0o755  # no setuid, setgid or sticky bits, as the data filter does
    return members


def pack(root: Path, files: Iterable[Path] | None = None) -> bytes:
    """A gzipped tarball of root's files (all of them by default), paths relative to root, in sorted order,
    with mtimes and owners zeroed: the same files give the same bytes."""
    paths = sorted(files if files is not None else (p for p in root.rglob("*") if p.is_file()))
    buffer = io.BytesIO()
    # mtime=0 in the gzip header too, so that equal content packs to equal bytes.
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=6, mtime=0) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path in paths:
                info = tarfile.TarInfo(path.relative_to(root).as_posix())
                content = path.read_bytes()
                info.size, info.mode, info.mtime = len(content), 0o644, 0
                tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def put_urls(pairs: Iterable[str], urls_file: Path | None) -> dict[str, str]:
    """`NAME=URL` pairs and a JSON `{NAME: URL}` file, merged (the pairs win)."""
    urls: dict[str, str] = {}
    if urls_file is not None:
        data = json.loads(urls_file.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
            raise ValueError(f"{urls_file}: must be a JSON object of artefact name to URL")
        urls.update(data)
    for pair in pairs:
        name, sep, url = pair.partition("=")
        if not sep or not name or not url:
            raise ValueError(f"--put-url: expected NAME=URL, got {pair[:40]!r}")
        urls[name] = url
    return urls


def write_termination_message(path: Path, line: str) -> None:
    """Write the message where the kubelet reads it; outside a pod (no such file) there is nowhere to write."""
    if path.exists():
        path.write_bytes(line.encode()[:TERMINATION_MESSAGE_BYTES])


def error_message(message: str) -> str:
    """The termination message of a pod whose node could not run."""
    return json.dumps({"status": "error", "message": message[:3000]}, separators=(",", ":"))


def env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value) if value else default


# ------------------------------------------------------------------------------------------------ node


def upload_outputs(node_dir: Path, urls: Mapping[str, str]) -> list[str]:
    """Upload each artefact that exists and has a URL; returns the names whose upload failed."""
    failed = []
    plots = node_dir / "plots"
    for name in ARTIFACTS:
        url = urls.get(name)
        if url is None:
            continue
        try:
            if name == "plots.tar.gz":
                if not plots.is_dir() or not any(p.is_file() for p in plots.rglob("*")):
                    continue
                put(url, pack(plots), name, "application/gzip")
            elif (node_dir / name).is_file():
                kind = "application/json" if name.endswith(".json") else "text/plain; charset=utf-8"
                put(url, (node_dir / name).read_bytes(), name, kind)
        except (TransferError, OSError) as err:
            print(f"kubescientist pod: {err}", file=sys.stderr)
            failed.append(name)
    return failed


def message_with(result: NodeResult, failed_uploads: list[str]) -> str:
    """The result's termination message, naming the artefacts that did not upload when it still fits."""
    line = result.termination_message()
    if not failed_uploads:
        return line
    data: dict[str, Any] = json.loads(line)
    data["artifactErrors"] = failed_uploads
    extended = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return extended if len(extended.encode()) <= TERMINATION_MESSAGE_BYTES else line


def run_pod(args: argparse.Namespace) -> int:
    termination_log: Path = args.termination_log
    work: Path = args.work_dir
    try:
        config = json.loads(args.config_json)
        if not isinstance(config, dict):
            raise ValueError("--config-json: must be a JSON object")
        urls = put_urls(args.put_url, args.put_urls_file)
        unknown = sorted(set(urls) - set(ARTIFACTS))
        if unknown:
            raise ValueError(f"unknown artefact names {unknown} (known: {', '.join(ARTIFACTS)})")
        code = work / "code"
        unpack(fetch(args.code_url, "the code", args.code_sha256), code)
        absent = requirements.missing(requirements.read(code) + list(args.requirement))
        if absent:
            return _misconfigured(termination_log, requirements.message(absent))
        limits = Limits(deadline_seconds=args.deadline, drop_privileges=not args.keep_root, shm_bytes=args.shm_bytes)
        if args.max_disk_bytes is not None:
            limits = dataclasses.replace(limits, max_disk_bytes=args.max_disk_bytes,
                                         max_file_bytes=max_file_bytes_for(args.max_disk_bytes))
        result = run_node(code, work / "node", config, limits, env=dict(v.split("=", 1) for v in args.env),
                          datasets=tuple(Bind(Path(p), Path(p)) for p in args.dataset),
                          program_args=tuple(args.program_arg))
    except (TransferError, OSError, ValueError, SandboxError) as err:
        message = f"cannot run node: {err}"
        print(message, file=sys.stderr)
        write_termination_message(termination_log, error_message(message))
        return 1
    failed = upload_outputs(work / "node", urls)
    print(json.dumps(result.to_json(), indent=2))
    write_termination_message(termination_log, message_with(result, failed))
    return 0


def _misconfigured(termination_log: Path, message: str) -> int:
    """The run's configuration cannot work in this image: the operator fails the run, it retries nothing."""
    print(message, file=sys.stderr)
    write_termination_message(termination_log, json.dumps(
        {"status": "error", "configuration": True, "message": message[:3000]}, separators=(",", ":")))
    return 1


def add_parser(commands: Any) -> None:
    """Register the `pod` subcommand on the runtime's argparse subparsers."""
    pod = commands.add_parser("pod", help="a node's pod: fetch the code, run the node, upload its outputs")
    pod.add_argument("--code-url", required=True, help="presigned GET URL of the code tarball (.tar.gz)")
    pod.add_argument("--code-sha256", default=None, help="expected sha256 of the tarball (hex)")
    pod.add_argument("--config-json", required=True, help='the node config: {"seed", "params", "variant", "ablation"}')
    pod.add_argument("--put-url", action="append", default=[], metavar="NAME=URL",
                     help=f"presigned PUT URL of one artefact ({', '.join(ARTIFACTS)}); repeatable")
    pod.add_argument("--put-urls-file", type=Path, default=None, help="JSON {name: url}, merged with --put-url")
    pod.add_argument("--deadline", type=float, default=Limits.deadline_seconds, help="the program's wall-clock seconds")
    pod.add_argument("--max-disk-bytes", type=int, default=None,
                     help="disk the program may fill, work dir and /tmp (spec.runtime.ephemeralStorage; "
                          f"default {Limits.max_disk_bytes})")
    pod.add_argument("--shm-bytes", type=int, default=None,
                     help="size of the program's /dev/shm (spec.runtime.shmSize)")
    pod.add_argument("--work-dir", type=Path, default=env_path(WORK_DIR_ENV, DEFAULT_WORK_DIR),
                     help=f"scratch folder (default ${WORK_DIR_ENV} or {DEFAULT_WORK_DIR})")
    pod.add_argument("--termination-log", type=Path,
                     default=env_path(TERMINATION_LOG_ENV, DEFAULT_TERMINATION_LOG),
                     help=f"termination message file (default ${TERMINATION_LOG_ENV} or {DEFAULT_TERMINATION_LOG})")
    pod.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                     help="an environment variable of the program (spec.runtime.env); repeatable")
    pod.add_argument("--dataset", action="append", default=[], metavar="PATH",
                     help="a read-only dataset mount the program sees at the same path; repeatable")
    pod.add_argument("--program-arg", action="append", default=[], metavar="ARG",
                     help="an extra argument of the program (spec.template.args; write --program-arg=--flag); "
                          "repeatable")
    pod.add_argument("--requirement", action="append", default=[], metavar="REQ",
                     help="a Python requirement the image must hold (spec.runtime.requirements); repeatable")
    pod.add_argument("--keep-root", action="store_true", default=os.environ.get(KEEP_ROOT_ENV) == "1",
                     help="when root, do not drop to the sandbox uid (see run-node --keep-root)")
