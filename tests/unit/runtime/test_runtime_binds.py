"""Read-only datasets and a v1 template's plot.py inside a node's sandbox; thread variables from the CPU share."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from runtime_helpers import native_template

from experiment_runtime import Limits, load_result, run_node
from experiment_runtime.binds import Bind, reachable, staged
from experiment_runtime.isolation import namespaces_unavailable

CONFIG = {"seed": 1, "params": {}, "variant": None, "ablation": None}
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(17)


def _needs_namespaces() -> None:
    if namespaces_unavailable(65534 if os.geteuid() == 0 else os.getuid()) is not None:
        pytest.skip("bubblewrap cannot start here")


def _data(folder: Path) -> Path:
    folder.mkdir()
    (folder / "values.txt").write_text("4\n8\n")
    return folder


def test_dataset_is_seen_read_only_at_its_mount_path(work_root: Path, tmp_path: Path, python: str) -> None:
    _needs_namespaces()
    # tmp_path is 0700 under root: the sandbox uid cannot reach it, so the executor stages it.
    data = _data(tmp_path / "points")
    code = native_template(work_root, """
        values = [float(v) for v in open("/mnt/datasets/points/values.txt")]
        try:
            open("/mnt/datasets/points/new.txt", "w").write("x")
            wrote = 1.0
        except OSError:
            wrote = 0.0
        doc = {"schema": "kubescientist.io/metrics/v1", "datasets": {"d": {
            "mean": {"final": sum(values) / len(values)}, "wrote": {"final": wrote},
            "threads": {"final": float(os.environ["OMP_NUM_THREADS"])},
            "greeting": {"final": float(os.environ["GREETING"] == "hi")}}}}
        json.dump(doc, open(os.path.join(args.out_dir, "metrics.json"), "w"))
        """)
    node = work_root / "node"
    result = run_node(code, node, CONFIG, Limits(deadline_seconds=30, cpus=1.0), python=python,
                      datasets=(Bind(data, Path("/mnt/datasets/points")),), env={"GREETING": "hi"})
    assert result.status == "succeeded", result.buggy_reason
    values = {name: metric.final for name, metric in result.metrics.datasets["d"].items()}
    assert values == {"mean": 6.0, "wrote": 0.0, "threads": 1.0, "greeting": 1.0}
    assert sorted(p.name for p in data.iterdir()) == ["values.txt"]
    # The staging mount is gone with the node.
    assert not (node / ".mounts").exists()


@pytest.mark.root_only("staging a folder the sandbox uid cannot reach needs a bind mount")
def test_staged_source_is_a_read_only_mount_the_sandbox_uid_reaches(work_root: Path, tmp_path: Path) -> None:
    data = _data(tmp_path / "private")
    assert not reachable(data, 65534, 65534)
    # In a mount namespace of its own, as the executor is, so nothing leaks into this one.
    script = f"""
import json, os, sys
from pathlib import Path
from experiment_runtime.disk import private_mount_namespace
from experiment_runtime.binds import Bind, reachable, staged
private_mount_namespace()
with staged((Bind(Path({str(data)!r}), Path("/mnt/x")),), Path({str(work_root / "node")!r}), 65534, 65534) as ready:
    try:
        open(ready[0].source / "w", "w")
        writable = True
    except OSError:
        writable = False
    print(json.dumps({{"source": str(ready[0].source), "target": str(ready[0].target),
                      "reachable": reachable(ready[0].source, 65534, 65534), "writable": writable,
                      "values": (ready[0].source / "values.txt").read_text()}}))
"""
    (work_root / "node").mkdir()
    (work_root / "node").chmod(0o755)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ}, timeout=60)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen == {"source": str(work_root / "node" / ".mounts" / "0"), "target": "/mnt/x", "reachable": True,
                    "writable": False, "values": "4\n8\n"}
    assert not (work_root / "node" / ".mounts").exists()


def test_reachable_source_is_bound_as_it_is(work_root: Path) -> None:
    data = _data(work_root / "open")
    with staged((Bind(data, Path("/mnt/d")),), work_root / "node", 65534, 65534) as ready:
        assert ready == (Bind(data, Path("/mnt/d")),)


def test_missing_dataset_folder_is_named(work_root: Path) -> None:
    with pytest.raises(OSError, match="no-such-folder: no such folder"):
        with staged((Bind(work_root / "no-such-folder", Path("/mnt/d")),), work_root / "node", 65534, 65534):
            pass


def _v1_template(root: Path, plot: str) -> Path:
    code = root / "v1"
    code.mkdir()
    (code / "experiment.py").write_text(
        "import argparse, json, os\n"
        "p = argparse.ArgumentParser(); p.add_argument('--out_dir'); a = p.parse_args()\n"
        "os.makedirs(a.out_dir, exist_ok=True)\n"
        "json.dump({'d': {'means': {'acc': 0.5}}}, open(os.path.join(a.out_dir, 'final_info.json'), 'w'))\n")
    (code / "plot.py").write_text(plot)
    (code / "logo.png").write_bytes(PNG)  # the template's own figure: not a plot of this node
    return code


def test_v1_plot_runs_after_the_experiment_and_its_figures_are_kept(work_root: Path, python: str) -> None:
    code = _v1_template(work_root, (
        "import json\n"
        f"png = {PNG!r}\n"
        "info = json.load(open('run_0/final_info.json'))\n"
        "open('acc.png', 'wb').write(png if info['d']['means']['acc'] == 0.5 else b'')\n"))
    node = work_root / "node"
    result = run_node(code, node, CONFIG, Limits(deadline_seconds=30), python=python)
    assert result.status == "succeeded", result.buggy_reason
    assert list(result.plots) == ["acc.png"]
    assert (node / "plots" / "acc.png").read_bytes() == PNG
    assert load_result(node).plots == result.plots
    assert (node / "code" / "acc.png").is_file() and not os.path.lexists(node / "code" / "run_0")


def test_failing_plot_keeps_the_result_and_says_why(work_root: Path, python: str) -> None:
    code = _v1_template(work_root, "raise SystemExit('no figures today')\n")
    node = work_root / "node"
    result = run_node(code, node, CONFIG, Limits(deadline_seconds=30), python=python)
    assert result.status == "succeeded" and not result.buggy
    assert list(result.plots) == []
    log = (node / "plot.txt").read_text()
    assert log.startswith("plot.py: exit code 1") and "no figures today" in log
