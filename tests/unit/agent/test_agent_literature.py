"""The literature backends: Semantic Scholar and OpenAlex over HTTP (a local fake: rate limits honoured,
keys optional), and the offline corpus (JSON and BibTeX, BM25)."""

from __future__ import annotations

import asyncio
import pathlib

import pytest

from agent_scholar import FakeScholar
from kubescientist.agent.literature import (LiteratureError, OfflineCorpus, OpenAlex, Paper, SemanticScholar,
                                            source_from_env)

SLACK = 0.03
"""Arrival times at the server jitter a little around the client's own spacing."""
EXAMPLES = pathlib.Path(__file__).resolve().parents[3] / "examples" / "literature"


def search(source: SemanticScholar | OpenAlex | OfflineCorpus, query: str, limit: int = 10) -> list[Paper]:
    async def go() -> list[Paper]:
        try:
            return await source.search(query, limit)
        finally:
            await source.aclose()
    return asyncio.run(go())


def test_semantic_scholar_honours_retry_after_and_sends_the_key() -> None:
    with FakeScholar() as fake:
        fake.statuses.extend([(429, {"Retry-After": "0.3"}), (503, {})])
        client = SemanticScholar("s2-key", base_url=fake.url, min_interval=0.0, base_delay=0.05)
        [paper] = search(client, "grokking", 5)
        assert paper.title.startswith("Grokking") and paper.authors == ("Alethea Power", "Yuri Burda")
        assert paper.year == 2022 and paper.citations == 500 and paper.source == "semantic-scholar"
        assert paper.url == "https://doi.org/10.48550/arXiv.2201.02177"
        (t0, path, query, headers), (t1, *_), _ = fake.requests
        assert path == "/graph/v1/paper/search" and query["query"] == "grokking" and query["limit"] == "5"
        assert "abstract" in query["fields"] and headers["x-api-key"] == "s2-key"
        assert t1 - t0 >= 0.3 - SLACK  # the server's Retry-After, not the shorter backoff
        assert [reason for reason, _ in client.http.waits] == ["HTTP 429", "HTTP 503"]
        assert client.http.waits[0][1] == 0.3


def test_no_key_no_header_and_a_minimum_interval() -> None:
    with FakeScholar() as fake:
        client = SemanticScholar(None, base_url=fake.url, min_interval=0.25)

        async def twice() -> None:
            await client.search("a")
            await client.search("b")
            await client.http.aclose()
        asyncio.run(twice())
        (t0, _, _, headers), (t1, *_) = fake.requests
        assert "x-api-key" not in headers and t1 - t0 >= 0.25 - SLACK


def test_a_refused_request_is_not_retried() -> None:
    with FakeScholar() as fake:
        fake.statuses.append((403, {}))
        with pytest.raises(LiteratureError, match="HTTP 403"):
            search(SemanticScholar("bad", base_url=fake.url, min_interval=0.0), "x")
        assert len(fake.requests) == 1


def test_gives_up_after_the_attempts() -> None:
    with FakeScholar() as fake:
        fake.statuses.extend([(500, {})] * 3)
        with pytest.raises(LiteratureError, match=r"gave up after 3 attempts \(HTTP 500\)"):
            search(SemanticScholar(None, base_url=fake.url, min_interval=0.0, attempts=3, base_delay=0.01), "x")


def test_openalex_rebuilds_the_abstract_and_joins_the_polite_pool() -> None:
    with FakeScholar() as fake:
        fake.statuses.append((429, {"Retry-After": "0"}))
        [paper] = search(OpenAlex("oa-key", mailto="me@example.org", base_url=fake.url, min_interval=0.0),
                         "grokking progress")
        assert paper.id == "W123" and paper.venue == "ICLR" and paper.authors == ("Neel Nanda", "Lawrence Chan")
        assert paper.abstract == "We reverse-engineer modular grokking." and paper.url == "https://doi.org/10.1/xyz"
        _, path, query, _ = fake.requests[-1]
        assert path == "/works" and query["search"] == "grokking progress" and query["mailto"] == "me@example.org"
        assert query["api_key"] == "oa-key" and "abstract_inverted_index" in query["select"]


def test_offline_corpus_json_ranks_by_relevance() -> None:
    corpus = OfflineCorpus.from_path(EXAMPLES / "grokking.json")
    assert len(corpus.papers) == 13
    top = search(corpus, "decoupled weight decay AdamW", 3)
    assert top[0].id == "loshchilov2019adamw"
    assert search(corpus, "grokking mechanistic interpretability modular addition", 1)[0].id == "nanda2023progress"
    assert search(corpus, "quantum chromodynamics") == []


def test_offline_corpus_bibtex() -> None:
    corpus = OfflineCorpus.from_path(EXAMPLES / "grokking.bib")
    assert [p.id for p in corpus.papers] == ["power2022grokking", "nanda2023progress", "loshchilov2019adamw",
                                             "kumar2024lazy"]
    adamw = corpus.papers[2]
    assert adamw.authors == ("Loshchilov, Ilya", "Hutter, Frank") and adamw.year == 2019
    assert adamw.venue == "International Conference on Learning Representations"
    assert search(corpus, "lazy rich feature learning", 1)[0].id == "kumar2024lazy"


def test_corpus_errors_name_the_problem(tmp_path: pathlib.Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('[{"authors": ["x"]}]')
    with pytest.raises(LiteratureError, match=r"bad.json: papers\[0\]: needs a title"):
        OfflineCorpus.from_path(bad)
    broken = tmp_path / "broken.bib"
    broken.write_text('@article{a, title = "ok"}\n@article{b, title = {unclosed\n')
    with pytest.raises(LiteratureError, match="broken.bib: .*unparsable BibTeX"):
        OfflineCorpus.from_path(broken)
    with pytest.raises(LiteratureError, match="needs a corpus"):
        source_from_env("offline", None, {})
    openalex = source_from_env("openalex", None, {"OPENALEX_MAILTO": "a@b"})
    assert isinstance(openalex, OpenAlex) and openalex.mailto == "a@b"
    asyncio.run(openalex.aclose())
