"""The operator with an LLM on the real control plane: a template-free ResearchRun whose programs the
scripted OpenAI-compatible server writes (real HTTP from the operator process, the real openai client).

Only the operator talks to the model, with the key from the run's Secret; the node pods (run locally by
the kubelet harness) get their LLM-written code through object storage and never see the key.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubelet_harness import KubeletHarness
from test_operator import OperatorProcess, apply_file, get, harness, prepare, research_run, s3_client, wait_phase
from tests.llmserver import ScriptedLLMServer

MODEL = "scripted-model"
KEY = "dummy-e2e-key"

__all__ = ["harness"]  # the fixture, shared with test_operator


class _WithEnv:
    """The cluster, with extra environment for the operator process (its price table)."""

    def __init__(self, cluster: Any, extra: dict[str, str]) -> None:
        self._cluster = cluster
        self._extra = extra

    def env(self) -> dict[str, str]:
        return {**self._cluster.env(), **self._extra}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cluster, name)


@pytest.fixture
def server() -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer(api_key=KEY) as running:
        yield running


@pytest.fixture
def llm_operator(cluster: Any, restricted_namespace: str, kubescientist_crds: list[str],
                 tmp_path: Path) -> Iterator[OperatorProcess]:
    prepare(cluster, restricted_namespace)
    cluster.apply([{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "llm-key", "namespace": restricted_namespace},
                    "stringData": {"api-key": KEY}}])
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({MODEL: {"input": 1.0, "output": 4.0}}))
    process = OperatorProcess(_WithEnv(cluster, {"KUBESCIENTIST_LLM_PRICES": str(prices)}), restricted_namespace,
                              tmp_path / "operator.log")
    process.start()
    try:
        yield process
    finally:
        if process.proc is not None and process.proc.poll() is None:
            cluster.kubectl("delete", "researchruns", "--all", "-n", restricted_namespace, "--timeout=60s",
                            check=False, timeout=90)
        process.stop()


def test_a_template_free_run_is_written_by_the_llm_in_the_operator(
        cluster: Any, restricted_namespace: str, llm_operator: OperatorProcess, harness: KubeletHarness,
        server: ScriptedLLMServer, tmp_path: Path) -> None:
    namespace, name = restricted_namespace, "llm-run"
    manifest = research_run(name, namespace, cluster, objective={"metric": "val_acc", "direction": "maximize"},
                            stages=[{"name": "initial", "maxNodes": 2}, {"name": "tuning", "maxNodes": 1},
                                    {"name": "research", "maxNodes": 1}, {"name": "ablation", "maxNodes": 1}],
                            search={"parallelism": 2, "drafts": 1, "debugProbability": 1.0},
                            llm={"baseURL": server.url, "models": {"code": MODEL, "feedback": MODEL},
                                 "secretRef": {"name": "llm-key"}},
                            writeup={"enabled": False}, review={"enabled": False})
    del manifest["spec"]["template"]
    apply_file(cluster, manifest, tmp_path)

    run = wait_phase(cluster, llm_operator, harness, namespace, name, ("Succeeded", "Failed"), timeout=300)
    status = run["status"]
    assert status["phase"] == "Succeeded", json.dumps(status, indent=1) + "\n" + llm_operator.tail()
    assert not harness.errors, harness.errors

    nodes = {n["metadata"]["labels"]["kubescientist.io/node"]: n
             for n in get(cluster, "experimentnodes", namespace)["items"]}
    assert {n["spec"]["stage"] for n in nodes.values()} == {"initial", "tuning", "research", "ablation"}
    draft = nodes["n0000"]
    assert draft["spec"]["action"] == "draft" and draft["status"]["phase"] == "Buggy"
    assert "KeyError" in draft["status"].get("buggyReason", "") + draft["status"].get("message", "")
    fix = next(n for n in nodes.values() if n["spec"]["action"] == "debug")
    assert fix["spec"]["parent"] == f"{name}-n0000" and fix["status"]["phase"] == "Succeeded"
    assert len({n["spec"]["code"]["hash"] for n in nodes.values()}) > 1  # each program its own tarball

    # The operator made the calls, with the Secret's key; the cost is in the status.
    assert {"draft", "debug", "review_node", "select_best"} <= {r.action for r in server.requests}
    assert {r.headers.get("Authorization") for r in server.requests} == {f"Bearer {KEY}"}
    cost = status["cost"]
    assert cost["promptTokens"] > 0 and cost["completionTokens"] > 0 and cost["usd"] > 0

    # Node pods never held the key: not in their env, and their programs saw no *API_KEY* variable.
    for pod in get(cluster, "pods", namespace, selector="kubescientist.io/role=node")["items"]:
        for container in pod["spec"]["containers"]:
            env = json.dumps(container.get("env") or [])
            assert KEY not in env and "API_KEY" not in env and not container.get("envFrom")
    s3 = s3_client(cluster)
    prefix = f"e2e/runs/{namespace}/{name}/nodes/{fix['metadata']['labels']['kubescientist.io/node']}/attempt-1/"
    stdout = s3.get_object(cluster.s3.bucket, prefix + "stdout.txt").read().decode()
    assert "api key visible: False" in stdout
