"""run_node: a node's program judged and recorded; code_hash; the run-node command line."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from runtime_helpers import MANIFEST, PRELUDE, native_template

from experiment_runtime import Limits, code_hash, load_result, run_node, uids
from experiment_runtime.__main__ import main

CONFIG = {"seed": 7, "params": {"lr": 0.01}, "variant": None, "ablation": None}


def test_good_program_succeeds_and_is_recorded(work_root: Path, python: str) -> None:
    code = native_template(
        work_root,
        """
        config = json.load(open(args.config))
        assert os.environ["KUBESCIENTIST_CONFIG"] == args.config
        assert os.environ["KUBESCIENTIST_SEED"] == "7"
        print("uid", os.getuid(), "lr", config["params"]["lr"])
        PNG = b"\\x89PNG\\r\\n\\x1a\\n\\x00\\x00\\x00\\rIHDR" + bytes(17)
        doc = {"schema": "kubescientist.io/metrics/v1", "datasets": {"mod97": {
            "val_acc": {"final": 0.9, "best": 0.95, "direction": "maximize",
                        "curve": {"step": [0, 10], "value": [0.1, 0.9]}},
            "val_loss": {"final": 0.3, "direction": "minimize"}}}}
        json.dump(doc, open(os.path.join(args.out_dir, "metrics.json"), "w"))
        os.makedirs(os.path.join(args.out_dir, "figs"))
        open(os.path.join(args.out_dir, "figs", "curve.png"), "wb").write(PNG)
        """,
    )
    node = work_root / "node"

    result = run_node(code, node, CONFIG, Limits(deadline_seconds=20), python=python)

    assert result.status == "succeeded" and not result.buggy and result.buggy_reason is None
    assert result.exit_code == 0
    assert result.metrics is not None
    assert result.metrics.datasets["mod97"]["val_acc"].best == 0.95
    assert result.metrics.datasets["mod97"]["val_loss"].best == 0.3  # best defaults to final
    assert result.plots == ["figs/curve.png"]
    assert (node / "plots" / "figs" / "curve.png").read_bytes() == b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(17)
    uid, rest = (node / "stdout.txt").read_text().split(" lr ")
    assert rest == "0.01\n"
    if os.geteuid() == 0:  # a uid of its own, leased for the node's run
        assert uids.FIRST_UID <= int(uid.split()[1]) < uids.FIRST_UID + uids.POOL_SIZE
        assert result.protections["ownUid"]
    else:
        assert uid == f"uid {os.getuid()}"
    assert json.loads((node / "config.json").read_text()) == CONFIG
    normalized = json.loads((node / "metrics.json").read_text())
    assert normalized["datasets"]["mod97"]["val_acc"] == {
        "final": 0.9,
        "best": 0.95,
        "direction": "maximize",
        "curve": {"step": [0, 10], "value": [0.1, 0.9]},
    }
    assert result.code_hash == code_hash(code, CONFIG)
    assert 0 < result.duration_seconds < 10 and 0 < result.overhead_seconds < 5
    assert load_result(node) == result


def test_raising_program_is_buggy_with_the_exception_line(work_root: Path, python: str) -> None:
    code = native_template(work_root, 'raise ValueError("learning rate too large: 42")\n')

    result = run_node(code, work_root / "node", CONFIG, Limits(deadline_seconds=20), python=python)

    assert result.buggy and result.status == "failed"
    assert result.exit_code == 1
    assert result.buggy_reason == "exit code 1: ValueError: learning rate too large: 42"
    assert result.metrics is None
    assert "Traceback" in (work_root / "node" / "stderr.txt").read_text()


def test_slow_program_times_out(work_root: Path, python: str) -> None:
    code = native_template(work_root, "write_metrics()\ntime.sleep(60)\n")

    result = run_node(
        code, work_root / "node", CONFIG, Limits(deadline_seconds=1, kill_grace_seconds=0.5), python=python
    )

    assert result.status == "timeout" and result.buggy
    assert result.buggy_reason == "deadline of 1s exceeded"
    assert result.duration_seconds < 1 + 0.5 + 1
    assert result.metrics is None


def test_huge_file_hits_the_file_size_limit(work_root: Path, python: str) -> None:
    code = native_template(work_root, "open('weights.bin', 'wb').write(b'0' * 8 * 1024 * 1024)\nwrite_metrics()\n")

    result = run_node(
        code, work_root / "node", CONFIG, Limits(deadline_seconds=20, max_file_bytes=1024 * 1024), python=python
    )

    assert result.buggy and result.status == "failed"
    assert result.buggy_reason is not None
    assert result.buggy_reason.startswith(
        "output file size limit exceeded (1048576 bytes): OSError: [Errno 27] File too large"
    )


def test_filling_the_disk_is_killed(work_root: Path, python: str) -> None:
    body = """
    for i in range(100):
        open(os.path.join(args.out_dir, f"shard{i}.bin"), "wb").write(os.urandom(128 * 1024))
    time.sleep(60)
    """
    code = native_template(work_root, body)

    result = run_node(
        code, work_root / "node", CONFIG, Limits(deadline_seconds=20, max_disk_bytes=4 * 1024 * 1024), python=python
    )

    assert result.status == "killed" and result.buggy
    assert result.buggy_reason == "wrote more than 4194304 bytes to disk (work dir, /tmp and /dev/shm)"
    assert result.duration_seconds < 5


def test_fork_bomb_node_fails_with_the_process_limit(work_root: Path, python: str) -> None:
    body = """
    for _ in range(10000):
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
    """
    code = native_template(work_root, body)

    result = run_node(code, work_root / "node", CONFIG, Limits(deadline_seconds=20, max_processes=24), python=python)

    assert result.buggy and result.status == "failed"
    assert result.buggy_reason is not None
    assert result.buggy_reason.endswith(
        "BlockingIOError: [Errno 11] Resource temporarily unavailable (process limit of 24 reached?)"
    )


def test_memory_hog_is_buggy(work_root: Path, python: str) -> None:
    code = native_template(work_root, "hog = [bytearray(64 * 1024 * 1024) for _ in range(64)]\nwrite_metrics()\n")

    result = run_node(
        code, work_root / "node", CONFIG, Limits(deadline_seconds=20, memory_bytes=512 * 1024 * 1024), python=python
    )

    if result.protections["cgroup"]:
        assert result.buggy and result.status == "killed"
        assert result.buggy_reason == (
            f"killed for exceeding the memory limit of {512 * 1024 * 1024} bytes (all its processes)")
    else:
        assert result.buggy and result.status == "failed"
        assert result.buggy_reason == f"exit code 1: MemoryError (memory limit of {512 * 1024 * 1024} bytes)"


@pytest.mark.parametrize(
    ("metrics", "reason"),
    [
        (
            '{"datasets": {"mod97": {"val_acc": {"final": NaN}}}}',
            "metrics.json: datasets.mod97.val_acc.final: must be a finite number, got nan",
        ),
        (
            '{"datasets": {"mod97": {"val_acc": {"final": "0.9"}}}}',
            'metrics.json: datasets.mod97.val_acc.final: must be a finite number, got "0.9"',
        ),
        ('{"mod97": {"val_acc": 0.9}}', "metrics.json: mod97: unknown key (expected one of schema, datasets, notes)"),
        ("{}", "metrics.json: datasets: is required"),
        (
            '{"datasets": {"mod97": {"val_acc": {"final": 1, "curve": {"step": [0, 1], "value": [1]}}}}}',
            "metrics.json: datasets.mod97.val_acc.curve: step and value must have the same length, got 2 and 1",
        ),
        (
            "{not json",
            "metrics.json: invalid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        ),
    ],
)
def test_invalid_metrics_make_the_node_buggy(work_root: Path, python: str, metrics: str, reason: str) -> None:
    code = native_template(work_root, f"open(os.path.join(args.out_dir, 'metrics.json'), 'w').write({metrics!r})\n")

    result = run_node(code, work_root / "node", CONFIG, Limits(deadline_seconds=20), python=python)

    assert result.exit_code == 0
    assert result.buggy and result.status == "failed"
    assert result.buggy_reason == reason
    assert not (work_root / "node" / "metrics.json").exists()


def test_no_metrics_is_buggy(work_root: Path, python: str) -> None:
    code = native_template(work_root, "print('forgot to write metrics')\n")

    result = run_node(code, work_root / "node", CONFIG, Limits(deadline_seconds=20), python=python)

    assert result.buggy
    assert result.buggy_reason == "no metrics.json or final_info.json in out_dir"


@pytest.mark.root_only("the leak needs a runner that can read what the program cannot")
def test_metrics_symlink_to_a_private_file_is_refused(work_root: Path, python: str) -> None:
    secret = work_root / "secret.json"
    secret.write_text('{"token": "root-only"}')
    secret.chmod(0o600)
    code = native_template(work_root, f"os.symlink({str(secret)!r}, os.path.join(args.out_dir, 'metrics.json'))\n")

    result = run_node(code, work_root / "node", CONFIG, Limits(deadline_seconds=20), python=python)

    assert result.buggy
    assert result.buggy_reason is not None and "root-only" not in result.buggy_reason
    assert result.buggy_reason.startswith("metrics.json: cannot be read")


def test_v1_template_with_final_info(work_root: Path, python: str) -> None:
    code = work_root / "v1"
    code.mkdir()
    (code / "experiment.py").write_text(
        """
import argparse, json, os, sys
parser = argparse.ArgumentParser()
parser.add_argument("--out_dir", required=True)
args = parser.parse_args()
assert "--config" not in " ".join(sys.argv)
seed = json.load(open(os.environ["KUBESCIENTIST_CONFIG"]))["seed"]
os.makedirs(args.out_dir, exist_ok=True)
info = {"x_div_y": {"means": {"final_val_acc_mean": seed / 10},
                    "stderrs": {"final_val_acc_stderr": 0.02}, "final_info_dict": {"final_val_acc": [0.57]}}}
json.dump(info, open(os.path.join(args.out_dir, "final_info.json"), "w"))
"""
    )
    (code / "prompt.json").write_text('{"system": "You are a scientist.", "task_description": "Grokking."}')

    result = run_node(code, work_root / "node", CONFIG, Limits(deadline_seconds=20), python=python)

    assert result.status == "succeeded", result.buggy_reason
    assert result.metrics is not None and result.metrics.source == "final_info.json"
    value = result.metrics.datasets["x_div_y"]["final_val_acc_mean"]
    assert (value.final, value.best, value.stderr, value.direction) == (0.7, 0.7, 0.02, None)
    assert load_result(work_root / "node").metrics == result.metrics


def test_broken_manifest_is_buggy_naming_the_field(work_root: Path, python: str) -> None:
    code = native_template(work_root, "write_metrics()\n", manifest=MANIFEST.replace("low: 1.0e-4", "low: 1.0"))

    result = run_node(code, work_root / "node", CONFIG, Limits(deadline_seconds=20), python=python)

    assert result.buggy and result.status == "failed"
    assert result.buggy_reason == "kubescientist.yaml: searchSpace.hyperparameters.lr.low: must be < high"
    assert result.exit_code is None


def test_rerun_in_the_same_node_dir_starts_clean(work_root: Path, python: str) -> None:
    code = native_template(work_root, "open('scratch.txt', 'w').write('x')\nwrite_metrics()\n")
    node = work_root / "node"
    run_node(code, node, CONFIG, Limits(deadline_seconds=20), python=python)
    (code / "experiment.py").write_text(PRELUDE + "raise SystemExit(2)\n")

    result = run_node(code, node, CONFIG, Limits(deadline_seconds=20), python=python)

    assert result.buggy and result.buggy_reason == "exit code 2"
    assert not (node / "metrics.json").exists()
    assert not (node / "code" / "scratch.txt").exists()


def test_code_hash_is_stable_and_sensitive(work_root: Path) -> None:
    code = native_template(work_root, "write_metrics()\n")
    (code / "lib").mkdir()
    (code / "lib" / "util.py").write_text("X = 1\n")
    first = code_hash(code, CONFIG)

    assert first.startswith("sha256:") and len(first) == len("sha256:") + 64
    assert code_hash(code, dict(reversed(list(CONFIG.items())))) == first  # key order is not content
    copy = work_root / "copy"
    shutil.copytree(code, copy)
    assert code_hash(copy, CONFIG) == first
    (copy / "__pycache__").mkdir()
    (copy / "__pycache__" / "experiment.cpython-311.pyc").write_bytes(b"bytecode")
    (copy / "run").mkdir()
    (copy / "run" / "metrics.json").write_text("{}")
    assert code_hash(copy, CONFIG) == first  # outputs are not code

    assert code_hash(code, {**CONFIG, "seed": 8}) != first
    assert code_hash(code, {**CONFIG, "params": {"lr": 0.02}}) != first
    (copy / "lib" / "util.py").write_text("X = 2\n")
    assert code_hash(copy, CONFIG) != first
    (copy / "lib" / "util.py").write_text("X = 1\n")
    (copy / "lib" / "util.py").rename(copy / "lib" / "helpers.py")
    assert code_hash(copy, CONFIG) != first
    (copy / "lib" / "helpers.py").rename(copy / "lib" / "util.py")
    (copy / "lib" / "run").mkdir()  # only the top-level run/ is the out dir
    (copy / "lib" / "run" / "data.txt").write_text("d")
    assert code_hash(copy, CONFIG) != first


def test_cli_prints_the_result_and_writes_the_termination_message(
    work_root: Path, python: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = native_template(work_root, 'raise RuntimeError("' + "x" * 6000 + '")\n')
    config = work_root / "config.json"
    config.write_text(json.dumps(CONFIG))
    termination = work_root / "termination-log"
    termination.touch()

    status = main(
        [
            "run-node",
            "--code",
            str(code),
            "--node-dir",
            str(work_root / "node"),
            "--config",
            str(config),
            "--deadline",
            "20",
            "--memory",
            "2Gi",
            "--python",
            python,
            "--termination-log",
            str(termination),
        ]
    )

    assert status == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["buggy"] is True and printed["buggy_reason"].startswith("exit code 1: RuntimeError: xxx")
    message = termination.read_text()
    assert "\n" not in message and len(message.encode()) <= 4096
    summary = json.loads(message)
    assert summary["status"] == "failed" and summary["buggy"] is True
    assert summary["buggyReason"].startswith("exit code 1: RuntimeError: xxx")


def test_cli_reports_a_runner_error_with_exit_1(work_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = work_root / "config.json"
    config.write_text("[1, 2]")

    status = main(
        [
            "run-node",
            "--code",
            str(work_root),
            "--node-dir",
            str(work_root / "node"),
            "--config",
            str(config),
            "--termination-log",
            str(work_root / "absent"),
        ]
    )

    assert status == 1
    assert "must be a JSON object" in capsys.readouterr().err


def test_termination_message_stays_valid_json_within_4096_bytes(work_root: Path, python: str) -> None:
    code = native_template(work_root, "write_metrics()\n")
    result = run_node(code, work_root / "node", CONFIG, Limits(deadline_seconds=20), python=python)
    assert json.loads(result.termination_message())["metrics"] == {"mod97": {"val_acc": 0.97}}

    long_reason = "é" * 5000  # two bytes each: the bound is in bytes, not characters
    message = replace(result, status="failed", buggy=True, buggy_reason=long_reason).termination_message()

    assert len(message.encode()) <= 4096 and "\n" not in message
    summary = json.loads(message)
    assert summary["metrics"] is None  # dropped first to make room
    assert summary["buggyReason"].startswith("ééé") and summary["buggyReason"].endswith("...")
    assert summary["codeHash"] == result.code_hash
