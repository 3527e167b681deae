"""A fake Semantic Scholar and OpenAlex on 127.0.0.1 for the literature clients' tests (aiohttp in a
thread): scripted statuses first (429 with Retry-After, 5xx, 403), then canned search results."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from typing import Any

from aiohttp import web

S2_PAPER = {
    "paperId": "abc123", "title": "Grokking: Generalization Beyond Overfitting on Small Algorithmic Datasets",
    "authors": [{"authorId": "1", "name": "Alethea Power"}, {"authorId": "2", "name": "Yuri Burda"}],
    "venue": "arXiv", "year": 2022, "abstract": "Delayed generalization on algorithmic data.",
    "citationCount": 500, "url": "https://www.semanticscholar.org/paper/abc123",
    "externalIds": {"DOI": "10.48550/arXiv.2201.02177"},
}
OPENALEX_WORK = {
    "id": "https://openalex.org/W123", "display_name": "Progress measures for grokking",
    "publication_year": 2023, "cited_by_count": 300, "doi": "https://doi.org/10.1/xyz",
    "authorships": [{"author": {"display_name": "Neel Nanda"}}, {"author": {"display_name": "Lawrence Chan"}}],
    "primary_location": {"source": {"display_name": "ICLR"}},
    "abstract_inverted_index": {"We": [0], "reverse-engineer": [1], "grokking.": [3], "modular": [2]},
}


class FakeScholar:
    def __init__(self) -> None:
        self.statuses: deque[tuple[int, dict[str, str]]] = deque()
        self.requests: list[tuple[float, str, dict[str, str], dict[str, str]]] = []
        """(arrival time, path, query, headers)"""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests.append((time.monotonic(), request.path, dict(request.query), dict(request.headers)))
        if self.statuses:
            status, headers = self.statuses.popleft()
            return web.json_response({"message": f"status {status}"}, status=status, headers=headers)
        if request.path == "/graph/v1/paper/search":
            return web.json_response({"total": 1, "offset": 0, "data": [S2_PAPER]})
        return web.json_response({"meta": {"count": 1}, "results": [OPENALEX_WORK]})

    def __enter__(self) -> FakeScholar:
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            app = web.Application()
            app.router.add_get("/graph/v1/paper/search", self._handle)
            app.router.add_get("/works", self._handle)
            runner = web.AppRunner(app)
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            self.port = runner.addresses[0][1]
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, daemon=True, name="fake-scholar")
        self._thread.start()
        ready.wait(10)
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._loop is not None and self._thread is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
