"""One manifest, two modes: the local runner and the operator build the same search tree.

Both drive the engine through ``adapters.driving`` and turn results into outcomes through
``adapters.results``; with the offline proposer and one slot (so that nodes finish in one order), the
nodes they create must agree: the same ids, stages, actions, parents and configs, and the same outcome.
The cluster side runs on the real control plane (node pods on kwok's fake GPU nodes, executed by the
kubelet harness), the local side as ``kubescientist run`` does, on the same template's files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from kubelet_harness import KubeletHarness
from test_operator import (TEMPLATE, OperatorProcess, apply_file, get, operator, research_run,  # noqa: F401
                           s3_client, wait_phase)
from kubescientist.adapters.local.runner import LocalRunner, SilentReporter

STAGES = [{"name": "initial", "maxNodes": 2}, {"name": "tuning", "maxNodes": 3},
          {"name": "research", "maxNodes": 1}, {"name": "ablation", "maxNodes": 1}]


def tree_of_journal(journal: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
    return {node_id: (n["stage"], n["action"], n["parent"], json.dumps(_config(n["config"]), sort_keys=True),
                      n["status"]) for node_id, n in journal["nodes"].items()}


def tree_of_cluster(nodes: list[dict[str, Any]], run: str) -> dict[str, tuple[Any, ...]]:
    out = {}
    for obj in nodes:
        spec = obj["spec"]
        node_id = obj["metadata"]["labels"]["kubescientist.io/node"]
        parent = spec.get("parent")
        out[node_id] = (spec["stage"], spec["action"], parent.removeprefix(f"{run}-") if parent else None,
                        json.dumps(_config(spec["config"]), sort_keys=True), obj["status"]["phase"].lower())
    return out


def _config(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if v is not None and k != "code"}


def test_local_and_cluster_runs_of_one_manifest_build_the_same_tree(
        cluster: Any, restricted_namespace: str, operator: OperatorProcess, tmp_path: Path) -> None:
    namespace, name = restricted_namespace, "parity"
    manifest = research_run(name, namespace, cluster, writeup={"enabled": False}, review={"enabled": False},
                            stages=STAGES, search={"parallelism": 1, "drafts": 2}, seeds=2, seed=11)

    local = json.loads(json.dumps(manifest))
    local["spec"]["template"] = {"path": str(TEMPLATE)}
    for key in ("storage", "nodeSelector"):
        local["spec"].pop(key)
    path = tmp_path / "local.yaml"
    path.write_text(yaml.safe_dump(local, sort_keys=False))
    LocalRunner(path, tmp_path / "runs", SilentReporter()).execute()
    journal = json.loads((tmp_path / "runs" / name / "journal.json").read_text())
    assert journal["phase"] == "succeeded"

    with KubeletHarness(cluster.kubeconfig, [namespace], parallel=1) as kubelet:
        apply_file(cluster, manifest, tmp_path)
        run = wait_phase(cluster, operator, kubelet, namespace, name, ("Succeeded", "Failed"), timeout=300)
    assert run["status"]["phase"] == "Succeeded", json.dumps(run["status"], indent=1)
    nodes = get(cluster, "experimentnodes", namespace)["items"]

    in_cluster, on_machine = tree_of_cluster(nodes, name), tree_of_journal(journal)
    assert len(on_machine) >= 7 and {"draft", "tune", "seed"} <= {t[1] for t in on_machine.values()}
    assert in_cluster == on_machine
    # The same choice of each stage's best and the same events, too.
    stored = json.loads(s3_client(cluster).get_object(cluster.s3.bucket,
                                                      f"e2e/runs/{namespace}/{name}/journal.json").read())
    assert [(s["name"], s["best"], s["status"]) for s in stored["stages"]] == \
        [(s["name"], s["best"], s["status"]) for s in journal["stages"]]
    assert [(e["kind"], e["message"]) for e in stored["events"]] == [(e["kind"], e["message"]) for e in journal["events"]]
