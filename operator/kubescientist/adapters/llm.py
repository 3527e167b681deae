"""What the local runner and the operator share about the LLM agent."""

from __future__ import annotations

import pathlib

from experiment_runtime.template import load_template
from kubescientist.agent.context import TemplateCode
from kubescientist.core.searchspace import SearchSpace
from kubescientist.core.spec import RunSpec

OUTPUT_TAIL_BYTES = 64 * 1024
"""How much of a node's stdout and stderr is read for the agent (prompts cut further)."""
MAX_PLOT_BYTES = 4 * 1024 * 1024
"""Larger plots are not sent to the vision model."""


class AgentStopped(Exception):
    """No more LLM work: the budget cap is reached or the endpoint is gone; the message says which."""


def llm_enabled(spec: RunSpec) -> bool:
    return spec.llm.base_url is not None or bool(spec.llm.models)


def template_code(root: pathlib.Path, space: SearchSpace) -> TemplateCode:
    """A template's entrypoint and search space, as the LLM sees them."""
    template = load_template(root)
    files = {template.entrypoint: (root / template.entrypoint).read_text()}
    return TemplateCode(entrypoint=template.entrypoint, files=files, description=template.description, space=space,
                        kind=template.kind)
