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
from kubescientist.agent.config import LLMConfig
from kubescientist.agent.errors import AnswerError, LLMUnavailable
from kubescientist.agent.prompts import PromptLibrary, RenderedPrompt
from kubescientist.agent.retryafter import retry_after_seconds
from kubescientist.agent.roles import Role

log = logging.getLogger("kubescientist.agent.llm")

T = TypeVar("T")
Message = dict[str, Any]
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
        self._schema_support: dict[str, bool] = {}
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

    def _use_schema(self, model: str) -> bool:
        mode = self.config.structured_outputs
        return mode == "json_schema" or (mode == "auto" and self._schema_support.get(model, True))

    def _json_instruction(self, schema: Schema) -> str:
        return self.prompts.fragment("_json_answer", schema=schema.schema, name=schema.name)

    async def _ask(self, role: Role, prompt: RenderedPrompt, parse: Callable[[str], T], *, subject: str,
                   history: Sequence[Message], images: Sequence[Image], schema: Schema | None,
                   answer_format: str) -> T:
        model = self.config.model_for(role)
        call = CallRecord(role=role, model=model, prompt=prompt.name, version=prompt.version, subject=subject,
                          usage=Usage(), seconds=0.0)
        started = time.monotonic()
        try:
            use_schema = schema is not None and self._use_schema(model)
            user = prompt.user
            if schema is not None and not use_schema:
                user += "\n\n" + self._json_instruction(schema)
            call.structured = None if schema is None else ("json_schema" if use_schema else "prompt")
            messages: list[Message] = [{"role": "system", "content": prompt.system}, *history,
                                       _user_message(user, images)]
            try:
                completion = await self._request(role, model, messages, call,
                                                 schema if use_schema else None)
            except _REFUSED as exc:
                if not use_schema or self.config.structured_outputs == "json_schema":
                    raise LLMUnavailable(f"{prompt.ref}: the server refused the request: {_status_text(exc)}") \
                        from None
                assert schema is not None
                # A server without schema support says so with a 400; ask in words from now on.
                log.info("model %s: structured outputs refused (%s); asking for JSON in a fenced block instead",
                         model, _status_text(exc))
                self._schema_support[model] = False
                call.structured = "prompt"
                messages[-1] = _user_message(prompt.user + "\n\n" + self._json_instruction(schema), images)
                completion = await self._request(role, model, messages, call, None)
            if schema is not None and use_schema:
                self._schema_support.setdefault(model, True)
            try:
                return parse(completion.text)
            except ParseError as first:
                call.repaired = True
                log.warning("%s (%s, subject %s): unusable answer (%s); asking once for a repair",
                            prompt.ref, model, subject, first)
                reminder = self._json_instruction(schema) if schema is not None else answer_format
                repair = self.prompts.render("repair", action=prompt.name, error=str(first), reminder=reminder,
                                             cut_off=completion.finish_reason == "length")
                messages += [{"role": "assistant", "content": completion.text}, _user_message(repair.user, ())]
                second = await self._request(role, model, messages, call, None)
                try:
                    return parse(second.text)
                except ParseError as exc:
                    raise AnswerError(f"{prompt.ref}: unusable answer after one repair attempt: {exc} "
                                      f"(first answer: {first})", (completion.text, second.text)) from None
        except BaseException as exc:
            call.error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            call.seconds = time.monotonic() - started
            self.ledger.record(call)

    async def _request(self, role: Role, model: str, messages: list[Message], call: CallRecord,
                       schema: Schema | None) -> Completion:
        """One request, retried on transient failures; charges what the answer used."""
        policy = self.config.retry
        extra: dict[str, Any] = {}
        if schema is not None:
            extra["response_format"] = {"type": "json_schema", "json_schema": {
                "name": schema.name, "schema": schema.schema, "strict": True}}
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
                transient = _transient(exc, self.config.timeout_seconds)
                if transient is None:
                    if isinstance(exc, _REFUSED):
                        raise  # the caller may retry without response_format
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


_REFUSED = (openai.BadRequestError, openai.UnprocessableEntityError)
"""How a server refuses a request it cannot serve (such as a response_format it does not know)."""


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
