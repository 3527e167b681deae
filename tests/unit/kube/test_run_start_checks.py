"""What a cluster run checks before its first node: an idea it cannot find stalls it with a condition naming
the field, offline (no spec.llm) as with an LLM."""

from __future__ import annotations

import datetime
import json

from kube_fakes import Cluster
from kubescientist.adapters.kube.config import Settings
from kubescientist.adapters.kube.reconciling import Reconciler


def start(cluster: Cluster) -> dict[str, object]:
    moment = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    reconciler = Reconciler(cluster.kube, Settings(node_image="img:test"), store_factory=cluster.store,
                            clock=lambda: moment)
    reconciler.reconcile(cluster.run, cluster.kube.indexed(cluster.name))
    return dict(cluster.run["status"])


def stalled(status: dict[str, object]) -> str:
    conditions = {c["type"]: c for c in status["conditions"]}  # type: ignore[attr-defined]
    assert conditions["Stalled"]["status"] == "True"
    return str(conditions["Stalled"]["message"])


def test_an_offline_run_with_an_ideas_file_stalls_naming_the_field() -> None:
    cluster = Cluster({"idea": {"ideasFile": {"path": "ideas.json", "name": "momentum"}}})
    status = start(cluster)
    message = stalled(status)
    assert status["phase"] == "Pending" and message.startswith("spec.idea.ideasFile: ")
    assert "'momentum'" in message and "spec.idea.configMapRef" in message
    assert not cluster.jobs()


def test_an_offline_run_whose_idea_config_map_is_missing_stalls_then_starts() -> None:
    cluster = Cluster({"idea": {"configMapRef": {"name": "idea", "key": "idea.json"}}})
    assert "no ConfigMap idea" in stalled(start(cluster)) and not cluster.jobs()
    cluster.kube.put("configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                                    "metadata": {"name": "idea", "namespace": "ns"},
                                    "data": {"idea.json": json.dumps({"Name": "momentum", "Title": "Momentum"})}})
    assert start(cluster)["phase"] == "Searching" and cluster.jobs()
