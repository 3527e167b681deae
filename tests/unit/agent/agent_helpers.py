"""Shared helpers for the agent's tests: configs pointing at the scripted server, a run spec, journals."""

from __future__ import annotations

import dataclasses
from typing import Any

from kubescientist.agent.accounting import Caps, PriceTable
from kubescientist.agent.config import LLMConfig, RetryPolicy
from kubescientist.agent.context import Idea, ResearchContext
from kubescientist.agent.llm import LLMClient
from kubescientist.agent.proposer import LLMProposer
from kubescientist.core.journal import Journal, Node, NodeConfig, Outcome
from kubescientist.core.spec import RunSpec, run_spec_from_dict
from tests.llmserver import ScriptedLLMServer

MODEL = "scripted-model"
FAST_RETRY = RetryPolicy(attempts=6, base_delay=0.01, max_delay=0.05)
GOOD_METRICS = {"synthetic": {"val_acc": {"final": 0.9, "best": 0.91, "direction": "maximize"}}}


def config(server: ScriptedLLMServer, **fields: Any) -> LLMConfig:
    base = LLMConfig(api_key="test-key", base_url=server.url,
                     models={r: MODEL for r in ("ideation", "code", "feedback", "vision", "writeup", "review")},
                     timeout_seconds=2.0, retry=FAST_RETRY)
    return dataclasses.replace(base, **fields)


def client(server: ScriptedLLMServer, **fields: Any) -> LLMClient:
    return LLMClient(config(server, **fields))


def spec(**over: Any) -> RunSpec:
    raw: dict[str, Any] = {
        "idea": {"inline": {"title": "Delayed generalization on synthetic data",
                            "hypothesis": "Weight decay shortens the delay."}},
        "objective": {"metric": "val_acc", "direction": "maximize"},
        "stages": [{"name": n, "maxNodes": m, "goal": f"the {n} goal"} for n, m in
                   (("initial", 3), ("tuning", 2), ("research", 2), ("ablation", 2))],
        "search": {"parallelism": 1, "drafts": 1, "debugProbability": 0.5, "maxDebugDepth": 2},
        "resources": {"deadlineSeconds": 60},
        "seeds": 1,
        "seed": 0,
    }
    raw.update(over)
    return run_spec_from_dict(raw)


def research(run: RunSpec | None = None, **kw: Any) -> ResearchContext:
    run = run or spec()
    assert run.idea.inline is not None
    return ResearchContext.from_spec(run, Idea.from_inline(run.idea.inline), **kw)


def proposer(server: ScriptedLLMServer, outputs: Any = None, **fields: Any) -> LLMProposer:
    return LLMProposer(client(server, **fields), research(), outputs)


def node(journal: Journal, action: str = "draft", *, parent: str | None = None, stage: str = "initial",
         code: str | None = "print('hello')\n", status: str = "succeeded", metric: float | None = 0.9,
         reason: str | None = None, **config: Any) -> Node:
    seq = len(journal.nodes)
    outcome = Outcome(buggy=status == "buggy", reason=reason, metrics=GOOD_METRICS if status == "succeeded" else {},
                      metric=metric if status == "succeeded" else None)
    made = Node(id=f"n{seq:04d}", seq=seq, stage=stage, action=action, parent=parent,  # type: ignore[arg-type]
                config=NodeConfig(seed=0, code=code, **config), reason="test; made by hand",
                status=status, outcome=outcome)  # type: ignore[arg-type]
    return journal.add(made)
