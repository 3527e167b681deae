"""Load and validate a ResearchCampaign, as the apiserver would and a little more.

The CRD schema and its CEL rules check the campaign's own fields (``validate_object``); the rules the local
CEL evaluation cannot reach (those on the root object) and the ones CEL cannot express are the core's
``spec_problems``; and each run the campaign would create is checked as the ResearchRun it will be, so a
runTemplate no run could be made of is refused up front, with ``spec.runTemplate.<field>`` named.
"""

from __future__ import annotations

import pathlib
from typing import Any, Mapping, Sequence

from kubescientist.adapters.manifest import ManifestError, read_manifest, validate_object
from kubescientist.core.campaign import MAX_CAMPAIGN_NAME, CampaignIdea, CampaignSpec, campaign_spec_from_dict
from kubescientist.core.campaign import run_spec, spec_problems

PROBE_IDEA = CampaignIdea(name="probe", title="probe")
"""The idea the runTemplate is checked with: any valid idea, since the template carries none."""


def run_template_problems(template: Any) -> list[str]:
    """Why ``template`` would not make a valid ResearchRun spec, each line naming ``spec.runTemplate.<field>``."""
    if not isinstance(template, Mapping):
        return ["spec.runTemplate: must be an object (a ResearchRun spec without its idea)"]
    if "idea" in template:
        return ["spec.runTemplate.idea: not allowed: each run gets its idea from the campaign"]
    probe = {"apiVersion": "kubescientist.io/v1alpha1", "kind": "ResearchRun", "metadata": {"name": "probe"},
             "spec": run_spec(template, PROBE_IDEA)}
    try:
        validate_object("ResearchRun", probe)
    except ManifestError as exc:
        return [line.replace("spec.", "spec.runTemplate.", 1) if line.startswith("spec.") else
                f"spec.runTemplate: {line}" for line in str(exc).splitlines()]
    return []


def validate_campaign(obj: Any, known_ideas: Sequence[str] = ()) -> dict[str, Any]:
    """A defaulted copy of a ResearchCampaign object; ``ManifestError`` lists every problem by field."""
    valid = validate_object("ResearchCampaign", obj)
    problems = []
    if len(valid["metadata"]["name"]) > MAX_CAMPAIGN_NAME:
        problems.append(f"metadata.name: at most {MAX_CAMPAIGN_NAME} characters (it prefixes the run names)")
    spec = valid["spec"]
    problems += spec_problems(spec, known_ideas)
    problems += run_template_problems(spec.get("runTemplate"))
    if problems:
        raise ManifestError("\n".join(dict.fromkeys(problems)))
    return valid


def load_campaign(path: pathlib.Path) -> tuple[str, CampaignSpec, dict[str, Any]]:
    """Read and validate a ResearchCampaign manifest: its name, model and defaulted object; errors start with
    the file name."""
    obj = read_manifest(path)
    try:
        valid = validate_campaign(obj)
    except ManifestError as exc:
        raise ManifestError("\n".join(f"{path}: {line}" for line in str(exc).splitlines())) from None
    return valid["metadata"]["name"], campaign_spec_from_dict(valid["spec"]), valid
