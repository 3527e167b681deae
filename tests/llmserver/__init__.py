"""A scripted OpenAI-compatible chat-completions server for tests: real HTTP, replies chosen by action."""

from tests.llmserver.server import Call, Recorded, Reply, ScriptedLLMServer

__all__ = ["Call", "Recorded", "Reply", "ScriptedLLMServer"]
