"""What travels with a template and how its program is called: data files beside the entrypoint reach
the node's work dir (within a size limit that names the largest files), and extra program arguments
come from the template's manifest and from the run."""

from __future__ import annotations

import array
import json
from pathlib import Path

import pytest
from runtime_helpers import MANIFEST, native_template

from experiment_runtime import Limits, TemplateError, command_for, load_template
from experiment_runtime.__main__ import main
from experiment_runtime.template import args_problem, check_size

CONFIG = {"seed": 3, "params": {}, "variant": None, "ablation": None}

# A v1 experiment that needs `--device cpu` and reads data files kept beside it.
V1_WITH_DATA = """
import argparse, array, json, os
parser = argparse.ArgumentParser()
parser.add_argument("--out_dir", required=True)
parser.add_argument("--device", required=True, choices=["cpu", "cuda"])
parser.add_argument("--epochs", type=int, default=1)
args = parser.parse_args()
rows = [line.split(",") for line in open("data/train.csv").read().split()[1:]]
weights = array.array("d", open("weights.bin", "rb").read())
text = open("input.txt").read()
os.makedirs(args.out_dir, exist_ok=True)
info = {"toy": {"means": {"rows": len(rows), "weight_sum": sum(weights), "chars": len(text),
                          "epochs": args.epochs, "device": args.device}}}
json.dump(info, open(os.path.join(args.out_dir, "final_info.json"), "w"))
"""


def v1_with_data(root: Path) -> Path:
    code = root / "v1"
    (code / "data").mkdir(parents=True)
    (code / "experiment.py").write_text(V1_WITH_DATA)
    (code / "data" / "train.csv").write_text("x,y\n1,2\n3,4\n5,6\n")
    (code / "weights.bin").write_bytes(array.array("d", [0.0, 1.0, 2.0, 3.0]).tobytes())
    (code / "input.txt").write_text("to be or not to be\n")
    return code


def test_data_files_and_run_args_reach_a_v1_program(work_root: Path, python: str) -> None:
    code = v1_with_data(work_root)
    config = work_root / "config.json"
    config.write_text(json.dumps(CONFIG))
    node = work_root / "node"
    argv = ["run-node", "--code", str(code), "--node-dir", str(node), "--config", str(config),
            "--deadline", "60", "--python", python]

    # Without its argument the program refuses to start: a buggy node that says why.
    assert main(argv) == 0
    result = json.loads((node / "result.json").read_text())
    assert result["buggy"] and "--device" in result["buggy_reason"]

    assert main([*argv, "--program-arg=--device", "--program-arg=cpu", "--program-arg=--epochs=2"]) == 0
    result = json.loads((node / "result.json").read_text())
    assert result["status"] == "succeeded", result["buggy_reason"]
    means = result["metrics"]["datasets"]["toy"]
    assert {k: v["final"] for k, v in means.items()} == {"rows": 3.0, "weight_sum": 6.0, "chars": 19.0, "epochs": 2.0}
    # The string leaf is skipped, and the normalized metrics say so.
    assert result["metrics"]["notes"] == ['toy.means.device: skipped ("cpu", not a number)']
    assert (node / "code" / "data" / "train.csv").is_file()


def test_manifest_args_come_before_the_runs(tmp_path: Path) -> None:
    code = native_template(tmp_path, "print('hi')\n", MANIFEST + "args: [--device, cpu]\n")
    template = load_template(code)
    assert template.args == ("--device", "cpu")
    command = command_for(template, Path("run"), Path("/c.json"), "py", ("--seed_offset=1",))
    assert command == ["py", "experiment.py", "--out_dir=run", "--config=/c.json", "--device", "cpu",
                       "--seed_offset=1"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("--device cpu", "args: must be a list of strings, got '--device cpu'"),
        ("[--device, 1]", "args: [1]: must be a non-empty string, got 1"),
        ("[--out_dir=/tmp]", "args: [0]: '--out_dir=/tmp': the runner sets --out_dir and --config"),
    ],
)
def test_bad_manifest_args_name_the_field(tmp_path: Path, args: str, message: str) -> None:
    code = native_template(tmp_path, "print('hi')\n", MANIFEST + f"args: {args}\n")
    with pytest.raises(TemplateError) as caught:
        load_template(code)
    assert str(caught.value) == f"{code / 'kubescientist.yaml'}: {message}"
    assert args_problem(["--config", "x"]) == "[0]: '--config': the runner sets --out_dir and --config"


def test_a_template_over_the_size_limit_names_its_largest_files(tmp_path: Path) -> None:
    code = tmp_path / "big"
    (code / "data").mkdir(parents=True)
    (code / "experiment.py").write_text("print('hi')\n")
    (code / "data" / "big.npy").write_bytes(bytes(3000))
    (code / "data" / "small.csv").write_bytes(bytes(1500))
    (code / "__pycache__").mkdir()
    (code / "__pycache__" / "x.pyc").write_bytes(bytes(9000))  # not the template's: not counted
    check_size(code, limit=5000)
    with pytest.raises(TemplateError) as caught:
        check_size(code, limit=4000)
    said = str(caught.value)
    assert said.startswith(f"{code}: holds 4512 bytes of files, over the 4000 bytes that may travel with a template")
    assert "the largest: data/big.npy (3000 bytes), data/small.csv (1500 bytes), experiment.py (12 bytes)" in said
    assert "spec.datasets" in said
