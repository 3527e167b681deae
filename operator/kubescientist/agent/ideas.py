"""Ideation: a topic file (title, keywords, TL;DR, abstract) -> research ideas with novelty verdicts.

Each idea comes out of one conversation: the model searches the literature (as many times as allowed),
finalizes an idea, then reflects on it for a number of rounds, searching again if it wants. Earlier
ideas (from the file being extended and from this session) are in the prompt, and a new idea whose name
or title repeats one of them is sent back once for a different one. Then a separate novelty check
searches, reads and decides "novel" or "not novel", and the verdict is kept with the papers it cites.

Reading and writing files is the caller's business (the CLI); this module works on text and data.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from typing import Any, Mapping, Sequence

from kubescientist.agent.answers import ParseError, Schema, strict_object
from kubescientist.agent.context import Idea
from kubescientist.agent.errors import AgentError, AnswerError
from kubescientist.agent.literature import LiteratureError, LiteratureSource, Paper
from kubescientist.agent.llm import LLMClient, Message
from kubescientist.agent.prompts import RenderedPrompt

log = logging.getLogger("kubescientist.agent.ideas")

SEARCH_LIMIT = 8
"""Papers per search shown to the model."""
SIMILAR_TITLES = 0.6
"""Word overlap (Jaccard) of two titles above which an idea counts as a repeat."""
CONSULTED_KEPT = 30
"""Papers listed per idea as consulted during ideation."""

IDEA = strict_object({
    "name": {"type": "string"},
    "title": {"type": "string"},
    "shortHypothesis": {"type": "string"},
    "relatedWork": {"type": "string"},
    "abstract": {"type": "string"},
    "experiments": {"type": "array", "items": {"type": "string"}},
    "risks": {"type": "array", "items": {"type": "string"}},
})
TURN = Schema("ideation_turn", {
    "thought": {"type": "string"},
    "action": {"type": "string", "enum": ["search", "finalize"]},
    "query": {"type": ["string", "null"]},
    "idea": {"anyOf": [IDEA, {"type": "null"}]},
    "done": {"type": "boolean"},
})
NOVELTY = Schema("novelty_verdict", {
    "decision": {"type": "string", "enum": ["novel", "not_novel", "search"]},
    "query": {"type": ["string", "null"]},
    "reason": {"type": "string"},
    "papers": {"type": "array", "items": {"type": "string"}},
})


@dataclasses.dataclass(frozen=True)
class Topic:
    """What ideas are sought about."""

    title: str
    """The topic's title."""
    keywords: tuple[str, ...] = ()
    """Keywords."""
    tldr: str = ""
    """The gist, in a sentence or two."""
    abstract: str = ""
    """A longer description."""
    system: str = ""
    """Extra instructions for the ideation model's system prompt (an AI Scientist v1 template's
    prompt.json ``system``)."""
    code: str = ""
    """The experiment code ideas must be testable with (a v1 template's experiment.py), when there is one."""


def topic_from_template(name: str, prompt: Mapping[str, Any] | None, code: str) -> Topic:
    """The topic of an AI Scientist v1 template: its prompt.json (``task_description`` as the abstract,
    ``system`` for the system prompt) and its experiment code; the title is the template's name."""
    prompt = prompt or {}
    task = prompt.get("task_description")
    system = prompt.get("system")
    if not isinstance(task, str) or not task.strip():
        raise AgentError(f"{name}/prompt.json: task_description: needed to generate ideas from the template "
                         "(a string saying what the experiment does and what to explore)")
    return Topic(title=name.replace("_", " "), abstract=task.strip(),
                 system=system.strip() if isinstance(system, str) else "", code=code)


def parse_topic(text: str, location: str = "TOPIC.md") -> Topic:
    """A markdown topic file: ``# Title: ...`` (or a ``## Title`` section), ``## Keywords``, ``## TL;DR``,
    ``## Abstract``. Unknown sections are added to the abstract."""
    sections: dict[str, list[str]] = {}
    current = "preamble"
    title = ""
    for line in text.splitlines():
        heading = re.match(r"^#{1,6}\s+(.*?)\s*$", line)
        if heading:
            label, _, rest = heading.group(1).partition(":")
            current = re.sub(r"[^a-z]", "", label.lower())
            if current == "title" and rest.strip():
                title = rest.strip()
            continue
        sections.setdefault(current, []).append(line)
    body = {k: "\n".join(v).strip() for k, v in sections.items()}
    title = title or body.pop("title", "")
    body.pop("title", None)
    if not title:
        raise AgentError(f"{location}: no title: start with '# Title: <the topic>' or a '## Title' section")
    keywords = tuple(k.strip(" -*") for k in re.split(r"[,\n]", body.pop("keywords", "")) if k.strip(" -*"))
    tldr = body.pop("tldr", "")
    abstract = body.pop("abstract", "")
    extra = "\n\n".join(v for k, v in body.items() if v and k != "preamble")
    return Topic(title=title, keywords=keywords, tldr=tldr, abstract="\n\n".join(filter(None, (abstract, extra))))


@dataclasses.dataclass
class NoveltyVerdict:
    """Whether an idea is new, and on what evidence."""

    verdict: str
    """``novel``, ``not novel`` or ``undecided`` (no decision within the rounds, or the check failed)."""
    reason: str
    """Why, naming the closest work."""
    papers: list[Paper]
    """The papers the decision cites."""
    queries: list[str]
    """The searches made."""
    backend: str
    """The literature backend searched."""
    prompt: str = ""
    """The prompt and version that decided."""
    model: str = ""
    """The model that decided."""
    consulted: int = 0
    """How many distinct papers the check saw."""

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "reason": self.reason, "papers": [p.to_dict() for p in self.papers],
                "queries": self.queries, "backend": self.backend, "consulted": self.consulted,
                "prompt": self.prompt, "model": self.model}


class _Papers:
    """Papers seen in one conversation, labelled P1, P2, ... in order of first sight."""

    def __init__(self) -> None:
        self.by_label: dict[str, Paper] = {}
        self._labels: dict[tuple[str, str], str] = {}

    def add(self, papers: Sequence[Paper]) -> list[dict[str, Any]]:
        views = []
        for paper in papers:
            key = (paper.source, paper.id or paper.title)
            label = self._labels.get(key)
            if label is None:
                label = self._labels[key] = f"P{len(self._labels) + 1}"
                self.by_label[label] = paper
            views.append(_view(label, paper))
        return views

    def views(self) -> list[dict[str, Any]]:
        return [_view(label, paper) for label, paper in self.by_label.items()]


def _view(label: str, paper: Paper) -> dict[str, Any]:
    return {"label": label, **dataclasses.asdict(paper)}


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def _field(entry: Mapping[str, Any], key: str) -> str:
    """An ideas-file field in our spelling (``name``) or AI Scientist's (``Name``)."""
    return str(entry.get(key) or entry.get(key[:1].upper() + key[1:]) or "")


def repeats(idea: Mapping[str, Any], earlier: Sequence[Mapping[str, Any]]) -> str | None:
    """The name of an earlier idea this one repeats (same name, or a title with mostly the same words)."""
    words = _words(_field(idea, "title"))
    for other in earlier:
        if _field(other, "name") and _field(other, "name") == _field(idea, "name"):
            return _field(other, "name")
        theirs = _words(_field(other, "title"))
        if words and theirs and len(words & theirs) / len(words | theirs) >= SIMILAR_TITLES:
            return _field(other, "name") or _field(other, "title")
    return None


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:60] or "idea"


class Ideator:
    def __init__(self, client: LLMClient, literature: LiteratureSource, *, reflections: int = 3, searches: int = 3,
                 novelty_rounds: int = 3, novelty_check: bool = True) -> None:
        self.client = client
        self.literature = literature
        self.reflections = reflections
        self.searches = searches
        self.novelty_rounds = novelty_rounds
        self.novelty_check = novelty_check

    async def generate(self, topic: Topic, count: int, earlier: Sequence[Mapping[str, Any]] = (),
                       feedback: str = "") -> list[dict[str, Any]]:
        """``count`` new ideas as ideas-file entries, each with its novelty verdict. An idea the model
        fails to finalize is skipped (logged); a reached budget cap or an unreachable endpoint propagates.
        ``feedback``: what earlier runs of a campaign found (review scores, weaknesses, results, failures)."""
        known = [dict(e) for e in earlier]
        made: list[dict[str, Any]] = []
        for index in range(count):
            try:
                idea, consulted = await self._idea(topic, known, index, feedback)
            except AnswerError as exc:
                log.warning("idea %d of %d: no usable idea (%s); skipped", index + 1, count, exc)
                continue
            if idea is None:
                log.warning("idea %d of %d: not finalized within the turns allowed; skipped", index + 1, count)
                continue
            idea["name"] = _slug(idea["name"] or idea["title"])
            verdict = await self.novelty(Idea.from_entry(idea), subject=f"idea:{idea['name']}") \
                if self.novelty_check else NoveltyVerdict("undecided", "novelty check disabled", [], [],
                                                          self.literature.name)
            entry = {**idea, "topic": topic.title, "novelty": verdict.to_dict(),
                     "literature": [p.to_dict() for p in consulted[:CONSULTED_KEPT]]}
            made.append(entry)
            known.append(entry)
        return made

    async def _idea(self, topic: Topic, earlier: Sequence[Mapping[str, Any]], index: int,
                    feedback: str = "") -> tuple[dict[str, Any] | None, list[Paper]]:
        prompts = self.client.prompts
        subject = f"ideation:{index + 1}"
        previous = [{"name": _field(e, "name"), "title": _field(e, "title"),
                     "hypothesis": str(e.get("shortHypothesis") or e.get("Short Hypothesis") or e.get("Experiment")
                                       or "")} for e in earlier]
        prompt = prompts.render("ideation", topic=topic, previous=previous, searches=self.searches,
                                reflections=self.reflections, feedback=feedback, system=topic.system)
        papers = _Papers()
        history: list[Message] = []
        searches_left, round_, final = self.searches, 0, None

        def check(data: dict[str, Any]) -> None:
            if data["action"] == "search" and not (data["query"] or "").strip():
                raise ParseError('"action": "search" needs a "query"')
            if data["action"] == "finalize":
                if data["idea"] is None:
                    raise ParseError('"action": "finalize" needs the "idea"')
                twin = repeats({**data["idea"], "name": _slug(data["idea"]["name"])}, earlier)
                if twin is not None:
                    raise ParseError(f"this idea repeats the earlier idea {twin!r}: propose a clearly different one")

        # Every turn either spends a search or a reflection round, plus one turn to finalize after each.
        for _ in range((self.searches + 1) * (self.reflections + 1) + 1):
            data = await self.client.structured("ideation", prompt, TURN, subject=subject, history=history,
                                                check=check)
            history += [{"role": "user", "content": prompt.user}, {"role": "assistant", "content": json.dumps(data)}]
            if data["action"] == "search":
                query = str(data["query"]).strip()
                found, note = [], ""
                if searches_left <= 0:
                    note = "no searches left: finalize now"
                else:
                    searches_left -= 1
                    try:
                        found = await self.literature.search(query, SEARCH_LIMIT)
                    except LiteratureError as exc:
                        note = f"the search failed ({exc})"
                prompt = prompts.render("search_results", action=prompt.name, query=query,
                                        papers=papers.add(found), note=note, searches_left=searches_left,
                                        system=topic.system)
                continue
            final = dict(data["idea"])
            if round_ >= self.reflections or data["done"]:
                break
            round_ += 1
            prompt = prompts.render("reflection", round=round_, rounds=self.reflections, system=topic.system)
        return final, list(papers.by_label.values())

    async def novelty(self, idea: Idea, subject: str) -> NoveltyVerdict:
        """Search, read, decide; the verdict cites the papers that informed it."""
        papers = _Papers()
        queries = [idea.title]
        backend = self.literature.name
        try:
            papers.add(await self.literature.search(idea.title, SEARCH_LIMIT))
        except LiteratureError as exc:
            log.warning("%s: novelty search failed: %s", subject, exc)
        model = self.client.config.model_for("ideation")
        prompt: RenderedPrompt | None = None

        def check(data: dict[str, Any]) -> None:
            if data["decision"] == "search" and not (data["query"] or "").strip():
                raise ParseError('"decision": "search" needs a "query"')
            unknown = [label for label in data["papers"] if label not in papers.by_label]
            if unknown:
                raise ParseError(f"unknown paper label(s) {unknown}: cite only labels from the list "
                                 f"({', '.join(papers.by_label) or 'none'})")

        for round_ in range(1, self.novelty_rounds + 1):
            prompt = self.client.prompts.render("novelty", idea=idea, papers=papers.views(), queries=queries,
                                                round=round_, rounds=self.novelty_rounds)
            try:
                data = await self.client.structured("ideation", prompt, NOVELTY, subject=subject, check=check)
            except AnswerError as exc:
                return NoveltyVerdict("undecided", f"the check failed: {exc}", [], queries, backend, prompt.ref,
                                      model, len(papers.by_label))
            if data["decision"] == "search" and round_ < self.novelty_rounds:
                query = str(data["query"]).strip()
                queries.append(query)
                try:
                    papers.add(await self.literature.search(query, SEARCH_LIMIT))
                except LiteratureError as exc:
                    log.warning("%s: novelty search failed: %s", subject, exc)
                continue
            if data["decision"] == "search":
                break
            cited = [papers.by_label[label] for label in dict.fromkeys(data["papers"])]
            verdict = "novel" if data["decision"] == "novel" else "not novel"
            return NoveltyVerdict(verdict, str(data["reason"]), cited, queries, backend, prompt.ref, model,
                                  len(papers.by_label))
        return NoveltyVerdict("undecided", f"no decision within {self.novelty_rounds} rounds", [], queries, backend,
                              prompt.ref if prompt else "", model, len(papers.by_label))


def load_ideas(text: str, location: str = "ideas.json") -> list[dict[str, Any]]:
    """The entries of an ideas file (a JSON list, or ``{"ideas": [...]}``)."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise AgentError(f"{location}: not JSON ({exc})") from None
    items = data.get("ideas") if isinstance(data, dict) else data
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise AgentError(f"{location}: expected a JSON list of idea objects")
    return items


def find_idea(entries: Sequence[Mapping[str, Any]], name: str, location: str = "ideas.json") -> Idea:
    """The idea called ``name`` (its ``name``, or v2's ``Name``); errors list the names there are."""
    for entry in entries:
        if name in (entry.get("name"), entry.get("Name")):
            return Idea.from_entry(entry)
    names = [str(e.get("name") or e.get("Name")) for e in entries]
    raise AgentError(f"{location}: no idea named {name!r} (there are: {', '.join(names) or 'none'})")


def merge_ideas(existing: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The file's entries followed by the new ones, names made unique (``_2``, ``_3``, ...)."""
    out = [dict(e) for e in existing]
    names = {str(e.get("name") or e.get("Name")) for e in out}
    for entry in new:
        base = str(entry["name"])
        name, n = base, 1
        while name in names:
            n += 1
            name = f"{base}_{n}"
        names.add(name)
        out.append({**entry, "name": name})
    return out
