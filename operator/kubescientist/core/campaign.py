"""The campaign's decisions, pure: which ideas run next, when a round ends, what the next round's ideation
is told, and the leaderboard.

The adapters observe the world (the campaign's spec, the ideas proposed so far, each run's phase, review and
cost) and hand it here; ``next_step`` says what to do. Nothing here reads a clock or a file, so the same
observations always give the same step: a restarted controller repeats no decision it already acted on,
because what it acted on (a run that exists, an idea recorded in status) is part of what it observes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from typing import Any, Literal, Mapping, Sequence

from kubescientist.core.spec import Direction

IdeaState = Literal["Proposed", "Approved", "Dropped", "Running", "Succeeded", "Failed"]
RunPhase = Literal["pending", "running", "succeeded", "failed"]
Phase = Literal["Pending", "Ideating", "AwaitingApproval", "Running", "Succeeded", "Failed", "Suspended"]
FINAL_IDEA_STATES: frozenset[str] = frozenset({"Dropped", "Succeeded", "Failed"})
MAX_CAMPAIGN_NAME = 40
"""A campaign's name prefixes its runs' names, which must stay DNS labels (63)."""
MAX_IDEA_NAME = 40
"""An idea's name, a DNS label, part of its run's name."""
LEADERBOARD_SIZE = 10
"""Runs kept in the status leaderboard."""
WEAKNESSES_SHOWN = 5
"""Weaknesses per earlier run quoted to the next round's ideation."""
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class CampaignError(ValueError):
    """A campaign spec is invalid; the message names each offending field, one per line."""


@dataclasses.dataclass(frozen=True)
class CampaignIdea:
    name: str
    """Unique in the campaign, a DNS label: what approvals name and part of the run's name."""
    title: str
    """The working title of the idea's paper."""
    hypothesis: str = ""
    """The claim to test."""
    description: str = ""
    """Free text (Markdown) given to the LLM verbatim."""
    round: int = 1
    """The round that proposed the idea."""

    def inline(self) -> dict[str, str]:
        """The idea as a ResearchRun's ``spec.idea.inline``."""
        out = {"title": self.title}
        if self.hypothesis:
            out["hypothesis"] = self.hypothesis
        if self.description:
            out["description"] = self.description
        return out


@dataclasses.dataclass(frozen=True)
class CampaignBudget:
    max_tokens: int | None = None
    """Most LLM tokens over all runs and ideation."""
    max_cost_usd: float | None = None
    """Most estimated LLM US dollars over all runs and ideation."""
    max_gpu_hours: float | None = None
    """Most GPU-hours over all runs."""


@dataclasses.dataclass(frozen=True)
class CampaignSpec:
    run_template: Mapping[str, Any]
    """The ResearchRun spec every run shares, without its idea."""
    ideas: tuple[CampaignIdea, ...] = ()
    """The fixed list of ideas (``spec.ideas.inline``); empty when they come from a topic or a file."""
    topic: str | None = None
    """The inline topic Markdown, when ideas are proposed by the LLM."""
    ideas_per_round: int = 3
    """How many ideas each round's ideation proposes."""
    reflections: int = 3
    """Self-critique rounds per proposed idea."""
    novelty_check: bool = True
    """Whether ideas found not novel are dropped."""
    literature: str = "semantic-scholar"
    """Where ideation's literature searches go."""
    rounds: int = 1
    """Rounds of the open-ended loop."""
    max_concurrent_runs: int = 2
    """Most runs unfinished at once."""
    budget: CampaignBudget = CampaignBudget()
    """Limits over the whole campaign."""
    approval: Literal["auto", "manual"] = "auto"
    """Whether ideas run at once or wait to be approved."""
    approved: tuple[str, ...] = ()
    """Names of approved ideas (manual mode)."""
    rejected: tuple[str, ...] = ()
    """Names of rejected ideas (manual mode): dropped, never run."""
    suspend: bool = False
    """No new run or ideation while set."""

    raw_sources: frozenset[str] = frozenset()
    """Which of ``topic`` (ideas proposed each round) and ``ideas`` (a fixed list) the spec sets."""

    @property
    def open_ended(self) -> bool:
        """Whether each round's ideas come from ideation on the topic, rather than from a fixed list."""
        return "topic" in self.raw_sources


def campaign_spec_from_dict(spec: Mapping[str, Any]) -> CampaignSpec:
    """The model of a validated, defaulted campaign ``spec``."""
    ideas = spec.get("ideas") or {}
    ideation = spec.get("ideation") or {}
    budget = spec.get("budget") or {}
    approval = spec.get("approval") or {}
    topic = spec.get("topic") or {}
    return CampaignSpec(
        run_template=dict(spec["runTemplate"]),
        ideas=tuple(CampaignIdea(name=i["name"], title=i["title"], hypothesis=i.get("hypothesis", ""),
                                 description=i.get("description", "")) for i in ideas.get("inline", ())),
        topic=topic.get("inline"),
        ideas_per_round=int(ideation.get("ideasPerRound", 3)),
        reflections=int(ideation.get("reflections", 3)),
        novelty_check=bool(ideation.get("noveltyCheck", True)),
        literature=str(ideation.get("literature", "semantic-scholar")),
        rounds=int(spec.get("rounds", 1)),
        max_concurrent_runs=int(spec.get("maxConcurrentRuns", 2)),
        budget=CampaignBudget(max_tokens=budget.get("maxTokens"), max_cost_usd=budget.get("maxCostUSD"),
                              max_gpu_hours=budget.get("maxGPUHours")),
        approval=approval.get("mode", "auto"),
        approved=tuple(approval.get("approved", ())),
        rejected=tuple(approval.get("rejected", ())),
        suspend=bool(spec.get("suspend", False)),
        raw_sources=frozenset(k for k in ("topic", "ideas") if k in spec),
    )


def spec_problems(spec: Mapping[str, Any], known_ideas: Sequence[str] = ()) -> list[str]:
    """What is wrong with a campaign ``spec`` beyond its schema, each line naming the field.

    ``known_ideas`` are names proposed so far (status.ideas); with a fixed inline list its names count too.
    Repeats what the CRD's CEL says where CEL can say it, so local mode and a cluster refuse the same specs.
    """
    problems: list[str] = []
    budget = spec.get("budget") or {}
    for key in ("maxTokens", "maxCostUSD", "maxGPUHours"):
        value = budget.get(key)
        if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)
                                  or not math.isfinite(value) or value < 0):
            problems.append(f"spec.budget.{key}: must be a number >= 0 (got {value!r})")
    inline = (spec.get("ideas") or {}).get("inline") or []
    names = [str(i.get("name")) for i in inline if isinstance(i, Mapping)]
    for index, name in enumerate(names):
        if names.index(name) != index:
            problems.append(f"spec.ideas.inline[{index}].name: {name!r} repeats the name of idea {names.index(name)}")
    known = set(names) | set(known_ideas)
    approval = spec.get("approval") or {}
    for key in ("approved", "rejected"):
        for index, name in enumerate(approval.get(key) or ()):
            if name not in known:
                choices = ", ".join(sorted(known)) or "none yet"
                problems.append(f"spec.approval.{key}[{index}]: {name!r} is not an idea of the campaign "
                                f"(ideas: {choices})")
    both = set(approval.get("approved") or ()) & set(approval.get("rejected") or ())
    for name in sorted(both):
        problems.append(f"spec.approval.rejected: {name!r} is also approved; an idea is approved or rejected")
    return problems


def slug(text: str, limit: int = MAX_IDEA_NAME) -> str:
    """A DNS label from free text (an ideas file's Name such as ``rope_grokking``)."""
    label = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-")
    return label or "idea"


def ideas_from_entries(entries: Sequence[Mapping[str, Any]], round: int = 1,
                       taken: Sequence[str] = ()) -> list[CampaignIdea]:
    """Campaign ideas from ideas-file entries (ours or the AI Scientist's), with unique DNS-label names; an
    entry without a title is refused with its index."""
    used = set(taken)
    out = []
    for index, entry in enumerate(entries):
        def get(*keys: str) -> str:
            return next((str(entry[k]) for k in keys if entry.get(k) not in (None, "")), "")

        title = get("title", "Title")
        if not title:
            raise CampaignError(f"ideas[{index}]: an idea needs a title (Title or title)")
        base = slug(get("name", "Name") or title)
        name, n = base, 2
        while name in used:
            suffix = f"-{n}"
            name, n = base[:MAX_IDEA_NAME - len(suffix)] + suffix, n + 1
        used.add(name)
        experiments = entry.get("experiments") or entry.get("Experiments") or entry.get("Experiment") or ""
        if not isinstance(experiments, str):
            experiments = "\n".join(f"- {e}" for e in experiments)
        description = "\n\n".join(filter(None, (get("abstract", "Abstract"), get("description"),
                                                experiments and f"Experiments:\n{experiments}")))
        out.append(CampaignIdea(name=name, title=title[:200],
                                hypothesis=get("shortHypothesis", "Short Hypothesis")[:5000],
                                description=description[:20000], round=round))
    return out


def run_name(campaign: str, idea: str) -> str:
    """The ResearchRun of ``idea``: ``<campaign>-<idea>``, deterministic so that a restarted controller finds
    the run it created instead of creating another; cut and suffixed with a hash when over 63 characters."""
    name = f"{campaign}-{idea}"
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[:54].rstrip('-')}-{digest}"


def run_spec(template: Mapping[str, Any], idea: CampaignIdea) -> dict[str, Any]:
    """The ResearchRun spec of one idea: the campaign's runTemplate with the idea inlined."""
    return {"idea": {"inline": idea.inline()}, **{k: v for k, v in template.items() if k != "idea"}}


@dataclasses.dataclass(frozen=True)
class RunReport:
    """What the adapter observed of one run of the campaign."""

    idea: str
    """The idea's name."""
    run: str
    """The run's name."""
    phase: RunPhase
    """pending, running, succeeded or failed."""
    score: float | None = None
    """The review's mean overall score."""
    decision: str = ""
    """The review's decision (Accept, Reject)."""
    weaknesses: tuple[str, ...] = ()
    """The reviewers' weaknesses."""
    metric: float | None = None
    """The objective value of the run's best node."""
    message: str = ""
    """Why it failed, or its last status message."""
    tokens: int = 0
    """LLM tokens used by the run."""
    usd: float = 0.0
    """Estimated LLM dollars spent by the run."""
    gpu_hours: float = 0.0
    """GPU-hours the run's nodes held."""

    @property
    def finished(self) -> bool:
        return self.phase in ("succeeded", "failed")


@dataclasses.dataclass(frozen=True)
class IdeaRecord:
    """An idea as status.ideas keeps it."""

    idea: CampaignIdea
    """The idea."""
    dropped: str = ""
    """Why it was dropped before running (not novel, rejected); empty otherwise."""


@dataclasses.dataclass(frozen=True)
class Usage:
    tokens: int = 0
    """LLM tokens."""
    usd: float = 0.0
    """Estimated LLM dollars."""
    gpu_hours: float = 0.0
    """GPU-hours."""


@dataclasses.dataclass(frozen=True)
class Step:
    """What the controller does next."""

    phase: Phase
    """The campaign's phase after this step."""
    start: tuple[CampaignIdea, ...] = ()
    """Ideas whose runs are to be created now, in order."""
    ideate: int | None = None
    """The round whose ideas are to be proposed now; None when no ideation is due."""
    round: int = 0
    """The round now running."""
    message: str = ""
    """A one-line summary for status.message."""
    exhausted: str = ""
    """Which campaign budget is spent; no new run starts. Empty while within budget."""


def usage(runs: Sequence[RunReport], ideation: Usage = Usage()) -> Usage:
    """The campaign's use: every run's plus ideation's."""
    return Usage(tokens=ideation.tokens + sum(r.tokens for r in runs),
                 usd=ideation.usd + sum(r.usd for r in runs),
                 gpu_hours=ideation.gpu_hours + sum(r.gpu_hours for r in runs))


def exhausted(budget: CampaignBudget, used: Usage) -> str:
    """Which cap ``used`` has reached, as a sentence; empty within budget."""
    if budget.max_tokens is not None and used.tokens >= budget.max_tokens:
        return f"spec.budget.maxTokens reached: {used.tokens} of {budget.max_tokens} tokens used"
    if budget.max_cost_usd is not None and used.usd >= budget.max_cost_usd:
        return f"spec.budget.maxCostUSD reached: ${used.usd:.4f} of ${budget.max_cost_usd:g} spent"
    if budget.max_gpu_hours is not None and used.gpu_hours >= budget.max_gpu_hours:
        return f"spec.budget.maxGPUHours reached: {used.gpu_hours:.3f} of {budget.max_gpu_hours:g} GPU-hours used"
    return ""


_RUN_STATES: dict[str, IdeaState] = {"pending": "Running", "running": "Running", "succeeded": "Succeeded",
                                     "failed": "Failed"}


def state_of(spec: CampaignSpec, record: IdeaRecord, run: RunReport | None) -> IdeaState:
    """What became of an idea: its run's phase once it has one; before that, approval decides."""
    if run is not None:
        return _RUN_STATES[run.phase]
    if record.dropped or record.idea.name in spec.rejected:
        return "Dropped"
    if spec.approval == "auto" or record.idea.name in spec.approved:
        return "Approved"
    return "Proposed"


def next_step(spec: CampaignSpec, ideas: Sequence[IdeaRecord], runs: Mapping[str, RunReport], *,
              ideation_used: Usage = Usage()) -> Step:
    """The next step of the campaign, from its ideas so far and its runs (by idea name).

    A run starts for each approved idea without one, oldest first, while fewer than maxConcurrentRuns are
    unfinished and the budget lasts. A round ends when none of its ideas waits for a slot, an approval or its
    run; then the next round's ideation is due, until spec.rounds have run or the budget is spent.
    """
    current = max((r.idea.round for r in ideas), default=0)
    used = usage(list(runs.values()), ideation_used)
    spent = exhausted(spec.budget, used)
    states = {r.idea.name: state_of(spec, r, runs.get(r.idea.name)) for r in ideas}
    unfinished = sum(1 for run in runs.values() if not run.finished)
    waiting = [r.idea for r in ideas if states[r.idea.name] == "Approved"]
    proposed = [r.idea.name for r in ideas if states[r.idea.name] == "Proposed"]
    counts = f"{sum(1 for r in runs.values() if r.finished)}/{len(runs)} runs finished"
    if spec.suspend:
        return Step("Suspended", round=current, message=f"suspended; {counts}", exhausted=spent)
    free = max(0, spec.max_concurrent_runs - unfinished)
    start = () if spent else tuple(waiting[:free])
    if start or unfinished:
        held = f"; waiting for approval: {', '.join(proposed)}" if proposed else ""
        return Step("Running", start=start, round=current, exhausted=spent,
                    message=f"round {current}: {unfinished + len(start)} running, {counts}{held}"
                    + (f"; {spent}" if spent else ""))
    if proposed and not spent:
        return Step("AwaitingApproval", round=current, message=(
            f"round {current}: waiting for approval of {', '.join(proposed)} (add them to spec.approval.approved "
            "or spec.approval.rejected)"))
    # Nothing runs and nothing can start: the round is over (or the budget ended it).
    if not spent and (current == 0 or (spec.open_ended and current < spec.rounds)):
        return Step("Ideating", ideate=current + 1, round=current + 1,
                    message=f"proposing the ideas of round {current + 1}")
    succeeded = any(r.phase == "succeeded" for r in runs.values())
    why = spent or f"all {spec.rounds if spec.open_ended else 1} round(s) done"
    return Step("Succeeded" if succeeded else "Failed", round=current, exhausted=spent,
                message=f"{why}; {counts}" + ("" if succeeded else "; no run succeeded"))


def leaderboard(runs: Sequence[RunReport], direction: Direction = "maximize",
                size: int = LEADERBOARD_SIZE) -> list[RunReport]:
    """The best finished runs: by review score (highest first), then by objective metric; unreviewed and
    unmeasured runs last, then by name so that the order is stable."""
    sign = -1.0 if direction == "maximize" else 1.0

    def key(run: RunReport) -> tuple[float, float, str]:
        score = -run.score if run.score is not None else math.inf
        metric = sign * run.metric if run.metric is not None else math.inf
        return score, metric, run.run

    return sorted((r for r in runs if r.finished), key=key)[:size]


def ideation_feedback(ideas: Sequence[IdeaRecord], runs: Mapping[str, RunReport]) -> str:
    """What the next round's ideation is told about the earlier ideas: each run's review score, decision and
    weaknesses, its best metric, or why it failed or was dropped; empty before any idea has an outcome."""
    lines = []
    for record in ideas:
        idea, run = record.idea, runs.get(record.idea.name)
        head = f"- \"{idea.title}\" (idea {idea.name}, round {idea.round})"
        if run is None:
            if record.dropped:
                lines.append(f"{head}: dropped before running: {record.dropped}")
            continue
        if not run.finished:
            continue
        parts = []
        if run.phase == "failed":
            parts.append(f"run failed: {run.message or 'no reason recorded'}")
        if run.metric is not None:
            parts.append(f"best objective value {run.metric:.4g}")
        if run.score is not None:
            parts.append(f"review overall score {run.score:.2f}" + (f" ({run.decision})" if run.decision else ""))
        if run.weaknesses:
            parts.append("weaknesses: " + "; ".join(w.strip() for w in run.weaknesses[:WEAKNESSES_SHOWN]))
        lines.append(f"{head}: " + (". ".join(parts) if parts else "finished without a review"))
    return "\n".join(lines)


def status(spec: CampaignSpec, step: Step, ideas: Sequence[IdeaRecord], runs: Mapping[str, RunReport], *,
           direction: Direction = "maximize", ideation_used: Usage = Usage()) -> dict[str, Any]:
    """The campaign's status object (without conditions and observedGeneration, which the adapter owns)."""
    entries = []
    for record in ideas:
        run = runs.get(record.idea.name)
        entry: dict[str, Any] = {"name": record.idea.name, "title": record.idea.title[:200],
                                 "round": record.idea.round, "state": state_of(spec, record, run)}
        reason = record.dropped or ("rejected in spec.approval.rejected" if record.idea.name in spec.rejected
                                    and run is None else "") or (run.message if run and run.phase == "failed" else "")
        if reason:
            entry["reason"] = reason[:1024]
        if run is not None:
            entry["run"] = run.run
            if run.score is not None:
                entry["score"] = run.score
            if run.metric is not None:
                entry["metric"] = run.metric
        entries.append(entry)
    reports = list(runs.values())
    board = leaderboard(reports, direction)
    used = usage(reports, ideation_used)
    out: dict[str, Any] = {
        "phase": step.phase, "round": step.round, "ideas": entries[-200:],
        "runs": {"total": len(reports), "running": sum(1 for r in reports if not r.finished),
                 "succeeded": sum(1 for r in reports if r.phase == "succeeded"),
                 "failed": sum(1 for r in reports if r.phase == "failed")},
        "leaderboard": [{k: v for k, v in {"run": r.run, "idea": r.idea, "score": r.score,
                                           "metric": r.metric}.items() if v is not None} for r in board],
        "used": {"tokens": used.tokens, "usd": round(used.usd, 6), "gpuHours": round(used.gpu_hours, 6)},
        "message": step.message[:4096],
    }
    scored = [r for r in board if r.score is not None]
    if scored:
        out["best"] = {"run": scored[0].run, "idea": scored[0].idea, "score": scored[0].score}
    measured = sorted((r for r in reports if r.finished and r.metric is not None),
                      key=lambda r: ((-1.0 if direction == "maximize" else 1.0) * (r.metric or 0.0), r.run))
    if measured:
        out["bestByMetric"] = {"run": measured[0].run, "idea": measured[0].idea, "metric": measured[0].metric}
    return out
