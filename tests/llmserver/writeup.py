"""Default answers for the writeup and review actions, and responders that script one section's text.

``write_section`` returns the offline draft it is shown (a competent writer that adds nothing). ``fix_latex``
repairs an undefined macro in the lines it is shown (the closest known macro, else the macro removed) and
returns anything else unchanged (an unusable answer). The reviewers' scores depend on their persona, so an
ensemble's reviews differ and their mean is not any one of them; a reflection revises the review in round 1
and is done from round 2; the area chair rejects with scores of its own (the combination replaces them).
"""

from __future__ import annotations

import difflib
import json
import re
from typing import Any, Mapping

from tests.llmserver.server import Call, Responder

DRAFT = re.compile(r"^--- draft \(.*?\) ---\n(.*?)\n--- end of draft ---$", re.DOTALL | re.MULTILINE)
SECTION = re.compile(r"^section: (\w+)$", re.MULTILINE)
KNOWN_MACROS = ("emph", "textbf", "textit", "texttt", "citet", "citep", "ref", "paragraph")


def latex(body: str) -> str:
    return f"Here is the section.\n\n```latex\n{body}\n```\n"


def draft_of(call: Call) -> str:
    match = DRAFT.search(call.last_user)
    return match.group(1) if match else ""


def section_of(call: Call) -> str:
    match = SECTION.search(call.last_user)
    return match.group(1) if match else ""


def revising(call: Call) -> bool:
    """Whether the request is a revision (the previous attempt and the checks' findings are shown)."""
    return "--- your previous attempt ---" in call.last_user


def _write_section(call: Call) -> str:
    return latex(draft_of(call))


def scripted_sections(additions: Mapping[str, tuple[str, str]]) -> Responder:
    """A writer that appends ``first`` to a section's draft and, when asked to revise, ``revised`` instead."""
    def respond(call: Call) -> str:
        first, revised = additions.get(section_of(call), ("", ""))
        extra = revised if revising(call) else first
        return latex(draft_of(call) + (f"\n\n{extra}" if extra else ""))
    return respond


def _fix_latex(call: Call) -> str:
    text = call.last_user
    numbered = re.findall(r"^(\d+): (.*)$", text, re.MULTILINE)
    lines = [line for _, line in numbered]
    where = re.search(r"^Where TeX noticed it: (.*)$", text, re.MULTILINE)
    if "Undefined control sequence" in text and where:
        macros = re.findall(r"\\([A-Za-z@]+)", where.group(1))
        if macros:
            bad = macros[-1]
            close = difflib.get_close_matches(bad, KNOWN_MACROS, n=1, cutoff=0.6)
            good = "\\" + close[0] if close else ""
            lines = [re.sub(r"\\" + bad + r"(?![A-Za-z@])", lambda _: good, line) for line in lines]
    return "```latex\n" + "\n".join(lines) + "\n```\n"


PERSONA_SCORES: dict[str, dict[str, Any]] = {
    "critical": {"Originality": 2, "Quality": 2, "Clarity": 3, "Significance": 1, "Soundness": 2,
                 "Presentation": 3, "Contribution": 1, "Overall": 3, "Confidence": 4, "Decision": "Reject"},
    "methodologist": {"Originality": 2, "Quality": 3, "Clarity": 3, "Significance": 2, "Soundness": 3,
                      "Presentation": 3, "Contribution": 2, "Overall": 5, "Confidence": 3, "Decision": "Reject"},
    "generalist": {"Originality": 3, "Quality": 3, "Clarity": 4, "Significance": 3, "Soundness": 3,
                   "Presentation": 4, "Contribution": 3, "Overall": 7, "Confidence": 2, "Decision": "Accept"},
}


def form(persona: str, **over: Any) -> dict[str, Any]:
    scores = PERSONA_SCORES.get(persona, PERSONA_SCORES["methodologist"])
    return {"Summary": f"The paper reports an automated search ({persona} reading).",
            "Strengths": ["Results are reported over three seeds with error bars."],
            "Weaknesses": [f"A single task ({persona})."],
            "Originality": scores["Originality"], "Quality": scores["Quality"], "Clarity": scores["Clarity"],
            "Significance": scores["Significance"], "Questions": ["Does the effect hold on other tasks?"],
            "Limitations": ["One synthetic task."], "Ethical Concerns": False,
            "Soundness": scores["Soundness"], "Presentation": scores["Presentation"],
            "Contribution": scores["Contribution"], "Overall": scores["Overall"],
            "Confidence": scores["Confidence"], "Decision": scores["Decision"], **over}


def _review_paper(call: Call) -> str:
    persona = re.search(r"^persona: (\w+)$", call.first_user, re.MULTILINE)  # a repair names it no more
    return json.dumps({"Thought": "Read the paper and the automated checks.",
                       **form(persona.group(1) if persona else "")})


def _reflect_review(call: Call) -> str:
    draft = next((m.get("content") for m in reversed(call.messages) if m.get("role") == "assistant"), "{}")
    review = json.loads(str(draft))
    round_ = re.search(r"Reflection round (\d+) of (\d+)", call.last_user)
    attempt = int(round_.group(1)) if round_ else 1
    if attempt == 1:
        review = {**review, "Weaknesses": [*review["Weaknesses"], "On reflection: no comparison with prior work."],
                  "Confidence": min(5, int(review["Confidence"]) + 1)}
        return json.dumps({"Thought": "One weakness was missing.", "Review": review, "Done": False})
    return json.dumps({"Thought": "Nothing left to change.", "Review": review, "Done": True})


def _meta_review(call: Call) -> str:
    reviews = call.last_user.count("--- review ")
    return json.dumps({"Thought": f"Weighed {reviews} reviews.", **form(
        "chair", Summary=f"Meta-review of {reviews} reviews: the reviewers agree the evidence is clean but narrow.",
        Originality=1, Quality=2, Clarity=2, Significance=1, Soundness=2, Presentation=2, Contribution=1,
        Overall=4, Confidence=5, Decision="Reject")})


WRITEUP_RESPONDERS: dict[str, Responder] = {
    "write_section": _write_section, "fix_latex": _fix_latex, "review_paper": _review_paper,
    "reflect_review": _reflect_review, "meta_review": _meta_review,
}
