"""Bad input gets a clear message naming the field or file, and exit code 2; nothing is written."""

from __future__ import annotations

from harness import V1_TEMPLATE, cli, manifest


def test_missing_template_folder(tmp_path, write_manifest):
    path = write_manifest(manifest("nofolder", tmp_path / "nowhere", metric="r2", budgets=(1, 1, 1, 1), seeds=0))
    result = cli("run", str(path), "--workdir", str(tmp_path / "runs"))
    assert result.returncode == 2
    assert "spec.template.path" in result.stdout and "nowhere" in result.stdout
    assert not (tmp_path / "runs" / "nofolder").exists()


def test_template_without_its_entrypoint(tmp_path, write_manifest):
    template = tmp_path / "broken"
    template.mkdir()
    (template / "kubescientist.yaml").write_text(
        "apiVersion: kubescientist.io/v1alpha1\nkind: ExperimentTemplate\nname: broken\nentrypoint: train.py\n")
    path = write_manifest(manifest("noentry", template, metric="r2", budgets=(1, 1, 1, 1), seeds=0))
    result = cli("run", str(path), "--workdir", str(tmp_path / "runs"))
    assert result.returncode == 2
    assert "kubescientist.yaml" in result.stdout and "train.py" in result.stdout


def test_folder_that_is_no_template(tmp_path, write_manifest):
    empty = tmp_path / "empty"
    empty.mkdir()
    path = write_manifest(manifest("empty", empty, metric="r2", budgets=(1, 1, 1, 1), seeds=0))
    result = cli("run", str(path), "--workdir", str(tmp_path / "runs"))
    assert result.returncode == 2
    assert "not a template" in result.stdout


def test_invalid_manifest_names_file_and_field(tmp_path, write_manifest):
    obj = manifest("badstage", V1_TEMPLATE, metric="r2", budgets=(1, 1, 0, 1), seeds=0)
    path = write_manifest(obj)
    result = cli("run", str(path), "--workdir", str(tmp_path / "runs"))
    assert result.returncode == 2
    assert f"{path}: spec.stages[2].maxNodes: must be >= 1" in result.stdout
    assert cli("validate", str(path)).returncode == 2
    obj["spec"]["stages"][2]["maxNodes"] = 1
    assert cli("validate", str(write_manifest(obj))).returncode == 0


def test_unknown_idea_name_in_an_ideas_file_fails_before_any_node(tmp_path, write_manifest):
    # Offline (no spec.llm): the idea is checked all the same. A v1 template's seed_ideas.json is an ideas file.
    obj = manifest("noidea", V1_TEMPLATE, metric="r2", budgets=(1, 1, 1, 1), seeds=0,
                   idea={"ideasFile": {"path": str(V1_TEMPLATE / "seed_ideas.json"), "name": "nesterov"}})
    path = write_manifest(obj)
    result = cli("run", str(path), "--workdir", str(tmp_path / "runs"))
    said = " ".join(result.stdout.split())
    assert result.returncode == 2, said
    assert "spec.idea.ideasFile.name:" in said and "no idea named 'nesterov'" in said
    assert "(there are: momentum, lr_schedule)" in said
    assert not (tmp_path / "runs" / "noidea").exists()
    obj["spec"]["idea"]["ideasFile"]["path"] = str(tmp_path / "missing.json")
    result = cli("run", str(write_manifest(obj)), "--workdir", str(tmp_path / "runs"))
    assert result.returncode == 2 and "spec.idea.ideasFile.path:" in result.stdout


def test_template_too_large_to_travel_names_its_largest_file(tmp_path, write_manifest):
    template = tmp_path / "heavy"
    (template / "data").mkdir(parents=True)
    (template / "experiment.py").write_text((V1_TEMPLATE / "experiment.py").read_text())
    with open(template / "data" / "big.bin", "wb") as sparse:  # 65 MiB that take no disk space
        sparse.truncate(65 * 1024 * 1024)
    path = write_manifest(manifest("heavy", template, metric="r2", budgets=(1, 1, 1, 1), seeds=0))
    result = cli("run", str(path), "--workdir", str(tmp_path / "runs"))
    said = " ".join(result.stdout.split())
    assert result.returncode == 2, said
    assert "spec.template.path:" in said and "over the 64.0 MiB" in said and "data/big.bin (65.0 MiB)" in said
    assert not (tmp_path / "runs" / "heavy").exists()
