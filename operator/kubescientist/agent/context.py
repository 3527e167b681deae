"""What the agent knows about a run besides the journal: the idea, the template's code, the objective,
and node outputs handed in by the adapter (the agent reads no run folder itself).

Also the bounded views of the journal that go into prompts: one line per node, a stage's best nodes, the
children a parent already has.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Protocol, Sequence

from kubescientist.core.journal import Journal, Node
from kubescientist.core.searchspace import SearchSpace
from kubescientist.core.spec import InlineIdea, Objective, RunSpec, StageName

MEMORY_NODES = 6
"""How many of a stage's best nodes a prompt lists."""
SIBLING_NODES = 8
"""How many earlier children of the same parent a prompt lists (the most recent)."""
SUMMARY_CHARS = 300
"""How long one node's summary may be in a prompt."""


@dataclasses.dataclass(frozen=True)
class Idea:
    """A research idea, as the ideas file holds it (see ``kubescientist.agent.ideas``)."""

    title: str
    """A short title."""
    name: str = ""
    """A short identifier (lowercase, underscores)."""
    hypothesis: str = ""
    """The claim to test, in one or two sentences."""
    abstract: str = ""
    """The planned paper's abstract."""
    related_work: str = ""
    """How it differs from existing work."""
    experiments: tuple[str, ...] = ()
    """The planned experiments: stage 3 turns them into research variants."""
    risks: tuple[str, ...] = ()
    """Risks and limitations: stage 4's ablations test some of them."""
    description: str = ""
    """Free text (a manifest's inline description)."""

    @classmethod
    def from_inline(cls, idea: InlineIdea) -> Idea:
        return cls(title=idea.title, hypothesis=idea.hypothesis, description=idea.description)

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> Idea:
        """An entry of an ideas file: ours (camelCase) or AI Scientist v2's (``"Short Hypothesis"`` etc.)."""
        def get(*keys: str) -> Any:
            return next((entry[k] for k in keys if entry.get(k) not in (None, "")), "")

        def items(*keys: str) -> tuple[str, ...]:
            value = get(*keys)
            if isinstance(value, str):
                return (value,) if value else ()
            return tuple(str(v) for v in value)

        title = str(get("title", "Title"))
        if not title:
            raise ValueError("an idea needs a title")
        return cls(title=title, name=str(get("name", "Name")),
                   hypothesis=str(get("shortHypothesis", "Short Hypothesis")),
                   abstract=str(get("abstract", "Abstract")), related_work=str(get("relatedWork", "Related Work")),
                   experiments=items("experiments", "Experiments", "Experiment"),
                   risks=items("risks", "Risk Factors and Limitations"), description=str(get("description")))


@dataclasses.dataclass(frozen=True)
class TemplateCode:
    """A template's program, as the code-writing prompts show it."""

    entrypoint: str
    """The file the LLM rewrites (relative path)."""
    files: Mapping[str, str]
    """Text of the files to show, by relative path; the entrypoint included."""
    description: str = ""
    """The template's description."""
    space: SearchSpace = SearchSpace()
    """Its declared hyperparameters, variants and ablations."""
    kind: str = "native"
    """``native`` (``--config`` passed) or ``v1`` (``--out_dir`` only, config in the environment)."""
    args: tuple[str, ...] = ()
    """Extra command-line arguments the program is run with (the template's and the run's)."""
    system: str = ""
    """What the template adds to the code-writing system prompt (a v1 template's prompt.json ``system``)."""

    @property
    def code(self) -> str:
        return self.files[self.entrypoint]


@dataclasses.dataclass(frozen=True)
class NodeOutput:
    """What a finished node's program printed and drew, as the adapter read it."""

    stdout: str = ""
    """Its standard output (the adapter may pass only the tail)."""
    stderr: str = ""
    """Its standard error."""
    plots: Sequence[tuple[str, bytes]] = ()
    """``(name, png bytes)`` of its plots."""


class OutputSource(Protocol):
    def __call__(self, node_id: str) -> NodeOutput:
        """The outputs of a finished node."""


@dataclasses.dataclass(frozen=True)
class ResearchContext:
    """The run as the agent sees it."""

    idea: Idea
    """What the research is about."""
    objective: Objective
    """What the search optimises."""
    stage_goals: Mapping[StageName, str]
    """Each stage's goal, in words."""
    seed: int = 0
    """The run seed (drafts are written for it)."""
    deadline_seconds: int = 600
    """How long one node's program may run."""
    gpus: int = 0
    """GPUs a node's program gets."""
    template: TemplateCode | None = None
    """The template; None in template-free mode."""
    packages: tuple[str, ...] = ("numpy", "torch", "matplotlib")
    """Python packages a node's program may import besides the standard library."""

    @classmethod
    def from_spec(cls, spec: RunSpec, idea: Idea, template: TemplateCode | None = None,
                  packages: tuple[str, ...] | None = None) -> ResearchContext:
        extra = {"packages": packages} if packages is not None else {}
        return cls(idea=idea, objective=spec.objective, stage_goals={s.name: s.goal for s in spec.stages},
                   seed=spec.seed, deadline_seconds=spec.resources.deadline_seconds, gpus=spec.resources.gpus,
                   template=template, **extra)


def review_of(node: Node) -> Mapping[str, Any]:
    """The LLM review an adapter stored with a node's outcome (``details.review``), if any."""
    if node.outcome is None:
        return {}
    return node.outcome.details.review or {}


def node_line(node: Node, objective: Objective) -> str:
    """One line on a node: what it was, what came of it."""
    config = node.config
    what: list[str] = [node.action]
    if config.variant:
        what.append(f"variant={config.variant}")
    if config.ablation:
        what.append(f"ablation={config.ablation}")
    if config.params:
        what.append("params=" + ", ".join(f"{k}={v}" for k, v in sorted(config.params.items())))
    if node.status == "succeeded" and node.metric is not None:
        result = f"{objective.metric}={node.metric:.6g}"
    elif node.outcome is not None and node.outcome.reason:
        result = f"{node.status}: {node.outcome.reason[:SUMMARY_CHARS]}"
    else:
        result = node.status
    summary = review_of(node).get("summary") or _proposal_summary(node)
    line = f"{node.id} ({' '.join(what)}) -> {result}"
    return f"{line}; {summary[:SUMMARY_CHARS]}" if summary else line


def _proposal_summary(node: Node) -> str:
    # The engine writes "<plan reason>; <proposal summary>"; the proposal's part says what changed.
    return node.reason.rsplit("; ", 1)[-1] if "; " in node.reason else ""


def stage_memory(journal: Journal, stage: StageName, objective: Objective, limit: int = MEMORY_NODES) -> list[str]:
    """Lines on the stage's best working nodes, best first."""
    sign = -1.0 if objective.direction == "maximize" else 1.0
    good = sorted((n for n in journal.in_stage(stage) if n.good), key=lambda n: (sign * (n.metric or 0.0), n.seq))
    return [node_line(n, objective) for n in good[:limit]]


def sibling_lines(journal: Journal, parent: str | None, action: str, objective: Objective,
                  limit: int = SIBLING_NODES) -> list[str]:
    """Lines on what was already derived from ``parent`` by ``action`` (drafts: earlier drafts)."""
    nodes = [n for n in journal.nodes.values() if n.parent == parent and n.action == action]
    return [node_line(n, objective) for n in nodes[-limit:]]
