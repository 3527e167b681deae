"""The LLM client: the official ``openai`` async client, with our own retries, structured answers and accounts.

The openai client's own retries are off (``max_retries=0``) so that each retry is decided here, logged
with its reason and counted. Transient failures (429, 5xx, 408/409, timeouts, dropped connections) are
retried with exponential backoff and jitter, honouring a server's Retry-After; anything else fails the
call at once. Every answered request is charged to the ledger before anything else happens, and the caps
are checked before every request, so a cap stops new work without losing the accounts of work done.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import logging
import random
import time
from typing import Any, Awaitable, Callable, Sequence, TypeVar, cast

import httpx2
import openai

from kubescientist.agent.accounting import CallRecord, Ledger, Usage
from kubescientist.agent.answers import ParseError, Schema, parse_json
from kubescientist.agent.config import STRUCTURED_CHAIN, LLMConfig
from kubescientist.agent.errors import AnswerError, LLMUnavailable
from kubescientist.agent.prompts import PromptLibrary, RenderedPrompt
from kubescientist.agent.retryafter import retry_after_seconds
from kubescientist.agent.roles import Role
from kubescientist.core.spec import StructuredMode

log = logging.getLogger("kubescientist.agent.llm")

T = TypeVar("T")
Message = dict[str, Any]
MAX_REASON_CHARS = 300
"""How much of a server's refusal is kept in a call's record."""
CHARS_PER_TOKEN = 4
"""For estimating tokens when a server reports no usage (a rough, common rule of thumb)."""


@dataclasses.dataclass(frozen=True)
class Image:
    """A picture sent to a vision model."""

    name: str
    """Its file name, for the prompt's text."""
    png: bytes
    """The PNG bytes."""

    def part(self) -> Message:
        data = base64.b64encode(self.png).decode("ascii")
        return {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}}


@dataclasses.dataclass(frozen=True)
class Completion:
    """One answered request."""

    text: str
    """The answer's text."""
    model: str
    """The model that answered, as the server names it."""
    finish_reason: str | None
    """Why the model stopped (``length`` means cut off)."""


class LLMClient:
    def __init__(self, config: LLMConfig, ledger: Ledger | None = None, *, prompts: PromptLibrary | None = None,
                 rng: random.Random | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.config = config
        self.ledger = ledger or Ledger(config.prices, config.caps)
        self.prompts = prompts or PromptLibrary()
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._schema_support: dict[str, StructuredMode] = {}
        """Per model, the strictest structured mode its server has not refused."""
        self._semaphore = asyncio.Semaphore(config.max_concurrency)
        self.openai = openai.AsyncOpenAI(
            api_key=config.api_key, base_url=config.base_url, max_retries=0,
            timeout=httpx2.Timeout(config.timeout_seconds, connect=config.connect_timeout_seconds))

    async def aclose(self) -> None:
        await self.openai.close()

    async def __aenter__(self) -> LLMClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- the public calls ------------------------------------------------------------------------------

    async def ask(self, role: Role, prompt: RenderedPrompt, parse: Callable[[str], T], *, subject: str,
                  history: Sequence[Message] = (), images: Sequence[Image] = (),
                  answer_format: str = "") -> T:
        """Ask, parse the answer with ``parse``; if it raises ``ParseError``, ask once for a repaired answer.

        ``answer_format`` reminds the model of the expected form in the repair request.
        """
        return await self._ask(role, prompt, parse, subject=subject, history=history, images=images,
                               schema=None, answer_format=answer_format)

    async def structured(self, role: Role, prompt: RenderedPrompt, schema: Schema, *, subject: str,
                         history: Sequence[Message] = (), images: Sequence[Image] = (),
                         check: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """A JSON object matching ``schema``: enforced by the server where it can, else asked for in words
        (a fenced block), validated, with one repair attempt. ``check`` adds rules a schema cannot state
        (it raises ``ParseError``)."""
        def parse(text: str) -> dict[str, Any]:
            data = parse_json(text, schema.schema)
            if check is not None:
                check(data)
            return data

        return await self._ask(role, prompt, parse, subject=subject, history=history, images=images,
                               schema=schema, answer_format="")

    # -- internals -------------------------------------------------------------------------------------

    def _modes(self, model: str) -> tuple[StructuredMode, ...]:
        """The structured-output modes to try, in order: a named mode alone, else the chain from the
        strictest one this model's server has not refused yet."""
        mode = self.config.structured_outputs
        if mode != "auto":
            return (mode,)
        start = self._schema_support.get(model, STRUCTURED_CHAIN[0])
        return STRUCTURED_CHAIN[STRUCTURED_CHAIN.index(start):]

    def _json_instruction(self, schema: Schema) -> str:
        return self.prompts.fragment("_json_answer", schema=schema.schema, name=schema.name)

    async def _structured_request(self, role: Role, model: str, messages: list[Message], call: CallRecord,
                                  schema: Schema | None, modes: list[StructuredMode],
                                  user: Callable[[StructuredMode], Message]) -> Completion:
        """One request in the first mode the server accepts; ``modes`` is trimmed to what worked, so the
        repairs of this call ask the same way. A refused mode moves to the next; the last one's refusal
        fails the call."""
        if schema is None:
            return await self._request(role, model, messages, call, None)
        while True:
            mode = modes[0]
            call.structured = mode
            messages[-1] = user(mode)
            try:
                return await self._request(role, model, messages, call, _response_format(mode, schema))
            except _Refused as exc:
                # One line, bounded: some servers send a multi-line validation dump with a traceback.
                reason = " ".join(_status_text(exc.error).split())[:MAX_REASON_CHARS]
                if len(modes) == 1:
                    raise LLMUnavailable(f"{call.prompt}@{call.version}: the server refused the request: "
                                         f"{reason}") from None
                modes.pop(0)
                call.fallbacks.append(f"{mode} refused ({reason}); using {modes[0]}")
                log.info("model %s: structured mode %s refused (%s); using %s", model, mode, reason, modes[0])
                if exc.names_format:
                    self._schema_support[model] = modes[0]  # the server said so: later calls skip the mode

    async def _ask(self, role: Role, prompt: RenderedPrompt, parse: Callable[[str], T], *, subject: str,
                   history: Sequence[Message], images: Sequence[Image], schema: Schema | None,
                   answer_format: str) -> T:
        model = self.config.model_for(role)
        call = CallRecord(role=role, model=model, prompt=prompt.name, version=prompt.version, subject=subject,
                          usage=Usage(), seconds=0.0)
        started = time.monotonic()
        modes = list(self._modes(model))

        def first_user(mode: StructuredMode) -> Message:
            # Only a server enforcing the schema needs no words about it; json_object enforces it on some
            # servers (llama.cpp) and merely asks for JSON on others (OpenAI).
            text = prompt.user if schema is None or mode == "json_schema" else \
                prompt.user + "\n\n" + self._json_instruction(schema)
            return _user_message(text, images)

        try:
            base: list[Message] = [{"role": "system", "content": prompt.system}, *history, first_user(modes[0])]
            messages = list(base)
            completion = await self._structured_request(role, model, messages, call, schema, modes, first_user)
            base[-1] = messages[-1]
            attempts = max(1, self.config.answer_attempts)
            answers: list[str] = []
            for attempt in range(1, attempts + 1):
                try:
                    return parse(completion.text)
                except ParseError as exc:
                    answers.append(completion.text)
                    call.unusable.append(str(exc))
                    if attempt == attempts:
                        log.warning("%s (%s, subject %s): unusable answer %d of %d (%s); giving up; the answer "
                                    "began: %r", prompt.ref, model, subject, attempt, attempts, exc,
                                    completion.text[:400])
                        raise AnswerError(f"{prompt.ref}: unusable answer after {attempts} attempt"
                                          f"{'s' if attempts > 1 else ''}: {exc} (first: {call.unusable[0]})",
                                          tuple(answers)) from None
                    call.repaired = True
                    log.warning("%s (%s, subject %s): unusable answer %d of %d (%s); asking for a repair; "
                                "the answer began: %r", prompt.ref, model, subject, attempt, attempts, exc,
                                completion.text[:400])
                    reminder = self._json_instruction(schema) if schema is not None else answer_format
                    repair = self.prompts.render("repair", action=prompt.name, error=str(exc), reminder=reminder,
                                                 cut_off=completion.finish_reason == "length")
                    # Only the latest answer goes back: a small model's context is not filled with each
                    # failed try, and the repair sees exactly what it is to fix.
                    repair_message = _user_message(repair.user, ())
                    messages = [*base, {"role": "assistant", "content": completion.text}, repair_message]
                    completion = await self._structured_request(role, model, messages, call, schema, modes,
                                                                lambda _mode: repair_message)
            raise AssertionError("unreachable")
        except BaseException as exc:
            call.error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            call.seconds = time.monotonic() - started
            self.ledger.record(call)

    async def _request(self, role: Role, model: str, messages: list[Message], call: CallRecord,
                       response_format: dict[str, Any] | None) -> Completion:
        """One request, retried on transient failures; charges what the answer used. A request carrying
        ``response_format`` that the server rejects raises ``_Refused`` at once: the caller asks another way."""
        policy = self.config.retry
        extra: dict[str, Any] = {}
        if response_format is not None:
            extra["response_format"] = response_format
        if self.config.max_output_tokens is not None:
            extra[self.config.output_limit_param] = self.config.max_output_tokens
        if role in self.config.temperature:
            extra["temperature"] = self.config.temperature[role]
        attempt = 0
        while True:
            self.ledger.check()
            attempt += 1
            try:
                async with self._semaphore:
                    # The messages are plain dicts in the API's wire shape; its TypedDicts would add nothing.
                    response = await self.openai.chat.completions.create(
                        model=model, messages=cast(Any, messages), **extra)
                if not response.choices:
                    raise _EmptyAnswer()
            except (openai.APIError, _EmptyAnswer) as exc:
                if response_format is not None and isinstance(exc, openai.APIStatusError):
                    refused = _refusal(exc)
                    if refused is not None:
                        raise refused from None
                transient = _transient(exc, self.config.timeout_seconds)
                if transient is None:
                    raise LLMUnavailable(f"{call.prompt}@{call.version} ({model}): {_status_text(exc)}") from None
                reason, retry_after = transient
                if attempt >= policy.attempts:
                    raise LLMUnavailable(f"{call.prompt}@{call.version} ({model}): gave up after {attempt} "
                                         f"attempts; last failure: {reason}") from None
                wait = policy.delay(attempt, self._rng) if retry_after is None \
                    else min(retry_after, policy.max_retry_after)
                call.retry_reasons.append(reason)
                retry = Usage(retries=1)
                call.usage.add(retry)
                self.ledger.charge(role, call.subject, model, retry)
                log.warning("LLM retry %d/%d for %s@%s (role %s, model %s, subject %s): %s; waiting %.2fs",
                            attempt, policy.attempts - 1, call.prompt, call.version, role, model, call.subject,
                            reason, wait)
                await self._sleep(wait)
                continue
            choice = response.choices[0]
            text = choice.message.content or ""
            if response.usage is not None:
                usage = self.ledger.usage_of(model, response.usage.prompt_tokens, response.usage.completion_tokens,
                                             estimated=False)
            else:
                sent = len(json.dumps(messages, default=str))
                usage = self.ledger.usage_of(model, sent // CHARS_PER_TOKEN, len(text) // CHARS_PER_TOKEN,
                                             estimated=True)
            call.usage.add(usage)
            self.ledger.charge(role, call.subject, model, usage)
            return Completion(text=text, model=response.model or model, finish_reason=choice.finish_reason)


FORMAT_WORDS = ("response_format", "json_schema", "json_object", "'text'")
"""Words of an error that blames the requested answer format (llama.cpp's server answers HTTP 500
"Input should be 'text' or 'json_object'" to json_schema)."""


class _Refused(Exception):
    """The server rejected a request that carried a ``response_format``."""

    def __init__(self, error: openai.APIStatusError, names_format: bool) -> None:
        super().__init__(_status_text(error))
        self.error = error
        self.names_format = names_format
        """Whether the server blamed the format, so that later calls skip it (a 400 or 422 that does not
        say may be about something else: only this call moves on)."""


def _refusal(exc: openai.APIStatusError) -> _Refused | None:
    """Whether an error answer to a request with a ``response_format`` refuses that format: 400 and 422 do,
    so does any other 4xx/5xx whose message names the format. Rate limits, timeouts and conflicts do not
    (they are retried as transient: another format would fail the same way)."""
    status = exc.status_code
    if status in (408, 409, 429) or status < 400:
        return None
    text = _status_text(exc).lower()
    names = any(word in text for word in FORMAT_WORDS)
    if status in (400, 422) or names:
        return _Refused(exc, names)
    return None  # a 5xx that names nothing is the server's trouble, retried as transient


def _response_format(mode: StructuredMode, schema: Schema) -> dict[str, Any] | None:
    if mode == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": schema.name, "schema": schema.schema, "strict": True}}
    if mode == "json_object":
        return {"type": "json_object", "schema": schema.schema}
    return None


class _EmptyAnswer(Exception):
    """A 200 answer without choices: some proxies send one when the backend dropped the request."""


def _user_message(text: str, images: Sequence[Image]) -> Message:
    if not images:
        return {"role": "user", "content": text}
    return {"role": "user", "content": [{"type": "text", "text": text}, *(i.part() for i in images)]}


def _status_text(exc: BaseException) -> str:
    if isinstance(exc, openai.APIStatusError):
        body = exc.body
        message = body.get("message") if isinstance(body, dict) else None
        return f"HTTP {exc.status_code}: {message or exc.message}"
    return str(exc) or type(exc).__name__


def _retry_after(exc: openai.APIStatusError) -> float | None:
    headers = exc.response.headers
    if headers.get("retry-after-ms"):
        try:
            return float(headers["retry-after-ms"]) / 1000
        except ValueError:
            pass
    return retry_after_seconds(headers.get("retry-after"))


def _transient(exc: BaseException, timeout: float) -> tuple[str, float | None] | None:
    """``(reason, server-requested wait)`` for a failure worth retrying; None for one that is final."""
    if isinstance(exc, _EmptyAnswer):
        return "the answer had no choices", None
    if isinstance(exc, openai.APITimeoutError):
        return f"timed out (no answer within {timeout:g}s)", None
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__
        return f"connection failed ({type(cause).__name__ if cause else 'no detail'}: {cause or exc})", None
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        if status == 429:
            if exc.code == "insufficient_quota":
                return None  # out of credit: waiting does not help
            after = _retry_after(exc)
            shown = f", Retry-After {after:g}s" if after is not None else ""
            return f"HTTP 429 rate limited{shown}", after
        if status >= 500 or status in (408, 409):
            return _status_text(exc), _retry_after(exc)
    return None
