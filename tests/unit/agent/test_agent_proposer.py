"""The LLM proposer: every action gives a valid NodeConfig with the program; judgements of nodes, stages
and plots; prompts carry the error, the output tail and the metrics contract."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any, Awaitable, Callable, TypeVar

import pytest

from agent_helpers import node, proposer, research
from kubescientist.agent.context import NodeOutput, TemplateCode
from kubescientist.agent.llm import LLMClient
from kubescientist.agent.program import program_files
from kubescientist.agent.proposer import LLMProposer
from kubescientist.core.journal import Journal, NodeConfig, Outcome
from kubescientist.core.plan import Plan, Proposal
from kubescientist.core.searchspace import SearchSpace
from tests.llmserver import Reply, ScriptedLLMServer
from tests.llmserver.scenarios import code_answer, program

T = TypeVar("T")
STDERR = "Traceback (most recent call last):\n  File \"experiment.py\", line 14\nKeyError: 'lr'\n"


def run(agent: LLMProposer, work: Callable[[LLMProposer], Awaitable[T]]) -> T:
    async def go() -> T:
        try:
            return await work(agent)
        finally:
            await agent.client.aclose()
    return asyncio.run(go())


def outputs(node_id: str) -> NodeOutput:
    return NodeOutput(stdout="step 0: starting\n" * 500 + "last stdout line\n", stderr=STDERR)


def propose(server: ScriptedLLMServer, plan: Plan, journal: Journal, **kw: Any) -> Proposal | None:
    return run(proposer(server, outputs, **kw), lambda a: a.propose(plan, journal))


def prompt_of(server: ScriptedLLMServer, index: int = -1) -> str:
    return str(server.requests[index].body["messages"][-1]["content"])


def test_draft_writes_a_complete_program(server: ScriptedLLMServer) -> None:
    proposal = propose(server, Plan("initial", "draft", None, "draft 1 of 1", "s"), Journal())
    assert proposal is not None
    config = proposal.config
    assert config.code is not None and compile(config.code, "experiment.py", "exec")
    assert config.params == {} and config.seed == 0 and config.variant is None
    assert "[prompt draft@3, model scripted-model]" in proposal.summary
    text = prompt_of(server)
    assert text.startswith("action: draft")
    assert "kubescientist.io/metrics/v1" in text and 'the metric "val_acc"' in text
    assert "Delayed generalization on synthetic data" in text and "config[\"seed\"]" in text
    files = program_files(config, None, "d")
    assert set(files) == {"experiment.py", "kubescientist.yaml"}
    assert json.loads(files["kubescientist.yaml"])["entrypoint"] == "experiment.py"


def test_debug_sees_the_error_and_the_output_tail(server: ScriptedLLMServer) -> None:
    journal = Journal()
    buggy = node(journal, status="buggy", reason="exit status 1: KeyError: 'lr'",
                 code=program("d", 0.8, buggy=True))
    proposal = propose(server, Plan("initial", "debug", buggy.id, "debug n0000", "s"), journal)
    assert proposal is not None and proposal.config.code != buggy.config.code
    text = prompt_of(server)
    assert text.startswith("action: debug") and "node: n0000 (debug attempt 1" in text
    assert "exit status 1: KeyError: 'lr'" in text and STDERR.strip() in text and "last stdout line" in text
    assert 'lr = params["lr"]' in text  # the parent's program
    assert len(text) < 30_000  # 9,000 characters of stdout were cut to their tail


def test_debug_names_a_missing_module_and_what_is_available(server: ScriptedLLMServer) -> None:
    journal = Journal()
    buggy = node(journal, status="buggy", reason="exit status 1: ModuleNotFoundError: No module named "
                 "'sklearn.linear_model'", code="import sklearn.linear_model\n")
    propose(server, Plan("initial", "debug", buggy.id, "debug n0000", "s"), journal)
    assert ("The module `sklearn` is not installed and cannot be: rewrite the program without it, using only the "
            "Python standard library and numpy, torch, matplotlib.") in prompt_of(server).replace("\n", " ")
    clean = node(journal, status="buggy", reason="exit status 1: KeyError: 'lr'", code=program("d", 0.8, buggy=True))
    propose(server, Plan("initial", "debug", clean.id, "debug", "s"), journal)
    assert "is not installed" not in prompt_of(server)


def test_improve_variant_and_ablate_name_their_change(server: ScriptedLLMServer) -> None:
    journal = Journal()
    root = node(journal, code=program("base", 0.8))
    improved = propose(server, Plan("research", "improve", root.id, "best-first", "s"), journal)
    variant = propose(server, Plan("research", "variant", root.id, "agenda", "s"), journal)
    ablation = propose(server, Plan("ablation", "ablate", root.id, "switch off", "s"), journal)
    assert improved is not None and improved.config.code != root.config.code
    assert variant is not None and variant.config.variant == "variant_1" and variant.config.code
    assert ablation is not None and ablation.config.ablation == "no_component_1" and ablation.config.code
    assert variant.summary.startswith("variant_1: ")


def test_tune_may_change_params_only(server: ScriptedLLMServer) -> None:
    journal = Journal()
    root = node(journal, code=program("base", 0.8), params={"steps": 100})
    proposal = propose(server, Plan("tuning", "tune", root.id, "best-first", "s"), journal)
    assert proposal is not None
    assert proposal.config.params == {"steps": 100, "lr": 0.001}
    assert proposal.config.code == root.config.code  # the parent's program, run with other params
    assert proposal.summary.startswith("lr -> 0.001: ")


def test_tried_variants_are_listed(server: ScriptedLLMServer) -> None:
    journal = Journal()
    root = node(journal, code=program("base", 0.8))
    node(journal, "variant", parent=root.id, stage="research", variant="rope")
    propose(server, Plan("research", "variant", root.id, "agenda", "s"), journal)
    assert "Variants already run (do not repeat): rope" in prompt_of(server)


def test_an_answer_without_code_is_repaired(server: ScriptedLLMServer) -> None:
    server.script("draft", Reply(content="Here is my plan: train a small MLP. I will write the code next."))
    proposal = propose(server, Plan("initial", "draft", None, "draft", "s"), Journal())
    assert proposal is not None and proposal.config.code
    assert "no ```python fenced block" in prompt_of(server)
    assert server.requests[-1].repair


def test_two_garbage_drafts_then_a_usable_one_give_a_program(server: ScriptedLLMServer) -> None:
    server.script("draft", Reply(content="I am a small model and I like turtles."),
                  Reply(content='```json\n{"summary": "oops", "name": null'))
    journal = Journal()
    proposal = propose(server, Plan("initial", "draft", None, "draft", "s"), journal)
    assert proposal is not None and proposal.config.code and "import" in proposal.config.code
    drafts = server.for_action("draft")
    assert [r.repair for r in drafts] == [False, True, True]
    assert not [e for e in journal.events if e.kind in ("agent", "exhausted")]


def test_a_draft_or_debug_cannot_be_exhausted(server: ScriptedLLMServer) -> None:
    server.script("draft", Reply(content='```json\n{"summary": "nothing to do", "name": null, "params": null, '
                                         '"exhausted": true}\n```'))
    proposal = propose(server, Plan("initial", "draft", None, "draft", "s"), Journal())
    assert proposal is not None and proposal.config.code
    assert "a draft cannot be exhausted" in prompt_of(server)


def test_a_params_only_tune_with_python_literals_is_used(server: ScriptedLLMServer) -> None:
    journal = Journal()
    root = node(journal, code=program("base", 0.8))
    server.script("tune", Reply(content='```json\n{"summary": "a larger step", "name": "lr 0.05 -> 0.2", '
                                        '"params": {"lr": 0.2, "bias": True}, "exhausted": False}\n```'))
    proposal = propose(server, Plan("tuning", "tune", root.id, "tune", "s"), journal)
    assert proposal is not None and proposal.config.params["lr"] == 0.2 and proposal.config.params["bias"] is True
    assert proposal.config.code == root.config.code and len(server.for_action("tune")) == 1


def test_a_broken_header_without_a_program_is_named_in_the_repair(server: ScriptedLLMServer) -> None:
    server.script("draft", Reply(content='```json\n{"summary": "x", "params": {lr: 1}}\n```'))
    propose(server, Plan("initial", "draft", None, "draft", "s"), Journal())
    assert "the ```json header is unusable" in prompt_of(server)


def test_a_repeated_program_is_sent_back(server: ScriptedLLMServer) -> None:
    journal = Journal()
    same = program("same", 0.8)
    node(journal, code=same)
    server.script("draft", Reply(content=code_answer("again", same)))
    proposal = propose(server, Plan("initial", "draft", None, "draft 2", "s"), journal)
    assert proposal is not None and proposal.config.code != same
    assert "this repeats node n0000 exactly" in prompt_of(server)


def test_nothing_new_or_nothing_usable_is_none_with_the_reason(server: ScriptedLLMServer) -> None:
    journal = Journal()
    root = node(journal, code=program("base", 0.8))
    server.script("ablate", Reply(content='```json\n{"summary": "every component was ablated", "name": null, '
                                          '"params": null, "exhausted": true}\n```'))
    assert propose(server, Plan("ablation", "ablate", root.id, "switch off", "s"), journal) is None
    server.script("draft", *(Reply(content=text) for text in ("no code", "still no code", "none again")))
    assert propose(server, Plan("initial", "draft", None, "draft", "s"), journal) is None
    messages = [e.message for e in journal.events if e.kind == "agent"]
    assert "the model has nothing new to try (every component was ablated)" in messages[0]
    assert "no usable program from the model" in messages[1]


def test_template_mode_starts_from_the_template(server: ScriptedLLMServer) -> None:
    from kubescientist.core.searchspace import Change, Hyperparameter
    space = SearchSpace(hyperparameters=(Hyperparameter("lr", "float", 1e-3, 1e-4, 1e-2, True),),
                        variants=(Change("variant_1", "declared", {"positional": "rope"}),))
    template = TemplateCode("experiment.py", {"experiment.py": "# TEMPLATE CODE\nprint('t')\n"}, "a template", space)
    agent = LLMProposer(LLMClient(proposer(server).client.config), research(template=template), outputs)
    journal = Journal()
    draft = run(agent, lambda a: a.propose(Plan("initial", "draft", None, "draft", "s"), journal))
    assert draft is not None and draft.config.params == {"lr": 1e-3}
    assert "# TEMPLATE CODE" in prompt_of(server)
    root = node(journal, code=None, params={"lr": 1e-3})
    agent = LLMProposer(LLMClient(agent.client.config), research(template=template), outputs)
    variant = run(agent, lambda a: a.propose(Plan("research", "variant", root.id, "agenda", "s"), journal))
    assert variant is not None and variant.config.params == {"lr": 1e-3, "positional": "rope"}
    assert "declares these variants: variant_1 (declared)" in prompt_of(server)
    assert program_files(variant.config, template) == {"experiment.py": variant.config.code}
    assert program_files(NodeConfig(seed=0), template) == {}
    # A first draft that only sets params keeps the template's program (a small model cannot always copy it).
    agent = LLMProposer(LLMClient(agent.client.config), research(template=template), outputs)
    server.script("draft", Reply(content='```json\n{"summary": "the template as it is", "name": null, '
                                         '"params": {"lr": 0.002}, "exhausted": false}\n```'))
    kept = run(agent, lambda a: a.propose(Plan("initial", "draft", None, "draft", "s"), Journal()))
    assert kept is not None and kept.config.code is None and kept.config.params == {"lr": 0.002}
    assert "the template's program is run as it is" in prompt_of(server).replace("\n", " ")


def test_review_of_a_good_and_a_failed_run(server: ScriptedLLMServer) -> None:
    journal = Journal()
    good = node(journal)
    failed = node(journal, status="buggy", reason="exit status 1: KeyError: 'lr'")

    async def go(agent: LLMProposer) -> tuple[Any, Any]:
        assert good.outcome is not None and failed.outcome is not None
        return (await agent.review_node(good, good.outcome, NodeOutput(stdout="done")),
                await agent.review_node(failed, failed.outcome))

    ok, bad = run(proposer(server, outputs), go)
    assert not ok.buggy and ok.reason is None and ok.summary and ok.by == "llm" and ok.prompt == "review_node@1"
    assert bad.buggy and bad.reason == "exit status 1: KeyError: 'lr'"
    applied = ok.apply(good.outcome)  # type: ignore[arg-type]
    assert not applied.buggy and applied.details.review["summary"] == ok.summary
    assert STDERR.strip() in str(server.requests[-1].body["messages"][-1]["content"])


def test_a_distrusted_run_becomes_buggy(server: ScriptedLLMServer) -> None:
    server.script("review_node", Reply(content=json.dumps(
        {"buggy": True, "reason": "val_acc is constant: training never ran", "summary": "suspicious"})))
    journal = Journal()
    good = node(journal)
    review = run(proposer(server), lambda a: a.review_node(good, good.outcome))  # type: ignore[arg-type]
    outcome = review.apply(good.outcome)  # type: ignore[arg-type]
    assert outcome.buggy and outcome.reason == "reviewer: val_acc is constant: training never ran"
    assert outcome.metrics == {}
    infra = Outcome(buggy=False, infrastructure=True, reason="evicted")
    skipped = run(proposer(server), lambda a: a.review_node(good, infra))
    assert skipped.by == "rule" and len(server.requests) == 1


def test_select_best_with_reasons_and_its_fallbacks(server: ScriptedLLMServer) -> None:
    journal = Journal()
    node(journal, metric=0.9)
    node(journal, metric=0.7)
    choice = run(proposer(server), lambda a: a.select_best("initial", journal))
    assert choice.node == "n0000" and choice.by == "llm" and "Highest validation accuracy" in choice.reason
    assert "candidate n0001:" in prompt_of(server)
    server.script("select_best", Reply(content=json.dumps({"node": "n0042", "reason": "made up"})))
    choice = run(proposer(server), lambda a: a.select_best("initial", journal, ["n0001", "n0000"]))
    assert choice.by == "metric" and choice.node == "n0000" and "'n0042', not a candidate" in choice.reason
    single = run(proposer(server), lambda a: a.select_best("initial", journal, ["n0001"]))
    assert single.node == "n0001" and single.by == "metric"


def test_stage_completion_is_judged(server: ScriptedLLMServer) -> None:
    journal = Journal()
    node(journal, "tune", stage="tuning")
    judgement = run(proposer(server), lambda a: a.stage_complete("tuning", journal, budget=4))
    assert not judgement.complete and judgement.missing == ("a second dataset",)
    assert "stage: tuning (1 of 4 nodes used)" in prompt_of(server)


PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQ"
                       "AAAABJRU5ErkJggg==")  # a 1x1 picture


def test_plot_feedback_sends_the_images(server: ScriptedLLMServer) -> None:
    journal = Journal()
    good = node(journal)
    plots = NodeOutput(plots=[("loss.png", PNG), ("acc.png", PNG)])
    feedback = run(proposer(server), lambda a: a.plot_feedback(good, plots))
    assert feedback.valid and feedback.images == ("acc.png", "loss.png") and len(feedback.analyses) == 2
    content = server.requests[-1].body["messages"][-1]["content"]
    images = [p for p in content if p["type"] == "image_url"]
    assert len(images) == 2 and images[0]["image_url"]["url"] == "data:image/png;base64," + \
        base64.b64encode(PNG).decode()
    assert server.requests[-1].body["model"] == "scripted-model"
    kept = feedback.apply(good.outcome)  # type: ignore[arg-type]
    assert kept.details.plot_feedback["analyses"]["acc.png"].startswith("Image 1")
    none = run(proposer(server), lambda a: a.plot_feedback(good, NodeOutput()))
    assert not none.valid and len(server.requests) == 1


def test_plot_feedback_with_the_wrong_number_of_analyses_is_repaired(server: ScriptedLLMServer) -> None:
    server.script("plot_feedback", Reply(content=json.dumps({"valid": True, "analyses": ["one"], "summary": "s"})))
    good = node(Journal())
    plots = NodeOutput(plots=[("a.png", PNG), ("b.png", PNG)])
    feedback = run(proposer(server), lambda a: a.plot_feedback(good, plots))
    assert len(feedback.analyses) == 2
    assert '"analyses" has 1 entries for 2 images' in prompt_of(server)


@pytest.mark.parametrize("action", ["improve", "tune", "variant", "ablate"])
def test_a_seed_plan_needs_no_model(server: ScriptedLLMServer, action: str) -> None:
    config = NodeConfig(seed=4, code="print(1)\n")
    proposal = propose(server, Plan("tuning", "seed", "n0000", "seed", "s", config), Journal())
    assert proposal is not None and proposal.config is config and not server.requests
