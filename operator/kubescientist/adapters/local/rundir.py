"""The layout of a local run's folder, ``<workdir>/<run-name>/``."""

from __future__ import annotations

import dataclasses
import pathlib


@dataclasses.dataclass(frozen=True)
class RunDir:
    root: pathlib.Path
    """``<workdir>/<run-name>``."""

    @property
    def manifest(self) -> pathlib.Path:
        """The validated, defaulted manifest the run uses (resume reads it back)."""
        return self.root / "run.yaml"

    @property
    def journal(self) -> pathlib.Path:
        """Every node and decision: a snapshot, written atomically at checkpoints and at the end of a run."""
        return self.root / "journal.json"

    @property
    def journal_log(self) -> pathlib.Path:
        """The changes since the snapshot, one JSON record a line, appended after each change."""
        return self.root / "journal.jsonl"

    @property
    def state(self) -> pathlib.Path:
        """The runner's own bookkeeping: wall time spent before a resume, template location."""
        return self.root / "state.json"

    @property
    def summary(self) -> pathlib.Path:
        """Best node per stage with seed statistics, counts, timings."""
        return self.root / "summary.json"

    @property
    def idea(self) -> pathlib.Path:
        """The idea of a run whose manifest names it elsewhere (an ideas file), as the run started with it."""
        return self.root / "idea.json"

    @property
    def tree_html(self) -> pathlib.Path:
        """The self-contained visualisation of the search tree."""
        return self.root / "tree.html"

    def node(self, node_id: str) -> pathlib.Path:
        """A node's folder: code, config, stdout, stderr, metrics, plots, result."""
        return self.root / "nodes" / node_id

    @property
    def llm_log(self) -> pathlib.Path:
        """The agent's log: every LLM retry with its reason, repairs, skipped reviews."""
        return self.root / "llm.log"

    @property
    def llm_calls(self) -> pathlib.Path:
        """The LLM accounts (per role, node, model) and every call with its prompt version and usage."""
        return self.root / "llm.json"

    def program(self, node_id: str) -> pathlib.Path:
        """An LLM-written node's program folder (the template with the entrypoint replaced, or the program
        and a generated manifest), from which the executor copies its code."""
        return self.node(node_id) / "program"
