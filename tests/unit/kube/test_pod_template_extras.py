"""A node pod runs a v1 template that needs arguments (spec.template.args) and data files kept beside it."""

from __future__ import annotations

import json
from pathlib import Path

from experiment_runtime import pod
from test_pod_entrypoint import bucket, run_pod  # noqa: F401  (bucket is a fixture)

PROGRAM = """
import argparse, json, os
parser = argparse.ArgumentParser()
parser.add_argument("--out_dir", required=True)
parser.add_argument("--device", required=True)
args = parser.parse_args()
rows = open("data/rows.csv").read().split()
os.makedirs(args.out_dir, exist_ok=True)
json.dump({"d": {"means": {"rows": len(rows), "probe": {"cpu": float(args.device == "cpu")}}}},
          open(os.path.join(args.out_dir, "final_info.json"), "w"))
"""


def test_a_pod_gives_the_program_its_args_and_the_templates_data(bucket: tuple[str, dict[str, bytes]],  # noqa: F811
                                                                 tmp_path: Path) -> None:
    base, objects = bucket
    template = tmp_path / "template"
    (template / "data").mkdir(parents=True)
    (template / "experiment.py").write_text(PROGRAM)
    (template / "data" / "rows.csv").write_text("a\nb\nc\n")
    objects["/code.tar.gz"] = pod.pack(template)
    proc, message = run_pod(tmp_path, "--code-url", f"{base}/code.tar.gz?X-Amz-Signature=g", "--config-json",
                            '{"seed": 0, "params": {}, "variant": null, "ablation": null}', "--deadline", "60",
                            "--program-arg=--device", "--program-arg=cpu")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(message)
    assert report["status"] == "succeeded", report
    assert report["metrics"] == {"d": {"rows": 3.0, "probe.cpu": 1.0}}
