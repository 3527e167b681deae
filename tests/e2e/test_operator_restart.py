"""Restart safety and suspend on the real control plane: SIGKILL the operator mid-run, twice; suspend, resume.

The run must complete as if nothing happened: every ExperimentNode has exactly the Jobs its attempts
explain, every Job ran its pod once, and the journal in S3 agrees with the API.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from kubelet_harness import KubeletHarness
from test_operator import (OperatorProcess, apply_file, get, harness, operator, research_run, s3_client, say,  # noqa: F401
                           wait_phase)


def _count(cluster: Any, kind: str, namespace: str) -> int:
    return len(get(cluster, kind, namespace, selector="kubescientist.io/role=node")["items"]) if kind == "jobs" \
        else len(get(cluster, kind, namespace)["items"])


def test_sigkilled_operator_resumes_without_duplicates_and_suspend_holds(
        cluster: Any, restricted_namespace: str, operator: OperatorProcess, tmp_path: Path) -> None:
    namespace, name = restricted_namespace, "restart"
    spec = research_run(name, namespace, cluster, writeup={"enabled": False}, review={"enabled": False},
                        stages=[{"name": "initial", "maxNodes": 2}, {"name": "tuning", "maxNodes": 2},
                                {"name": "research", "maxNodes": 1}, {"name": "ablation", "maxNodes": 1}],
                        search={"parallelism": 2, "drafts": 2})
    # Containers are held Running for 3 s, so that the kills land while nodes run.
    with KubeletHarness(cluster.kubeconfig, [namespace], parallel=2, hold_seconds=3.0) as kubelet:
        started = time.monotonic()
        apply_file(cluster, spec, tmp_path)

        cluster.wait_for("two node Jobs", lambda: _count(cluster, "jobs", namespace) >= 2, 60)
        operator.kill()
        kill1 = _count(cluster, "experimentnodes", namespace)
        time.sleep(4)  # the running pods finish while no operator watches
        operator.start()

        cluster.wait_for("five ExperimentNodes", lambda: _count(cluster, "experimentnodes", namespace) >= 5, 120)
        operator.kill()
        kill2 = _count(cluster, "experimentnodes", namespace)
        operator.start()

        cluster.kubectl("patch", "rr", name, "-n", namespace, "--type=merge", "-p", '{"spec":{"suspend":true}}')
        run = wait_phase(cluster, operator, kubelet, namespace, name, ("Suspended", "Succeeded"), timeout=60)
        suspended = run["status"]["phase"] == "Suspended"
        assert suspended, "the run ended before the suspension could be seen"
        if suspended:
            cluster.wait_for("running nodes to finish while suspended",
                             lambda: get(cluster, "rr", namespace, name)["status"]["nodes"]["running"] == 0, 60)
            held = _count(cluster, "jobs", namespace)
            time.sleep(4)
            assert _count(cluster, "jobs", namespace) == held, "a node started while the run was suspended"
            conditions = {c["type"]: c for c in get(cluster, "rr", namespace, name)["status"]["conditions"]}
            assert conditions["Searching"]["reason"] == "Suspended"
            cluster.kubectl("patch", "rr", name, "-n", namespace, "--type=merge", "-p", '{"spec":{"suspend":false}}')

        run = wait_phase(cluster, operator, kubelet, namespace, name, ("Succeeded", "Failed"), timeout=240)
        duration = time.monotonic() - started
        assert run["status"]["phase"] == "Succeeded", json.dumps(run["status"], indent=1) + operator.tail()
        assert not kubelet.errors, kubelet.errors
        runs = [r for r in kubelet.runs.values() if r.labels.get("kubescientist.io/role") == "node"]

    nodes = {n["metadata"]["name"]: n for n in get(cluster, "experimentnodes", namespace)["items"]}
    jobs = {j["metadata"]["name"]: j for j in get(cluster, "jobs", namespace)["items"]}
    pods = get(cluster, "pods", namespace)["items"]
    # Exactly the Jobs the attempts explain: no duplicate, no orphan.
    expected = {f"{name}-{n['metadata']['labels']['kubescientist.io/node']}-a{attempt}"
                for n in nodes.values() for attempt in range(1, n["status"]["attempts"] + 1)}
    assert set(jobs) == expected, (sorted(jobs), sorted(expected))
    assert all(n["status"]["phase"] == "Succeeded" and n["status"]["attempts"] == 1 for n in nodes.values())
    # Each Job had one pod, and the harness ran each pod once.
    per_job = Counter(p["metadata"]["labels"]["batch.kubernetes.io/job-name"] for p in pods)
    assert set(per_job) == set(jobs) and set(per_job.values()) == {1}
    assert len(runs) == len(jobs) and all(r.exit_code == 0 for r in runs)
    # The journal in S3 agrees with the API.
    journal = json.loads(s3_client(cluster).get_object(
        cluster.s3.bucket, f"e2e/runs/{namespace}/{name}/journal.json").read())
    assert sorted(f"{name}-{i}" for i in journal["nodes"]) == sorted(nodes)
    assert run["status"]["nodes"]["total"] == len(nodes) == len(set(nodes))
    assert operator.starts == 3
    say(f"[e2e restart] run Succeeded in {duration:.1f}s with {len(nodes)} nodes, {len(jobs)} Jobs; operator "
        f"SIGKILLed at {kill1} and {kill2} nodes; suspend held: {suspended}")
