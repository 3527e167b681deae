"""Loading a ResearchCampaign manifest: bad input is refused with the file and the field named."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
import yaml

from kubescientist.adapters.campaign_manifest import load_campaign, run_template_problems
from kubescientist.adapters.manifest import ManifestError


def _campaign(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "kubescientist.io/v1alpha1", "kind": "ResearchCampaign", "metadata": {"name": "camp"},
            "spec": {"ideas": {"inline": [{"name": "a", "title": "A"}, {"name": "b", "title": "B"}]},
                     "runTemplate": {"template": {"path": "t"}, "objective": {"metric": "val_accuracy"}}, **spec}}


def _write(tmp_path: pathlib.Path, obj: dict[str, Any]) -> pathlib.Path:
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(obj))
    return path


def test_a_valid_campaign_loads_with_defaults(tmp_path: pathlib.Path) -> None:
    name, spec, valid = load_campaign(_write(tmp_path, _campaign()))
    assert name == "camp" and [i.name for i in spec.ideas] == ["a", "b"]
    assert spec.max_concurrent_runs == 2 and spec.approval == "auto" and spec.rounds == 1
    assert valid["spec"]["runTemplate"]["search"]["parallelism"] == 2, "the run spec's defaults apply"


@pytest.mark.parametrize(("spec", "expected"), [
    ({"approval": {"mode": "manual", "approved": ["a", "zzz"]}},
     "spec.approval.approved[1]: 'zzz' is not an idea of the campaign (ideas: a, b)"),
    ({"budget": {"maxCostUSD": -0.5}}, "spec.budget.maxCostUSD: must be >= 0"),
    ({"budget": {"maxGPUHours": -1}}, "spec.budget.maxGPUHours: must be >= 0"),
    ({"runTemplate": {"objective": {"metric": "m"}, "template": {"path": "t"}, "resources": {"memory": "12"}}},
     "spec.runTemplate.resources.memory: '12' is out of range"),
    ({"runTemplate": {"objective": {"metric": "m"}, "review": {"enabled": True}, "writeup": {"enabled": False}}},
     "spec.runTemplate.review.enabled: review.enabled requires writeup.enabled"),
    ({"runTemplate": {"template": {"path": "t"}}}, "spec.runTemplate.objective: required field is missing"),
    ({"runTemplate": {"objective": {"metric": "m"}, "stages": [{"name": "initial"}]}},
     "spec.runTemplate.stages: must have at least 4 items"),
])
def test_bad_campaigns_are_refused_naming_the_field(tmp_path: pathlib.Path, spec: dict[str, Any],
                                                    expected: str) -> None:
    path = _write(tmp_path, _campaign(**spec))
    with pytest.raises(ManifestError) as error:
        load_campaign(path)
    lines = str(error.value).splitlines()
    assert any(line.startswith(f"{path}: {expected}") for line in lines), lines


def test_a_long_campaign_name_is_refused(tmp_path: pathlib.Path) -> None:
    obj = _campaign()
    obj["metadata"]["name"] = "c" * 41
    with pytest.raises(ManifestError, match=r"metadata.name: at most 40 characters"):
        load_campaign(_write(tmp_path, obj))


def test_run_template_with_an_idea_is_refused() -> None:
    assert run_template_problems({"objective": {"metric": "m"}, "idea": {"inline": {"title": "x"}}}) == [
        "spec.runTemplate.idea: not allowed: each run gets its idea from the campaign"]
    assert run_template_problems([]) == ["spec.runTemplate: must be an object (a ResearchRun spec without its idea)"]
