"""In-memory stand-ins for the Kubernetes API and object storage, to drive the reconciler in unit tests.

``FakeKube`` keeps objects as dicts, answers creates of existing names with the existing object (as the
real client does on 409), filters lists by equality label selectors, merge-patches status and records
Events. ``FakeStore`` is a ``Store`` whose objects live in a dict. ``Cluster.finish`` plays the Job
controller and kubelet: it gives each new Job a pod and ends it with a termination message.
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kubescientist.adapters.kube import naming
from kubescientist.adapters.kube.storage import S3Config, Store

TEMPLATE = Path(__file__).resolve().parents[2] / "fixtures" / "native_template"
RECORDED = Path(__file__).resolve().parent / "recorded"
PLURALS = {"ExperimentNode": naming.NODES, "ResearchRun": naming.RUNS, "Job": "jobs", "Pod": "pods",
           "ConfigMap": "configmaps", "ResearchCampaign": "researchcampaigns"}


def merge(target: dict[str, Any], patch: Mapping[str, Any]) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def matches(selector: str, labels: Mapping[str, str]) -> bool:
    """Whether labels match a selector of ``k=v`` terms or one ``k in (a,b)`` term, as the API server decides."""
    found = re.fullmatch(r"(\S+) in \((.*)\)", selector)
    if found is not None:
        return labels.get(found.group(1)) in found.group(2).split(",")
    wanted = dict(part.split("=", 1) for part in selector.split(",") if part)
    return all(labels.get(k) == v for k, v in wanted.items())


class FakeKube:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.events: list[tuple[str, str, str]] = []
        self.creates: list[tuple[str, str]] = []
        self.patches: list[tuple[str, str]] = []
        self.lists: list[str] = []
        self.fail_create: set[str] = set()
        """Kinds whose next create raises (the operator 'dies' right before it)."""
        self._uids = itertools.count(1)

    def put(self, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        meta.setdefault("uid", f"uid-{next(self._uids)}")
        meta.setdefault("creationTimestamp", f"2026-01-01T00:00:{len(self.objects) % 60:02d}Z")
        meta.setdefault("generation", 1)
        self.objects[(plural, meta["namespace"], meta["name"])] = obj
        return obj

    def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        if obj["kind"] in self.fail_create:
            self.fail_create.discard(obj["kind"])
            raise RuntimeError(f"operator killed before creating {obj['kind']} {obj['metadata']['name']}")
        plural = PLURALS[obj["kind"]]
        key = (plural, obj["metadata"]["namespace"], obj["metadata"]["name"])
        if key in self.objects:
            return copy.deepcopy(self.objects[key])
        self.creates.append((obj["kind"], obj["metadata"]["name"]))
        return copy.deepcopy(self.put(plural, copy.deepcopy(dict(obj))))

    def list(self, api_version: str, plural: str, namespace: str, selector: str) -> list[dict[str, Any]]:
        self.lists.append(plural)
        return [copy.deepcopy(o) for (p, ns, _), o in sorted(self.objects.items())
                if p == plural and ns == namespace and matches(selector, o["metadata"].get("labels") or {})]

    def get(self, api_version: str, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        obj = self.objects.get((plural, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def patch_status(self, api_version: str, plural: str, namespace: str, name: str,
                     status: Mapping[str, Any]) -> None:
        obj = self.objects[(plural, namespace, name)]
        obj.setdefault("status", {})
        merge(obj["status"], status)
        self.patches.append((plural, name))

    def patch(self, api_version: str, plural: str, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        merge(self.objects[(plural, namespace, name)], patch)
        self.patches.append((plural, name))

    def event(self, involved: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
        self.events.append((kind, reason, message))

    # ---- conveniences for tests
    def of(self, plural: str, namespace: str = "ns") -> dict[str, dict[str, Any]]:
        return {name: o for (p, ns, name), o in self.objects.items() if p == plural and ns == namespace}

    def indexed(self, run: str, namespace: str = "ns") -> list[dict[str, Any]]:
        """What the operator's kopf index would hold for the run's ExperimentNodes."""
        return [{"name": o["metadata"]["name"], "uid": o["metadata"]["uid"], "status": copy.deepcopy(o.get("status") or {})}
                for o in self.of(naming.NODES, namespace).values() if o["metadata"]["labels"][naming.RUN_LABEL] == run]


class FakeStore(Store):
    """A Store over a dict shared by every instance built on the same ``objects``."""

    def __init__(self, config: S3Config, namespace: str, run: str, objects: dict[str, bytes]) -> None:
        super().__init__(config, namespace, run)
        self.objects = objects

    def get(self, key: str, bucket: str | None = None) -> bytes | None:
        return self.objects.get(key)

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self.objects[key] = bytes(data)

    def exists(self, key: str) -> bool:
        return key in self.objects

    def presign_get(self, key: str, seconds: int) -> str:
        return f"https://s3.test/{key}?X-Amz-Signature=get"

    def presign_put(self, key: str, seconds: int) -> str:
        return f"https://s3.test/{key}?X-Amz-Signature=put"

    def presign_prefix(self, bucket: str, prefix: str, seconds: int, limit: int) -> list[tuple[str, int, str]]:
        keys = sorted(k for k in self.objects if k.startswith(f"{bucket}/{prefix}"))
        return [(k[len(f"{bucket}/{prefix}"):].lstrip("/"), len(self.objects[k]),
                 f"https://s3.test/{k}?X-Amz-Signature=get") for k in keys]


def success_message(seed: int, r2: float = 0.99) -> str:
    return json.dumps({"status": "succeeded", "buggy": False, "buggyReason": None, "durationSeconds": 1.5,
                       "codeHash": "sha256:" + "ab" * 32,
                       "metrics": {"linear": {"val_r2": r2 - seed * 1e-4}, "shifted": {"val_r2": r2}}})


class Cluster:
    """A fake API with a run in it, and the Job controller and kubelet played by hand."""

    def __init__(self, spec: Mapping[str, Any] | None = None, name: str = "demo") -> None:
        self.kube = FakeKube()
        self.s3: dict[str, bytes] = {}
        self.name = name
        self.kube.put("secrets", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3", "namespace": "ns"},
                                  "data": {k: base64.b64encode(b"x").decode()
                                           for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}})
        self.kube.put("configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                                     "metadata": {"name": "tpl", "namespace": "ns"},
                                     "data": {p.name: p.read_text() for p in TEMPLATE.iterdir() if p.is_file()}})
        body = {
            "idea": {"inline": {"title": "t"}}, "template": {"configMapRef": {"name": "tpl"}},
            "objective": {"metric": "val_r2", "direction": "maximize", "aggregation": "mean", "datasets": [],
                          "value": "final"},
            "stages": [{"name": "initial", "maxNodes": 1}, {"name": "tuning", "maxNodes": 2},
                       {"name": "research", "maxNodes": 1}, {"name": "ablation", "maxNodes": 1}],
            "search": {"parallelism": 2, "drafts": 1, "debugProbability": 0.5, "maxDebugDepth": 3},
            "resources": {"gpus": 1, "cpu": "1", "memory": "1Gi", "deadlineSeconds": 60},
            "seeds": 1, "seed": 0, "suspend": False, "writeup": {"enabled": False}, "review": {"enabled": False},
            "storage": {"s3": {"endpoint": "http://s3.test:9000", "bucket": "b", "prefix": "",
                               "secretRef": {"name": "s3"}}},
        }
        body.update(spec or {})
        self.kube.put(naming.RUNS, {"apiVersion": naming.API_VERSION, "kind": "ResearchRun",
                                    "metadata": {"name": name, "namespace": "ns", "uid": "run-uid", "generation": 1},
                                    "spec": body})

    def store(self, config: S3Config, namespace: str, run: str) -> FakeStore:
        return FakeStore(config, namespace, run, self.s3)

    @property
    def run(self) -> dict[str, Any]:
        return copy.deepcopy(self.kube.objects[(naming.RUNS, "ns", self.name)])

    def jobs(self) -> dict[str, dict[str, Any]]:
        return self.kube.of("jobs")

    def pod_for(self, job: str) -> dict[str, Any] | None:
        return next((p for p in self.kube.of("pods").values()
                     if p["metadata"]["labels"].get("batch.kubernetes.io/job-name") == job), None)

    def start_pods(self) -> list[str]:
        """The Job controller and kwok: every Job without a pod gets one, Running."""
        template = json.loads((RECORDED / "running.json").read_text())["pods"][0]
        started = []
        for name, job in self.jobs().items():
            if self.pod_for(name) is not None:
                continue
            pod = copy.deepcopy(template)
            pod["metadata"] = {"name": f"{name}-x", "namespace": "ns",
                               "labels": {**job["spec"]["template"]["metadata"]["labels"],
                                          "batch.kubernetes.io/job-name": name}}
            pod["spec"] = copy.deepcopy(job["spec"]["template"]["spec"])
            pod["spec"]["nodeName"] = "kwok-gpu-0"
            self.kube.put("pods", pod)
            started.append(name)
        return started

    def finish(self, job: str, message: str | None = None, exit_code: int = 0, **terminated: Any) -> None:
        """The kubelet: end a Job's pod with this termination message; the Job controller: mark the Job."""
        pod = self.pod_for(job)
        assert pod is not None, f"no pod for {job}"
        seed = json.loads(self.jobs()[job]["spec"]["template"]["spec"]["containers"][0]["args"][
            self.jobs()[job]["spec"]["template"]["spec"]["containers"][0]["args"].index("--config-json") + 1])["seed"] \
            if message is None else 0
        state = {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error",
                 "startedAt": "2026-01-01T00:01:00Z", "finishedAt": "2026-01-01T00:01:02Z",
                 "message": message if message is not None else success_message(seed), **terminated}
        pod["status"]["phase"] = "Succeeded" if exit_code == 0 else "Failed"
        pod["status"]["containerStatuses"][0]["state"] = {"terminated": state}
        kind = "Complete" if exit_code == 0 else "Failed"
        self.jobs()[job].setdefault("status", {})["conditions"] = [{"type": kind, "status": "True"}]

    def finish_all(self) -> list[str]:
        done = []
        for name in self.jobs():
            pod = self.pod_for(name)
            if pod is not None and pod["status"]["phase"] == "Running":
                self.finish(name)
                done.append(name)
        return done
