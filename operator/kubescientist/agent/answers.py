"""Reading models' answers: JSON (bare or fenced), validated against a schema, and fenced program code.

Errors are ``ParseError`` with a message written for the model: it is sent back in the one repair attempt.
"""

from __future__ import annotations

import ast
import io
import json
import re
import tokenize
from typing import Any, Mapping

import jsonschema

FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+.-]*)[ \t]*\n(.*?)```", re.DOTALL)
MAX_SCHEMA_ERRORS = 3
"""Schema violations named in one repair request: the first few are what the model can act on."""


class ParseError(ValueError):
    """The answer is not in the asked-for form; the message says what is wrong, for the model to fix."""


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """``(language, body)`` of each closed fenced block, in order."""
    return [(m.group(1).lower(), m.group(2)) for m in FENCE.finditer(text)]


def validate(data: Any, schema: Mapping[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        shown = "; ".join(f"at {_path(e.absolute_path)}: {e.message}" for e in errors[:MAX_SCHEMA_ERRORS])
        more = f" (and {len(errors) - MAX_SCHEMA_ERRORS} more)" if len(errors) > MAX_SCHEMA_ERRORS else ""
        raise ParseError(f"the JSON does not match the schema: {shown}{more}")


def _path(parts: Any) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)


def _json_candidates(text: str) -> list[str]:
    stripped = text.strip()
    blocks = fenced_blocks(text)
    # Order: the whole answer (a server enforcing the schema returns bare JSON), then blocks marked json,
    # then any other block, then the first object found in prose.
    out = [stripped] if stripped.startswith(("{", "[")) else []
    out += [body for lang, body in blocks if lang == "json"]
    out += [body for lang, body in blocks if lang not in ("json", "python", "py")]
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            _, end = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        out.append(text[match.start():end])
        break
    return out


PYTHON_NAMES = {"true": "True", "false": "False", "null": "None"}
"""JSON's names as Python spells them (of equal length, so token positions stay valid)."""


def _python_literal(text: str) -> Any:
    """``text`` read as a Python literal with JSON's names allowed, or None: small models often write
    ``True`` or ``None`` (or single quotes) in what should be JSON, and the meaning is not in doubt."""
    try:
        tokens = [t._replace(string=PYTHON_NAMES.get(t.string, t.string)) if t.type == tokenize.NAME else t
                  for t in tokenize.generate_tokens(io.StringIO(text).readline)]
        return ast.literal_eval(tokenize.untokenize(tokens))
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError, tokenize.TokenError):
        return None


def parse_json(text: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON object in ``text`` that matches ``schema``; raises ``ParseError`` saying what is wrong."""
    candidates = _json_candidates(text)
    if not candidates:
        raise ParseError("no JSON object found: reply with one JSON object in a ```json fenced block")
    first_error: ParseError | None = None
    for candidate in candidates:
        try:
            data = json.loads(candidate)
        except ValueError as exc:
            data = _python_literal(candidate)
            if data is None:
                first_error = first_error or ParseError(f"the JSON is malformed: {exc}")
                continue
        if not isinstance(data, dict):
            first_error = first_error or ParseError(f"expected a JSON object, got {type(data).__name__}")
            continue
        try:
            validate(data, schema)
        except ParseError as exc:
            first_error = first_error or exc
            continue
        return data
    assert first_error is not None
    raise first_error


def extract_code(text: str) -> str:
    """The program in the answer's ```python block (the longest, if several: a short one is an excerpt)."""
    blocks = [body for lang, body in fenced_blocks(text) if lang in ("python", "py", "python3")]
    if not blocks:
        if re.search(r"```[ \t]*(python|py)\b", text):
            raise ParseError("the ```python block is not closed: the answer was cut off; send the whole "
                             "program again, shorter if need be")
        raise ParseError("no ```python fenced block with the program was found: send the complete program "
                         "in one ```python block")
    code = max(blocks, key=len).strip("\n") + "\n"
    try:
        compile(code, "experiment.py", "exec")
    except SyntaxError as exc:
        raise ParseError(f"the program does not compile: {exc.msg} at line {exc.lineno}: "
                         f"{(exc.text or '').strip()}") from None
    return code


class Schema:
    """A named JSON schema for a structured answer.

    Written in the subset OpenAI's strict mode accepts (every property required, no extra properties,
    optional values as ``null``), so the same schema serves servers that enforce it and the prompt fallback.
    """

    def __init__(self, name: str, properties: Mapping[str, Any], description: str = "") -> None:
        self.name = name
        self.description = description
        self.schema: dict[str, Any] = strict_object(properties)


def strict_object(properties: Mapping[str, Any]) -> dict[str, Any]:
    """An object schema with every property required and no others."""
    return {"type": "object", "properties": dict(properties), "required": list(properties),
            "additionalProperties": False}
