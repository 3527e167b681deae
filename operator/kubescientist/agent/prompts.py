"""The prompt library: one jinja2 file per action under ``prompts/``, each with a version.

A prompt file defines three blocks: ``version`` (a literal, bumped whenever the wording changes, recorded
with every call so a journal says which prompt produced a node), ``system`` and ``user``. The user block
starts with a line ``action: <name>``, which makes logs readable and lets the test server script answers
by action. Context is bounded by the caller and by the ``tail``/``head``/``clip`` filters, so a prompt
never grows with the run.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import jinja2

ACTIONS = ("draft", "debug", "improve", "tune", "variant", "ablate", "review_node", "select_best",
           "stage_complete", "ideation", "reflection", "novelty", "plot_feedback", "repair",
           "write_section", "fix_latex", "review_paper", "reflect_review", "meta_review")


@dataclasses.dataclass(frozen=True)
class RenderedPrompt:
    """A prompt ready to send."""

    name: str
    """The prompt (action) name."""
    version: str
    """Its version."""
    system: str
    """The system message."""
    user: str
    """The user message."""

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


def tail(text: str | None, chars: int) -> str:
    """The last ``chars`` characters, marked when cut (errors and results are at the end of output)."""
    text = text or ""
    if len(text) <= chars:
        return text
    return f"[... {len(text) - chars} earlier characters cut ...]\n" + text[-chars:]


def head(text: str | None, chars: int) -> str:
    """The first ``chars`` characters, marked when cut."""
    text = text or ""
    if len(text) <= chars:
        return text
    return text[:chars] + f"\n[... {len(text) - chars} more characters cut ...]"


def clip(text: str | None, chars: int) -> str:
    """Head and tail of a long text, a quarter and three quarters of the budget."""
    text = text or ""
    if len(text) <= chars:
        return text
    first = chars // 4
    return text[:first] + f"\n[... {len(text) - chars} characters cut ...]\n" + text[-(chars - first):]


def _tojson(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


class PromptLibrary:
    def __init__(self, loader: jinja2.BaseLoader | None = None) -> None:
        self.env = jinja2.Environment(
            loader=loader or jinja2.PackageLoader("kubescientist.agent", "prompts"),
            undefined=jinja2.StrictUndefined,  # a missing variable is a bug, not an empty string
            trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False, autoescape=False)
        self.env.filters.update(tail=tail, head=head, clip=clip, tojson=_tojson)

    def version(self, name: str) -> str:
        template = self.env.get_template(f"{name}.j2")
        return self._block(template, "version", {}).strip()

    def render(self, name: str, **context: Any) -> RenderedPrompt:
        template = self.env.get_template(f"{name}.j2")
        return RenderedPrompt(
            name=name, version=self._block(template, "version", {}).strip(),
            system=self._block(template, "system", context).strip(),
            user=self._block(template, "user", context).strip())

    def fragment(self, template: str, **context: Any) -> str:
        """A whole small template (a shared piece of wording), rendered."""
        return self.env.get_template(f"{template}.j2").render(context).strip()

    @staticmethod
    def _block(template: jinja2.Template, block: str, context: dict[str, Any]) -> str:
        if block not in template.blocks:
            raise KeyError(f"prompt {template.name}: no {{% block {block} %}}")
        return "".join(template.blocks[block](template.new_context(context)))
