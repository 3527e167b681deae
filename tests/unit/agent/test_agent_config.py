"""LLM settings: the key from a mounted Secret or the environment, models per role, prices, caps."""

from __future__ import annotations

import json
import pathlib

import pytest

from kubescientist.agent.config import NO_KEY, from_settings, resolve_api_key
from kubescientist.agent.errors import ConfigError
from kubescientist.core.spec import LLMSettings

LOCAL = LLMSettings(base_url="http://127.0.0.1:11434/v1", models={"code": "qwen2.5-coder"}, max_tokens=10,
                    max_cost_usd=1.5)


def test_key_sources_in_order(tmp_path: pathlib.Path) -> None:
    secret = tmp_path / "api-key"
    secret.write_text("sk-from-file\n")
    env = {"KUBESCIENTIST_LLM_API_KEY": "sk-ks", "OPENAI_API_KEY": "sk-openai"}
    assert resolve_api_key(env, str(secret)) == "sk-from-file"
    assert resolve_api_key({**env, "KUBESCIENTIST_LLM_API_KEY_FILE": str(secret)}) == "sk-from-file"
    assert resolve_api_key(env) == "sk-ks"
    assert resolve_api_key({"OPENAI_API_KEY": "sk-openai"}) == "sk-openai"
    assert resolve_api_key({}) is None
    with pytest.raises(ConfigError, match="cannot read it"):
        resolve_api_key({}, str(tmp_path / "missing"))
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        resolve_api_key({}, str(tmp_path / "empty"))


def test_openai_needs_a_key_a_local_server_does_not() -> None:
    with pytest.raises(ConfigError, match="no API key for api.openai.com"):
        from_settings(LLMSettings(models={"code": "gpt-4o"}), {})
    config = from_settings(LOCAL, {})
    assert config.api_key == NO_KEY and config.base_url == "http://127.0.0.1:11434/v1"
    assert "api_key" not in repr(from_settings(LOCAL, {"OPENAI_API_KEY": "sk-secret"}))


def test_models_caps_prices_and_overrides(tmp_path: pathlib.Path) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"qwen2.5-coder": {"input": 0, "output": 0}}))
    config = from_settings(LOCAL, {"KUBESCIENTIST_LLM_PRICES": str(prices), "KUBESCIENTIST_LLM_MODEL": "llama3.1"},
                           timeout_seconds=30.0, structured_outputs="prompt")
    assert config.model_for("code") == "qwen2.5-coder" and config.model_for("review") == "llama3.1"
    assert config.caps.max_tokens == 10 and config.caps.max_usd == 1.5
    assert config.prices.price("qwen2.5-coder") is not None
    assert config.timeout_seconds == 30.0 and config.structured_outputs == "prompt"
    with pytest.raises(ConfigError, match=r"spec.llm.models.vision: no model for role 'vision'"):
        from_settings(LOCAL, {}).model_for("vision")
    with pytest.raises(ConfigError, match=r"unknown role\(s\) \['coder'\]"):
        from_settings(LLMSettings(base_url="http://x/v1", models={"coder": "m"}), {})


def test_spec_llm_knobs_reach_the_client() -> None:
    from kubescientist.core.spec import llm_settings
    settings = llm_settings({"baseURL": "http://127.0.0.1:8080/v1", "models": {"code": "qwen"},
                             "timeoutSeconds": 900, "maxOutputTokens": 1024, "temperature": 0,
                             "structuredOutputs": "json_object", "answerAttempts": 5})
    config = from_settings(settings, {})
    assert config.timeout_seconds == 900.0 and config.max_output_tokens == 1024
    assert config.temperature["code"] == 0.0 and set(config.temperature) >= {"code", "feedback", "review"}
    assert config.structured_outputs == "json_object" and config.answer_attempts == 5
    plain = from_settings(llm_settings({"baseURL": "http://127.0.0.1:8080/v1"}), {})
    assert plain.timeout_seconds == 300.0 and plain.max_output_tokens is None and plain.temperature == {}
    assert plain.structured_outputs == "auto" and plain.answer_attempts == 3


@pytest.mark.parametrize(("field", "value", "message"), [
    ("answerAttempts", 0, "spec.llm.answerAttempts: must be an integer from 1 to 10, got 0"),
    ("answerAttempts", 2.5, "spec.llm.answerAttempts: must be an integer from 1 to 10, got 2.5"),
    ("temperature", 3, "spec.llm.temperature: must be a number from 0 to 2, got 3"),
    ("temperature", True, "spec.llm.temperature: must be a number from 0 to 2, got True"),
    ("timeoutSeconds", "slow", "spec.llm.timeoutSeconds: must be a number from 1 to 3600, got 'slow'"),
    ("maxOutputTokens", 4, "spec.llm.maxOutputTokens: must be an integer from 16 to 1000000, got 4"),
    ("structuredOutputs", "xml", "spec.llm.structuredOutputs: must be one of auto, json_schema, json_object, "
                                 "prompt, got 'xml'"),
])
def test_spec_llm_knobs_out_of_range_name_the_field(field: str, value: object, message: str) -> None:
    from kubescientist.core.spec import SpecError, llm_settings
    with pytest.raises(SpecError) as info:
        llm_settings({"baseURL": "http://127.0.0.1:8080/v1", field: value})
    assert str(info.value) == message
