#!/usr/bin/env python3
"""`make images`: build the operator, node-runtime and writeup images daemonless with podman, and cache them.

    python images/build.py [--cuda] [--push REGISTRY/PREFIX] [--only NAME ...]

Each Dockerfile takes its base as the build argument BASE, whose default is the public image a user pulls. Where
that cannot be pulled (no registry reachable, as on our development machines and CI), a base is made here from
Debian's packages with mmdebstrap and imported into podman; its tarball is cached under
$KUBESCIENTIST_CACHE/images/ (default ~/.cache/kubescientist), keyed by the recipe.

Behind a TLS-intercepting proxy the download steps must trust the host's CA bundle: it is passed as the build
secret `ca` (mounted at /run/secrets/ca for one RUN step), never copied into a layer.

Caching: podman's layer cache, in a storage of our own under the cache dir (CONTAINERS_STORAGE_CONF), plus a
build key per image (a hash of its Dockerfile, the files its build copies, the build arguments and the base's
image id) kept as a label: an image whose label matches is not built again. Images are tagged with the chart's
appVersion; the node runtime as <version> (CUDA) and <version>-cpu (CPU, what the tests run).

Only the standard library is used (it runs before any virtualenv exists).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "images"
CHART = REPO / "charts/kubescientist/Chart.yaml"
REGISTRY = "ghcr.io/kubescientist"
KEY_LABEL = "io.kubescientist.build-key"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
CPU_BASE = "python:3.12.8-slim-bookworm"
"""The CPU node runtime's public base: no CUDA needed."""
LOCAL_BASE_REPO = "localhost/kubescientist/debian-python"
# The Debian base made when the public bases cannot be pulled: python3 with its venv module, CA certificates
# (for pip), and bookworm's update and security suites.
DEBIAN_RECIPE = (
    "--variant=minbase", "--include=python3,python3-venv,ca-certificates", "bookworm",
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)
# Our own podman storage and settings: no system-wide state is touched. runc, not crun (crun refuses hybrid
# cgroup hierarchies); cgroupfs (no systemd); nofile/nproc limits a container may set without CAP_SYS_RESOURCE.
CONTAINERS_CONF = """[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""
STORAGE_CONF = """[storage]
driver = "overlay"
graphroot = "{root}"
runroot = "/run/kubescientist-containers"
"""


class BuildError(RuntimeError):
    """An image could not be built (the message names the image and the failing step)."""


@dataclass(frozen=True)
class Target:
    """One image to build."""

    name: str
    """Directory under images/ and the image's name."""
    tag: str
    """The tag (the chart's appVersion, with -cpu for the CPU node runtime)."""
    args: Mapping[str, str] = field(default_factory=dict)
    """Build arguments other than BASE."""
    base: str = ""
    """The public base to use instead of the Dockerfile's default ("" for the default)."""

    @property
    def dockerfile(self) -> Path:
        return IMAGES / self.name / "Dockerfile"

    @property
    def reference(self) -> str:
        return f"{REGISTRY}/{self.name}:{self.tag}"


def cache_dir() -> Path:
    return Path(os.environ.get("KUBESCIENTIST_CACHE", Path.home() / ".cache/kubescientist"))


def app_version(chart: Path = CHART) -> str:
    match = re.search(r'^appVersion:\s*"?([^"\s]+)"?\s*$', chart.read_text(), re.MULTILINE)
    if not match:
        raise BuildError(f"{chart}: no appVersion")
    return match.group(1)


def default_base(dockerfile: Path) -> str:
    """The default of the Dockerfile's global `ARG BASE=...`."""
    match = re.search(r"^ARG BASE=(\S+)\s*$", dockerfile.read_text(), re.MULTILINE)
    if not match:
        raise BuildError(f"{dockerfile}: no `ARG BASE=<image>` before the first FROM")
    return match.group(1)


def admitted_sources(dockerfile: Path) -> list[Path]:
    """What the build may copy: the `!path` entries of <Dockerfile>.dockerignore (an allowlist after `*`)."""
    ignore = dockerfile.with_name("Dockerfile.dockerignore")
    return [REPO / line[1:].strip().rstrip("/") for line in ignore.read_text().splitlines()
            if line.startswith("!")]


def _files(path: Path) -> Iterator[Path]:
    if path.is_file():
        yield path
        return
    for child in sorted(path.rglob("*")):
        if child.is_file() and "__pycache__" not in child.parts and child.suffix != ".pyc":
            yield child


def build_key(target: Target, base_id: str) -> str:
    """Changes exactly when a rebuild could give a different image."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"base": base_id, "args": dict(target.args), "tag": target.tag}).encode())
    for source in [target.dockerfile, *admitted_sources(target.dockerfile)]:
        for path in _files(source):
            digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def podman_env(cache: Path) -> dict[str, str]:
    conf_dir = cache / "containers"
    conf_dir.mkdir(parents=True, exist_ok=True)
    containers_conf, storage_conf = conf_dir / "containers.conf", conf_dir / "storage.conf"
    if not containers_conf.exists():
        containers_conf.write_text(CONTAINERS_CONF)
    if not storage_conf.exists():
        storage_conf.write_text(STORAGE_CONF.format(root=conf_dir / "storage"))
    return {**os.environ, "CONTAINERS_CONF": str(containers_conf), "CONTAINERS_STORAGE_CONF": str(storage_conf)}


@dataclass
class Podman:
    """podman with our own storage and settings."""

    env: dict[str, str]
    log: bool = True

    def run(self, *args: str, check: bool = True, capture: bool = True,
            timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        if shutil.which("podman") is None:
            raise BuildError("podman is not installed (Debian: apt-get install podman buildah runc)")
        proc = subprocess.run(["podman", *args], env=self.env, text=True, timeout=timeout,
                              capture_output=capture)
        if check and proc.returncode != 0:
            detail = (proc.stderr or "").strip().splitlines()[-5:] if capture else []
            raise BuildError(f"podman {' '.join(args[:3])} ... failed ({proc.returncode}): " + "\n".join(detail))
        return proc

    def exists(self, reference: str) -> bool:
        return self.run("image", "exists", reference, check=False).returncode == 0

    def inspect(self, reference: str, template: str) -> str:
        return self.run("image", "inspect", "--format", template, reference).stdout.strip()


def local_debian_base(podman: Podman, cache: Path) -> str:
    """The Debian base (mmdebstrap, cached as a tarball keyed by the recipe), imported into podman."""
    key = hashlib.sha256("\n".join(DEBIAN_RECIPE).encode()).hexdigest()[:12]
    reference = f"{LOCAL_BASE_REPO}:bookworm-{key}"
    if podman.exists(reference):
        return reference
    tarball = cache / "images" / f"debian-bookworm-python-{key}.tar"
    if not tarball.exists():
        if shutil.which("mmdebstrap") is None:
            raise BuildError("no base image can be pulled and mmdebstrap is not installed (apt-get install mmdebstrap)")
        tarball.parent.mkdir(parents=True, exist_ok=True)
        partial = tarball.with_suffix(".partial.tar")
        print(f"base: mmdebstrap {' '.join(DEBIAN_RECIPE[:3])} (a few minutes, once)", flush=True)
        proc = subprocess.run(["mmdebstrap", *DEBIAN_RECIPE[:3], str(partial), *DEBIAN_RECIPE[3:]],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise BuildError("mmdebstrap failed: " + "\n".join(proc.stderr.strip().splitlines()[-5:]))
        partial.rename(tarball)
    print(f"base: podman import {tarball.name} as {reference}", flush=True)
    podman.run("import", str(tarball), reference)
    return reference


def resolve_base(podman: Podman, cache: Path, wanted: str, allow_local: bool) -> str:
    """The wanted public base if it is here or can be pulled, else the local Debian base."""
    first = wanted.split("/", 1)[0]
    if "/" not in wanted or not ("." in first or ":" in first or first == "localhost"):
        # podman refuses short names without a configured search registry; a Dockerfile's FROM means Docker Hub.
        wanted = f"docker.io/{wanted if '/' in wanted else 'library/' + wanted}"
    if podman.exists(wanted):
        return wanted
    pulled = podman.run("pull", "--quiet", wanted, check=False, timeout=600)
    if pulled.returncode == 0:
        return wanted
    if not allow_local:
        raise BuildError(f"base {wanted} cannot be pulled: {pulled.stderr.strip()[-300:]}")
    reason = pulled.stderr.strip().splitlines()[-1] if pulled.stderr.strip() else "pull failed"
    print(f"base: {wanted} cannot be pulled ({reason[:120]}); using a Debian base made here", flush=True)
    return local_debian_base(podman, cache)


def reachable(url: str, timeout: float = 10) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return True
    except (urllib.error.URLError, OSError):
        return False


def targets(version: str, cuda: bool, torch_cpu_index: str | None) -> list[Target]:
    """The images `make images` builds: operator, writeup, the CPU node runtime, and the CUDA one on request."""
    cpu_args = {"TORCH_INDEX_URL": torch_cpu_index} if torch_cpu_index else {"TORCH": ""}
    out = [Target("operator", version), Target("writeup", version), Target("node-runtime", f"{version}-cpu", cpu_args, CPU_BASE)]
    if cuda:
        out.append(Target("node-runtime", version))
    return out


@dataclass(frozen=True)
class Built:
    """What building one image gave."""

    reference: str
    seconds: float
    size_bytes: int
    cached: bool
    base: str


def build(podman: Podman, target: Target, base: str, ca: Path | None) -> Built:
    started = time.monotonic()
    base_id = podman.inspect(base, "{{.Id}}")
    key = build_key(target, base_id)
    if podman.exists(target.reference) and podman.inspect(target.reference, f'{{{{index .Labels "{KEY_LABEL}"}}}}') == key:
        cached = True
    else:
        cached = False
        argv = ["build", "--format", "docker", "--layers", "-f", str(target.dockerfile),
                "--ignorefile", str(target.dockerfile.with_name("Dockerfile.dockerignore")),
                "--build-arg", f"BASE={base}", "--label", f"{KEY_LABEL}={key}", "-t", target.reference]
        for name, value in target.args.items():
            argv += ["--build-arg", f"{name}={value}"]
        if ca is not None:
            argv += ["--secret", f"id=ca,src={ca}"]
        print(f"build: {target.reference} (base {base})", flush=True)
        proc = podman.run(*argv, str(REPO), check=False, capture=False)
        if proc.returncode != 0:
            raise BuildError(f"{target.reference}: podman build failed ({proc.returncode}); its output is above")
    size = int(podman.inspect(target.reference, "{{.Size}}"))
    return Built(target.reference, time.monotonic() - started, size, cached, base)


PAUSE_IMAGE = "localhost/kubescientist/pause:catatonit"
PAUSE_CONTAINERFILE = """FROM scratch
COPY catatonit /pause
USER 65535:65535
ENTRYPOINT ["/pause", "-P"]
"""


def pause_image(podman: Podman, work: Path) -> str:
    """The pod sandbox ("pause") image of the test node: Debian's static catatonit, alone (no registry has ours)."""
    if podman.exists(PAUSE_IMAGE):
        return PAUSE_IMAGE
    catatonit = shutil.which("catatonit") or "/usr/bin/catatonit"
    if not Path(catatonit).is_file():
        raise BuildError("catatonit is not installed (Debian: apt-get install catatonit): the pause image needs it")
    work.mkdir(parents=True, exist_ok=True)
    shutil.copy2(catatonit, work / "catatonit")
    (work / "Containerfile").write_text(PAUSE_CONTAINERFILE)
    podman.run("build", "--format", "docker", "-t", PAUSE_IMAGE, str(work))
    return PAUSE_IMAGE


def push(podman: Podman, reference: str, prefix: str) -> str:
    remote = f"{prefix.rstrip('/')}/{reference.rsplit('/', 1)[1]}"
    podman.run("tag", reference, remote)
    podman.run("push", remote, capture=False)
    return remote


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cuda", action="store_true", help="also build the CUDA node runtime (several GB)")
    parser.add_argument("--push", metavar="REGISTRY/PREFIX", default="", help="push the images there")
    parser.add_argument("--only", nargs="*", default=[], help="image names to build (default: all)")
    parser.add_argument("--pause", action="store_true", help="also make the test node's pause image")
    parser.add_argument("--no-local-base", action="store_true",
                        help="fail instead of making a Debian base when the Dockerfile's default cannot be pulled")
    args = parser.parse_args(argv)
    cache = cache_dir()
    podman = Podman(podman_env(cache))
    ca = HOST_CA if HOST_CA.is_file() else None
    index = TORCH_CPU_INDEX if reachable(TORCH_CPU_INDEX + "/") else None
    if index is None:
        print(f"node-runtime -cpu: {TORCH_CPU_INDEX} is not reachable, so it is built without PyTorch", flush=True)
    started = time.monotonic()
    results: list[Built] = []
    try:
        for target in targets(app_version(), args.cuda, index):
            if args.only and target.name not in args.only:
                continue
            wanted = target.base or default_base(target.dockerfile)
            base = resolve_base(podman, cache, wanted, not args.no_local_base)
            results.append(build(podman, target, base, ca))
            if args.push:
                print(f"pushed {push(podman, target.reference, args.push)}", flush=True)
        if args.pause:
            print(f"pause image: {pause_image(podman, cache / 'images' / 'pause')}", flush=True)
    except BuildError as error:
        print(f"make images: {error}", file=sys.stderr)
        return 1
    print(f"\n{'image':<48} {'size':>9} {'seconds':>8}  base")
    for done in results:
        state = "cached" if done.cached else f"{done.seconds:.0f}"
        print(f"{done.reference:<48} {done.size_bytes / 1e6:>6.0f} MB {state:>8}  {done.base}")
    print(f"total {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
