"""Manifests are validated against the CRD itself: schema, defaults and CEL rules, with the field named."""

import copy
import pathlib

import pytest
import yaml

from kubescientist.adapters.manifest import ManifestError, load_run, validate_object

ROOT = pathlib.Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart.yaml"


def quickstart():
    return yaml.safe_load(QUICKSTART.read_text())


def error_of(mutate):
    obj = quickstart()
    mutate(obj)
    with pytest.raises(ManifestError) as info:
        validate_object("ResearchRun", obj)
    return str(info.value)


def test_quickstart_loads_with_defaults_applied():
    run, valid = load_run(QUICKSTART)
    assert run.name == "quickstart"
    assert [s.name for s in run.spec.stages] == ["initial", "tuning", "research", "ablation"]
    assert run.spec.objective.metric == "val_accuracy"
    # Fields the manifest leaves out come from the CRD's defaults.
    assert run.spec.search.max_debug_depth == valid["spec"]["search"]["maxDebugDepth"] == 3
    assert valid["spec"]["writeup"]["enabled"] is True
    with_llm = quickstart()
    with_llm["spec"]["llm"] = {"baseURL": "http://127.0.0.1:8080/v1"}
    llm = validate_object("ResearchRun", with_llm)["spec"]["llm"]
    assert (llm["timeoutSeconds"], llm["structuredOutputs"], llm["answerAttempts"]) == (300, "auto", 3)


@pytest.mark.parametrize("mutate, expected", [
    (lambda o: o["spec"]["stages"][2].update(maxNodes=0), "spec.stages[2].maxNodes: must be >= 1"),
    (lambda o: o["spec"]["search"].update(parallelism=0), "spec.search.parallelism: must be >= 1"),
    (lambda o: o["spec"]["objective"].update(direction="up"), "spec.objective.direction: must be one of"),
    (lambda o: o["spec"].pop("objective"), "spec.objective: required field is missing"),
    (lambda o: o["spec"].update(serach={}), "spec.serach: unknown field"),
    (lambda o: o["spec"]["resources"].update(deadlineSeconds="soon"), "spec.resources.deadlineSeconds: must be "
                                                                      "of type integer"),
    (lambda o: o["spec"]["idea"].update(ideasFile={"path": "i.json", "name": "x"}), "spec.idea: "),
    (lambda o: o["spec"]["stages"].reverse(), "spec.stages: "),
    (lambda o: o["spec"]["resources"].update(memory="0"), "spec.resources.memory"),
    (lambda o: o.update(apiVersion="v1"), "apiVersion: must be kubescientist.io/v1alpha1"),
    (lambda o: o["metadata"].update(name="Not_A_Name"), "metadata.name"),
    (lambda o: o["spec"].update(llm={"answerAttempts": 0}), "spec.llm.answerAttempts: must be >= 1"),
    (lambda o: o["spec"].update(llm={"temperature": 2.5}), "spec.llm.temperature: must be <= 2"),
    (lambda o: o["spec"].update(llm={"timeoutSeconds": 0}), "spec.llm.timeoutSeconds: must be >= 1"),
    (lambda o: o["spec"].update(llm={"maxOutputTokens": 8}), "spec.llm.maxOutputTokens: must be >= 16"),
    (lambda o: o["spec"].update(llm={"structuredOutputs": "xml"}), "spec.llm.structuredOutputs: must be one of"),
])
def test_bad_manifests_name_the_field(mutate, expected):
    assert expected in error_of(mutate)


def test_file_errors_name_the_file(tmp_path):
    broken = tmp_path / "run.yaml"
    obj = quickstart()
    obj["spec"]["stages"][2]["maxNodes"] = 0
    broken.write_text(yaml.safe_dump(obj))
    with pytest.raises(ManifestError, match=rf"^{broken}: spec.stages\[2\].maxNodes: must be >= 1$"):
        load_run(broken)
    (tmp_path / "bad.yaml").write_text("spec: [unclosed")
    with pytest.raises(ManifestError, match="bad.yaml: not valid YAML"):
        load_run(tmp_path / "bad.yaml")
    with pytest.raises(ManifestError, match="missing.yaml: cannot read"):
        load_run(tmp_path / "missing.yaml")


def test_validation_does_not_mutate_the_input():
    obj = quickstart()
    before = copy.deepcopy(obj)
    validate_object("ResearchRun", obj)
    assert obj == before
