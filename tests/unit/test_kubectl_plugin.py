"""`kubectl-scientist` against recorded objects and a fake API: the tree, logs, paper, suspend and resume.

tests/fixtures/kubectl_plugin/tree.json holds a ResearchRun and its ExperimentNodes exactly as the e2e
apiserver returned them (schema defaults applied); tests/e2e/test_plugin.py re-records it with
KUBESCIENTIST_RECORD=1.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from rich.console import Console

from kubescientist.adapters import kubectl_plugin as plugin

RECORDED = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "kubectl_plugin" / "tree.json").read_text())
RUN: dict[str, Any] = RECORDED["run"]
NODES: list[dict[str, Any]] = RECORDED["nodes"]
NAME = RUN["metadata"]["name"]


CAMPAIGN: dict[str, Any] = {
    "metadata": {"name": "camp"},
    "spec": {"topic": {"inline": "# Title: t"}, "approval": {"mode": "manual", "approved": [], "rejected": []}},
    "status": {"phase": "Running", "round": 1, "runs": {"total": 2, "running": 1, "succeeded": 1, "failed": 0},
               "used": {"tokens": 1200, "usd": 0.25, "gpuHours": 0.5},
               "leaderboard": [{"run": "camp-rope", "idea": "rope", "score": 6.0, "metric": 0.97}],
               "bestByMetric": {"run": "camp-rope", "idea": "rope", "metric": 0.97},
               "ideas": [{"name": "rope", "round": 1, "state": "Succeeded"},
                         {"name": "wd", "round": 1, "state": "Proposed"},
                         {"name": "old", "round": 1, "state": "Dropped", "reason": "not novel: Power et al."}]},
}


class FakeApi:
    """The recorded run and nodes, a Secret, object storage as a dict, Job logs as a dict."""

    def __init__(self) -> None:
        self.namespace = "default"
        self.run = copy.deepcopy(RUN)
        self.nodes = copy.deepcopy(NODES)
        self.objects: dict[str, bytes] = {}
        self.logs: dict[str, str] = {}
        self.secret: dict[str, Any] | None = {"data": {
            "AWS_ACCESS_KEY_ID": base64.b64encode(b"id").decode(),
            "AWS_SECRET_ACCESS_KEY": base64.b64encode(b"secret").decode()}}
        self.patches: list[tuple[str, bool]] = []
        self.campaign = copy.deepcopy(CAMPAIGN)
        self.spec_patches: list[tuple[str, str, dict[str, Any]]] = []
        self.reads: list[tuple[plugin.S3Config, str]] = []

    def get_run(self, name: str) -> dict[str, Any]:
        if name != NAME:
            raise plugin.PluginError(f"researchrun {name} not found in namespace {self.namespace}")
        return self.run

    def list_nodes(self, run: str) -> list[dict[str, Any]]:
        return [n for n in self.nodes if n["metadata"]["labels"]["kubescientist.io/run"] == run]

    def get_node(self, name: str) -> dict[str, Any]:
        for node in self.nodes:
            if node["metadata"]["name"] == name:
                return node
        raise plugin.PluginError(f"experimentnode {name} not found in namespace {self.namespace}")

    def get_object(self, plural: str, name: str) -> dict[str, Any]:
        if plural == "researchcampaigns" and name == CAMPAIGN["metadata"]["name"]:
            return self.campaign
        if plural == "researchruns" and name == NAME:
            return self.run
        raise plugin.PluginError(f"{plural[:-1]} {name} not found in namespace {self.namespace}")

    def patch_spec(self, plural: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        target = self.get_object(plural, name)
        self.spec_patches.append((plural, name, copy.deepcopy(spec)))
        target["spec"].update(copy.deepcopy(spec))
        return target

    def set_suspend(self, run: str, suspend: bool) -> dict[str, Any]:
        self.patches.append((run, suspend))
        self.run["spec"]["suspend"] = suspend
        return self.run

    def get_secret(self, name: str) -> dict[str, Any] | None:
        return self.secret

    def job_log(self, job: str) -> str:
        if job not in self.logs:
            raise plugin.PluginError(f"Job {job} has no pod left to read a log from")
        return self.logs[job]

    def read_object(self, access: plugin.S3Config, uri: str) -> bytes:
        self.reads.append((access, uri))
        if uri not in self.objects:
            raise plugin.PluginError(f"{uri}: NoSuchKey: The specified key does not exist.")
        return self.objects[uri]


def invoke(api: FakeApi, *args: str) -> Any:
    return CliRunner().invoke(plugin.cli, list(args), obj=api, catch_exceptions=False)


def tree_text(run: dict[str, Any], nodes: list[dict[str, Any]]) -> str:
    console = Console(width=200, color_system=None, record=True, file=io.StringIO())
    plugin.render_tree(run, nodes, console)
    return console.export_text()


def node_line(text: str, node_id: str) -> str:
    return next(line for line in text.splitlines()[1:] if re.search(rf"\b{node_id}\b", line))


def test_tree_of_the_recorded_run() -> None:
    text = tree_text(RUN, NODES)
    lines = text.splitlines()
    assert lines[0] == ("ResearchRun momentum Searching stage=research objective: maximize val_r2  "
                        "best momentum-n0001 = 0.91  (5 nodes)")
    assert lines[1:] == [
        "└── ✓ n0000 draft [initial] val_r2=0.62 4.2s",
        "    ├── ✓ n0001 tune [tuning] val_r2=0.91 4.2s  ★ best",
        "    │   ├── ! n0003 seed [tuning] seed=1 4.2s failed: pod evicted: node lost",
        "    │   └── … n0004 variant [research] (running on kwok-gpu-0)",
        "    └── ✗ n0002 tune [tuning] 4.2s buggy: ZeroDivisionError: division by zero",
    ]


def test_tree_survives_missing_parents_and_statuses() -> None:
    nodes = copy.deepcopy(NODES)
    orphan = next(n for n in nodes if n["metadata"]["name"].endswith("n0001"))
    nodes.remove(next(n for n in nodes if n["metadata"]["name"].endswith("n0000")))  # its parent is gone
    for node in nodes:
        node.pop("status", None)  # created, not yet seen by the operator
    text = tree_text(RUN, nodes)
    assert node_line(text, "n0001").startswith("├── ○ n0001") and orphan["spec"]["parent"] == "momentum-n0000"
    assert node_line(text, "n0003").startswith("│   ├── ○ n0003")


def test_header_of_a_run_without_status() -> None:
    run = copy.deepcopy(RUN)
    run.pop("status")
    run["spec"]["suspend"] = True
    assert tree_text(run, []).splitlines()[0] == \
        "ResearchRun momentum Pending (suspended) objective: maximize val_r2  (0 nodes)"


def test_seed_mean_and_stderr_in_the_header() -> None:
    run = copy.deepcopy(RUN)
    run["status"]["bestNode"].update(metric=0.9, stderr=0.012, seeds=3)
    assert "best momentum-n0001 = 0.9 ± 0.012 over 3 seeds" in tree_text(run, NODES).splitlines()[0]


def test_header_says_how_many_nodes_wait_for_admission_and_why() -> None:
    run = copy.deepcopy(RUN)
    why = "2 nodes wait for admission (Kueue): insufficient unused quota for nvidia.com/gpu in flavor gpu, 5 more needed"
    run["status"]["nodes"]["waitingForAdmission"] = 2
    run["status"]["conditions"] = [{"type": "Queued", "status": "True", "reason": "WaitingForAdmission",
                                   "message": why}]
    assert tree_text(run, NODES).splitlines()[1] == f"  queued: {why}"
    assert "queued" not in tree_text(RUN, NODES)


def test_tree_command() -> None:
    result = invoke(FakeApi(), "tree", NAME)
    assert result.exit_code == 0
    assert "★ best" in node_line(result.output, "n0001")
    missing = CliRunner().invoke(plugin.cli, ["tree", "nope"], obj=FakeApi())
    assert missing.exit_code == 1 and "researchrun nope not found in namespace default" in missing.output


def test_namespace_option_before_or_after_the_command() -> None:
    for args in (["-n", "research", "tree", NAME], ["tree", NAME, "-n", "research"]):
        api = FakeApi()
        assert invoke(api, *args).exit_code == 0
        assert api.namespace == "research"


def artifact_uri(node: str, stream: str = "stdout.txt") -> str:
    status = next(n for n in NODES if n["metadata"]["name"] == node)["status"]
    return plugin.join_uri(status["artifacts"]["uri"], stream)


def test_logs_from_object_storage_with_the_runs_credentials() -> None:
    api = FakeApi()
    api.objects[artifact_uri("momentum-n0001")] = b"hello\n"
    api.objects[artifact_uri("momentum-n0001", "stderr.txt")] = b"warning\n"
    result = invoke(api, "logs", "momentum-n0001")
    assert result.exit_code == 0 and result.output == "hello\n"
    access, uri = api.reads[0]
    s3 = RUN["spec"]["storage"]["s3"]
    assert access == plugin.S3Config(endpoint=s3["endpoint"], bucket=s3["bucket"], prefix=s3.get("prefix") or "",
                                     access_key="id", secret_key="secret", insecure=False)
    assert invoke(api, "logs", "momentum-n0001", "--stderr").output == "warning\n"
    invoke(api, "logs", "momentum-n0001", "--s3-endpoint", "http://localhost:9000")
    assert api.reads[-1][0].operator_endpoint == "http://localhost:9000"


def test_logs_fall_back_to_the_pod_log() -> None:
    api = FakeApi()  # nothing in object storage
    api.logs["unused"] = "runtime log\n"
    result = CliRunner().invoke(plugin.cli, ["logs", "momentum-n0002"], obj=api)  # click >= 8.2: stderr apart
    assert result.exit_code == 0
    assert result.stdout.endswith("runtime log\n")
    assert "NoSuchKey" in result.stderr and "showing the log of Job unused's pod" in result.stderr
    only_storage = CliRunner().invoke(plugin.cli, ["logs", "momentum-n0002", "--source", "storage"], obj=api)
    assert only_storage.exit_code == 1 and "NoSuchKey" in only_storage.output
    pod = invoke(api, "logs", "momentum-n0002", "--source", "pod")
    assert pod.output == "runtime log\n"


def test_logs_of_a_node_that_never_ran() -> None:
    api = FakeApi()
    for node in api.nodes:
        node.pop("status", None)
    result = CliRunner().invoke(plugin.cli, ["logs", "momentum-n0004"], obj=api)
    assert result.exit_code == 1 and "has no Job yet (phase Pending)" in result.output


def test_paper_download(tmp_path: Path) -> None:
    api = FakeApi()
    uri = RUN["status"]["paper"]["uri"]
    api.objects[uri] = b"%PDF-1.5 fake"
    target = tmp_path / "out.pdf"
    result = invoke(api, "paper", NAME, "-o", str(target))
    assert result.exit_code == 0 and target.read_bytes() == b"%PDF-1.5 fake"
    assert api.reads[0][1] == uri
    api.run["status"].pop("paper")
    missing = CliRunner().invoke(plugin.cli, ["paper", NAME], obj=api)
    assert missing.exit_code == 1 and "has no paper yet (phase Searching" in missing.output


def test_paper_without_the_secret() -> None:
    api = FakeApi()
    api.secret = None
    result = CliRunner().invoke(plugin.cli, ["paper", NAME], obj=api)
    assert result.exit_code == 1 and "run momentum: spec.storage.s3.secretRef: no Secret s3-credentials" in result.output


def test_suspend_and_resume() -> None:
    api = FakeApi()
    result = invoke(api, "suspend", NAME)
    assert result.exit_code == 0 and "suspended: no new node starts" in result.output
    assert invoke(api, "resume", NAME).exit_code == 0
    assert api.patches == [(NAME, True), (NAME, False)]


@pytest.mark.parametrize("uri, expected", [
    ("s3://bucket/a/b.txt", ("bucket", "a/b.txt")),
    ("s3://bucket/folder/", ("bucket", "folder/")),
])
def test_split_s3_uri(uri: str, expected: tuple[str, str]) -> None:
    assert plugin.split_s3_uri(uri) == expected


@pytest.mark.parametrize("uri", ["https://bucket/key", "s3://bucket", "s3:///key"])
def test_split_s3_uri_refuses_non_s3(uri: str) -> None:
    with pytest.raises(plugin.PluginError):
        plugin.split_s3_uri(uri)


def test_help_needs_no_cluster() -> None:
    result = CliRunner().invoke(plugin.cli, ["--help"])
    assert result.exit_code == 0
    for command in ("tree", "logs", "paper", "suspend", "resume"):
        assert command in result.output


def test_kubeconfig_namespace_is_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "a",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "a", "context": {"cluster": "c", "user": "u", "namespace": "research"}},
                     {"name": "b", "context": {"cluster": "c", "user": "u"}}]}))
    assert plugin.KubeApi(None, str(kubeconfig), None).namespace == "research"
    assert plugin.KubeApi(None, str(kubeconfig), "b").namespace == "default"
    assert plugin.KubeApi("other", str(kubeconfig), None).namespace == "other"


def test_names_match_the_operators() -> None:
    """The plugin takes the operator's names (it must not import the operator's kopf-side modules)."""
    from kubescientist.adapters.kube import manifests, naming

    assert (plugin.GROUP, plugin.VERSION, plugin.RUNS, plugin.NODES) == \
        (naming.GROUP, naming.VERSION, naming.RUNS, naming.NODES)
    assert plugin.RUN_LABEL == naming.RUN_LABEL and plugin.CONTAINER == manifests.CONTAINER
    assert "batch.kubernetes.io/job-name" in plugin.JOB_NAME_LABELS


def test_tree_html_of_a_cluster_run_from_object_storage(tmp_path: Path) -> None:
    """`tree RUN --html FILE`: the local viewer's page, fed from the run's journal and node artifacts in S3."""
    api = FakeApi()
    prefix = plugin.run_prefix(api.run, api.nodes)
    assert prefix.endswith("/momentum/")
    journal = {"nodes": {"n0000": {"id": "n0000", "seq": 0, "stage": "initial", "action": "draft", "parent": None,
                                   "config": {"seed": 0, "params": {"lr": 0.1}}, "reason": "draft 1 of 1",
                                   "status": "succeeded", "outcome": {"buggy": False, "metric": 0.9}},
                         "n0001": {"id": "n0001", "seq": 1, "stage": "tuning", "action": "tune", "parent": "n0000",
                                   "config": {"seed": 0, "params": {"lr": 0.01}, "code": "print('tuned')\n"},
                                   "reason": "tune by hand", "status": "succeeded",
                                   "outcome": {"buggy": False, "metric": 0.91}}},
               "stages": [], "phase": "searching"}
    api.objects[plugin.join_uri(prefix, "journal.json")] = json.dumps(journal).encode()
    api.objects[artifact_uri("momentum-n0001")] = b"epoch 1 loss 0.5\n"
    target = tmp_path / "tree.html"
    result = invoke(api, "tree", NAME, "--html", str(target))
    assert result.exit_code == 0 and f"HTML view: {target}" in result.output
    page = target.read_text()
    assert "epoch 1 loss 0.5" in page and "tuned" in page and "lr: 0.1 \\u2192 0.01" in page
    assert RUN["status"]["paper"]["uri"] in page
    del api.objects[plugin.join_uri(prefix, "journal.json")]
    missing = CliRunner().invoke(plugin.cli, ["tree", NAME, "--html", str(target)], obj=api)
    assert missing.exit_code == 1 and "NoSuchKey" in missing.output


def test_approve_and_reject_campaign_ideas_edit_the_spec() -> None:
    api = FakeApi()
    result = invoke(api, "approve", "camp", "wd", "-n", "research")
    assert result.exit_code == 0 and "researchcampaign camp: approved wd" in result.output
    assert api.campaign["spec"]["approval"] == {"mode": "manual", "approved": ["wd"], "rejected": []}
    assert invoke(api, "approve", "camp", "wd", "--reject").exit_code == 0
    assert api.campaign["spec"]["approval"] == {"mode": "manual", "approved": [], "rejected": ["wd"]}
    refused = invoke(api, "approve", "camp", "nope")
    assert refused.exit_code == 1 and "spec.approval: nope: not an idea of researchcampaign camp" in refused.output
    assert len(api.spec_patches) == 2


def test_approve_stage_needs_a_gate() -> None:
    api = FakeApi()
    refused = invoke(api, "approve-stage", NAME, "tuning")
    assert refused.exit_code == 1 and "has no gate after stage tuning" in refused.output
    api.run["spec"]["gates"] = ["tuning"]
    assert invoke(api, "approve-stage", NAME, "tuning").exit_code == 0
    assert api.run["spec"]["approvedGates"] == ["tuning"]


def test_campaign_prints_the_leaderboard() -> None:
    result = invoke(FakeApi(), "campaign", "camp")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0] == ("researchcampaign camp: Running, round 1; runs 1 running, 1 succeeded, 0 failed; used 1200 "
                        "tokens, $0.2500, 0.500 GPU-hours")
    assert re.search(r"^ 1  camp-rope\s+rope\s+6.00\s+0.97$", result.output, re.MULTILINE)
    assert "  idea old (round 1): Dropped: not novel: Power et al." in lines
    assert "  best by objective metric: camp-rope (rope) 0.97" in lines
