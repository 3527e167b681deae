"""A run's own Python packages, locally: one virtualenv per set of requirements, built once and cached.

The requirements are the template's ``requirements.txt`` (beside its entrypoint, as AI Scientist v1
templates imply) plus ``spec.runtime.requirements``. They are installed with uv into
``<cache>/venvs/<hash>/``, where the hash covers the base interpreter and the sorted requirements, so
every run with the same packages shares one virtualenv and a second run finds it ready. The venv is
relocatable (``uv venv --relocatable``): a root executor shows it to the sandbox uid at another path
(``experiment_runtime.binds``). A requirement that cannot be installed ends the run before any node
starts, as a configuration error naming it: never a buggy node for the search to debug.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

from experiment_runtime.limits import max_file_bytes_for
from kubescientist.adapters.local import gpus
from kubescientist.core.quantity import parse_quantity
from kubescientist.core.spec import RunSpec

REQUIREMENTS_FILE = "requirements.txt"
CACHE_ENV = "KUBESCIENTIST_CACHE"
"""Overrides the cache folder (default ``~/.cache/kubescientist``)."""
READY = ".ready"
"""Written last into a venv: a folder without it is a build that did not finish."""
INSTALL_TIMEOUT_SECONDS = 1800
_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")
_ERROR_LINES = 12


class RequirementsError(Exception):
    """The run's requirements are malformed or cannot be installed; the message names which."""


@dataclasses.dataclass(frozen=True)
class RunEnvironment:
    python: str
    """The interpreter node programs run with."""
    requirements: tuple[str, ...]
    """What it holds beyond the standard library (empty: the runner's own interpreter)."""
    cached: bool
    """Whether the virtualenv was there already."""
    seconds: float
    """How long finding (or building) it took."""


def cache_root() -> pathlib.Path:
    return pathlib.Path(os.environ.get(CACHE_ENV) or pathlib.Path.home() / ".cache" / "kubescientist")


def read_requirements(template_root: pathlib.Path | None, extra: tuple[str, ...]) -> tuple[str, ...]:
    """The template's requirements.txt lines (comments and blanks dropped) followed by `extra`."""
    lines: list[str] = []
    path = template_root / REQUIREMENTS_FILE if template_root is not None else None
    if path is not None and path.is_file():
        for number, raw in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
            line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
            if not line:
                continue
            if line.startswith("-") or "://" in line or ";" in line or "@" in line:
                raise RequirementsError(f"{path}: line {number}: {line!r}: only package requirements such as "
                                        "scipy>=1.11 are supported (no options, URLs or markers)")
            lines.append(line)
    return tuple(dict.fromkeys([*lines, *extra]))


def prepare(requirements: tuple[str, ...], cache: pathlib.Path | None = None) -> RunEnvironment:
    """The virtualenv holding `requirements`, built if it is not cached; the runner's own interpreter when
    there are none. Raises RequirementsError naming what cannot be installed."""
    started = time.monotonic()
    if not requirements:
        return RunEnvironment(sys.executable, (), True, 0.0)
    base = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    key = "\n".join([base, sys.version, *sorted(requirements)])
    root = (cache or cache_root()) / "venvs"
    venv = root / hashlib.sha256(key.encode()).hexdigest()[:20]
    root.mkdir(parents=True, exist_ok=True)
    # Two runs that need the same packages at once: the second waits for the first build, then reuses it.
    with open(root / f"{venv.name}.lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        cached = (venv / READY).is_file()
        if not cached:
            _build(venv, base, requirements)
    return RunEnvironment(str(venv / "bin" / "python"), requirements, cached, time.monotonic() - started)


def _build(venv: pathlib.Path, base: str, requirements: tuple[str, ...]) -> None:
    uv = _uv()
    shutil.rmtree(venv, ignore_errors=True)
    _run([uv, "venv", "--quiet", "--relocatable", "--python", base, str(venv)], requirements, venv)
    listed = venv / REQUIREMENTS_FILE
    listed.write_text("".join(f"{line}\n" for line in requirements), encoding="utf-8")
    # Copies, not links into uv's cache: the sandbox uid reads the venv, and a cache cleanup must not empty it.
    _run([uv, "pip", "install", "--quiet", "--link-mode=copy", "--python", str(venv / "bin" / "python"),
          "-r", str(listed)], requirements, venv)
    (venv / READY).write_text("")


def _uv() -> str:
    try:
        import uv  # the installer ships as a wheel with its binary (pyproject: uv)
    except ImportError as exc:
        raise RequirementsError("installing a run's requirements needs uv (pip install uv)") from exc
    return str(uv.find_uv_bin())


def _run(command: list[str], requirements: tuple[str, ...], venv: pathlib.Path) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_SECONDS,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(venv, ignore_errors=True)
        raise RequirementsError(f"cannot install the requirements {', '.join(requirements)}: {exc}") from exc
    if done.returncode == 0:
        return
    shutil.rmtree(venv, ignore_errors=True)
    output = (done.stderr or done.stdout).strip()
    named = [r for r in requirements if _mentioned(r, output)]
    detail = "\n".join(output.splitlines()[-_ERROR_LINES:])
    which = ", ".join(named or requirements)
    raise RequirementsError(f"cannot install the requirement{'s' if len(named) != 1 else ''} {which} "
                            f"(template {REQUIREMENTS_FILE} or spec.runtime.requirements):\n{detail}")


def _mentioned(requirement: str, output: str) -> bool:
    """Whether the installer's output names the requirement's package (names compared normalised)."""
    match = _NAME.match(requirement)
    if match is None:
        return False
    name = _normalise(match.group(0))
    return re.search(rf"(?<![a-z0-9-]){re.escape(name)}(?![a-z0-9])", _normalise(output)) is not None


def _normalise(text: str) -> str:
    return re.sub(r"[-_.]+", "-", text.lower())


def node_args(spec: RunSpec, template_root: pathlib.Path | None, manifest_dir: pathlib.Path) -> list[str]:
    """The ``run-node`` arguments that give every node of the run its packages, variables, disk, /dev/shm and
    datasets.

    Builds (or finds) the run's virtualenv; prints where it is and how long that took, and a notice when
    GPU selectors cannot hold here. Raises RequirementsError for requirements that cannot be installed and
    for a dataset with no local folder.
    """
    env = prepare(read_requirements(template_root, spec.runtime.requirements))
    args = ["--python", env.python]
    if env.requirements:
        state = "cached" if env.cached else "built"
        print(f"environment: {state} virtualenv {pathlib.Path(env.python).parent.parent} "
              f"({', '.join(env.requirements)}) in {env.seconds:.2f}s", file=sys.stderr)
    for name, value in spec.runtime.env:
        args += ["--env", f"{name}={value}"]
    args += storage_args(spec)
    if spec.resources.gpu_type is not None or spec.resources.gpu_memory is not None:
        if (text := gpus.notice(spec.resources, *gpus.local_gpus())) is not None:
            print(f"notice: {text}", file=sys.stderr)
    for index, dataset in enumerate(spec.datasets):
        if dataset.path is None:
            kind = "persistentVolumeClaim" if dataset.claim_name else "configMap" if dataset.config_map else "s3"
            raise RequirementsError(f"spec.datasets[{index}] ({dataset.name}): a {kind} dataset exists only in a "
                                    "cluster; set its path to a local folder holding the data to run locally")
        folder = (manifest_dir / dataset.path).resolve()
        if not folder.is_dir():
            raise RequirementsError(f"spec.datasets[{index}].path: {folder} is not a folder")
        args += ["--dataset", f"{folder}:{dataset.mount_path}"]
    return args


def storage_args(spec: RunSpec) -> list[str]:
    """``spec.runtime.ephemeralStorage`` as the node's disk quota (its scratch size, and a file size limit no
    smaller, as in a pod) and ``shmSize`` as the size of its own /dev/shm; none when absent (the runtime's
    defaults: 2 GiB, /dev/shm inside it)."""
    runtime, args = spec.runtime, []
    if runtime.ephemeral_storage is not None:
        disk = int(parse_quantity(runtime.ephemeral_storage))
        args += ["--max-disk-bytes", str(disk), "--max-file-bytes", str(max_file_bytes_for(disk))]
    if runtime.shm_size is not None:
        args += ["--shm-bytes", str(int(parse_quantity(runtime.shm_size)))]
    return args


__all__ = ["RequirementsError", "RunEnvironment", "cache_root", "node_args", "prepare", "read_requirements",
           "storage_args"]
