"""The reconciler with an LLM: the in-memory API and object store, and the scripted OpenAI-compatible server
(real HTTP, the real openai client). The operator makes every LLM call; node pods are played by hand from
the code tarballs the operator stored (a program with the scripted bug fails with its KeyError)."""

from __future__ import annotations

import base64
import copy
import datetime
import io
import json
import re
import tarfile
from collections.abc import Iterator
from typing import Any

import pytest

from kube_fakes import Cluster
from kubescientist.adapters.kube.journal_store import read_journal
from kubescientist.adapters.kube import naming
from kubescientist.adapters.kube.config import Settings
from kubescientist.adapters.kube.reconciling import Reconciler
from tests.llmserver import ScriptedLLMServer

SETTINGS = Settings(node_image="img:test")
MODEL = "scripted-model"
KEY = "dummy-key-from-the-secret"


@pytest.fixture
def server() -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer(api_key=KEY) as running:
        yield running


@pytest.fixture(autouse=True)
def operator_env(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator's price table; its own environment holds a key that no run may use."""
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({MODEL: {"input": 1.0, "output": 4.0}}))
    monkeypatch.setenv("KUBESCIENTIST_LLM_PRICES", str(prices))
    monkeypatch.setenv("OPENAI_API_KEY", "the-operators-own-key")


def llm_cluster(url: str, **llm: Any) -> Cluster:
    cluster = Cluster({
        "objective": {"metric": "val_acc", "direction": "maximize", "aggregation": "mean", "datasets": [],
                      "value": "final"},
        "stages": [{"name": "initial", "maxNodes": 2}, {"name": "tuning", "maxNodes": 2},
                   {"name": "research", "maxNodes": 2}, {"name": "ablation", "maxNodes": 1}],
        "search": {"parallelism": 2, "drafts": 1, "debugProbability": 1.0, "maxDebugDepth": 3},
        "resources": {"gpus": 0, "cpu": "1", "memory": "1Gi", "deadlineSeconds": 60},
        "llm": {"baseURL": url, "models": {"code": MODEL, "feedback": MODEL},
                "secretRef": {"name": "llm"}, **llm},
    })
    del cluster.kube.objects[(naming.RUNS, "ns", "demo")]["spec"]["template"]  # template-free
    cluster.kube.put("secrets", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "llm", "namespace": "ns"},
                                 "data": {"api-key": base64.b64encode(KEY.encode()).decode()}})
    return cluster


def operator(cluster: Cluster) -> Reconciler:
    moment = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    return Reconciler(cluster.kube, SETTINGS, store_factory=cluster.store, clock=lambda: moment)


def reconcile(reconciler: Reconciler, cluster: Cluster) -> float:
    return reconciler.reconcile(cluster.run, cluster.kube.indexed(cluster.name))


def _arg(job: dict[str, Any], flag: str) -> list[str]:
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    return [args[i + 1] for i, a in enumerate(args) if a == flag]


def _key(url: str) -> str:
    return url.split("https://s3.test/", 1)[1].split("?", 1)[0]


def program_of(cluster: Cluster, job: dict[str, Any]) -> dict[str, str]:
    """The files of the code tarball a Job's pod would download."""
    data = cluster.s3[_key(_arg(job, "--code-url")[0])]
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {m.name.lstrip("./"): tar.extractfile(m).read().decode()  # type: ignore[union-attr]
                for m in tar.getmembers() if m.isfile()}


def play_pods(cluster: Cluster) -> None:
    """The pods: each running one 'runs' its program (the scripted bug raises KeyError), uploads its stdout
    and stderr with its presigned PUT URLs and ends with its termination message."""
    for name, job in cluster.jobs().items():
        pod = cluster.pod_for(name)
        if pod is None or pod["status"]["phase"] != "Running":
            continue
        code = program_of(cluster, job)["experiment.py"]
        puts = dict(p.split("=", 1) for p in _arg(job, "--put-url"))
        buggy = "bug: the config has no" in code
        stdout = "api key visible: False\nstep 0: val_acc=0.0000\n"
        stderr = "Traceback (most recent call last):\nKeyError: 'lr'\n" if buggy else ""
        cluster.s3[_key(puts["stdout.txt"])] = stdout.encode()
        cluster.s3[_key(puts["stderr.txt"])] = stderr.encode()
        quality = float(re.search(r"^QUALITY = (\S+)", code, re.MULTILINE).group(1))  # type: ignore[union-attr]
        report = {"status": "failed" if buggy else "succeeded", "buggy": buggy,
                  "buggyReason": "program exited 1: KeyError: 'lr'" if buggy else None, "durationSeconds": 0.5,
                  "codeHash": "sha256:" + "ab" * 32, "metrics": None if buggy else {"synthetic": {"val_acc": quality}}}
        cluster.finish(name, json.dumps(report))


def drive(cluster: Cluster, reconciler: Reconciler, passes: int = 60) -> dict[str, Any]:
    for _ in range(passes):
        reconcile(reconciler, cluster)
        status: dict[str, Any] = cluster.run.get("status", {})
        if status.get("phase") in ("Succeeded", "Failed"):
            return status
        cluster.start_pods()
        reconcile(reconciler, cluster)
        play_pods(cluster)
    pytest.fail(f"run did not end: {cluster.run.get('status')}")


def journal(cluster: Cluster) -> dict[str, Any]:
    found = read_journal(cluster.s3.get, "runs/ns/demo/")
    assert found is not None, "no journal saved"
    return found[0].to_dict()


def test_a_template_free_run_is_written_reviewed_and_judged_by_the_llm(server: ScriptedLLMServer) -> None:
    cluster = llm_cluster(server.url)
    status = drive(cluster, operator(cluster))
    assert status["phase"] == "Succeeded", status
    nodes = journal(cluster)["nodes"]
    draft = nodes["n0000"]
    assert draft["action"] == "draft" and draft["status"] == "buggy" and "KeyError" in draft["outcome"]["reason"]
    fix = next(n for n in nodes.values() if n["action"] == "debug")
    assert fix["parent"] == "n0000" and fix["status"] == "succeeded"
    # The debug prompt showed the draft's stderr, read back from what its pod uploaded.
    assert "KeyError: 'lr'" in json.dumps(server.for_action("debug")[0].body)
    assert {s["status"] for s in journal(cluster)["stages"]} == {"done"}
    # Every node was reviewed; stages were judged; every request carried the Secret's key, not the operator's.
    assert len(server.for_action("review_node")) >= len(nodes)
    assert server.for_action("select_best")
    assert {r.headers.get("Authorization") for r in server.requests} == {f"Bearer {KEY}"}
    cost = status["cost"]
    assert cost["promptTokens"] > 0 and cost["completionTokens"] > 0 and cost["usd"] > 0
    accounts = json.loads(cluster.s3["runs/ns/demo/llm.json"])
    assert accounts["accounts"]["total"]["promptTokens"] == cost["promptTokens"]
    assert {c["prompt"] for c in accounts["calls"]} >= {"draft", "debug", "review_node", "select_best"}
    # Each LLM-written program is its own content-addressed tarball with a generated native manifest.
    hashes = {n["spec"]["code"]["hash"] for n in cluster.kube.of(naming.NODES).values()}
    assert len(hashes) > 1
    for job in cluster.jobs().values():
        files = program_of(cluster, job)
        assert set(files) == {"experiment.py", "kubescientist.yaml"}
        assert _key(_arg(job, "--code-url")[0]).endswith(_arg(job, "--code-sha256")[0] + ".tar.gz")
        # Node pods never see a key.
        assert KEY not in json.dumps(job) and "API_KEY" not in json.dumps(job)


def test_the_token_cap_stops_new_work_and_keeps_finished_nodes(server: ScriptedLLMServer) -> None:
    cluster = llm_cluster(server.url, maxTokens=9000)
    status = drive(cluster, operator(cluster))
    stopped = next(c for c in status["conditions"] if c["type"] == "LLMStopped")
    assert stopped["status"] == "True" and stopped["reason"] == "LLMBudgetExceeded"
    assert "LLM token cap reached" in stopped["message"] and "LLM token cap reached" in status["message"]
    assert status["cost"]["promptTokens"] + status["cost"]["completionTokens"] >= 9000
    nodes = journal(cluster)["nodes"]
    finished = [n for n in nodes.values() if n["status"] in ("succeeded", "buggy")]
    assert finished and not [n for n in nodes.values() if n["status"] in ("pending", "running")]
    assert all(cluster.kube.of(naming.NODES)[f"demo-{n['id']}"]["status"]["phase"] in ("Succeeded", "Buggy")
               for n in finished)
    assert ("Normal", "BudgetExhausted") in {(k, r) for k, r, _ in cluster.kube.events}
    # Nothing is asked once the cap is reached, not even after a restart (the accounts are restored).
    asked = len(server.requests)
    reconcile(operator(cluster), cluster)
    assert len(server.requests) == asked


def test_a_restart_restores_the_accounts_and_does_not_ask_again(server: ScriptedLLMServer) -> None:
    cluster = llm_cluster(server.url)
    first = operator(cluster)
    reconcile(first, cluster)  # the draft is proposed, committed, saved, its node and Job created
    assert set(cluster.jobs()) == {"demo-n0000-a1"}
    cost = copy.deepcopy(cluster.run["status"]["cost"])
    asked = len(server.requests)
    assert cost["promptTokens"] > 0 and asked == 1
    first.forget("ns", "demo")
    second = operator(cluster)
    reconcile(second, cluster)
    assert len(server.requests) == asked  # the committed proposal is not asked for again
    assert cluster.run["status"]["cost"] == cost  # the accounts came back from object storage
    cluster.start_pods()
    play_pods(cluster)
    third = operator(cluster)  # the draft ended while no operator ran
    status = drive(cluster, third)
    assert status["phase"] == "Succeeded"
    assert len(server.for_action("draft")) == 1
    assert status["cost"]["promptTokens"] > cost["promptTokens"]
    assert len(cluster.kube.creates) == len(set(cluster.kube.creates))


def test_an_endpoint_that_refuses_stops_new_work_with_the_reason(server: ScriptedLLMServer) -> None:
    cluster = llm_cluster(server.url)
    secret = cluster.kube.objects[("secrets", "ns", "llm")]
    secret["data"]["api-key"] = base64.b64encode(b"a-wrong-key").decode()  # 401: refused for good, no retry
    status = drive(cluster, operator(cluster))
    assert len(server.requests) == 1 and not cluster.jobs()
    stopped = next(c for c in status["conditions"] if c["type"] == "LLMStopped")
    assert stopped["reason"] == "LLMUnavailable" and "the LLM endpoint failed" in stopped["message"]
    assert status["phase"] == "Failed"  # nothing ran, so there is no result


def test_a_missing_llm_secret_stalls_the_run(server: ScriptedLLMServer) -> None:
    cluster = llm_cluster(server.url)
    del cluster.kube.objects[("secrets", "ns", "llm")]
    reconcile(operator(cluster), cluster)
    status = cluster.run["status"]
    assert status["phase"] == "Pending" and "spec.llm.secretRef: no Secret llm" in status["message"]
    assert not server.requests and not cluster.jobs()
