"""Write spec.runTemplate of researchcampaign.yaml from researchrun.yaml, into both copies of the CRD.

A campaign's runTemplate is a ResearchRun spec without its idea, so it gets that spec's schema verbatim
(fields, defaults, descriptions, CEL) minus the idea and minus the transition rules (``oldSelf``): a
campaign may change its template between runs, while each run's own spec stays immutable. Run this after
editing researchrun.yaml (a unit test fails until the copies agree):

    python crds/sync_campaign.py
"""

from __future__ import annotations

import copy
import pathlib
from typing import Any

import yaml

HERE = pathlib.Path(__file__).resolve().parent
CHART_CRDS = HERE.parent / "charts" / "kubescientist" / "crds"
HEADER = """\
# ResearchCampaign: one topic or a list of ideas becomes many ResearchRuns, in rounds, ranked by review.
# spec.runTemplate and status.conditions are copied from researchrun.yaml by crds/sync_campaign.py; edit the
# rest here, then run that script (it rewrites this file and the chart's copy).
"""


def _root(crd: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _without_transition_rules(node: Any) -> Any:
    if isinstance(node, dict):
        out = {k: _without_transition_rules(v) for k, v in node.items() if k != "x-kubernetes-validations"}
        rules = [r for r in node.get("x-kubernetes-validations", []) if "oldSelf" not in r["rule"]]
        if rules:
            out["x-kubernetes-validations"] = rules
        return out
    if isinstance(node, list):
        return [_without_transition_rules(v) for v in node]
    return node


def run_template_schema(researchrun: dict[str, Any], description: str) -> dict[str, Any]:
    """The schema of a campaign's runTemplate: the ResearchRun spec's, without idea and transition rules."""
    spec = copy.deepcopy(_root(researchrun)["properties"]["spec"])
    spec["properties"].pop("idea")
    spec["required"] = [r for r in spec.get("required", []) if r != "idea"]
    spec["description"] = description
    return dict(_without_transition_rules(spec))


def synced(researchrun: dict[str, Any], campaign: dict[str, Any]) -> dict[str, Any]:
    """``campaign`` with its runTemplate and condition schema taken from ``researchrun``."""
    out = copy.deepcopy(campaign)
    spec = _root(out)["properties"]["spec"]["properties"]
    spec["runTemplate"] = run_template_schema(researchrun, spec["runTemplate"]["description"])
    conditions = _root(researchrun)["properties"]["status"]["properties"]["conditions"]["items"]
    _root(out)["properties"]["status"]["properties"]["conditions"]["items"] = copy.deepcopy(conditions)
    return out


def render(campaign: dict[str, Any]) -> str:
    return HEADER + yaml.safe_dump(campaign, sort_keys=False, width=120, allow_unicode=True)


def main() -> None:
    researchrun = yaml.safe_load((HERE / "researchrun.yaml").read_text())
    campaign = yaml.safe_load((HERE / "researchcampaign.yaml").read_text())
    text = render(synced(researchrun, campaign))
    for folder in (HERE, CHART_CRDS):
        (folder / "researchcampaign.yaml").write_text(text)


if __name__ == "__main__":
    main()
