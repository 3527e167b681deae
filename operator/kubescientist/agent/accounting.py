"""Token and cost accounting per role, per node and per run, and the hard caps that stop new LLM work.

Prices are the user's to give (USD per million tokens, per model): they change too often to ship. A model
with no price counts its tokens only, and the ledger says which models those were, so a cost figure is
never silently too low.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import pathlib
from typing import Any, Callable, Mapping

from kubescientist.agent.errors import BudgetExceeded, ConfigError
from kubescientist.agent.roles import Role

MILLION = 1_000_000


@dataclasses.dataclass(frozen=True)
class Price:
    """What one model costs."""

    input: float
    """USD per million prompt tokens."""
    output: float
    """USD per million completion tokens."""

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input + completion_tokens * self.output) / MILLION


@dataclasses.dataclass(frozen=True)
class PriceTable:
    """Prices by model name; a key may be a glob (``gpt-4o-*``), an exact name wins over a glob."""

    prices: Mapping[str, Price] = dataclasses.field(default_factory=dict)
    """Model name or glob -> price."""

    def price(self, model: str) -> Price | None:
        if model in self.prices:
            return self.prices[model]
        # The longest matching glob is the most specific one.
        globs = sorted((k for k in self.prices if fnmatch.fnmatchcase(model, k)), key=len, reverse=True)
        return self.prices[globs[0]] if globs else None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "prices") -> PriceTable:
        """``{model: {"input": usd_per_mtok, "output": usd_per_mtok}}``; errors name the entry."""
        prices = {}
        for model, entry in data.items():
            if not isinstance(entry, Mapping) or set(entry) - {"input", "output"} or "input" not in entry \
                    or "output" not in entry:
                raise ConfigError(f"{source}: {model}: must be {{input: USD per 1M tokens, output: USD per 1M "
                                  f"tokens}}, got {entry!r}")
            values = []
            for key in ("input", "output"):
                value = entry[key]
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                    raise ConfigError(f"{source}: {model}.{key}: must be a number >= 0, got {value!r}")
                values.append(float(value))
            prices[str(model)] = Price(*values)
        return cls(prices)

    @classmethod
    def from_file(cls, path: pathlib.Path) -> PriceTable:
        """A JSON file holding the mapping ``from_mapping`` takes."""
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: not a readable JSON price table ({exc})") from None
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path}: must be a JSON object of model -> price")
        return cls.from_mapping(data, str(path))


@dataclasses.dataclass(frozen=True)
class Caps:
    """Hard limits on a run's LLM use; None means no limit."""

    max_tokens: int | None = None
    """Prompt plus completion tokens over the whole run."""
    max_usd: float | None = None
    """Cost over the whole run, as far as prices are known."""


@dataclasses.dataclass
class Usage:
    """Tokens, cost and call counts of some slice of the run's LLM use."""

    prompt_tokens: int = 0
    """Tokens sent."""
    completion_tokens: int = 0
    """Tokens received."""
    usd: float = 0.0
    """Cost of the calls whose model has a price."""
    calls: int = 0
    """Requests that got an answer."""
    retries: int = 0
    """Requests that were sent again after a transient failure."""
    unpriced_tokens: int = 0
    """Tokens of calls to models with no price (not in ``usd``)."""
    estimated_tokens: int = 0
    """Tokens estimated from text length because the server reported no usage."""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, other: Usage) -> None:
        for field in dataclasses.fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))

    def to_dict(self) -> dict[str, Any]:
        return {"promptTokens": self.prompt_tokens, "completionTokens": self.completion_tokens,
                "totalTokens": self.total_tokens, "usd": round(self.usd, 6), "calls": self.calls,
                "retries": self.retries, "unpricedTokens": self.unpriced_tokens,
                "estimatedTokens": self.estimated_tokens}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Usage:
        return cls(prompt_tokens=int(data.get("promptTokens", 0)),
                   completion_tokens=int(data.get("completionTokens", 0)), usd=float(data.get("usd", 0.0)),
                   calls=int(data.get("calls", 0)), retries=int(data.get("retries", 0)),
                   unpriced_tokens=int(data.get("unpricedTokens", 0)),
                   estimated_tokens=int(data.get("estimatedTokens", 0)))


@dataclasses.dataclass
class CallRecord:
    """One logical LLM call (with its retries and its repair attempt), as kept for the record."""

    role: Role
    """The role it was made in."""
    model: str
    """The model that answered."""
    prompt: str
    """The prompt's name (the action)."""
    version: str
    """The prompt's version."""
    subject: str
    """What it was for: a node id, a plan, an idea, ``run``."""
    usage: Usage
    """What it used."""
    seconds: float
    """Wall time, retries and waits included."""
    structured: str | None = None
    """How a JSON answer was asked for: ``json_schema`` (the server enforces it), ``json_object``,
    ``prompt`` or None."""
    repaired: bool = False
    """Whether the first answer was unusable and a repair was asked for."""
    unusable: list[str] = dataclasses.field(default_factory=list)
    """Why each unusable answer could not be used, in order."""
    fallbacks: list[str] = dataclasses.field(default_factory=list)
    """Each structured mode the server refused, why, and the mode used instead."""
    retry_reasons: list[str] = dataclasses.field(default_factory=list)
    """Why each retry happened."""
    error: str | None = None
    """Why the call failed, if it did."""

    def to_dict(self) -> dict[str, Any]:
        return {"role": self.role, "model": self.model, "prompt": self.prompt, "version": self.version,
                "subject": self.subject, **self.usage.to_dict(), "seconds": round(self.seconds, 3),
                "structured": self.structured, "repaired": self.repaired, "unusable": self.unusable,
                "fallbacks": self.fallbacks, "retryReasons": self.retry_reasons,
                "error": self.error}


class Ledger:
    """The run's LLM accounts. Caps are checked before each request; once reached, every request refuses."""

    def __init__(self, prices: PriceTable = PriceTable(), caps: Caps = Caps()) -> None:
        self.prices = prices
        self.caps = caps
        self.total = Usage()
        self.by_role: dict[str, Usage] = {}
        self.by_subject: dict[str, Usage] = {}
        self.by_model: dict[str, Usage] = {}
        self.unpriced_models: set[str] = set()
        self.calls: list[CallRecord] = []
        self.stopped: str | None = None
        self.on_record: Callable[[CallRecord], object] | None = None
        """Called after each call is recorded: the adapter saves the accounts there, so a crash loses none."""

    def check(self) -> None:
        """Raise ``BudgetExceeded`` if a cap is reached (and remember it: the stop is final)."""
        if self.stopped is None:
            caps, total = self.caps, self.total
            if caps.max_tokens is not None and total.total_tokens >= caps.max_tokens:
                self.stopped = (f"LLM token cap reached: {total.total_tokens} of {caps.max_tokens} tokens used; "
                                "no new LLM work starts")
            elif caps.max_usd is not None and total.usd >= caps.max_usd:
                self.stopped = (f"LLM cost cap reached: ${total.usd:.4f} of ${caps.max_usd:.4f} spent; "
                                "no new LLM work starts")
        if self.stopped is not None:
            raise BudgetExceeded(self.stopped)

    def usage_of(self, model: str, prompt_tokens: int, completion_tokens: int, *, estimated: bool) -> Usage:
        """The usage of one answered request, priced."""
        price = self.prices.price(model)
        tokens = prompt_tokens + completion_tokens
        if price is None:
            self.unpriced_models.add(model)
        return Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                     usd=price.cost(prompt_tokens, completion_tokens) if price else 0.0, calls=1,
                     unpriced_tokens=0 if price else tokens, estimated_tokens=tokens if estimated else 0)

    def charge(self, role: Role, subject: str, model: str, usage: Usage) -> None:
        for bucket in (self.total, self.by_role.setdefault(role, Usage()),
                       self.by_subject.setdefault(subject, Usage()), self.by_model.setdefault(model, Usage())):
            bucket.add(usage)

    def record(self, call: CallRecord) -> None:
        self.calls.append(call)
        if self.on_record is not None:
            self.on_record(call)

    def rename(self, old: str, new: str) -> None:
        """Move a subject's usage to another name (a plan's proposal cost to the node it became)."""
        usage = self.by_subject.pop(old, None)
        if usage is not None:
            self.by_subject.setdefault(new, Usage()).add(usage)
        for call in self.calls:
            if call.subject == old:
                call.subject = new

    def subject(self, name: str) -> Usage:
        return self.by_subject.get(name, Usage())

    def to_dict(self) -> dict[str, Any]:
        """The accounts for summary.json (the call list is kept apart: it grows with the run)."""
        return {
            "total": self.total.to_dict(),
            "byRole": {k: v.to_dict() for k, v in sorted(self.by_role.items())},
            "byModel": {k: v.to_dict() for k, v in sorted(self.by_model.items())},
            "byNode": {k: v.to_dict() for k, v in sorted(self.by_subject.items())},
            "unpricedModels": sorted(self.unpriced_models),
            "caps": {"maxTokens": self.caps.max_tokens, "maxUSD": self.caps.max_usd},
            "stopped": self.stopped,
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        """Take back the accounts of ``to_dict`` (on resume), so caps hold across restarts."""
        self.total = Usage.from_dict(data.get("total", {}))
        self.by_role = {k: Usage.from_dict(v) for k, v in data.get("byRole", {}).items()}
        self.by_model = {k: Usage.from_dict(v) for k, v in data.get("byModel", {}).items()}
        self.by_subject = {k: Usage.from_dict(v) for k, v in data.get("byNode", {}).items()}
        self.unpriced_models = set(data.get("unpricedModels", []))
        self.stopped = data.get("stopped")
