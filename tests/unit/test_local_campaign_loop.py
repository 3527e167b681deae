"""The local campaign's loop with a stand-in for the run itself (the real runs are in
tests/integration/test_local_campaign.py): order, resume of an interrupted run, a run that cannot start,
the approvals file, and what campaign.html links."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest
import yaml

from kubescientist.adapters.local.campaign import CampaignStopped, LocalCampaign, RunFailed, read_approvals

TEMPLATE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "templates" / "grokking"


def _manifest(tmp_path: pathlib.Path, **spec: Any) -> pathlib.Path:
    obj = {"apiVersion": "kubescientist.io/v1alpha1", "kind": "ResearchCampaign", "metadata": {"name": "camp"},
           "spec": {"ideas": {"inline": [{"name": n, "title": f"Idea {n}"} for n in ("a", "b", "c")]},
                    "runTemplate": {"template": {"path": str(TEMPLATE)}, "objective": {"metric": "val_accuracy"}},
                    **spec}}
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(obj))
    return path


class FakeRuns:
    """Writes what a finished run leaves (summary, review, tree, paper); fails or interrupts on request."""

    def __init__(self, fail: str = "", interrupt: str = "") -> None:
        self.calls: list[tuple[str, bool]] = []
        self.fail, self.interrupt = fail, interrupt

    def __call__(self, manifest: pathlib.Path, workdir: pathlib.Path, resume: bool) -> None:
        name = yaml.safe_load(manifest.read_text())["metadata"]["name"]
        self.calls.append((name, resume))
        folder = workdir / name
        folder.mkdir(exist_ok=True)
        if name == self.fail:
            raise RunFailed("spec.template.path: not a folder")
        if name == self.interrupt:
            self.interrupt = ""
            raise KeyboardInterrupt
        (folder / "summary.json").write_text(json.dumps({"phase": "succeeded", "best": {"metric": 0.5 + len(name) / 100}}))
        (folder / "review.json").write_text(json.dumps({"overall": 4, "decision": "Reject",
                                                        "review": {"Weaknesses": ["w1"]}}))
        (folder / "tree.html").write_text("<html></html>")
        (folder / "paper").mkdir()
        (folder / "paper" / "paper.pdf").write_bytes(b"%PDF-1.5")


def test_runs_each_idea_in_order_and_links_what_exists(tmp_path: pathlib.Path) -> None:
    runs = FakeRuns(fail="camp-b")
    step = LocalCampaign(_manifest(tmp_path), tmp_path / "w", runs, say=lambda _: None).execute_all()
    assert runs.calls == [("camp-a", False), ("camp-b", False), ("camp-c", False)]
    assert step.phase == "Succeeded"
    folder = tmp_path / "w" / "camp"
    state = json.loads((folder / "campaign.json").read_text())
    assert {i["name"]: i["state"] for i in state["status"]["ideas"]} == {"a": "Succeeded", "b": "Failed",
                                                                         "c": "Succeeded"}
    assert state["status"]["ideas"][1]["reason"] == "spec.template.path: not a folder"
    page = (folder / "campaign.html").read_text()
    assert 'href="camp-a/paper/paper.pdf"' in page and 'href="camp-b/' not in page
    run = yaml.safe_load((folder / "manifests" / "camp-a.yaml").read_text())
    assert run["spec"]["idea"] == {"inline": {"title": "Idea a"}} and run["spec"]["template"]["path"] == str(TEMPLATE)


def test_an_interrupted_run_is_resumed_not_restarted(tmp_path: pathlib.Path) -> None:
    manifest = _manifest(tmp_path)
    runs = FakeRuns(interrupt="camp-b")
    with pytest.raises(KeyboardInterrupt):
        LocalCampaign(manifest, tmp_path / "w", runs, say=lambda _: None).execute_all()
    with pytest.raises(CampaignStopped, match="already holds a campaign: pass --resume"):
        LocalCampaign(manifest, tmp_path / "w", runs, say=lambda _: None)
    LocalCampaign(manifest, tmp_path / "w", runs, resume=True, say=lambda _: None).execute_all()
    assert runs.calls == [("camp-a", False), ("camp-b", False), ("camp-b", True), ("camp-c", False)]


def test_manual_approval_by_file_and_by_prompt(tmp_path: pathlib.Path) -> None:
    manifest = _manifest(tmp_path, approval={"mode": "manual"})
    runs = FakeRuns()
    with pytest.raises(CampaignStopped, match="waiting for approval of a, b, c"):
        LocalCampaign(manifest, tmp_path / "w", runs, say=lambda _: None).execute_all()
    approvals = tmp_path / "approvals.txt"
    approvals.write_text("# approvals\nb\n-a\n")
    answers = {"c": None}
    with pytest.raises(CampaignStopped, match="waiting for approval of c"):
        LocalCampaign(manifest, tmp_path / "w", runs, resume=True, approvals=approvals,
                      ask=lambda idea: answers[idea.name], say=lambda _: None).execute_all()
    assert runs.calls == [("camp-b", False)]
    step = LocalCampaign(manifest, tmp_path / "w", runs, resume=True, ask=lambda idea: True,
                         say=lambda _: None).execute_all()
    # The file's rejection of a holds on this resume too: only c is asked about, and only c runs.
    assert step.phase == "Succeeded" and runs.calls == [("camp-b", False), ("camp-c", False)]
    assert read_approvals(approvals) == (["b"], ["a"])


def test_open_ended_rounds_tell_the_next_ideation_the_reviews(tmp_path: pathlib.Path) -> None:
    """Ideation by the scripted OpenAI-compatible server; round 2's prompt carries round 1's review."""
    from tests.llmserver import ScriptedLLMServer

    with ScriptedLLMServer() as server:
        manifest = _manifest(tmp_path, rounds=2, topic={"inline": "# Title: Grokking\n## Abstract\nWhen?"},
                             ideation={"ideasPerRound": 1, "reflections": 0, "noveltyCheck": False,
                                       "literature": "offline"})
        obj = yaml.safe_load(manifest.read_text())
        del obj["spec"]["ideas"]
        obj["spec"]["runTemplate"]["llm"] = {"baseURL": server.url, "models": {"ideation": "scripted-model"}}
        manifest.write_text(yaml.safe_dump(obj))
        runs = FakeRuns()
        step = LocalCampaign(manifest, tmp_path / "w", runs, say=lambda _: None).execute_all()
        prompts = [str(r.body["messages"][-1]["content"]) for r in server.for_action("ideation")]
    assert step.phase == "Succeeded" and len(runs.calls) == 2
    first = runs.calls[0][0].removeprefix("camp-")
    fed = [p for p in prompts if "What the earlier runs of this research campaign found" in p]
    assert len(fed) == 1 and f"(idea {first}, round 1)" in fed[0]
    assert "review overall score 4.00 (Reject). weaknesses: w1" in fed[0]
    state = json.loads((tmp_path / "w" / "camp" / "campaign.json").read_text())
    assert [i["round"] for i in state["status"]["ideas"]] == [1, 2] and state["status"]["used"]["tokens"] > 0
    assert "review overall score 4.00" in state["feedback"]["2"]
