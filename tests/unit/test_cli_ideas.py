"""`kubescientist ideas` on an AI Scientist v1 template folder: without a model its seed ideas are written as
they are (an ideas file a run can name); bad topics are refused with the file named."""

from __future__ import annotations

import json
import pathlib

from click.testing import CliRunner

from kubescientist.cli import EXIT_BAD_INPUT, main

V1 = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "v1_template"


def ideas(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["ideas", *args], env={"KUBESCIENTIST_LLM_MODEL": ""})
    return result.exit_code, result.output


def test_without_a_model_the_seed_ideas_are_written_as_they_are(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "ideas.json"
    code, said = ideas(str(V1), "--out", str(out))
    assert code == 0, said
    assert json.loads(out.read_text()) == json.loads((V1 / "seed_ideas.json").read_text())
    assert "the template's 2 seed idea(s) as they are" in said
    # prompt.json names its template folder just as well.
    again = tmp_path / "again.json"
    assert ideas(str(V1 / "prompt.json"), "--out", str(again))[0] == 0
    assert json.loads(again.read_text()) == json.loads(out.read_text())


def test_a_topic_without_a_model_or_a_folder_that_is_no_template_is_refused(tmp_path: pathlib.Path) -> None:
    topic = tmp_path / "topic.md"
    topic.write_text("# Title: grokking\n")
    code, said = ideas(str(topic))
    assert code == EXIT_BAD_INPUT and "--model: no ideation model" in said
    assert not (tmp_path / "topic.json").exists()
    code, said = ideas(str(tmp_path))
    assert code == EXIT_BAD_INPUT and "TOPIC: " in said and "not a template" in said
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "experiment.py").write_text("print('hi')\n")
    code, said = ideas(str(bare), "--model", "m")
    assert code == EXIT_BAD_INPUT and "no prompt.json" in said


def test_a_native_template_needs_a_description(tmp_path: pathlib.Path) -> None:
    native = tmp_path / "native"
    native.mkdir()
    (native / "train.py").write_text("print('hi')\n")
    (native / "kubescientist.yaml").write_text("apiVersion: kubescientist.io/v1alpha1\nkind: ExperimentTemplate\n"
                                               "name: toy\nentrypoint: train.py\n")
    code, said = ideas(str(native), "--model", "m")
    assert code == EXIT_BAD_INPUT and "kubescientist.yaml: description: needed" in " ".join(said.split())
