"""A finished run's records, read back from its folder: the only source of facts the paper may state.

``<run>/`` holds ``run.yaml`` (the validated manifest), ``journal.json`` (every node), ``summary.json`` (best
per stage with seed statistics) and ``nodes/<id>/`` (metrics, plots). Optional: ``literature.json``
(references a literature search returned) and ``template.yaml`` or the template folder that
``summary.json`` names (descriptions of the hyperparameters, variants and ablations).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any, Mapping

import yaml

from kubescientist.core.journal import Journal, Node
from kubescientist.core.spec import InlineIdea, RunSpec, run_spec_from_dict
from kubescientist.core.searchspace import Change
from kubescientist.paper.citations import Reference, unique

LITERATURE_FILE = "literature.json"
"""References the literature search returned: ``{"papers": [{id, title, authors, year, venue, url, ...}]}``
(the literature tool's ``Paper.to_dict``) or ``{"references": [{key, title, ...}]}``."""

TEMPLATE_MANIFEST = "kubescientist.yaml"


class RecordsError(Exception):
    """The folder is not a finished run: a record is missing or unreadable (the message names it)."""


@dataclasses.dataclass(frozen=True)
class TemplateInfo:
    """What the template says about itself (all optional: a template-free run has none of it)."""

    name: str = ""
    """The template's name."""
    description: str = ""
    """One paragraph on what the program does."""
    hyperparameters: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    """Declared hyperparameters: name -> {type, low, high, log, values, default}."""
    variants: tuple[Change, ...] = ()
    """The research agenda."""
    ablations: tuple[Change, ...] = ()
    """The components that can be switched off."""

    def change(self, name: str | None) -> Change | None:
        return next((c for c in (*self.variants, *self.ablations) if c.name == name), None)


@dataclasses.dataclass(frozen=True)
class RunRecords:
    """Everything recorded about one run."""

    root: pathlib.Path
    """The run folder."""
    name: str
    """The run's name (``metadata.name``)."""
    manifest: Mapping[str, Any]
    """``run.yaml``: the validated, defaulted ResearchRun."""
    spec: RunSpec
    """The typed spec."""
    journal: Journal
    """Every node and decision."""
    summary: Mapping[str, Any]
    """``summary.json``."""
    idea: InlineIdea
    """The research idea (title, hypothesis, description)."""
    template: TemplateInfo
    """The template's self-description (empty when unknown)."""
    literature: tuple[Reference, ...]
    """References from the literature search; empty offline."""

    def node_dir(self, node_id: str) -> pathlib.Path:
        return self.root / "nodes" / node_id

    def metrics(self, node: Node) -> dict[str, dict[str, dict[str, Any]]]:
        """A node's metrics with curves: the journal's copy, completed from ``nodes/<id>/metrics.json``."""
        recorded = dict(node.outcome.metrics) if node.outcome else {}
        path = self.node_dir(node.id) / "metrics.json"
        if node.good and path.is_file():
            try:
                on_disk = json.loads(path.read_text(encoding="utf-8")).get("datasets", {})
            except (OSError, ValueError):
                on_disk = {}
            for dataset, metrics in on_disk.items():
                merged = recorded.setdefault(dataset, {})
                for name, value in metrics.items():
                    merged[name] = {**value, **merged.get(name, {})} if name in merged else value
        return recorded

    def plots(self, node_id: str) -> list[pathlib.Path]:
        """The PNG plots the node's program wrote."""
        return sorted((self.node_dir(node_id) / "plots").rglob("*.png"))


def load(root: pathlib.Path | str) -> RunRecords:
    """Read a run folder; raises RecordsError naming the missing or broken record."""
    root = pathlib.Path(root)
    manifest = _read(root / "run.yaml", yaml.safe_load)
    journal_data = _read(root / "journal.json", json.loads)
    summary = _read(root / "summary.json", json.loads)
    try:
        spec = run_spec_from_dict(manifest["spec"])
        journal = Journal.from_dict(journal_data)
    except (KeyError, TypeError, ValueError) as exc:
        raise RecordsError(f"{root}: run.yaml or journal.json is not a run's record ({exc!r})") from None
    name = str(manifest.get("metadata", {}).get("name") or summary.get("run") or root.name)
    return RunRecords(root=root, name=name, manifest=manifest, spec=spec, journal=journal, summary=summary,
                      idea=_idea(root, spec, name), template=_template(root, summary),
                      literature=_literature(root, summary))


def _read(path: pathlib.Path, parse: Any) -> Any:
    try:
        data = parse(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecordsError(f"{path}: missing; is {path.parent} a finished run's folder?") from None
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise RecordsError(f"{path}: unreadable: {exc}") from None
    if not isinstance(data, dict):
        raise RecordsError(f"{path}: must hold a mapping")
    return data


def _idea(root: pathlib.Path, spec: RunSpec, name: str) -> InlineIdea:
    if spec.idea.inline is not None:
        return spec.idea.inline
    # An idea that lives outside the manifest (ideas file, ConfigMap) is copied into the run as idea.json.
    path = root / "idea.json"
    if path.is_file():
        data = json.loads(path.read_text(encoding="utf-8"))
        return InlineIdea(
            title=str(data.get("title") or data.get("Title") or name),
            hypothesis=str(data.get("hypothesis") or data.get("Short Hypothesis") or ""),
            description=str(data.get("description") or data.get("Abstract") or ""))
    return InlineIdea(title=name.replace("-", " ").capitalize())


def _template(root: pathlib.Path, summary: Mapping[str, Any]) -> TemplateInfo:
    candidates = [root / "template.yaml", root / "template" / TEMPLATE_MANIFEST]
    if summary.get("template"):
        candidates.append(root / str(summary["template"]) / TEMPLATE_MANIFEST)
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        return _v1_template(root, summary)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return TemplateInfo()
    space = data.get("searchSpace") or {}

    def changes(key: str) -> tuple[Change, ...]:
        return tuple(Change(str(c["name"]), str(c.get("description", "")), dict(c.get("params") or {}))
                     for c in space.get(key) or () if isinstance(c, Mapping) and "name" in c)

    return TemplateInfo(name=str(data.get("name", "")), description=str(data.get("description", "")).strip(),
                        hyperparameters=dict(space.get("hyperparameters") or {}),
                        variants=changes("variants"), ablations=changes("ablations"))


def _v1_template(root: pathlib.Path, summary: Mapping[str, Any]) -> TemplateInfo:
    """An AI Scientist v1 template describes itself in ``prompt.json`` (``task_description``)."""
    folders = [root / "template", *([root / str(summary["template"])] if summary.get("template") else [])]
    for folder in folders:
        try:
            data = json.loads((folder / "prompt.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, Mapping) and isinstance(data.get("task_description"), str):
            return TemplateInfo(name=folder.name, description=" ".join(data["task_description"].split()))
    return TemplateInfo()


def _literature(root: pathlib.Path, summary: Mapping[str, Any]) -> tuple[Reference, ...]:
    """The run's literature search, else the works its template ships for its topic (``literature.json``
    beside ``kubescientist.yaml``), so that an offline run still relates itself to prior work."""
    candidates = [root / LITERATURE_FILE, root / "template" / LITERATURE_FILE]
    if summary.get("template"):
        candidates.append(root / str(summary["template"]) / LITERATURE_FILE)
    path = next((p for p in candidates if p.is_file()), None)
    return load_literature(path) if path is not None else ()


def load_literature(path: pathlib.Path | str) -> tuple[Reference, ...]:
    """References from a literature file: ``{"references": [...]}`` or the literature tool's ``{"papers": [...]}``."""
    data = _read(pathlib.Path(path), json.loads)
    entries = data.get("references", data.get("papers", ()))
    return unique(Reference.from_dict(r) for r in entries if isinstance(r, Mapping))
