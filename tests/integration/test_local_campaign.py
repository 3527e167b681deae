"""A ResearchCampaign in local mode, offline, through the real CLI: three ideas on the built-in grokking
template become three runs with three papers and reviews, and campaign.html, rendered by a headless browser
(Debian's chromium), links every run's tree, paper and review with no broken link. Manual approval holds
runs until the ideas are approved. Runs are kept tiny: one node each (spec.budget.maxTotalNodes)."""

from __future__ import annotations

import html.parser
import json
import pathlib
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from harness import GROKKING, ROOT, cli

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _campaign(tmp_path: pathlib.Path, **spec: Any) -> pathlib.Path:
    """examples/campaign.yaml with runs cut to one node and no seed re-runs, written next to a template link."""
    obj = yaml.safe_load((ROOT / "examples" / "campaign.yaml").read_text())
    template = obj["spec"]["runTemplate"]
    template["template"]["path"] = str(GROKKING)
    template["budget"] = {"maxTotalNodes": 1}
    template["seeds"] = 0
    template["search"]["parallelism"] = 1
    obj["spec"].update(spec)
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(obj))
    return path


class _Anchors(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.rows: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "a":
            self.hrefs.append(found.get("href") or "")
        if tag == "tr" and found.get("data-idea"):
            self.rows.append(str(found["data-idea"]))


def _rendered(page: pathlib.Path, tmp_path: pathlib.Path) -> _Anchors:
    """The page's DOM as headless chromium builds it, with all network access refused."""
    assert CHROMIUM is not None
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         f"--user-data-dir={tmp_path / 'profile'}", "--proxy-server=127.0.0.1:9", "--virtual-time-budget=3000",
         "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=True)
    parser = _Anchors()
    parser.feed(result.stdout)
    return parser


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make browser)")
def test_offline_campaign_of_three_ideas_writes_three_papers_and_an_index(tmp_path: pathlib.Path) -> None:
    manifest = _campaign(tmp_path)
    result = cli("campaign", str(manifest), "--workdir", str(tmp_path / "runs"))
    assert result.returncode == 0, result.stdout + result.stderr
    folder = tmp_path / "runs" / "grokking-ideas"
    runs = ["grokking-ideas-weight-decay", "grokking-ideas-rope", "grokking-ideas-label-smoothing"]
    for run in runs:
        assert (folder / run / "paper" / "paper.pdf").stat().st_size > 10_000, run
        review = json.loads((folder / run / "review.json").read_text())
        assert 1 <= review["overall"] <= 10
        run_manifest = yaml.safe_load((folder / run / "run.yaml").read_text())
        assert run_manifest["metadata"]["labels"]["kubescientist.io/campaign"] == "grokking-ideas"
    titles = {yaml.safe_load((folder / r / "run.yaml").read_text())["spec"]["idea"]["inline"]["title"] for r in runs}
    assert len(titles) == 3, "each run got its own idea"

    status = json.loads((folder / "campaign.json").read_text())["status"]
    assert status["phase"] == "Succeeded"
    assert status["runs"] == {"total": 3, "running": 0, "succeeded": 3, "failed": 0}
    assert [i["state"] for i in status["ideas"]] == ["Succeeded"] * 3
    assert len(status["leaderboard"]) == 3 and all("score" in r for r in status["leaderboard"])

    page = folder / "campaign.html"
    rendered = _rendered(page, tmp_path)
    assert rendered.rows == ["weight-decay", "rope", "label-smoothing"]
    assert len(rendered.hrefs) == 12, rendered.hrefs  # tree, paper, review, summary per run
    for href in rendered.hrefs:
        target = (page.parent / href).resolve()
        assert target.is_file() and target.stat().st_size > 0, href
        assert folder.resolve() in target.parents, href
    for run in runs:
        assert f"{run}/paper/paper.pdf" in rendered.hrefs and f"{run}/tree.html" in rendered.hrefs


def test_manual_approval_holds_runs_until_ideas_are_approved(tmp_path: pathlib.Path) -> None:
    manifest = _campaign(tmp_path, approval={"mode": "manual"})
    workdir = tmp_path / "runs"
    held = cli("campaign", str(manifest), "--workdir", str(workdir))
    assert held.returncode == 1, held.stdout + held.stderr
    assert "waiting for approval of weight-decay, rope, label-smoothing" in " ".join(held.stdout.split())
    folder = workdir / "grokking-ideas"
    assert not list(folder.glob("grokking-ideas-*")), "no run before approval"
    assert json.loads((folder / "campaign.json").read_text())["status"]["phase"] == "AwaitingApproval"

    # An approval of an idea the campaign does not have is refused with the field named.
    bad = tmp_path / "bad-approvals.txt"
    bad.write_text("rope\nno-such-idea\n")
    refused = cli("campaign", str(manifest), "--workdir", str(workdir), "--resume", "--approvals", str(bad))
    assert refused.returncode == 2
    assert "spec.approval.approved[1]: 'no-such-idea' is not an idea of the campaign" in " ".join(
        refused.stdout.split())

    approvals = tmp_path / "approvals.txt"
    approvals.write_text("rope  # the one worth the CPU\n-weight-decay\n-label-smoothing\n")
    done = cli("campaign", str(manifest), "--workdir", str(workdir), "--resume", "--approvals", str(approvals))
    assert done.returncode == 0, done.stdout + done.stderr
    assert [p.name for p in folder.glob("grokking-ideas-*")] == ["grokking-ideas-rope"]
    ideas = {i["name"]: i for i in json.loads((folder / "campaign.json").read_text())["status"]["ideas"]}
    assert ideas["rope"]["state"] == "Succeeded" and ideas["weight-decay"]["state"] == "Dropped"
    assert ideas["weight-decay"]["reason"] == "rejected in spec.approval.rejected"
