"""The literature tool: Semantic Scholar and OpenAlex over HTTP, or an offline corpus (JSON or BibTeX).

The HTTP clients are polite by construction: one request at a time with a minimum interval between
requests, a server's Retry-After honoured on 429 and 503, exponential backoff with jitter on other 5xx
and on transport errors, and the API key optional (both services answer without one, more slowly). The
offline corpus ranks its papers with BM25, so ideation and the novelty check work with no network.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import os
import pathlib
import random
import re
import time
from collections import Counter
from typing import Any, Awaitable, Callable, Mapping, Protocol, Sequence

from bibtexparser.entrypoint import parse_string as parse_bibtex
import httpx2
from bibtexparser.middlewares import LatexDecodingMiddleware

from kubescientist.agent.errors import AgentError
from kubescientist.agent.retryafter import retry_after_seconds

log = logging.getLogger("kubescientist.agent.literature")

S2_URL = "https://api.semanticscholar.org"
OPENALEX_URL = "https://api.openalex.org"
S2_FIELDS = "title,authors,venue,year,abstract,citationCount,url,externalIds"
OPENALEX_SELECT = ("id,display_name,publication_year,authorships,primary_location,cited_by_count,"
                   "abstract_inverted_index,doi")


class LiteratureError(AgentError):
    """A search failed for good (bad key, retries used up, an unreadable corpus)."""


@dataclasses.dataclass(frozen=True)
class Paper:
    """One paper, whichever source found it."""

    id: str
    """The source's identifier (Semantic Scholar paperId, OpenAlex work id, BibTeX key)."""
    title: str
    """Its title."""
    authors: tuple[str, ...] = ()
    """Author names, in order."""
    year: int | None = None
    """Publication year."""
    venue: str = ""
    """Journal or conference."""
    abstract: str = ""
    """The abstract, if the source has it."""
    url: str = ""
    """Where to read it (a DOI link where known)."""
    citations: int | None = None
    """How often it is cited, if the source says."""
    source: str = ""
    """Which backend found it."""

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "authors": list(self.authors), "year": self.year,
                "venue": self.venue, "url": self.url, "citations": self.citations, "source": self.source}


class LiteratureSource(Protocol):
    name: str
    """The backend's name, recorded with what it found."""

    async def search(self, query: str, limit: int = 10) -> list[Paper]:
        """Papers matching ``query``, most relevant first."""

    async def aclose(self) -> None:
        """Release connections."""


# -- HTTP ---------------------------------------------------------------------------------------------


class PoliteHTTP:
    """JSON GETs to one API, one at a time, rate-limit aware."""

    def __init__(self, base_url: str, *, headers: Mapping[str, str] | None = None, min_interval: float = 1.0,
                 attempts: int = 5, base_delay: float = 1.0, max_wait: float = 120.0, timeout: float = 30.0,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, rng: random.Random | None = None) -> None:
        self.client = httpx2.AsyncClient(base_url=base_url, headers=dict(headers or {}), timeout=timeout,
                                         follow_redirects=True)
        self.min_interval = min_interval
        self.attempts = attempts
        self.base_delay = base_delay
        self.max_wait = max_wait
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._lock = asyncio.Lock()
        self._last = -math.inf
        self.waits: list[tuple[str, float]] = []
        """Every wait before a retry, with its reason (for logs and tests)."""

    async def aclose(self) -> None:
        await self.client.aclose()

    async def get_json(self, path: str, params: Mapping[str, str | int]) -> Any:
        async with self._lock:
            for attempt in range(1, self.attempts + 1):
                gap = self._last + self.min_interval - time.monotonic()
                if gap > 0:
                    await self._sleep(gap)
                self._last = time.monotonic()
                try:
                    response = await self.client.get(path, params=dict(params))
                except httpx2.TransportError as exc:
                    reason, after = f"{type(exc).__name__}: {exc}", None
                else:
                    if response.status_code == 200:
                        try:
                            return response.json()
                        except ValueError:
                            raise LiteratureError(f"{self.client.base_url}{path}: the answer is not JSON") from None
                    if response.status_code not in (429, 500, 502, 503, 504):
                        raise LiteratureError(f"{self.client.base_url}{path}: HTTP {response.status_code}: "
                                              f"{response.text[:300]}")
                    reason, after = f"HTTP {response.status_code}", retry_after_seconds(response.headers.get("retry-after"))
                if attempt == self.attempts:
                    raise LiteratureError(f"{self.client.base_url}{path}: gave up after {attempt} attempts "
                                          f"({reason})")
                step = min(self.max_wait, self.base_delay * 2 ** (attempt - 1))
                wait = min(after, self.max_wait) if after is not None else step / 2 + self._rng.uniform(0, step / 2)
                self.waits.append((reason, wait))
                log.warning("literature search retry %d/%d at %s: %s; waiting %.2fs", attempt, self.attempts - 1,
                            self.client.base_url, reason + (f" (Retry-After {after:g}s)" if after is not None else ""),
                            wait)
                await self._sleep(wait)
        raise AssertionError("unreachable")




class SemanticScholar:
    """The Semantic Scholar Graph API's paper search. A key (``S2_API_KEY``) raises the rate limit."""

    name = "semantic-scholar"

    def __init__(self, api_key: str | None = None, *, base_url: str = S2_URL, min_interval: float = 1.0,
                 **http: Any) -> None:
        headers = {"x-api-key": api_key} if api_key else {}
        self.http = PoliteHTTP(base_url, headers=headers, min_interval=min_interval, **http)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def search(self, query: str, limit: int = 10) -> list[Paper]:
        data = await self.http.get_json("/graph/v1/paper/search",
                                        {"query": query, "limit": limit, "fields": S2_FIELDS})
        papers = []
        for item in (data or {}).get("data") or []:
            ids = item.get("externalIds") or {}
            url = f"https://doi.org/{ids['DOI']}" if ids.get("DOI") else str(item.get("url") or "")
            papers.append(Paper(
                id=str(item.get("paperId", "")), title=str(item.get("title") or ""),
                authors=tuple(str(a.get("name", "")) for a in item.get("authors") or []), year=item.get("year"),
                venue=str(item.get("venue") or ""), abstract=str(item.get("abstract") or ""), url=url,
                citations=item.get("citationCount"), source=self.name))
        return papers


class OpenAlex:
    """OpenAlex's works search. ``mailto`` joins the polite pool; a key is optional."""

    name = "openalex"

    def __init__(self, api_key: str | None = None, *, mailto: str | None = None, base_url: str = OPENALEX_URL,
                 min_interval: float = 0.2, **http: Any) -> None:
        self.api_key = api_key
        self.mailto = mailto
        self.http = PoliteHTTP(base_url, min_interval=min_interval, **http)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def search(self, query: str, limit: int = 10) -> list[Paper]:
        params: dict[str, str | int] = {"search": query, "per-page": limit, "select": OPENALEX_SELECT}
        if self.mailto:
            params["mailto"] = self.mailto
        if self.api_key:
            params["api_key"] = self.api_key
        data = await self.http.get_json("/works", params)
        papers = []
        for item in (data or {}).get("results") or []:
            location = item.get("primary_location") or {}
            venue = (location.get("source") or {}).get("display_name") or ""
            papers.append(Paper(
                id=str(item.get("id", "")).rsplit("/", 1)[-1], title=str(item.get("display_name") or ""),
                authors=tuple(str((a.get("author") or {}).get("display_name", ""))
                              for a in item.get("authorships") or []),
                year=item.get("publication_year"), venue=str(venue),
                abstract=_inverted_abstract(item.get("abstract_inverted_index")),
                url=str(item.get("doi") or item.get("id") or ""), citations=item.get("cited_by_count"),
                source=self.name))
        return papers


def _inverted_abstract(index: Mapping[str, Sequence[int]] | None) -> str:
    """OpenAlex ships abstracts as word -> positions; put the words back in order."""
    if not index:
        return ""
    positions = {pos: word for word, where in index.items() for pos in where}
    return " ".join(positions[i] for i in sorted(positions))


# -- offline ------------------------------------------------------------------------------------------

_STOPWORDS = frozenset("a an and are as at be by for from in into is it of on or that the this to with we our "
                       "via using how what which".split())


def _tokens(text: str) -> list[str]:
    return [t for t in re.findall(r"[a-z0-9]+", text.lower()) if t not in _STOPWORDS and len(t) > 1]


class OfflineCorpus:
    """A fixed list of papers searched with BM25 over title (counted twice), keywords and abstract."""

    name = "offline"
    K1 = 1.5
    B = 0.75

    def __init__(self, papers: Sequence[Paper], location: str = "") -> None:
        self.papers = list(papers)
        self.location = location
        self._docs = [Counter(_tokens(f"{p.title} {p.title} {p.venue} {p.abstract}")) for p in self.papers]
        self._lengths = [sum(d.values()) for d in self._docs]
        self._avg = (sum(self._lengths) / len(self._lengths)) if self._lengths else 0.0
        df: Counter[str] = Counter()
        for doc in self._docs:
            df.update(doc.keys())
        n = len(self._docs)
        self._idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}

    async def aclose(self) -> None:
        return None  # nothing is open

    async def search(self, query: str, limit: int = 10) -> list[Paper]:
        terms = _tokens(query)
        scored = []
        for i, doc in enumerate(self._docs):
            score = 0.0
            for t in terms:
                tf = doc.get(t, 0)
                if tf:
                    norm = tf + self.K1 * (1 - self.B + self.B * self._lengths[i] / (self._avg or 1.0))
                    score += self._idf[t] * tf * (self.K1 + 1) / norm
            if score > 0:
                scored.append((-score, i))
        return [self.papers[i] for _, i in sorted(scored)[:limit]]

    @classmethod
    def from_json(cls, text: str, location: str = "corpus") -> OfflineCorpus:
        """A JSON list of papers, or ``{"papers": [...]}``; each needs a title, and may have id, authors
        (a list or an " and "-separated string), year, venue, abstract, url or doi, citations, keywords."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise LiteratureError(f"{location}: not JSON ({exc})") from None
        items = data.get("papers") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise LiteratureError(f"{location}: expected a list of papers or {{\"papers\": [...]}}")
        papers = []
        for i, item in enumerate(items):
            if not isinstance(item, dict) or not str(item.get("title") or "").strip():
                raise LiteratureError(f"{location}: papers[{i}]: needs a title")
            authors = item.get("authors") or ()
            if isinstance(authors, str):
                authors = [a.strip() for a in authors.split(" and ")]
            keywords = item.get("keywords") or ()
            abstract = str(item.get("abstract") or "")
            if keywords:
                abstract = f"{abstract} Keywords: {', '.join(map(str, keywords))}".strip()
            url = str(item.get("url") or (f"https://doi.org/{item['doi']}" if item.get("doi") else ""))
            papers.append(Paper(id=str(item.get("id") or f"paper{i + 1}"), title=str(item["title"]).strip(),
                                authors=tuple(str(a) for a in authors), year=_year(item.get("year")),
                                venue=str(item.get("venue") or ""), abstract=abstract, url=url,
                                citations=item.get("citations"), source=cls.name))
        return cls(papers, location)

    @classmethod
    def from_bibtex(cls, text: str, location: str = "corpus") -> OfflineCorpus:
        """A BibTeX file; entries without a title are skipped, unparsable blocks are an error naming them."""
        library = parse_bibtex(text, append_middleware=[LatexDecodingMiddleware()])
        if library.failed_blocks:
            block = library.failed_blocks[0]
            line = f"line {block.start_line + 1}: " if block.start_line is not None else ""
            raise LiteratureError(f"{location}: {line}unparsable BibTeX: {block.error}")
        papers = []
        for entry in library.entries:
            fields = {k.lower(): str(f.value) for k, f in entry.fields_dict.items()}
            title = _unbrace(fields.get("title", ""))
            if not title:
                continue
            doi = fields.get("doi", "")
            papers.append(Paper(
                id=entry.key, title=title,
                authors=tuple(_unbrace(a).strip() for a in fields.get("author", "").split(" and ") if a.strip()),
                year=_year(fields.get("year")),
                venue=_unbrace(fields.get("journal") or fields.get("booktitle") or fields.get("publisher", "")),
                abstract=_unbrace(" ".join(filter(None, (fields.get("abstract", ""), fields.get("keywords", ""))))),
                url=f"https://doi.org/{doi}" if doi else fields.get("url", ""), source=cls.name))
        return cls(papers, location)

    @classmethod
    def from_path(cls, path: pathlib.Path) -> OfflineCorpus:
        """``.bib`` files are BibTeX, anything else JSON."""
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise LiteratureError(f"{path}: cannot read the corpus ({exc})") from None
        return cls.from_bibtex(text, str(path)) if path.suffix.lower() == ".bib" else cls.from_json(text, str(path))


def _unbrace(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("{", "").replace("}", "")).strip()


def _year(value: Any) -> int | None:
    match = re.search(r"\d{4}", str(value or ""))
    return int(match.group()) if match else None


def source_from_env(backend: str, corpus: pathlib.Path | None = None,
                    env: Mapping[str, str] | None = None) -> LiteratureSource:
    """The backend a user chose: ``offline`` (needs ``corpus``), ``semantic-scholar`` (key from
    ``S2_API_KEY``) or ``openalex`` (``OPENALEX_API_KEY``, ``OPENALEX_MAILTO``)."""
    env = os.environ if env is None else env
    if backend == "offline":
        if corpus is None:
            raise LiteratureError("the offline literature backend needs a corpus file (JSON or .bib)")
        return OfflineCorpus.from_path(corpus)
    if backend == "semantic-scholar":
        return SemanticScholar(env.get("S2_API_KEY") or None)
    if backend == "openalex":
        return OpenAlex(env.get("OPENALEX_API_KEY") or None, mailto=env.get("OPENALEX_MAILTO") or None)
    raise LiteratureError(f"unknown literature backend {backend!r} (offline, semantic-scholar, openalex)")
