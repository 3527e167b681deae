"""Where the LLM is and how to talk to it: endpoint, key, model per role, timeouts, retries, prices, caps."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import random
from typing import Any, Literal, Mapping

from kubescientist.agent.accounting import Caps, PriceTable
from kubescientist.agent.errors import ConfigError
from kubescientist.agent.roles import ROLES, Role
from kubescientist.core.spec import LLMSettings, StructuredMode

KEY_ENV = ("KUBESCIENTIST_LLM_API_KEY", "OPENAI_API_KEY")
"""Environment variables an API key is read from, first found wins."""
KEY_FILE_ENV = "KUBESCIENTIST_LLM_API_KEY_FILE"
"""Environment variable naming a file that holds the key (a mounted Secret)."""
PRICES_ENV = "KUBESCIENTIST_LLM_PRICES"
"""Environment variable naming a JSON price table (model -> {input, output} USD per 1M tokens)."""
MODEL_ENV = "KUBESCIENTIST_LLM_MODEL"
"""Environment variable naming the model for every role the manifest leaves unset."""
NO_KEY = "EMPTY"
"""Sent to a self-hosted endpoint when no key is configured: vLLM and Ollama accept any key, the client
insists on one."""

STRUCTURED_CHAIN: tuple[StructuredMode, ...] = ("json_schema", "json_object", "prompt")
"""The ways of asking for JSON, strictest first: ``auto`` walks down this chain when a server refuses one."""
DEFAULT_ANSWER_ATTEMPTS = 3
"""Answers asked for per call (the first and its repairs) before the call counts as unusable."""


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before sending a failed request again."""

    attempts: int = 6
    """Tries per request, the first one included."""
    base_delay: float = 1.0
    """The first backoff step in seconds; each retry doubles it."""
    max_delay: float = 60.0
    """The longest backoff step."""
    max_retry_after: float = 300.0
    """The longest server-requested wait (Retry-After) that is honoured; longer ones are cut to this."""

    def delay(self, retry: int, rng: random.Random) -> float:
        """Backoff before retry number ``retry`` (1-based): exponential, with half of it random (jitter),
        so clients that failed together do not come back together."""
        step = min(self.max_delay, self.base_delay * 2.0 ** (retry - 1))
        return step / 2 + rng.uniform(0, step / 2)


@dataclasses.dataclass(frozen=True)
class LLMConfig:
    """Everything the LLM client needs."""

    api_key: str = dataclasses.field(repr=False)
    """The key sent as a bearer token (never logged, never passed to a node's sandbox)."""
    base_url: str | None = None
    """An OpenAI-compatible endpoint (``.../v1``); None is OpenAI's own."""
    models: Mapping[Role, str] = dataclasses.field(default_factory=dict)
    """The model per role."""
    default_model: str | None = None
    """The model of a role that ``models`` leaves unset."""
    timeout_seconds: float = 300.0
    """How long one request may take before it is abandoned (and retried)."""
    connect_timeout_seconds: float = 10.0
    """How long connecting may take."""
    retry: RetryPolicy = RetryPolicy()
    """Backoff on 429, 5xx, timeouts and dropped connections."""
    structured_outputs: StructuredMode = "auto"
    """``json_schema`` asks the server to enforce a schema; ``json_object`` asks for a JSON object (with the
    schema, which grammar-constrained servers such as llama.cpp enforce) and states the schema in the prompt;
    ``prompt`` asks in words for JSON in a fenced block; ``auto`` starts with ``json_schema`` and moves down
    that chain for a server that refuses a mode. A named mode is used alone: its refusal fails the call."""
    answer_attempts: int = DEFAULT_ANSWER_ATTEMPTS
    """Answers asked for per call: an unusable one (no program, malformed JSON) is sent back for repair
    until this many were tried."""
    max_output_tokens: int | None = None
    """The completion-length limit sent with each request; None sends none."""
    output_limit_param: Literal["max_completion_tokens", "max_tokens"] = "max_completion_tokens"
    """Which request field carries that limit (older servers know only ``max_tokens``)."""
    temperature: Mapping[Role, float] = dataclasses.field(default_factory=dict)
    """Sampling temperature per role; unset roles use the server's default (reasoning models allow no other)."""
    max_concurrency: int = 8
    """Requests in flight at once."""
    prices: PriceTable = PriceTable()
    """USD per million tokens per model."""
    caps: Caps = Caps()
    """Hard limits on tokens and cost."""

    def model_for(self, role: Role) -> str:
        model = self.models.get(role) or self.default_model
        if not model:
            raise ConfigError(f"spec.llm.models.{role}: no model for role {role!r} (set it, or set "
                              f"{MODEL_ENV} for every unset role)")
        return model


def resolve_api_key(env: Mapping[str, str], key_file: str | None = None) -> str | None:
    """The API key: from ``key_file`` (a mounted Secret), else the file ``$KUBESCIENTIST_LLM_API_KEY_FILE``
    names, else ``$KUBESCIENTIST_LLM_API_KEY``, else ``$OPENAI_API_KEY``; None if there is none."""
    path = key_file or env.get(KEY_FILE_ENV)
    if path:
        try:
            key = pathlib.Path(path).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"API key file {path}: cannot read it ({exc.strerror})") from None
        if not key:
            raise ConfigError(f"API key file {path}: is empty")
        return key
    return next((env[name].strip() for name in KEY_ENV if env.get(name, "").strip()), None)


def from_settings(settings: LLMSettings, env: Mapping[str, str] | None = None, *, key_file: str | None = None,
                  prices: PriceTable | None = None, **overrides: Any) -> LLMConfig:
    """The client config for a ResearchRun's ``spec.llm`` plus the environment.

    ``overrides`` set any other ``LLMConfig`` field (timeouts, retry policy, structured-output mode).
    """
    env = os.environ if env is None else env
    unknown = set(settings.models) - set(ROLES)
    if unknown:
        raise ConfigError(f"spec.llm.models: unknown role(s) {sorted(unknown)}; roles are {list(ROLES)}")
    key = resolve_api_key(env, key_file)
    if key is None:
        if settings.base_url is None:
            raise ConfigError("no API key for api.openai.com: set KUBESCIENTIST_LLM_API_KEY or OPENAI_API_KEY, "
                              f"or {KEY_FILE_ENV} to a file holding it")
        key = NO_KEY
    if prices is None:
        prices = PriceTable.from_file(pathlib.Path(env[PRICES_ENV])) if env.get(PRICES_ENV) else PriceTable()
    models: dict[Role, str] = {role: settings.models[role] for role in ROLES if settings.models.get(role)}
    knobs: dict[str, Any] = {"structured_outputs": settings.structured_outputs,
                             "answer_attempts": settings.answer_attempts,
                             "max_output_tokens": settings.max_output_tokens}
    if settings.timeout_seconds is not None:
        knobs["timeout_seconds"] = float(settings.timeout_seconds)
    if settings.temperature is not None:
        knobs["temperature"] = {role: settings.temperature for role in ROLES}
    config = LLMConfig(api_key=key, base_url=settings.base_url, models=models,
                       default_model=env.get(MODEL_ENV) or None, prices=prices,
                       caps=Caps(max_tokens=settings.max_tokens, max_usd=settings.max_cost_usd), **knobs)
    return dataclasses.replace(config, **overrides)
