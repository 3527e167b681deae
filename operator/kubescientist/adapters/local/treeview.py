"""The search tree as text (rich) and as a self-contained HTML page (no network: inline CSS, script, images).

The page shows the tree drawn by stage, and per node: why it was made, what it changed against its parent
(config and code diff), its code highlighted, its output tails, its error, its metrics per dataset, its plots,
its timings and cost. The node files come through ``NodeFiles``, so a local run folder and a cluster run's
object storage give the same page.
"""

from __future__ import annotations

import base64
import dataclasses
import difflib
import importlib.resources
import json
import pathlib
from typing import Any, Callable, Mapping, Protocol

import jinja2
import yaml
import pygments
import pygments.formatters
import pygments.lexers
from rich.markup import escape
from rich.tree import Tree

from kubescientist.adapters.local.files import read_json_object
from kubescientist.core.journal import Journal, Node
from kubescientist.core.printable import printable
from kubescientist.core.stats import fmt_stats, plain
from kubescientist.core.summary import change_of, node_seed_stats

TAIL_CHARS = 4000
"""How much of a node's stdout and stderr the page keeps (the end: where errors are)."""
MAX_PLOTS, MAX_PLOT_BYTES = 6, 2_000_000
STAGE_COLOURS = {"initial": "#e4e4e4", "tuning": "#d6e6ff", "research": "#eadcff", "ablation": "#ffe2c2"}
"""Fill by stage; none is green or red, which the border keeps for the outcome."""
STATUS_COLOURS = {"succeeded": "#2a9d4a", "buggy": "#d33", "failed": "#e9a400", "running": "#68a",
                  "pending": "#999"}


def outcome_word(node: Node) -> str:
    """A finished node's outcome in one word or phrase: timeout and infrastructure failures named as such."""
    if node.status == "succeeded":
        return "ok"
    if node.outcome is not None and node.outcome.details.status == "timeout":
        return "timeout"
    if node.status == "failed":
        return "failed (infrastructure)"
    return node.status


MARKS = {"succeeded": "[green]✓[/]", "buggy": "[red]✗[/]", "failed": "[yellow]![/]",
         "running": "[blue]…[/]", "pending": "[dim]·[/]"}


def _label(node: Node, journal: Journal, best: set[str], overall: str | None) -> str:
    metric = f" {plain(node.metric)}" if node.metric is not None else ""
    star = " [bold yellow]★ run best[/]" if node.id == overall else " [yellow]★ stage best[/]" if node.id in best else ""
    what = escape(printable(change_of(node, journal)))
    outcome = "" if node.status in ("succeeded", "running", "pending") else f" [red]{outcome_word(node)}[/]"
    reason = ""
    if node.status in ("buggy", "failed") and node.outcome and node.outcome.reason:
        last = printable(node.outcome.reason.strip().splitlines()[-1] if node.outcome.reason.strip() else "")
        reason = f" [dim]{escape(last[:80])}[/]"
    return (f"{MARKS[node.status]} {node.id} [dim]{node.stage}[/] {node.action} [magenta]{what}[/]"
            f"{outcome}{metric}{star}{reason}")


def header(journal: Journal, title: str, metric: str, best: Node | None) -> str:
    """The run's state and its best node as everywhere else: the seed mean ± s.e."""
    state = {"succeeded": "finished", "failed": "failed"}.get(journal.phase, "unfinished (running, or stopped)")
    line = f"[bold]{escape(title)}[/] ({state})"
    if best is not None:
        line += f" best {best.id} {escape(metric)} = {fmt_stats(node_seed_stats(journal, best), best.metric)}"
    return line


def text_tree(journal: Journal, title: str, *, metric: str = "metric", best: Node | None = None) -> Tree:
    stage_best = {s.best for s in journal.stages if s.best}
    root = Tree(header(journal, title, metric, best))
    branches: dict[str, Tree] = {}
    for node in journal.nodes.values():
        parent = branches.get(node.parent) if node.parent else None
        branches[node.id] = (parent or root).add(_label(node, journal, stage_best, best.id if best else None))
    return root


class NodeFiles(Protocol):
    """A node's recorded files by name (``stdout.txt``, ``plots/curves.png``), wherever they are kept."""

    def read(self, node: Node, name: str) -> bytes | None: ...

    def plots(self, node: Node) -> list[str]: ...


@dataclasses.dataclass(frozen=True)
class FolderFiles:
    """A local run folder's ``nodes/<id>/``."""

    root: pathlib.Path
    """The run folder."""

    def read(self, node: Node, name: str) -> bytes | None:
        path = self.root / "nodes" / node.id / name
        return path.read_bytes() if path.is_file() else None

    def plots(self, node: Node) -> list[str]:
        folder = self.root / "nodes" / node.id / "plots"
        return sorted(f"plots/{p.name}" for p in folder.glob("*.png")) if folder.is_dir() else []


def _text(data: bytes | None) -> str | None:
    if data is None:
        return None
    text = data.decode(errors="replace")
    return printable(text[-TAIL_CHARS:], keep_newlines=True)


def _highlight(code: str) -> str:
    formatter = pygments.formatters.HtmlFormatter(cssclass="hl", nowrap=False)
    return str(pygments.highlight(code, pygments.lexers.PythonLexer(), formatter))


def _config_diff(node: Node, parent: Node | None) -> list[str]:
    if parent is None:
        return [f"{k} = {v}" for k, v in sorted(node.config.params.items())]
    lines = []
    for key in sorted(set(node.config.params) | set(parent.config.params)):
        old, new = parent.config.params.get(key), node.config.params.get(key)
        if old != new:
            lines.append(f"{key}: {old} → {new}")
    for field in ("variant", "ablation", "seed"):
        old, new = getattr(parent.config, field), getattr(node.config, field)
        if old != new:
            lines.append(f"{field}: {old} → {new}")
    return lines


def _metrics(node: Node) -> list[dict[str, Any]]:
    rows = []
    for dataset, per in (node.outcome.metrics if node.outcome else {}).items():
        for name, value in per.items():
            final, best = value.get("final"), value.get("best")
            rows.append({"dataset": dataset, "metric": name,
                         "final": plain(final) if isinstance(final, (int, float)) else "-",
                         "best": plain(best) if isinstance(best, (int, float)) else "-"})
    return rows


def _plots(node: Node, files: NodeFiles) -> list[dict[str, str]]:
    shown = []
    for name in files.plots(node)[:MAX_PLOTS]:
        data = files.read(node, name)
        if data is not None and len(data) <= MAX_PLOT_BYTES:
            shown.append({"name": name, "src": "data:image/png;base64," + base64.b64encode(data).decode()})
    return shown


def _layout(journal: Journal) -> dict[str, tuple[float, int]]:
    """(x, depth) per node: leaves left to right in creation order, a parent centred over its children."""
    children: dict[str | None, list[Node]] = {}
    for node in journal.nodes.values():
        children.setdefault(node.parent if node.parent in journal.nodes else None, []).append(node)
    where: dict[str, tuple[float, int]] = {}
    next_leaf = [0.0]

    def place(node: Node, depth: int) -> float:
        kids = children.get(node.id, [])
        if not kids:
            x = next_leaf[0]
            next_leaf[0] += 1
        else:
            xs = [place(kid, depth + 1) for kid in kids]
            x = (xs[0] + xs[-1]) / 2
        where[node.id] = (x, depth)
        return x

    for top in children.get(None, []):
        place(top, 0)
    return where


def view_data(journal: Journal, files: NodeFiles, code_of: Callable[[Node], str | None],
              costs: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Everything the page shows, as JSON-ready data."""
    layout = _layout(journal)
    stage_best = {s.best for s in journal.stages if s.best}
    nodes = []
    for node in journal.nodes.values():
        parent = journal.nodes.get(node.parent) if node.parent else None
        code, parent_code = code_of(node), code_of(parent) if parent else None
        diff = "" if code is None or parent_code is None else "".join(difflib.unified_diff(
            parent_code.splitlines(keepends=True), code.splitlines(keepends=True), parent.id if parent else "",
            node.id))
        stats = node_seed_stats(journal, node) if node.action != "seed" else None
        x, depth = layout[node.id]
        wall = node.outcome.details.wall_seconds if node.outcome else None
        nodes.append({
            "id": node.id, "parent": node.parent, "stage": node.stage, "action": node.action,
            "status": node.status, "outcome": outcome_word(node), "change": printable(change_of(node, journal)),
            "metric": None if node.metric is None else plain(node.metric),
            "seeds": fmt_stats(stats) if stats is not None and stats.n > 1 else None,
            "reason": printable(node.reason, keep_newlines=True),
            "error": _text(node.outcome.reason.encode()) if node.outcome and node.outcome.reason else None,
            "configDiff": _config_diff(node, parent), "config": node.config.to_dict() | {"code": None},
            "code": None if code is None else _highlight(code), "codeDiff": diff,
            "stdout": _text(files.read(node, "stdout.txt")), "stderr": _text(files.read(node, "stderr.txt")),
            "metrics": _metrics(node), "plots": _plots(node, files),
            "seconds": None if not node.outcome or node.outcome.duration_seconds is None
            else plain(node.outcome.duration_seconds, 3),
            "wallSeconds": None if wall is None else plain(wall, 3),
            "costUSD": None if costs is None else f"{costs.get(node.id, 0.0):.4f}",
            "best": node.id in stage_best, "x": x, "depth": depth,
        })
    stages = [{"name": s.name, "status": s.status, "best": s.best, "reason": s.end_reason,
               "colour": STAGE_COLOURS.get(s.name, "#eee")} for s in journal.stages]
    return {"nodes": nodes, "stages": stages, "statusColours": STATUS_COLOURS}


def html_page(journal: Journal, title: str, *, files: NodeFiles, code_of: Callable[[Node], str | None],
              metric: str = "metric", links: Mapping[str, str] | None = None,
              costs: Mapping[str, float] | None = None, best: Node | None = None) -> str:
    """Render the page with jinja2; everything is inline, so it opens from a file with no network."""
    template = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string(
        importlib.resources.files("kubescientist").joinpath("adapters/local/tree.html.j2").read_text())
    data = view_data(journal, files, code_of, costs)
    # The data goes into a <script> element: "</" must not close it early.
    text = json.dumps(data).replace("</", "<\\/")
    best_line = None if best is None else \
        f"best {best.id} ({best.stage}): {metric} = {fmt_stats(node_seed_stats(journal, best), best.metric)}"
    # A finished run's message is the engine's (its single-run metric); the best line above says it by seed mean.
    message = "" if journal.phase == "succeeded" else printable(journal.message)
    return template.render(title=title, phase=journal.phase, message=message, data=text,
                           best=best_line, links=dict(links or {}),
                           pygments_css=pygments.formatters.HtmlFormatter(cssclass="hl").get_style_defs(".hl"))


def local_page(run_dir: pathlib.Path, journal: Journal, title: str) -> str:
    """The page of a local run folder: template code from its state, paper and review linked when present."""
    state = read_json_object(run_dir / "state.json") or {}
    summary = read_json_object(run_dir / "summary.json") or {}
    template = state.get("template") or summary.get("template")
    template_root = (run_dir / template) if template else None
    metric = str((summary.get("objective") or {}).get("metric", "metric"))
    links = {name: href for name, href in (("paper", "paper/paper.pdf"), ("review", "review.json"),
                                           ("summary", "summary.json"), ("journal", "journal.json"))
             if (run_dir / href).is_file()}
    costs = {k: float(v.get("usd", 0.0)) for k, v in ((summary.get("llm") or {}).get("byNode") or {}).items()}
    spec_best = (summary.get("best") or {}).get("node")
    return html_page(journal, title, files=FolderFiles(run_dir), code_of=program_reader(run_dir, template_root),
                     metric=metric, links=links, costs=costs or None,
                     best=journal.nodes.get(spec_best) if spec_best else None)


def program_reader(run_dir: pathlib.Path, template_root: pathlib.Path | None) -> Callable[[Node], str | None]:
    """A node's program text: its own (LLM-written) code, else the template's entrypoint."""
    entry = None
    if template_root is not None and template_root.is_dir():
        manifest = template_root / "kubescientist.yaml"
        name = "experiment.py"
        if manifest.is_file():
            name = str((yaml.safe_load(manifest.read_text()) or {}).get("entrypoint", name))
        path = template_root / name
        entry = path.read_text(errors="replace") if path.is_file() else None

    def read(node: Node) -> str | None:
        return node.config.code if node.config.code is not None else entry

    return read


__all__ = ["FolderFiles", "NodeFiles", "html_page", "local_page", "text_tree", "view_data"]
