"""``spec.resources.gpuType`` and ``gpuMemory`` locally: there is no machine to choose, only this one.

In a cluster the two select nodes (see ``adapters.kube.manifests.gpu_affinity``). Locally the nodes run
here whatever the GPUs, so the selectors never fail a run: the runner compares them with this machine's
GPUs (``nvidia-smi``) and prints a notice when they are not met or there is no GPU to compare with.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess

from kubescientist.core.quantity import mebibytes_up
from kubescientist.core.spec import Resources

QUERY = ["--query-gpu=name,memory.total", "--format=csv,noheader,nounits"]
TIMEOUT_SECONDS = 20


@dataclasses.dataclass(frozen=True)
class Gpu:
    product: str
    """The model as NVIDIA GPU feature discovery labels it: the name with spaces as dashes."""
    memory_mib: int
    """Memory in MiB (what the node label nvidia.com/gpu.memory holds)."""


def local_gpus() -> tuple[list[Gpu], str | None]:
    """This machine's NVIDIA GPUs, and why none could be listed (None when nvidia-smi answered)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return [], "nvidia-smi not found"
    try:
        done = subprocess.run([smi, *QUERY], capture_output=True, text=True, timeout=TIMEOUT_SECONDS,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [], f"nvidia-smi failed: {exc}"
    if done.returncode != 0:
        return [], f"nvidia-smi failed: {(done.stderr or done.stdout).strip()[:200]}"
    return parse(done.stdout), None


def parse(output: str) -> list[Gpu]:
    """GPUs from ``nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits`` lines."""
    found = []
    for line in output.splitlines():
        name, _, memory = line.rpartition(",")
        if name.strip() and memory.strip().isdigit():
            found.append(Gpu("-".join(name.split()), int(memory)))
    return found


def notice(resources: Resources, gpus: list[Gpu], unavailable: str | None) -> str | None:
    """What to tell the user about the run's GPU selectors here, or None when this machine meets them."""
    wanted = [f"{field}={value}" for field, value in (("gpuType", resources.gpu_type),
                                                      ("gpuMemory", resources.gpu_memory)) if value is not None]
    if not wanted:
        return None
    selectors = f"spec.resources {' and '.join(wanted)}"
    if not gpus:
        return (f"{selectors} select GPU nodes in a cluster; this machine has no GPU ({unavailable or 'none listed'}), "
                "so they are ignored here and the nodes run without one")
    misses = []
    if resources.gpu_type is not None and all(g.product != resources.gpu_type for g in gpus):
        misses.append(f"its GPUs are {', '.join(sorted({g.product for g in gpus}))}")
    if resources.gpu_memory is not None:
        least = mebibytes_up(resources.gpu_memory)
        if all(g.memory_mib < least for g in gpus):
            misses.append(f"they have at most {max(g.memory_mib for g in gpus)} MiB (less than {least} MiB)")
    if not misses:
        return None
    return f"{selectors} select GPU nodes in a cluster; this machine does not match ({'; '.join(misses)}), " \
           "so they are ignored here and the nodes run on its GPUs"


__all__ = ["Gpu", "local_gpus", "notice", "parse"]
