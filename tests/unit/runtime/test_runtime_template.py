"""Template detection and manifest validation: every error names the file and the field."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from experiment_runtime import Hyperparameter, ParamSet, TemplateError, command_for, load_template

GOOD = """\
apiVersion: kubescientist.io/v1alpha1
kind: ExperimentTemplate
name: grokking
description: Modular arithmetic.
entrypoint: experiment.py
searchSpace:
  hyperparameters:
    lr:     {type: float, low: 1.0e-4, high: 1.0e-2, log: true, default: 1.0e-3}
    steps:  {type: int, low: 100, high: 2000, default: 400}
    d_model: {type: choice, values: [32, 64, 128], default: 64}
  variants:
    - {name: rope, description: "rotary positions", params: {positional: rope}}
  ablations:
    - {name: no_weight_decay, params: {weight_decay: 0.0}}
"""


def _native(tmp_path: Path, manifest: str) -> Path:
    (tmp_path / "kubescientist.yaml").write_text(manifest)
    (tmp_path / "experiment.py").write_text("print('hi')\n")
    return tmp_path


def test_native_template_loads(tmp_path: Path) -> None:
    template = load_template(_native(tmp_path, GOOD))

    assert template.kind == "native" and template.name == "grokking" and template.entrypoint == "experiment.py"
    assert template.description == "Modular arithmetic."
    space = template.search_space
    assert space.hyperparameters == (
        Hyperparameter(name="lr", type="float", default=1.0e-3, low=1.0e-4, high=1.0e-2, log=True),
        Hyperparameter(name="steps", type="int", default=400, low=100, high=2000),
        Hyperparameter(name="d_model", type="choice", default=64, values=(32, 64, 128)),
    )
    assert space.variants == (ParamSet(name="rope", description="rotary positions", params={"positional": "rope"}),)
    assert space.ablations == (ParamSet(name="no_weight_decay", description="", params={"weight_decay": 0.0}),)
    assert command_for(template, Path("run"), Path("/n/config.json")) == [
        sys.executable,
        "experiment.py",
        "--out_dir=run",
        "--config=/n/config.json",
    ]


def test_v1_template_loads(tmp_path: Path) -> None:
    (tmp_path / "experiment.py").write_text("")
    (tmp_path / "plot.py").write_text("")
    (tmp_path / "prompt.json").write_text('{"system": "s", "task_description": "Study grokking."}')
    (tmp_path / "seed_ideas.json").write_text('[{"Name": "baseline", "Title": "Baseline"}]')

    template = load_template(tmp_path)

    assert template.kind == "v1" and template.name == tmp_path.name
    assert template.description == "Study grokking."
    assert template.prompt == {"system": "s", "task_description": "Study grokking."}
    assert template.seed_ideas == ({"Name": "baseline", "Title": "Baseline"},)
    assert template.plot_script == "plot.py"
    assert template.search_space.hyperparameters == ()
    assert command_for(template, Path("run"), Path("/n/config.json")) == [
        sys.executable,
        "experiment.py",
        "--out_dir=run",
    ]


def test_a_folder_without_either_is_not_a_template(tmp_path: Path) -> None:
    with pytest.raises(TemplateError) as caught:
        load_template(tmp_path)
    assert str(caught.value) == f"{tmp_path}: no kubescientist.yaml or experiment.py: not a template"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "low: 1.0e-4, high: 1.0e-2",
            "low: 1.0e-2, high: 1.0e-4",
            "searchSpace.hyperparameters.lr.low: must be < high",
        ),
        (
            "default: 1.0e-3}",
            "default: 0.5}",
            "searchSpace.hyperparameters.lr.default: must be within [low, high], got 0.5",
        ),
        ("low: 1.0e-4,", "low: 0.0,", "searchSpace.hyperparameters.lr.low: must be > 0 when log is true"),
        (
            "low: 1.0e-4,",
            "low: 1e-4,",
            "searchSpace.hyperparameters.lr.low: must be a number, got the string '1e-4'"
            " (YAML reads 1e-4 as a string: write 1.0e-4)",
        ),
        ("low: 100,", "low: 100.5,", "searchSpace.hyperparameters.steps.low: must be an integer, got 100.5"),
        ("default: 400}", "}", "searchSpace.hyperparameters.steps.default: is required"),
        ("default: 64}", "default: 48}", "searchSpace.hyperparameters.d_model.default: must be one of values, got 48"),
        ("values: [32, 64, 128]", "values: []", "searchSpace.hyperparameters.d_model.values: must be a non-empty list"),
        (
            "values: [32, 64, 128]",
            "values: [32, 64, 64]",
            "searchSpace.hyperparameters.d_model.values: must not repeat a value",
        ),
        (
            "type: choice",
            "type: categorical",
            "searchSpace.hyperparameters.d_model.type: must be float, int or choice, got 'categorical'",
        ),
        (
            "log: true,",
            "log: true, step: 2,",
            "searchSpace.hyperparameters.lr.step: unknown field (expected one of type, low, high, log, default)",
        ),
        (
            "    - {name: no_weight_decay, params: {weight_decay: 0.0}}",
            "    - {name: no_weight_decay, params: {weight_decay: 0.0}}\n    - {name: no_weight_decay, params: {}}",
            "searchSpace.ablations[1].name: duplicate name 'no_weight_decay'",
        ),
        ("params: {positional: rope}", "params: [rope]", "searchSpace.variants[0].params: must be a mapping, got list"),
        (
            'description: "rotary positions", params: {positional: rope}',
            'description: "rotary positions"',
            "searchSpace.variants[0].params: is required",
        ),
        ("entrypoint: experiment.py", "entrypoint: train.py", "entrypoint: 'train.py' does not exist in"),
        ("entrypoint: experiment.py", "entrypoint: ../experiment.py", "entrypoint: must be inside the template folder"),
        ("entrypoint: experiment.py\n", "", "entrypoint: is required"),
        ("kind: ExperimentTemplate", "kind: Template", "kind: must be 'ExperimentTemplate', got 'Template'"),
        ("name: grokking\n", "name: grokking\nowner: me\n", "owner: unknown field"),
    ],
)
def test_manifest_errors_name_the_field(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in GOOD
    root = _native(tmp_path, GOOD.replace(old, new))

    with pytest.raises(TemplateError) as caught:
        load_template(root)

    assert str(caught.value).startswith(f"{root / 'kubescientist.yaml'}: {message}")


def test_names_are_unique_per_list_not_across_lists(tmp_path: Path) -> None:
    template = load_template(_native(tmp_path, GOOD.replace("    - {name: no_weight_decay", "    - {name: rope")))

    assert (
        [v.name for v in template.search_space.variants]
        == [a.name for a in template.search_space.ablations]
        == ["rope"]
    )


def test_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match=r"kubescientist.yaml: invalid YAML"):
        load_template(_native(tmp_path, "name: [unclosed\n"))
