"""What the local runner and the operator share about the LLM agent."""

from __future__ import annotations

import asyncio
import logging
import pathlib

from experiment_runtime.template import load_template
from kubescientist.agent.context import NodeOutput, TemplateCode
from kubescientist.agent.errors import AgentError, BudgetExceeded, LLMUnavailable
from kubescientist.agent.proposer import LLMProposer, plan_subject
from kubescientist.core.engine import Engine
from kubescientist.core.journal import Journal, Node, Outcome, StageRecord
from kubescientist.core.plan import Plan, Proposal
from kubescientist.core.searchspace import SearchSpace
from kubescientist.core.spec import RunSpec

log = logging.getLogger("kubescientist.agent")

OUTPUT_TAIL_BYTES = 64 * 1024
"""How much of a node's stdout and stderr is read for the agent (prompts cut further)."""
MAX_PLOT_BYTES = 4 * 1024 * 1024
"""Larger plots are not sent to the vision model."""


class AgentStopped(Exception):
    """No more LLM work: the budget cap is reached or the endpoint is gone; the message says which."""


def llm_enabled(spec: RunSpec) -> bool:
    return spec.llm.base_url is not None or bool(spec.llm.models)


def template_code(root: pathlib.Path, space: SearchSpace, extra_args: tuple[str, ...] = ()) -> TemplateCode:
    """A template's entrypoint and search space, as the LLM sees them; `extra_args` are the run's
    spec.template.args, which the program gets after the template's own. A v1 template's prompt.json
    ``system`` joins the code-writing system prompt."""
    template = load_template(root)
    files = {template.entrypoint: (root / template.entrypoint).read_text()}
    system = (template.prompt or {}).get("system")
    return TemplateCode(entrypoint=template.entrypoint, files=files, description=template.description, space=space,
                        kind=template.kind, args=template.args + extra_args,
                        system=system.strip() if isinstance(system, str) else "")


class AgentCalls:
    """The agent's calls the engine's adapters make, synchronously, on one event loop per run.

    Subclasses set ``spec``, ``proposer`` and ``_loop`` and say where a node's output comes from.
    Budget caps and a failed endpoint become ``AgentStopped``: no new LLM work, finished nodes kept.
    """

    spec: RunSpec
    proposer: LLMProposer
    _loop: asyncio.Runner
    goal_checked: dict[str, int]
    """Stage -> how many finished nodes it had when the LLM was last asked whether its goal is met (saved
    with the agent's accounts, so a resumed run does not ask again)."""

    def propose(self, plan: Plan, journal: Journal) -> Proposal | None:
        try:
            return self._loop.run(self.proposer.propose(plan, journal))
        except BudgetExceeded as exc:
            raise AgentStopped(exc.reason) from None
        except LLMUnavailable as exc:
            raise AgentStopped(f"the LLM endpoint failed: {exc}") from None

    def committed(self, plan: Plan, node: Node | None) -> None:
        """Charge the plan's proposal calls to the node it became."""
        if node is not None:
            self.proposer.client.ledger.rename(plan_subject(plan), node.id)

    def reviewed(self, node: Node, outcome: Outcome, output: NodeOutput) -> Outcome:
        """The outcome with the LLM review (and plot feedback, with a vision model) folded in; unchanged
        when the agent cannot work (the mechanical verdict stands; the log says why)."""
        if outcome.infrastructure:
            return outcome
        try:
            review = self._loop.run(self.proposer.review_node(node, outcome, output))
            outcome = review.apply(outcome)
            if "vision" in self.spec.llm.models and output.plots and not outcome.buggy:
                feedback = self._loop.run(self.proposer.plot_feedback(node, output))
                outcome = feedback.apply(outcome)
        except AgentError as exc:
            log.warning("%s: not reviewed by the LLM (%s); the run's own verdict stands", node.id, exc)
        return outcome

    def select_best(self, engine: Engine, record: StageRecord) -> tuple[str, str]:
        """The stage's best node and why, by the LLM (it falls back to the metric itself)."""
        candidates = [n.id for n in engine.candidates(record)]
        try:
            choice = self._loop.run(self.proposer.select_best(record.name, engine.journal, candidates))
        except BudgetExceeded as exc:
            raise AgentStopped(exc.reason) from None
        return choice.node, f"{choice.reason} (by {choice.by})"

    def stage_complete(self, engine: Engine, record: StageRecord) -> str | None:
        """Why the stage's goal is met, if the LLM judges it is; None otherwise."""
        budget = self.spec.stage(record.name).max_nodes
        try:
            verdict = self._loop.run(self.proposer.stage_complete(record.name, engine.journal, budget))
        except BudgetExceeded as exc:
            raise AgentStopped(exc.reason) from None
        return verdict.reason if verdict.complete else None
