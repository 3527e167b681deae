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
