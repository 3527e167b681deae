"""The search tree as text (rich) and as a self-contained HTML page."""

from __future__ import annotations

import importlib.resources
import json
import jinja2
from rich.tree import Tree

from kubescientist.core.journal import Journal, Node

MARKS = {"succeeded": "[green]✓[/]", "buggy": "[red]✗ buggy[/]", "failed": "[yellow]! failed[/]",
         "running": "[blue]… running[/]", "pending": "[dim]· pending[/]"}


def _label(node: Node, best: set[str]) -> str:
    metric = f" {node.metric:.4g}" if node.metric is not None else ""
    star = " [bold yellow]★ best[/]" if node.id in best else ""
    change = node.config.variant or node.config.ablation or ""
    what = f" [magenta]{change}[/]" if change else ""
    return f"{node.id} [dim]{node.stage}[/] {node.action}{what} {MARKS[node.status]}{metric}{star}"


def text_tree(journal: Journal, title: str) -> Tree:
    best = {s.best for s in journal.stages if s.best}
    root = Tree(f"[bold]{title}[/] ({journal.phase})")
    branches: dict[str, Tree] = {}
    for node in journal.nodes.values():
        parent = branches.get(node.parent) if node.parent else None
        branches[node.id] = (parent or root).add(_label(node, best))
    return root


def html_page(journal: Journal, title: str) -> str:
    """Render the tree with jinja2; the page needs no network (inline CSS and script)."""
    template = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string(
        importlib.resources.files("kubescientist").joinpath("adapters/local/tree.html.j2").read_text())
    nodes = []
    for node in journal.nodes.values():
        nodes.append({
            "id": node.id, "parent": node.parent, "stage": node.stage, "action": node.action,
            "status": node.status, "metric": node.metric, "reason": node.reason,
            "error": node.outcome.reason if node.outcome and node.outcome.buggy else None,
            "config": node.config.to_dict(), "codeHash": node.code_hash,
            "seconds": node.outcome.duration_seconds if node.outcome else None,
        })
    stages = [{"name": s.name, "status": s.status, "best": s.best, "reason": s.end_reason}
              for s in journal.stages]
    # The data goes into a <script> element: "</" must not close it early.
    data = json.dumps({"nodes": nodes, "stages": stages}).replace("</", "<\\/")
    return template.render(title=title, phase=journal.phase, message=journal.message, data=data)
