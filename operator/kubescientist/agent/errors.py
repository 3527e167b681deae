"""The agent's exceptions: each one says what went wrong and what stops because of it."""

from __future__ import annotations


class AgentError(Exception):
    """LLM work failed; the message says why."""


class ConfigError(AgentError):
    """The LLM settings are incomplete or wrong (no key, no model for a role, a bad price table)."""


class BudgetExceeded(AgentError):
    """A token or cost cap is reached: no new LLM call starts. Sticky: every later call raises it too."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class LLMUnavailable(AgentError):
    """The endpoint kept failing (retries used up) or refused the request for good (4xx)."""


class AnswerError(AgentError):
    """The model's answer could not be used in any of the attempts allowed (``answer_attempts``)."""

    def __init__(self, message: str, answers: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.answers = answers
