"""The LLM proposer: the engine's plans answered by a model, and the judgements the search asks of one.

``propose`` implements the core's plan -> proposal contract for every action (draft, debug, improve,
tune, variant, ablate); the config it returns carries the full program text in ``code``. The other
methods judge: a finished node (buggy or not, why, a summary), a stage's best node (with reasons, the
metric as fallback), whether a stage is complete, and a node's plots (images sent as base64).

Node outputs come in from the adapter (``OutputSource``, ``NodeOutput``): the agent reads no run folder.
A failure of the endpoint (``LLMUnavailable``) or a reached cap (``BudgetExceeded``) propagates, so the
adapter can stop the run with the reason; an unusable answer (after one repair) makes ``propose`` return
None with the reason recorded in the journal, like a proposer with nothing new.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from typing import Any, Mapping, Sequence

from kubescientist.agent.answers import ParseError, Schema, extract_code, parse_json
from kubescientist.agent.context import (NodeOutput, OutputSource, ResearchContext, node_line, sibling_lines, stage_memory)
from kubescientist.agent.errors import AgentError, AnswerError, BudgetExceeded, LLMUnavailable
from kubescientist.agent.llm import Image, LLMClient
from kubescientist.agent.prompts import RenderedPrompt
from kubescientist.core.journal import Journal, Node, NodeConfig, Outcome
from kubescientist.core.objective import sort_key
from kubescientist.core.plan import Plan, Proposal
from kubescientist.core.spec import StageName

log = logging.getLogger("kubescientist.agent.proposer")

CODE_ACTIONS = ("draft", "debug", "improve", "tune", "variant", "ablate")
PARAMS_ONLY_ACTIONS = ("tune", "variant", "ablate")
"""Actions whose answer may change only config params and keep the parent's program."""
MAX_IMAGES = 10
"""Plots sent to the vision model per node (the first ones, by name)."""
NAME_CHARS = 64

CODE_HEADER = Schema("code_answer", {
    "summary": {"type": "string"},
    "name": {"type": ["string", "null"]},
    "params": {"type": ["object", "null"]},
    "exhausted": {"type": "boolean"},
})
REVIEW = Schema("node_review", {
    "buggy": {"type": "boolean"},
    "reason": {"type": ["string", "null"]},
    "summary": {"type": "string"},
})
SELECT = Schema("best_node", {"node": {"type": "string"}, "reason": {"type": "string"}})
STAGE = Schema("stage_judgement", {
    "complete": {"type": "boolean"},
    "reason": {"type": "string"},
    "missing": {"type": "array", "items": {"type": "string"}},
})
PLOTS = Schema("plot_feedback", {
    "valid": {"type": "boolean"},
    "analyses": {"type": "array", "items": {"type": "string"}},
    "summary": {"type": "string"},
})


@dataclasses.dataclass(frozen=True)
class CodeAnswer:
    """A code-writing answer, parsed."""

    summary: str
    """What the program does or what changed."""
    name: str | None
    """A short name of the change (tune, variant, ablate)."""
    params: Mapping[str, Any] | None
    """Config params to set."""
    exhausted: bool
    """The model has nothing new to propose."""
    code: str | None
    """The complete program; None when only params change (or nothing is left)."""


@dataclasses.dataclass(frozen=True)
class NodeReview:
    """The judgement of a finished node."""

    buggy: bool
    """Whether the node is buggy: its program failed, or the reviewer distrusts its results."""
    reason: str | None
    """Why it is buggy."""
    summary: str
    """What it did and what came of it, for later prompts."""
    by: str
    """``llm`` (the reviewer answered) or ``rule`` (no review was possible: see ``summary``)."""
    prompt: str = ""
    """The prompt and version that produced it."""

    def apply(self, outcome: Outcome) -> Outcome:
        """The outcome with this review folded in: a failed run stays buggy with its own reason; a run the
        reviewer distrusts becomes buggy with the reviewer's reason. Kept in ``details.review``."""
        details = dataclasses.replace(outcome.details, review={"buggy": self.buggy, "reason": self.reason,
                                                               "summary": self.summary, "by": self.by,
                                                               "prompt": self.prompt})
        if outcome.buggy or outcome.infrastructure or not self.buggy:
            return dataclasses.replace(outcome, details=details)
        return dataclasses.replace(outcome, buggy=True, reason=f"reviewer: {self.reason}", metrics={},
                                   details=details)


@dataclasses.dataclass(frozen=True)
class BestChoice:
    """A stage's best node and why."""

    node: str
    """The chosen node."""
    reason: str
    """Why it was chosen."""
    by: str
    """``llm`` or ``metric`` (the fallback)."""


@dataclasses.dataclass(frozen=True)
class StageJudgement:
    """Whether a stage met its goal."""

    complete: bool
    """True if the goal is met and the remaining budget can be saved."""
    reason: str
    """Why."""
    missing: tuple[str, ...] = ()
    """What is still missing."""


@dataclasses.dataclass(frozen=True)
class PlotFeedback:
    """A vision model's reading of a node's plots."""

    valid: bool
    """False if the plots are empty, broken or contradict the metrics."""
    analyses: tuple[str, ...]
    """One analysis per image sent, in order."""
    summary: str
    """What they show and what to improve."""
    images: tuple[str, ...] = ()
    """The names of the images sent."""

    def apply(self, outcome: Outcome) -> Outcome:
        """The outcome with the feedback kept in ``details.plot_feedback`` (later prompts read it)."""
        return dataclasses.replace(outcome, details=dataclasses.replace(outcome.details, plot_feedback={
            "valid": self.valid, "summary": self.summary, "analyses": dict(zip(self.images, self.analyses))}))


def plan_subject(plan: Plan) -> str:
    """The ledger subject a proposal's cost is charged to until the adapter renames it to the node's id."""
    return f"plan:{plan.stage}:{plan.action}:{plan.parent or '-'}:{plan.rng_seed}"


def parse_code_answer(text: str, *, allow_params_only: bool) -> CodeAnswer:
    """The header (JSON) and program (```python) of a code-writing answer."""
    try:
        header: Mapping[str, Any] = parse_json(text, CODE_HEADER.schema)
    except ParseError:
        # The program is what matters; a missing or malformed header costs only the summary.
        header = {"summary": "", "name": None, "params": None, "exhausted": False}
    if header["exhausted"]:
        return CodeAnswer(str(header["summary"]), None, None, True, None)
    try:
        code: str | None = extract_code(text)
    except ParseError:
        if not (allow_params_only and header["params"]):
            raise
        code = None
    return CodeAnswer(str(header["summary"]), header["name"], header["params"], False, code)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_")[:NAME_CHARS] or "change"


class LLMProposer:
    def __init__(self, client: LLMClient, context: ResearchContext, outputs: OutputSource | None = None) -> None:
        self.client = client
        self.ctx = context
        self.outputs = outputs

    # -- proposals -------------------------------------------------------------------------------------

    async def propose(self, plan: Plan, journal: Journal) -> Proposal | None:
        """A config with the program for ``plan``, or None when the model has nothing (usable) to offer."""
        if plan.config is not None:
            return Proposal(plan.config, "the engine's own config")
        if plan.action not in CODE_ACTIONS:
            raise ValueError(f"no LLM proposal for action {plan.action!r}")
        parent = journal.nodes[plan.parent] if plan.parent else None
        if parent is None and plan.action != "draft":
            raise ValueError(f"{plan.action} needs a parent")
        prompt = self._code_prompt(plan, journal, parent)
        allow_params_only = plan.action in PARAMS_ONLY_ACTIONS
        seen = {n.config.key(): n.id for n in journal.nodes.values() if n.action != "seed"}

        def parse(text: str) -> tuple[CodeAnswer, NodeConfig | None]:
            answer = parse_code_answer(text, allow_params_only=allow_params_only)
            if answer.exhausted:
                return answer, None
            config = self._config(plan, parent, answer)
            twin = seen.get(config.key())
            if twin is not None:
                raise ParseError(f"this repeats node {twin} exactly (same program and params): propose "
                                 "something different")
            return answer, config

        reminder = self.client.prompts.fragment("_code_answer", allow_params_only=allow_params_only)
        try:
            answer, config = await self.client.ask("code", prompt, parse, subject=plan_subject(plan),
                                                   answer_format=reminder)
        except AnswerError as exc:
            journal.record("agent", f"{plan.action} of {plan.parent or 'a new draft'}: no usable program from the "
                           f"model ({exc})", plan.stage)
            return None
        if config is None:
            journal.record("agent", f"{plan.action} of {plan.parent or 'a new draft'}: the model has nothing new "
                           f"to try ({answer.summary[:300]})", plan.stage)
            return None
        model = self.client.config.model_for("code")
        summary = answer.summary or "(no summary given)"
        if answer.name and plan.action in PARAMS_ONLY_ACTIONS:
            summary = f"{answer.name}: {summary}"
        return Proposal(config, f"{summary} [prompt {prompt.ref}, model {model}]")

    def _config(self, plan: Plan, parent: Node | None, answer: CodeAnswer) -> NodeConfig:
        template = self.ctx.template
        if parent is not None:
            base = dict(parent.config.params)
            variant, ablation, code = parent.config.variant, parent.config.ablation, parent.config.code
        else:
            base = template.space.defaults() if template else {}
            variant, ablation, code = None, None, None
        params = {**base, **(answer.params or {})}
        if plan.action in ("variant", "ablate"):
            name = _slug(answer.name or answer.summary or plan.action)
            declared = (template.space.variants if plan.action == "variant" else template.space.ablations) \
                if template else ()
            match = next((c for c in declared if c.name == name), None)
            if match is not None:
                params.update(match.params)
            if plan.action == "variant":
                variant = name
            else:
                ablation = name
        return NodeConfig(seed=self.ctx.seed, params=params, variant=variant, ablation=ablation,
                          code=answer.code if answer.code is not None else code)

    def _code_of(self, node: Node) -> str:
        if node.config.code is not None:
            return node.config.code
        return self.ctx.template.code if self.ctx.template else ""

    def _output(self, node_id: str) -> NodeOutput:
        return self.outputs(node_id) if self.outputs is not None else NodeOutput()

    def _parent_view(self, node: Node) -> dict[str, Any]:
        output = self._output(node.id)
        feedback = (node.outcome.details.plot_feedback if node.outcome else None) or {}
        return {"id": node.id, "code": self._code_of(node), "params": node.config.params,
                "error": (node.outcome.reason if node.outcome else None) or "",
                "stdout": output.stdout, "stderr": output.stderr, "line": node_line(node, self.ctx.objective),
                "feedback": feedback.get("summary", "") if isinstance(feedback, Mapping) else ""}

    def _code_prompt(self, plan: Plan, journal: Journal, parent: Node | None) -> RenderedPrompt:
        ctx, objective = self.ctx, self.ctx.objective
        common: dict[str, Any] = {
            "ctx": ctx, "idea": ctx.idea, "objective": objective, "stage": plan.stage,
            "goal": ctx.stage_goals.get(plan.stage, ""), "plan_reason": plan.reason,
            "allow_params_only": plan.action in PARAMS_ONLY_ACTIONS,
            "memory": stage_memory(journal, plan.stage, objective),
        }
        if parent is None:
            return self.client.prompts.render("draft", siblings=sibling_lines(journal, None, "draft", objective),
                                              **common)
        view = self._parent_view(parent)
        siblings = sibling_lines(journal, parent.id, plan.action, objective)
        if plan.action == "debug":
            return self.client.prompts.render("debug", parent=view, depth=journal.debug_depth(parent),
                                              siblings=siblings, **common)
        if plan.action in ("variant", "ablate"):
            field = "variant" if plan.action == "variant" else "ablation"
            tried = sorted({getattr(n.config, field) for n in journal.nodes.values() if getattr(n.config, field)})
            return self.client.prompts.render(plan.action, parent=view, tried=tried, siblings=siblings, **common)
        return self.client.prompts.render(plan.action, parent=view, siblings=siblings, **common)

    # -- judgements ------------------------------------------------------------------------------------

    async def review_node(self, node: Node, outcome: Outcome, output: NodeOutput | None = None) -> NodeReview:
        """Judge a finished node's run (before the engine folds it in: apply the review to the outcome).

        An infrastructure failure is not the program's doing and is not reviewed.
        """
        if outcome.infrastructure:
            return NodeReview(buggy=False, reason=None, summary=f"not reviewed: infrastructure failure "
                              f"({outcome.reason})", by="rule")
        output = output if output is not None else self._output(node.id)
        status = "failed (buggy)" if outcome.buggy else "exited normally and wrote valid metrics"
        prompt = self.client.prompts.render(
            "review_node", node=node, idea=self.ctx.idea, status=status, reason=outcome.reason or "",
            metrics=outcome.metrics, code=self._code_of(node), output=output)
        data = await self.client.structured("feedback", prompt, REVIEW, subject=node.id)
        llm_buggy = bool(data["buggy"])
        reason = outcome.reason if outcome.buggy else (data["reason"] or "the reviewer gave no reason")
        return NodeReview(buggy=outcome.buggy or llm_buggy, reason=reason if (outcome.buggy or llm_buggy) else None,
                          summary=str(data["summary"]), by="llm", prompt=prompt.ref)

    def _best_by_metric(self, candidates: Sequence[Node]) -> Node:
        direction = self.ctx.objective.direction
        return min(candidates, key=lambda n: (sort_key(n.metric or 0.0, direction), n.seq))

    async def select_best(self, stage: StageName, journal: Journal, candidates: Sequence[str] = ()) -> BestChoice:
        """The stage's best node with reasons; falls back to the metric when the model cannot be asked,
        does not answer usably, or picks a node that is not a candidate."""
        pool = [journal.nodes[i] for i in candidates] if candidates else \
            [n for n in journal.in_stage(stage) if n.good]
        pool = [n for n in pool if n.good]
        if not pool:
            raise ValueError(f"stage {stage}: no working node to choose from")
        fallback = self._best_by_metric(pool)
        metric = self.ctx.objective.metric
        by_metric = f"best {metric} ({fallback.metric:.6g})"
        if len(pool) == 1:
            return BestChoice(fallback.id, f"the only candidate; {by_metric}", "metric")
        prompt = self.client.prompts.render(
            "select_best", stage=stage, goal=self.ctx.stage_goals.get(stage, ""), objective=self.ctx.objective,
            idea=self.ctx.idea, candidates=[{"id": n.id, "line": node_line(n, self.ctx.objective),
                                             "metrics": n.outcome.metrics if n.outcome else {}} for n in pool])
        try:
            data = await self.client.structured("feedback", prompt, SELECT, subject=f"stage:{stage}")
        except (AgentError, BudgetExceeded) as exc:
            return BestChoice(fallback.id, f"{by_metric}; the model could not choose ({exc})", "metric")
        chosen = str(data["node"]).strip()
        if chosen not in {n.id for n in pool}:
            return BestChoice(fallback.id, f"{by_metric}; the model chose {chosen!r}, not a candidate", "metric")
        return BestChoice(chosen, str(data["reason"]), "llm")

    async def stage_complete(self, stage: StageName, journal: Journal, budget: int,
                             feedback: str = "") -> StageJudgement:
        """Whether the stage has met its goal. Not judged (False) when the model cannot be asked."""
        used = sum(1 for _ in journal.in_stage(stage))
        prompt = self.client.prompts.render(
            "stage_complete", stage=stage, used=used, budget=budget, goal=self.ctx.stage_goals.get(stage, ""),
            idea=self.ctx.idea, memory=stage_memory(journal, stage, self.ctx.objective), feedback=feedback)
        try:
            data = await self.client.structured("feedback", prompt, STAGE, subject=f"stage:{stage}")
        except (AnswerError, LLMUnavailable) as exc:
            return StageJudgement(False, f"not judged: {exc}")
        return StageJudgement(bool(data["complete"]), str(data["reason"]), tuple(str(m) for m in data["missing"]))

    async def plot_feedback(self, node: Node, output: NodeOutput | None = None) -> PlotFeedback:
        """A vision model's reading of the node's plots (the first ``MAX_IMAGES`` by name)."""
        output = output if output is not None else self._output(node.id)
        plots = sorted(output.plots)[:MAX_IMAGES]
        if not plots:
            return PlotFeedback(False, (), "the node drew no plots")
        images = [Image(name, png) for name, png in plots]
        names = tuple(name for name, _ in plots)
        prompt = self.client.prompts.render(
            "plot_feedback", node=node, idea=self.ctx.idea, names=names,
            metrics=node.outcome.metrics if node.outcome else {})

        def check(data: dict[str, Any]) -> None:
            if len(data["analyses"]) != len(names):
                raise ParseError(f"\"analyses\" has {len(data['analyses'])} entries for {len(names)} images: "
                                 "give one per image, in order")

        data = await self.client.structured("vision", prompt, PLOTS, subject=node.id, images=images, check=check)
        return PlotFeedback(bool(data["valid"]), tuple(str(a) for a in data["analyses"]), str(data["summary"]),
                            names)
