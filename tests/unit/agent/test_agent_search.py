"""A whole template-free search driven by the LLM proposer against the scripted server: the real engine,
the real node runtime (each program in the sandbox), the real openai client over HTTP.

This is the loop an adapter runs (the local runner's integration follows it): plan, propose, commit,
write the program's files, run the node, review its outcome, complete. Here it runs one node at a time.
"""

from __future__ import annotations

import asyncio
import logging
import pathlib

import pytest

from agent_helpers import proposer, spec
from experiment_runtime import Limits
from experiment_runtime.node import run_node
from kubescientist.agent.context import NodeOutput
from kubescientist.agent.errors import BudgetExceeded
from kubescientist.agent.program import program_files
from kubescientist.agent.proposer import LLMProposer, plan_subject
from kubescientist.core.engine import Engine
from kubescientist.core.journal import Journal, Outcome
from kubescientist.core.plan import Plan
from tests.llmserver import Reply, ScriptedLLMServer


class Search:
    """A minimal adapter: one node at a time, files in ``root``."""

    def __init__(self, root: pathlib.Path, python: str, server: ScriptedLLMServer, **llm: object) -> None:
        self.root = root
        self.python = python
        self.engine = Engine(spec(), Journal())
        self.agent: LLMProposer = proposer(server, self.outputs, **llm)
        self.stopped: str | None = None
        self.refused: Plan | None = None

    def outputs(self, node_id: str) -> NodeOutput:
        folder = self.root / "nodes" / node_id
        return NodeOutput(stdout=(folder / "stdout.txt").read_text(), stderr=(folder / "stderr.txt").read_text())

    async def run(self) -> None:
        engine, ledger = self.engine, self.agent.client.ledger
        try:
            while not engine.done:
                node = engine.next_pending()
                if node is None:
                    plan = engine.plan(0.0)
                    if plan is None:
                        raise AssertionError("the engine has nothing to run and is not done")
                    try:
                        proposal = None if plan.config else await self.agent.propose(plan, engine.journal)
                    except BudgetExceeded as exc:
                        # What an adapter does at the cap: no new node; running ones would finish.
                        self.stopped, self.refused = exc.reason, plan
                        engine.journal.record("budget", f"no new nodes: {exc.reason}", plan.stage)
                        return
                    node = engine.commit(plan, proposal)
                    if node is not None:
                        ledger.rename(plan_subject(plan), node.id)
                    continue
                engine.start(node.id)
                code = self.root / "programs" / node.id
                code.mkdir(parents=True)
                for name, text in program_files(node.config, None, "test").items():
                    (code / name).write_text(text)
                config = {"seed": node.config.seed, "params": node.config.params, "variant": node.config.variant,
                          "ablation": node.config.ablation}
                result = run_node(code, self.root / "nodes" / node.id, config, Limits(deadline_seconds=60),
                                  self.python)
                outcome = Outcome(buggy=result.buggy, reason=result.buggy_reason,
                                  metrics=result.metrics.to_json()["datasets"] if result.metrics else {},
                                  duration_seconds=result.duration_seconds)
                try:
                    outcome = (await self.agent.review_node(node, outcome, self.outputs(node.id))).apply(outcome)
                except BudgetExceeded as exc:
                    self.stopped = exc.reason  # the run's own verdict stands: the node is kept
                engine.complete(node.id, outcome)
        finally:
            await self.agent.client.aclose()


def test_four_stages_template_free_with_a_debug_that_fixes_the_draft(
        server: ScriptedLLMServer, work_root: pathlib.Path, sandbox_python: str,
        caplog: pytest.LogCaptureFixture) -> None:
    # Transient failures on the way, each retried: the run does not notice them.
    server.script("draft", Reply(status=429, headers={"Retry-After": "0.05"}))
    server.script("tune", Reply(status=500))
    caplog.set_level(logging.WARNING, logger="kubescientist.agent.llm")
    search = Search(work_root, sandbox_python, server)
    asyncio.run(search.run())
    journal = search.engine.journal

    assert journal.phase == "succeeded", journal.message
    assert [s.status for s in journal.stages] == ["done"] * 4
    draft = journal.nodes["n0000"]
    assert draft.action == "draft" and draft.status == "buggy" and "KeyError: 'lr'" in (draft.outcome.reason or "")
    fix = next(n for n in journal.nodes.values() if n.action == "debug")
    assert fix.parent == draft.id and fix.status == "succeeded"
    assert journal.stage("initial").best == fix.id
    debug_request = server.for_action("debug")[0]
    assert "KeyError: 'lr'" in str(debug_request.body["messages"][-1]["content"])  # its stderr reached the model
    actions = {n.action for n in journal.nodes.values()}
    assert {"draft", "debug", "tune", "variant", "ablate", "seed"} <= actions
    assert all(n.config.code for n in journal.nodes.values())
    tunes = [n for n in journal.nodes.values() if n.action == "tune"]
    assert all(n.config.params.get("lr") for n in tunes)
    assert all("[prompt " in n.reason for n in journal.nodes.values() if n.action != "seed")

    ledger = search.agent.client.ledger.to_dict()
    assert ledger["total"]["totalTokens"] > 0 and ledger["total"]["retries"] == 2
    assert ledger["byRole"]["code"]["calls"] >= 7 and ledger["byRole"]["feedback"]["calls"] == len(journal.nodes)
    assert set(ledger["byNode"]) <= set(journal.nodes)  # every call is charged to a node
    assert len([r for r in caplog.records if "LLM retry" in r.getMessage()]) == 2


def test_at_the_cap_no_new_llm_work_starts_and_finished_nodes_are_kept(
        server: ScriptedLLMServer, work_root: pathlib.Path, sandbox_python: str) -> None:
    from kubescientist.agent.accounting import Caps
    search = Search(work_root, sandbox_python, server, caps=Caps(max_tokens=12_000))
    asyncio.run(search.run())
    journal = search.engine.journal
    assert search.stopped is not None and search.stopped.startswith("LLM token cap reached")
    finished = [n for n in journal.nodes.values() if n.status in ("succeeded", "buggy")]
    assert finished and all((work_root / "nodes" / n.id / "result.json").is_file() for n in finished)
    requests = len(server.requests)
    # Nothing more goes out once the cap is reached.
    assert search.refused is not None
    with pytest.raises(BudgetExceeded):
        asyncio.run(search.agent.propose(search.refused, journal))
    assert len(server.requests) == requests
    assert any(e.kind == "budget" and "LLM token cap reached" in e.message for e in journal.events)
