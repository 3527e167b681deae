"""What a cluster run checks before its first node: an idea it cannot find stalls it with a condition naming
the field, offline (no spec.llm) as with an LLM; a template's data files travel to every node pod, within a
size limit whose breach stalls the run naming the largest files."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest
from kube_fakes import TEMPLATE, Cluster

import experiment_runtime.template as template_module
from experiment_runtime.pod import pack, unpack
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


def tarball_template(tmp_path: Path) -> bytes:
    folder = tmp_path / "tpl"
    (folder / "data").mkdir(parents=True)
    for path in TEMPLATE.iterdir():
        if path.is_file():
            (folder / path.name).write_bytes(path.read_bytes())
    (folder / "data" / "train.csv").write_text("x,y\n1,2\n")
    (folder / "input.txt").write_text("to be or not to be\n")
    (folder / "data" / "weights.npy").write_bytes(bytes(6000))
    return pack(folder)


def test_data_files_beside_the_entrypoint_reach_every_node_pod(tmp_path: Path) -> None:
    cluster = Cluster({"template": {"s3": {"uri": "s3://b/templates/tpl.tar.gz"}}})
    cluster.s3["templates/tpl.tar.gz"] = tarball_template(tmp_path)
    assert start(cluster)["phase"] == "Searching"
    for job in cluster.jobs().values():
        args = job["spec"]["template"]["spec"]["containers"][0]["args"]
        code_url = args[args.index("--code-url") + 1]
        key = code_url.removeprefix("https://s3.test/").split("?")[0]
        unpack(cluster.s3[key], tmp_path / "pod" / job["metadata"]["name"])
        pod_code = tmp_path / "pod" / job["metadata"]["name"]
        assert (pod_code / "data" / "train.csv").read_text() == "x,y\n1,2\n"
        assert (pod_code / "input.txt").is_file()


def test_a_template_over_the_size_limit_stalls_naming_its_largest_file(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(template_module, "MAX_TEMPLATE_BYTES", 5000)
    cluster = Cluster({"template": {"s3": {"uri": "s3://b/templates/tpl.tar.gz"}}})
    cluster.s3["templates/tpl.tar.gz"] = tarball_template(tmp_path)
    message = stalled(start(cluster))
    assert message.startswith("spec.template: the template: holds ") and "over the 5000 bytes" in message
    assert "the largest: data/weights.npy (6000 bytes), " in message and "spec.datasets" in message
    assert not cluster.jobs()
