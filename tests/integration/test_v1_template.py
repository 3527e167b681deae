"""An AI Scientist v1-style template (experiment.py --out_dir, final_info.json) runs unchanged."""

from __future__ import annotations

from harness import V1_TEMPLATE, cli, load, manifest


def test_v1_template_runs_unchanged(tmp_path, write_manifest):
    before = {p.name: p.read_bytes() for p in V1_TEMPLATE.iterdir() if p.is_file()}
    path = write_manifest(manifest("v1run", V1_TEMPLATE, metric="r2", budgets=(2, 1, 1, 1), seeds=2))
    result = cli("run", str(path), "--workdir", str(tmp_path / "runs"))
    assert result.returncode == 0, result.stdout + result.stderr
    run_dir = tmp_path / "runs" / "v1run"
    journal = load(run_dir / "journal.json")
    first = journal["nodes"]["n0000"]
    assert first["action"] == "draft" and first["status"] == "succeeded"
    # The v1 final_info.json ({dataset: {"means": ...}}) became the normalised metrics.
    metrics = load(run_dir / "nodes" / "n0000" / "metrics.json")["datasets"]
    assert metrics and all("r2" in per_dataset for per_dataset in metrics.values())
    summary = load(run_dir / "summary.json")
    assert summary["phase"] == "succeeded"
    assert summary["stages"][0]["seeds"]["n"] == 3  # the best draft plus two seed re-runs
    # The template folder itself is untouched: nodes run on copies.
    assert {p.name: p.read_bytes() for p in V1_TEMPLATE.iterdir() if p.is_file()} == before


V1_NEEDS_ARGS_AND_DATA = '''
import argparse, json, os
parser = argparse.ArgumentParser()
parser.add_argument("--out_dir", default="run_0")
parser.add_argument("--device", required=True)
args = parser.parse_args()
points = [tuple(map(float, line.split(","))) for line in open("data/points.csv").read().split()]
seed = int(os.environ.get("KUBESCIENTIST_SEED", "0"))
fit = sum(y for _, y in points) / len(points) + seed * 1e-3
os.makedirs(args.out_dir, exist_ok=True)
info = {"toy": {"means": {"layer_0": {"fit": fit}, "losses": [0.5, 0.25], "device": args.device}}}
json.dump(info, open(os.path.join(args.out_dir, "final_info.json"), "w"))
'''


def test_v1_template_with_data_files_args_and_nested_means(tmp_path, write_manifest):
    # A v1 template that reads a data file beside it, needs `--device cpu` (from spec.template.args: a v1
    # template has no manifest) and reports nested means, which become dotted metric names.
    template = tmp_path / "v1_args"
    (template / "data").mkdir(parents=True)
    (template / "experiment.py").write_text(V1_NEEDS_ARGS_AND_DATA)
    (template / "data" / "points.csv").write_text("0,1\n1,3\n")
    spec = manifest("v1args", template, metric="layer_0.fit", budgets=(1, 1, 1, 1), seeds=0,
                    writeup={"enabled": False}, review={"enabled": False})
    spec["spec"]["template"]["args"] = ["--device", "cpu"]
    result = cli("run", str(write_manifest(spec)), "--workdir", str(tmp_path / "runs"))
    assert result.returncode == 0, result.stdout + result.stderr
    run_dir = tmp_path / "runs" / "v1args"
    node = run_dir / "nodes" / "n0000"
    assert load(run_dir / "journal.json")["nodes"]["n0000"]["status"] == "succeeded"
    metrics = load(node / "metrics.json")
    assert {k: v["final"] for k, v in metrics["datasets"]["toy"].items()} == {"layer_0.fit": 2.0, "losses": 0.375}
    assert metrics["notes"] == ['toy.means.device: skipped ("cpu", not a number)']
    assert load(run_dir / "summary.json")["phase"] == "succeeded"


def test_a_seed_idea_of_the_template_is_a_runs_idea_offline(tmp_path, write_manifest):
    # seed_ideas.json is an ideas file as it is: the run takes one of its ideas without any model.
    spec = manifest("v1seed", V1_TEMPLATE, metric="r2", budgets=(1, 1, 1, 1), seeds=0,
                    idea={"ideasFile": {"path": str(V1_TEMPLATE / "seed_ideas.json"), "name": "momentum"}},
                    writeup={"enabled": False}, review={"enabled": False})
    result = cli("run", str(write_manifest(spec)), "--workdir", str(tmp_path / "runs"))
    assert result.returncode == 0, result.stdout + result.stderr
    idea = load(tmp_path / "runs" / "v1seed" / "idea.json")
    assert idea["name"] == "momentum" and idea["title"].startswith("Does Heavy-Ball Momentum Speed Up")
    assert idea["experiments"][0].startswith("Add heavy-ball momentum")
