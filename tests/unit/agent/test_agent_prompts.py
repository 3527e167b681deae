"""The prompt library: one versioned jinja2 file per action, a marker line, bounded context."""

from __future__ import annotations

import pathlib

import jinja2
import pytest

from agent_helpers import research
from kubescientist.adapters.llm import template_code
from kubescientist.core.searchspace import SearchSpace
from kubescientist.agent.prompts import ACTIONS, PromptLibrary, clip, head, tail

LIB = PromptLibrary()
PROMPTS = pathlib.Path(__file__).resolve().parents[3] / "operator" / "kubescientist" / "agent" / "prompts"
CODE_ACTIONS = ("draft", "debug", "improve", "tune", "variant", "ablate")


def test_every_action_has_a_versioned_prompt() -> None:
    files = {p.stem for p in PROMPTS.glob("*.j2") if not p.stem.startswith("_")}
    assert set(ACTIONS) <= files
    for name in ACTIONS:
        assert LIB.version(name), name


def huge_parent() -> dict[str, object]:
    return {"id": "n0001", "code": "x = 1\n" * 200_000, "params": {"lr": 0.1}, "error": "E" * 100_000,
            "stdout": "o" * 1_000_000, "stderr": "e" * 1_000_000 + "\nKeyError: 'lr'", "line": "n0001 -> buggy",
            "feedback": "f" * 10_000}


@pytest.mark.parametrize("action", CODE_ACTIONS)
def test_code_prompts_are_bounded_and_state_the_contract(action: str) -> None:
    ctx = research()
    prompt = LIB.render(action, ctx=ctx, idea=ctx.idea, objective=ctx.objective, stage="initial", goal="g" * 9000,
                        plan_reason="r", allow_params_only=True, memory=["m" * 300] * 6, siblings=["s" * 300] * 8,
                        parent=huge_parent(), depth=1, tried=["a", "b"])
    assert prompt.user.startswith(f"action: {action}\n")
    # v2: the program before its header (small models stop after a leading header); debug v3 also names a
    # missing module; v3 (debug v4): a v1 template's system text and extra program arguments when it has them.
    version = "4" if action == "debug" else "3"
    assert prompt.version == version and prompt.ref == f"{action}@{version}"
    assert "kubescientist.io/metrics/v1" in prompt.user and "Seed every random generator" in prompt.user
    assert "```python" in prompt.user and '"exhausted"' in prompt.user
    assert len(prompt.user) < 60_000, len(prompt.user)
    if action == "debug":
        assert prompt.user.count("KeyError: 'lr'") == 1  # the tail of stderr, where the error is


def test_a_missing_variable_is_an_error_not_an_empty_string() -> None:
    with pytest.raises(jinja2.UndefinedError):
        LIB.render("draft", stage="initial")


def test_cutting_filters() -> None:
    assert tail("abcdef", 3) == "[... 3 earlier characters cut ...]\ndef"
    assert head("abcdef", 3) == "abc\n[... 3 more characters cut ...]"
    assert clip("a" * 10 + "b" * 10, 8).startswith("aa\n[... 12 characters cut ...]\nbbbbbb")
    assert tail(None, 5) == "" and clip("short", 10) == "short"


@pytest.mark.parametrize("action", CODE_ACTIONS)
def test_a_v1_templates_system_text_and_program_args_reach_the_code_prompts(action: str) -> None:
    v1 = pathlib.Path(__file__).resolve().parents[2] / "fixtures" / "v1_template"
    code = template_code(v1, SearchSpace(), ("--device", "cpu"))
    assert code.kind == "v1" and code.system.startswith("You are an ambitious AI PhD student")
    ctx = research(template=code)
    prompt = LIB.render(action, ctx=ctx, idea=ctx.idea, objective=ctx.objective, stage="initial", goal="g",
                        plan_reason="r", allow_params_only=True, memory=[], siblings=[], parent=huge_parent(),
                        depth=1, tried=[])
    assert prompt.system.startswith("You are an experienced machine-learning researcher")
    assert prompt.system.endswith("The template the program starts from adds:\n" + code.system)
    if action == "draft":  # the prompt that shows the template (later ones start from a node's own code)
        assert "extra arguments `--device cpu` after those" in prompt.user
    # Without a v1 system text the system prompt is as it was.
    plain = LIB.render(action, ctx=research(), idea=ctx.idea, objective=ctx.objective, stage="initial", goal="g",
                       plan_reason="r", allow_params_only=True, memory=[], siblings=[], parent=huge_parent(),
                       depth=1, tried=[])
    assert "adds:" not in plain.system and plain.system.endswith("Never fake or hard-code results.")
