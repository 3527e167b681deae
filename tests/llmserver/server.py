"""An OpenAI-compatible ``/v1/chat/completions`` server that answers from a script, for tests.

It runs aiohttp on 127.0.0.1 (a free port) in a thread of its own, so the real ``openai`` client talks
real HTTP to it. The action of a request is read from the ``action: <name>`` line the agent's prompts
carry (in the last user message, so a repair request counts for the action it repairs). For each action,
scripted ``Reply`` objects are used first, in order; then the default responder of ``scenarios`` writes a
plausible answer. A reply can be an HTTP error (with headers such as Retry-After), a delay (beyond the
client's timeout: a timeout), a dropped connection, or any text (malformed JSON, no code block).
Every request is recorded, so tests can count retries and read what was sent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import threading
import time
import uuid
from collections import defaultdict, deque
from typing import Any, Callable, Mapping

from aiohttp import web

ACTION = re.compile(r"^action:\s*(\w+)", re.MULTILINE)


@dataclasses.dataclass
class Reply:
    """One scripted answer."""

    content: str | None = None
    """The answer's text (HTTP 200); None lets the default responder write it."""
    status: int = 200
    """HTTP status; non-200 sends an OpenAI-style error body."""
    error: str = "scripted error"
    """The error message of a non-200 reply."""
    code: str | None = None
    """The error code of a non-200 reply (e.g. ``insufficient_quota``)."""
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    """Extra response headers (Retry-After)."""
    delay: float = 0.0
    """Seconds to wait before answering."""
    drop: bool = False
    """Close the connection without answering."""
    usage: tuple[int, int] | None = None
    """``(prompt_tokens, completion_tokens)``; default: characters / 4."""
    no_usage: bool = False
    """Leave ``usage`` out of the answer."""
    finish_reason: str = "stop"
    """The choice's finish reason."""


@dataclasses.dataclass
class Call:
    """What a responder sees of a request."""

    action: str | None
    """The action named in the last user message."""
    count: int
    """How many answers the default responder gave for this action before (0 for the first)."""
    body: dict[str, Any]
    """The request body."""

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", []))

    @property
    def last_user(self) -> str:
        return next((text_of(m) for m in reversed(self.messages) if m.get("role") == "user"), "")

    @property
    def first_user(self) -> str:
        return next((text_of(m) for m in self.messages if m.get("role") == "user"), "")

    @property
    def repair(self) -> bool:
        return "\nrepair:" in self.last_user

    @property
    def images(self) -> int:
        """Images in the latest user message that has any (a repair request refers back to them)."""
        for message in reversed(self.messages):
            content = message.get("content")
            if message.get("role") == "user" and isinstance(content, list):
                return sum(1 for p in content if p.get("type") == "image_url")
        return 0


@dataclasses.dataclass
class Recorded:
    """A request as it arrived and what it got."""

    action: str | None
    """The action named in its last user message."""
    repair: bool
    """Whether it was a repair request."""
    body: dict[str, Any]
    """The request body."""
    headers: dict[str, str]
    """The request headers."""
    outcome: str
    """``200``, another status, ``drop`` or ``timeout`` (when the client gave up first)."""
    at: float
    """Monotonic arrival time."""


def text_of(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if p.get("type") == "text")
    return str(content or "")


Responder = Callable[[Call], str]


class ScriptedLLMServer:
    def __init__(self, responders: Mapping[str, Responder] | None = None, *, json_schema: bool = True,
                 json_object: bool = True, api_key: str | None = None, refusal: tuple[int, str] = (
                     400, "response_format of type json_schema is not supported by this server")) -> None:
        from tests.llmserver.scenarios import DEFAULT_RESPONDERS

        self.responders: dict[str, Responder] = {**DEFAULT_RESPONDERS, **(responders or {})}
        self.json_schema = json_schema
        self.json_object = json_object
        self.refusal = refusal
        """The status and message a server without ``json_schema`` answers it with (llama.cpp's server:
        500, "Input should be 'text' or 'json_object'")."""
        self.api_key = api_key
        self.requests: list[Recorded] = []
        self._script: dict[str, deque[Reply]] = defaultdict(deque)
        self._counts: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- scripting -------------------------------------------------------------------------------------

    def script(self, action: str, *replies: Reply) -> None:
        """Queue replies for requests of ``action`` (``*``: any action), used before the default responder."""
        with self._lock:
            self._script[action].extend(replies)

    def for_action(self, action: str) -> list[Recorded]:
        return [r for r in self.requests if r.action == action]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # -- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> ScriptedLLMServer:
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                loop.run_until_complete(self._start())
            except BaseException as exc:  # noqa: BLE001 - handed to the starting thread
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._stop())
            # Handlers still sleeping on a scripted delay end here, not at interpreter exit.
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

        self._thread = threading.Thread(target=serve, name="scripted-llm-server", daemon=True)
        self._thread.start()
        if not ready.wait(10) or failure:
            raise RuntimeError(f"scripted LLM server did not start: {failure}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None

    def __enter__(self) -> ScriptedLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._completions)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -- the API ---------------------------------------------------------------------------------------

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "scripted", "object": "model",
                                                              "created": 0, "owned_by": "tests"}]})

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        messages = body.get("messages", [])
        last_user = next((text_of(m) for m in reversed(messages) if m.get("role") == "user"), "")
        match = ACTION.search(last_user)
        action = match.group(1) if match else None
        record = Recorded(action=action, repair="\nrepair:" in last_user, body=body, headers=dict(request.headers),
                          outcome="pending", at=time.monotonic())
        with self._lock:
            self.requests.append(record)
            key = action or "?"
            queue = self._script[key] if self._script[key] else self._script["*"]
            reply = queue.popleft() if queue else Reply()
        if self.api_key is not None and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            record.outcome = "401"
            return _error(401, "invalid api key", "invalid_api_key", {})
        requested = (body.get("response_format") or {}).get("type")
        if (requested == "json_schema" and not self.json_schema) or (requested == "json_object" and not self.json_object):
            record.outcome = str(self.refusal[0])
            return _error(self.refusal[0], self.refusal[1], None, {})
        if reply.delay:
            record.outcome = "timeout"  # unless the client is still there when the delay ends
            await asyncio.sleep(reply.delay)
            if request.transport is None or request.transport.is_closing():
                return web.Response(status=499)  # the client gave up: nobody reads this
        if reply.drop:
            record.outcome = "drop"
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=200)
        if reply.status != 200:
            record.outcome = str(reply.status)
            return _error(reply.status, reply.error, reply.code, reply.headers)
        content = reply.content
        if content is None:
            responder = self.responders.get(action or "")
            if responder is None:
                record.outcome = "400"
                return _error(400, f"no responder for action {action!r}", None, {})
            with self._lock:
                count = self._counts[action or "?"]
                self._counts[action or "?"] += 1
            content = responder(Call(action=action, count=count, body=body))
        record.outcome = "200"
        sent = len(json.dumps(messages))
        prompt_tokens, completion_tokens = reply.usage or (max(1, sent // 4), max(1, len(content) // 4))
        answer: dict[str, Any] = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "scripted"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": reply.finish_reason, "logprobs": None}],
        }
        if not reply.no_usage:
            answer["usage"] = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                               "total_tokens": prompt_tokens + completion_tokens}
        return web.json_response(answer, headers=reply.headers)


def _error(status: int, message: str, code: str | None, headers: Mapping[str, str]) -> web.Response:
    kind = {400: "invalid_request_error", 401: "authentication_error", 429: "rate_limit_error"}.get(status,
                                                                                                  "server_error")
    return web.json_response({"error": {"message": message, "type": kind, "param": None, "code": code}},
                             status=status, headers=dict(headers))
