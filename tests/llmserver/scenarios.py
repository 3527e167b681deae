"""Default answers per action: what a competent model would say, deterministic and small.

Code actions return a json header and a complete pure-Python program that follows the metrics contract
(it runs in well under a second, so a whole four-stage search is quick). The first draft of a session is
buggy in a realistic way (it indexes a hyperparameter the empty config does not have: ``KeyError``); a
debug answer fixes it. Tune answers change only params. Judgement and ideation answers are built from
what the prompt shows (candidate ids, paper labels, the number of images).
"""

from __future__ import annotations

import json
import re
from typing import Any

from tests.llmserver.server import Call, Responder
from tests.llmserver.writeup import WRITEUP_RESPONDERS

PROGRAM = '''\
"""Synthetic experiment written by the scripted test model ({tag})."""
import argparse
import json
import math
import os
import random

HYPERPARAMETERS = {{"lr": 3e-3, "steps": 200}}
QUALITY = {quality!r}

parser = argparse.ArgumentParser()
parser.add_argument("--out_dir", required=True)
parser.add_argument("--config")
args = parser.parse_args()
config = json.load(open(args.config)) if args.config else {{"seed": 0, "params": {{}}}}
params = config.get("params") or {{}}
{lr_line}
steps = int(params.get("steps", HYPERPARAMETERS["steps"]))
# Tests check that no API key reaches a node's program (the sandbox passes an allowlist only).
print("api key visible:", any("API_KEY" in name for name in os.environ))
rng = random.Random(config.get("seed", 0))
penalty = 0.02 * abs(math.log10(lr) + 2.5)
curve_steps, curve_values = [], []
for step in range(0, steps + 1, max(1, steps // 10)):
    acc = (QUALITY - penalty) * (1 - math.exp(-step / 50)) + rng.uniform(-0.005, 0.005)
    curve_steps.append(step)
    curve_values.append(round(acc, 6))
    print(f"step {{step}}: val_acc={{acc:.4f}}")
os.makedirs(args.out_dir, exist_ok=True)
metrics = {{"schema": "kubescientist.io/metrics/v1", "datasets": {{"synthetic": {{
    "val_acc": {{"final": curve_values[-1], "best": max(curve_values), "direction": "maximize",
                "curve": {{"step": curve_steps, "value": curve_values}}}}}}}}}}
with open(os.path.join(args.out_dir, "metrics.json"), "w") as f:
    json.dump(metrics, f)
'''
BUGGY_LR = 'lr = params["lr"]  # bug: the config has no "lr" unless tuned'
GOOD_LR = 'lr = float(params.get("lr", HYPERPARAMETERS["lr"]))'
BASE_QUALITY = {"draft": 0.80, "debug": 0.81, "improve": 0.84, "variant": 0.86, "ablate": 0.78}


def program(tag: str, quality: float, *, buggy: bool = False) -> str:
    return PROGRAM.format(tag=tag, quality=round(quality, 4), lr_line=BUGGY_LR if buggy else GOOD_LR)


def code_answer(summary: str, code: str | None, *, name: str | None = None,
                params: dict[str, Any] | None = None) -> str:
    header = json.dumps({"summary": summary, "name": name, "params": params, "exhausted": False})
    text = f"Plan: {summary}\n\n```json\n{header}\n```\n"
    return text + (f"\n```python\n{code}```\n" if code is not None else "")


def _code(call: Call) -> str:
    action = call.action or "draft"
    n = call.count + 1
    if action == "draft":
        buggy = call.count == 0
        return code_answer("a small synthetic classification experiment" + (" (first try)" if buggy else ""),
                           program(f"draft {n}", BASE_QUALITY["draft"] + 0.002 * n, buggy=buggy))
    if action == "tune":
        lrs = (1e-3, 1e-2, 3e-4, 3e-2, 1e-4)
        lr = lrs[call.count % len(lrs)] * (1 + call.count // len(lrs))
        return code_answer(f"try learning rate {lr:g}", None, name=f"lr -> {lr:g}", params={"lr": lr})
    quality = BASE_QUALITY.get(action, 0.8) + 0.003 * n
    name = {"variant": f"variant_{n}", "ablate": f"no_component_{n}"}.get(action)
    return code_answer(f"{action} {n}: a focused change", program(f"{action} {n}", quality), name=name)


def _review(call: Call) -> str:
    failed = "The run: failed" in call.last_user
    reason = re.search(r"The run: failed \(buggy\); reason: (.*)", call.last_user)
    why = (reason.group(1)[:200] if reason else "it failed") if failed else None
    return json.dumps({"buggy": failed, "reason": why,
                       "summary": "Trained a small model on synthetic data; val_acc rose steadily and plateaued."})


def _select(call: Call) -> str:
    ids = re.findall(r"^candidate (n\d+):", call.last_user, re.MULTILINE)
    return json.dumps({"node": ids[0] if ids else "n0000",
                       "reason": "Highest validation accuracy with a smooth, consistent curve."})


def _stage(call: Call) -> str:
    return json.dumps({"complete": False, "reason": "Only one dataset has been tested so far.",
                       "missing": ["a second dataset"]})


def _plots(call: Call) -> str:
    n = call.images
    return json.dumps({"valid": n > 0, "analyses": [f"Image {i + 1}: a clean, labelled curve." for i in range(n)],
                       "summary": "The curves rise and plateau; add error bands over seeds."})


def _idea_number(call: Call) -> int:
    """Which idea of the session this conversation is about: one more than the ideas already listed."""
    first = call.first_user
    listed = first.split("Ideas already proposed", 1)[1].split("Each turn", 1)[0] if "Ideas already proposed" \
        in first else ""
    return sum(1 for line in listed.splitlines() if line.startswith("- ")) + 1


def idea(k: int) -> dict[str, Any]:
    topics = ["weight decay schedules", "label noise", "embedding dimension", "curriculum order", "data fraction"]
    topic = topics[(k - 1) % len(topics)]
    return {"name": f"grokking_{topic.replace(' ', '_')}_{k}", "title": f"How {topic} shapes delayed generalization "
            f"({k})", "shortHypothesis": f"Varying {topic} changes when a small transformer groks.",
            "relatedWork": "Builds on the grokking literature found in the search; none varies this factor.",
            "abstract": f"We study how {topic} affects grokking on modular arithmetic with small transformers.",
            "experiments": [f"Sweep {topic} over five values; measure steps to 99% validation accuracy."],
            "risks": ["Effects may not transfer beyond algorithmic data."]}


def _ideation(call: Call) -> str:
    k = _idea_number(call)
    if "search results for" not in call.last_user and call.action == "ideation":
        return json.dumps({"thought": "Check the literature first.", "action": "search",
                           "query": "grokking modular arithmetic transformers", "idea": None, "done": False})
    return json.dumps({"thought": "The idea is distinct from the papers found.", "action": "finalize",
                       "query": None, "idea": idea(k), "done": call.action == "reflection"})


def _novelty(call: Call) -> str:
    text = call.last_user
    labels = list(dict.fromkeys(re.findall(r"^\[(P\d+)\]", text, re.MULTILINE)))
    searches = re.search(r"Searches so far: (.*)", text)
    if searches and ";" not in searches.group(1) and "Round 1 of" in text:
        return json.dumps({"decision": "search", "query": "grokking weight decay", "reason": "Need more evidence.",
                           "papers": []})
    return json.dumps({"decision": "novel", "query": None, "papers": labels[:2],
                       "reason": "The closest work studies grokking itself but not this factor."})


DEFAULT_RESPONDERS: dict[str, Responder] = {
    **{a: _code for a in ("draft", "debug", "improve", "tune", "variant", "ablate")},
    "review_node": _review, "select_best": _select, "stage_complete": _stage, "plot_feedback": _plots,
    "ideation": _ideation, "reflection": _ideation, "novelty": _novelty,
    **WRITEUP_RESPONDERS,  # the paper's sections, LaTeX fixes, reviews (tests/llmserver/writeup.py)
}
