"""tree.html in a real headless browser (Debian's chromium): clicking a node shows its code, output, plot and
its diff against its parent; the page loads nothing from the network. And the text tree's labels."""

from __future__ import annotations

import html.parser
import io
import json
import pathlib
import shutil
import subprocess

import pytest
from rich.console import Console

from kubescientist.adapters.local.treeview import local_page, text_tree
from kubescientist.core.journal import Journal

FIXTURE = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "runs" / "grokking-small"
TEMPLATE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "templates" / "grokking"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CLICK = """<script>
window.addEventListener("load", () => {
  document.querySelector('svg g.node[data-id="%s"]').dispatchEvent(new MouseEvent("click", {bubbles: true}));
});
</script>"""


@pytest.fixture
def run_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    """The recorded run with its template's program, and one node whose program an LLM changed."""
    target = tmp_path / "grokking-small"
    shutil.copytree(FIXTURE, target)
    shutil.copy(TEMPLATE / "experiment.py", target / "template" / "experiment.py")
    data = json.loads((target / "journal.json").read_text())
    code = (TEMPLATE / "experiment.py").read_text()
    data["nodes"]["n0006"]["config"]["code"] = code.replace("import argparse", "import math  # planted change\nimport argparse", 1)
    (target / "journal.json").write_text(json.dumps(data))
    (target / "nodes" / "n0006" / "stderr.txt").write_text("warning: \x1b[31mred\x1b[0m text\n")
    return target


class _Sections(html.parser.HTMLParser):
    """The text of every element with an id, and the image sources, of a dumped DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str | None] = []
        self.text: dict[str, str] = {}
        self.images: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "img":
            self.images.append(found.get("src") or "")
            return
        if tag in ("br", "meta", "link", "input", "hr"):
            return
        self.stack.append(found.get("id"))
        if found.get("id"):
            self.text.setdefault(str(found["id"]), "")

    def handle_endtag(self, tag: str) -> None:
        if tag not in ("img", "br", "meta", "link", "input", "hr") and self.stack:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        for name in {n for n in self.stack if n}:
            self.text[name] += data


def _clicked(page: pathlib.Path, node: str, tmp_path: pathlib.Path) -> _Sections:
    """The page's DOM after a click on ``node`` in headless chromium, with all network access refused."""
    clicked = tmp_path / f"clicked-{node}.html"
    clicked.write_text(page.read_text().replace("</body>", CLICK % node + "</body>"))
    assert CHROMIUM is not None
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         f"--user-data-dir={tmp_path / 'profile'}", "--proxy-server=127.0.0.1:9", "--virtual-time-budget=3000",
         "--dump-dom", clicked.as_uri()],
        capture_output=True, text=True, timeout=120, check=True)
    parser = _Sections()
    parser.feed(result.stdout)
    return parser


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make browser)")
def test_clicking_a_node_shows_its_code_output_plot_and_diff(run_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    journal = Journal.from_dict(json.loads((run_dir / "journal.json").read_text()))
    page = run_dir / "tree.html"
    page.write_text(local_page(run_dir, journal, "grokking-small"))
    source = page.read_text()
    assert "http://" not in source.replace("http://www.w3.org/2000/svg", "") and "https://" not in source

    tuned = _clicked(page, "n0004", tmp_path)
    details = tuned.text["details"]
    assert "n0004: lr=0.003162" in details and "0.967 ± 0.002 (n=3)" in details
    assert "lr: 0.001 → 0.003162" in tuned.text["config-diff"]
    assert "def " in tuned.text["code"] and "code unchanged" in tuned.text["code-diff"]
    assert "node n0004: 6.238 s" in tuned.text["stdout"]
    assert "mod_add" in tuned.text["metrics"] and "val_accuracy" in tuned.text["metrics"]
    assert "mod_addval_accuracy0.96490.9649" in tuned.text["metrics"]  # cells: 4 significant digits
    assert any(src.startswith("data:image/png;base64,") for src in tuned.images)

    changed = _clicked(page, "n0006", tmp_path)
    assert "+import math  # planted change" in changed.text["code-diff"]
    assert "\\x1b[31mred" in changed.text["stderr"]

    buggy = _clicked(page, "n0005", tmp_path)
    assert "train_loss is NaN" in buggy.text["details"] and "buggy" in buggy.text["facts"]


def test_the_text_tree_labels_what_each_node_tried(run_dir: pathlib.Path) -> None:
    journal = Journal.from_dict(json.loads((run_dir / "journal.json").read_text()))
    journal.nodes["n0005"].outcome.details.status = "timeout"  # type: ignore[union-attr]
    journal.phase = "failed"
    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(
        text_tree(journal, "grokking-small", metric="val_accuracy", best=journal.nodes["n0004"]))
    text = out.getvalue()
    assert text.splitlines()[0] == "grokking-small (failed) best n0004 val_accuracy = 0.967 ± 0.002 (n=3)"
    assert "n0013 ablation ablate ablation no_weight_decay 0.4128" in text  # not its parent's variant "rope"
    assert "n0005 tuning tune lr=0.01 timeout" in text
    assert "(searching)" not in text
