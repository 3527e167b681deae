"""The images `make images` built (images/build.py), inspected in podman's storage: run as uid 65532, the
entrypoints start, and the host's CA bundle passed as a build secret is in no layer.

Skipped, with the reason, where podman or the built images are missing (`make images` builds them).
"""

from __future__ import annotations

import importlib.util
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.real_node, pytest.mark.root_only("podman with its storage under the cache")]

REPO = Path(__file__).resolve().parents[2]
_SPEC = importlib.util.spec_from_file_location("kubescientist_image_build", REPO / "images" / "build.py")
assert _SPEC is not None and _SPEC.loader is not None
build = importlib.util.module_from_spec(_SPEC)  # images/build.py is a script, not a package module
sys.modules[_SPEC.name] = build  # its dataclasses look their module up while being made
_SPEC.loader.exec_module(build)

VERSION = build.app_version()
IMAGES = {name: f"{build.REGISTRY}/{name}:{tag}" for name, tag in
          (("operator", VERSION), ("writeup", VERSION), ("node-runtime", f"{VERSION}-cpu"))}
def podman(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[bytes]:
    env = build.podman_env(build.cache_dir())  # the storage `make images` built into
    return subprocess.run(["podman", *args], env=env, capture_output=True, timeout=timeout)


def built(reference: str) -> bool:
    return shutil.which("podman") is not None and podman("image", "exists", reference).returncode == 0


def need(name: str) -> str:
    reference = IMAGES[name]
    if not built(reference):
        pytest.skip(f"{reference} not built (make images)")
    return reference


def host_only_certificates() -> list[bytes]:
    """The certificates this host added to its bundle (the TLS-intercepting proxy's CA among them), as the
    base64 body of each PEM block: what a leaked build secret would carry and no public image has."""
    added = sorted(Path("/usr/local/share/ca-certificates").glob("**/*.crt"))
    blocks = [m for path in added for m in re.findall(rb"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----",
                                                      path.read_bytes(), re.S)]
    # The body's first line is enough to recognise it, whatever line endings a copy has.
    return [block.strip().splitlines()[0] for block in blocks]


@pytest.mark.parametrize("name", ["node-runtime", "operator"])
def test_the_build_secret_is_in_no_layer(name: str, tmp_path: Path) -> None:
    reference = need(name)
    # Where the host added no CA (no proxy), only the secret's mount point is checked: it must stay empty.
    certificates = host_only_certificates()
    archive = tmp_path / "image.tar"
    assert podman("save", "--format", "docker-archive", "-o", str(archive), reference).returncode == 0
    with tarfile.open(archive) as outer:
        manifest = json.loads(outer.extractfile("manifest.json").read())  # type: ignore[union-attr]
        for layer in manifest[0]["Layers"]:
            data = outer.extractfile(layer).read()  # type: ignore[union-attr]
            with tarfile.open(fileobj=io.BytesIO(data)) as inner:
                for member in inner.getmembers():
                    assert not (member.isfile() and "secrets/" in member.name and member.size > 0), member.name
            for certificate in certificates:
                assert certificate not in data, f"{reference}: a CA the host added is in layer {layer}"


@pytest.mark.parametrize("name", ["node-runtime", "operator", "writeup"])
def test_images_run_as_65532_and_their_entrypoints_start(name: str) -> None:
    reference = need(name)
    inspected = json.loads(podman("image", "inspect", reference).stdout)[0]
    assert inspected["Config"]["User"] == "65532:65532"
    proc = podman("run", "--rm", "--read-only", "--network", "none", reference, "--help", timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert b"usage" in proc.stdout.lower() + proc.stderr.lower()
