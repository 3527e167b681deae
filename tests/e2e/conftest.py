"""Fixtures of the e2e tests: one real control plane per test session (see cluster/cluster.py).

    cluster               session: the running Cluster (kubeconfig, kubectl/helm runners, S3 endpoint, nodes)
    namespace             function: a fresh namespace (its default ServiceAccount exists), deleted afterwards
    restricted_namespace  function: the same, with PodSecurity enforcing the `restricted` profile
    kubescientist_crds    session: crds/*.yaml applied and Established; the CRD names
    real_node             module: a real kubelet + containerd node (cluster/realnode.py) with the images of
                          `make images` imported; only with KUBESCIENTIST_E2E_REAL_NODE=1 (`make e2e-real`),
                          which also makes the apiserver and S3 listen where pods reach them

The e2e tests are skipped, with the reason, when the control-plane binaries have not been built yet
(tests/e2e/cluster/build.sh, about 25 min once on 2 cores); KUBESCIENTIST_BUILD_CLUSTER=1 builds them first,
and Kueue too when test_kueue.py is selected (tests/e2e/kueue.py).
Other knobs: KUBESCIENTIST_E2E_GPU_NODES (default 2), KUBESCIENTIST_E2E_GPU_TAINT=1 (taint the GPU nodes),
KUBESCIENTIST_E2E_KEEP=1 (leave the cluster running after the session; `cluster.py down --dir` stops it).
"""

from __future__ import annotations

import os
import re
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent / "cluster"))

import cluster as control_plane  # noqa: E402  (the module lives next to build.sh, not in a package)
import realnode  # noqa: E402

REAL_NODE = realnode.REAL_NODE_ENV

REPO = Path(__file__).resolve().parents[2]
CRD_DIR = REPO / "crds"
E2E_DIR = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/e2e needs the control plane: mark it e2e even if a file forgets to."""
    for item in items:
        if E2E_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


def pytest_collection_finish(session: pytest.Session) -> None:
    """KUBESCIENTIST_BUILD_CLUSTER=1: build the binaries before any test runs (not inside a fixture, where the
    per-test timeout would cut the ~25 min first build short), and only when e2e tests were selected."""
    if os.environ.get("KUBESCIENTIST_BUILD_CLUSTER") != "1":
        return
    if control_plane.missing_binaries() and any(item.get_closest_marker("e2e") for item in session.items):
        control_plane.run_build(log=_say)
    if any(Path(str(item.path)).name == "test_kueue.py" for item in session.items):
        import kueue  # noqa: PLC0415 - only when the Kueue tests run

        kueue.build(log=_say)


def _say(message: str) -> None:
    # Straight to the terminal: start-up progress and timings are worth seeing even with output captured.
    print(message, file=sys.__stderr__, flush=True)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[control_plane.Cluster]:
    """The test cluster, started once per session and stopped at its end."""
    missing = control_plane.missing_binaries()
    if missing:
        pytest.skip(
            f"e2e control plane not built ({', '.join(missing)} missing in {control_plane.cache_dir() / 'bin'}): "
            f"run {control_plane.BUILD_SCRIPT} once (~25 min) or set KUBESCIENTIST_BUILD_CLUSTER=1"
        )
    keep = os.environ.get("KUBESCIENTIST_E2E_KEEP") == "1"
    run_dir = tmp_path_factory.mktemp("cluster")
    started = control_plane.up(
        run_dir,
        gpu_nodes=int(os.environ.get("KUBESCIENTIST_E2E_GPU_NODES", "2")),
        gpu_taint=os.environ.get("KUBESCIENTIST_E2E_GPU_TAINT") == "1",
        die_with_parent=not keep,
        pod_network=realnode.host_ip() if REAL_NODE else "",
        log=_say,
    )
    try:
        yield started
    finally:
        if keep:
            _say(f"[cluster] left running: python {control_plane.__file__} down --dir {run_dir}")
        else:
            control_plane.down(run_dir, log=_say)


def _namespace_name(request: pytest.FixtureRequest) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    return f"{base}-{secrets.token_hex(3)}"


@pytest.fixture
def namespace(cluster: control_plane.Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace named after the test; deleted (without waiting) after it."""
    name = cluster.create_namespace(_namespace_name(request))
    yield name
    cluster.delete_namespace(name)


@pytest.fixture
def restricted_namespace(cluster: control_plane.Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace labelled pod-security.kubernetes.io/enforce=restricted (plus warn/audit)."""
    name = cluster.create_restricted_namespace("restricted-" + _namespace_name(request))
    yield name
    cluster.delete_namespace(name)


@pytest.fixture(scope="session")
def kubescientist_crds(cluster: control_plane.Cluster) -> list[str]:
    """Apply crds/*.yaml (idempotent) and wait until the apiserver serves them; returns the CRD names."""
    cluster.kubectl("apply", "-f", str(CRD_DIR))
    names = [f"crd/{yaml.safe_load(p.read_text())['metadata']['name']}" for p in sorted(CRD_DIR.glob("*.yaml"))]
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", *names, timeout=90)
    return names


@pytest.fixture(scope="module")
def real_node(cluster: control_plane.Cluster) -> Iterator[realnode.RealNode]:
    """One real node (containerd, runc, kubelet; about 2 s to start) for a test module; stopped, and every
    container removed, at the module's end, which frees the machine's one real node for the next module."""
    if not REAL_NODE:
        pytest.skip("real-node tests run with KUBESCIENTIST_E2E_REAL_NODE=1 (make e2e-real)")
    missing = realnode.missing_tools()
    if missing:
        pytest.skip("a real node needs: " + ", ".join(missing))
    node = realnode.start(cluster, log=_say)
    try:
        yield node
    finally:
        realnode.stop(node, log=_say)
