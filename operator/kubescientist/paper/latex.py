"""The jinja2 environment for LaTeX templates.

Jinja's default delimiters (``{{``, ``{%``, ``{#``) collide with TeX: braces are everywhere and ``#`` is a
macro parameter. The templates use ``((( value )))``, ``((* block *))`` and ``((= comment =))``, which TeX
source never contains. Nothing is auto-escaped: every value is LaTeX already, escaped where it was made.
"""

from __future__ import annotations

import pathlib
import shutil
from typing import Any

import jinja2

TEMPLATES = pathlib.Path(__file__).parent / "templates"
STYLE_FILES = ("kspaper.sty",)
"""Files the paper's folder needs next to ``paper.tex`` to compile on its own."""


def environment(folder: pathlib.Path = TEMPLATES) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        block_start_string="((*", block_end_string="*))",
        variable_start_string="(((", variable_end_string=")))",
        comment_start_string="((=", comment_end_string="=))",
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined, autoescape=False)


def render(name: str, context: dict[str, Any]) -> str:
    return environment().get_template(name).render(**context)


def copy_style(target: pathlib.Path) -> None:
    """Put the style files beside the paper so that its folder is a complete, portable source."""
    for name in STYLE_FILES:
        shutil.copyfile(TEMPLATES / name, target / name)
