"""One reader of a ConfigMap's key for the run's idea and the campaign's topic and ideas: a missing map or key
is an error of the caller's kind that names the spec field referring to it."""

from __future__ import annotations

import json

import pytest
from kube_fakes import FakeKube
from test_manifests import spec

from kubescientist.adapters.kube.agent import AgentProblem, resolve_idea
from kubescientist.adapters.kube.clients import config_map_json, config_map_text


def kube_with(data: dict[str, str]) -> FakeKube:
    kube = FakeKube()
    kube.put("configmaps", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ideas", "namespace": "ns"},
                            "data": data})
    return kube


def test_the_text_of_a_key_or_an_error_naming_the_field() -> None:
    kube = kube_with({"topic.md": "# Momentum"})
    assert config_map_text(kube, "ns", "ideas", "topic.md", "spec.topic.configMapRef", ValueError) == "# Momentum"
    with pytest.raises(ValueError, match=r"^spec\.topic\.configMapRef: ConfigMap ideas has no key other\.md$"):
        config_map_text(kube, "ns", "ideas", "other.md", "spec.topic.configMapRef", ValueError)
    with pytest.raises(KeyError, match=r"spec\.x: no ConfigMap gone in namespace ns"):
        config_map_text(kube, "ns", "gone", "topic.md", "spec.x", KeyError)


def test_a_runs_idea_from_a_config_map() -> None:
    run = {"metadata": {"namespace": "ns", "name": "demo"}}
    kube = kube_with({"idea.json": json.dumps({"Name": "momentum", "Title": "Momentum on a line"})})
    assert resolve_idea(run, spec(idea={"configMapRef": {"name": "ideas"}}), kube).title == "Momentum on a line"
    with pytest.raises(AgentProblem, match=r"spec\.idea\.configMapRef: ConfigMap ideas has no key mine\.json"):
        resolve_idea(run, spec(idea={"configMapRef": {"name": "ideas", "key": "mine.json"}}), kube)
    with pytest.raises(AgentProblem, match=r"spec\.idea\.configMapRef: no ConfigMap other in namespace ns"):
        resolve_idea(run, spec(idea={"configMapRef": {"name": "other"}}), kube)


def test_json_of_a_key_must_parse_and_have_the_shape_asked_for() -> None:
    kube = kube_with({"ideas.json": '[{"Name": "a"}]', "idea.json": '{"Name": "a"}', "bad.json": "[1,"})
    assert config_map_json(kube, "ns", "ideas", "ideas.json", "spec.ideas.configMapRef", ValueError, list) == [
        {"Name": "a"}]
    with pytest.raises(ValueError, match=r"^spec\.f: ConfigMap ideas key bad\.json is not JSON: "):
        config_map_json(kube, "ns", "ideas", "bad.json", "spec.f", ValueError, list)
    with pytest.raises(ValueError, match=r"^spec\.f: ConfigMap ideas key idea\.json must hold a JSON list$"):
        config_map_json(kube, "ns", "ideas", "idea.json", "spec.f", ValueError, list)
    with pytest.raises(AgentProblem, match=r"ConfigMap ideas key ideas\.json must hold one JSON object$"):
        resolve_idea({"metadata": {"namespace": "ns", "name": "demo"}},
                     spec(idea={"configMapRef": {"name": "ideas", "key": "ideas.json"}}), kube)
