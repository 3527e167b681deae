"""spec.template.args: validated by the CRD, carried by the spec model, and passed to the program by the
local runner and in a node pod's command (``--program-arg=ARG``, so an argument starting with ``--`` stays one)."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
import yaml

from experiment_runtime.__main__ import _parser
from kubescientist.adapters.kube import manifests
from kubescientist.adapters.kube.config import Settings
from kubescientist.adapters.manifest import ManifestError, validate_object
from kubescientist.core.journal import Node, NodeConfig
from kubescientist.core.spec import run_spec_from_dict

QUICKSTART = pathlib.Path(__file__).resolve().parents[2] / "examples" / "quickstart.yaml"


def run_with(args: Any) -> dict[str, Any]:
    obj = yaml.safe_load(QUICKSTART.read_text())
    obj["spec"]["template"]["args"] = args
    return validate_object("ResearchRun", obj)


def test_args_reach_the_spec_model_in_order() -> None:
    spec = run_spec_from_dict(run_with(["--device", "cpu", "--batch_size=8"])["spec"])
    assert spec.template is not None and spec.template.args == ("--device", "cpu", "--batch_size=8")
    assert run_spec_from_dict(run_with([])["spec"]).template.args == ()  # type: ignore[union-attr]


@pytest.mark.parametrize(("args", "expected"), [
    (["--out_dir=/tmp/x"], "spec.template.args: template.args must not set --out_dir or --config"),
    (["--config", "c.json"], "spec.template.args: template.args must not set --out_dir or --config"),
    ([""], "spec.template.args[0]: "),
    ([f"--a{i}" for i in range(33)], "spec.template.args: "),
    ("--device cpu", "spec.template.args: must be of type array"),
])
def test_bad_args_name_the_field(args: Any, expected: str) -> None:
    with pytest.raises(ManifestError) as caught:
        run_with(args)
    assert expected in str(caught.value)


def test_a_node_pod_passes_the_args_to_its_program() -> None:
    spec = run_spec_from_dict(run_with(["--device", "cpu"])["spec"])
    node = Node(id="n0001", seq=1, stage="initial", action="draft", parent=None, config=NodeConfig(seed=0),
                reason="r", status="running", attempts=1)
    job = manifests.node_job("demo", "ns", manifests.node_owner("demo-n0001", "uid"), spec, node, 1, Settings(),
                             "https://s3/code?sig", "ab" * 32, {})
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert [a for a in args if a.startswith("--program-arg")] == ["--program-arg=--device", "--program-arg=cpu"]
    # The pod's own parser reads them back as the program's arguments, in order.
    parsed = _parser().parse_args(args[2:])
    assert parsed.program_arg == ["--device", "cpu"]
