"""Text from untrusted programs made safe to show: control characters become visible escapes."""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with every control character (ANSI escapes, carriage returns, bidi overrides, and newlines and
    tabs unless kept) shown as ``\\xNN``/``\\uNNNN``, so that a node's output cannot move the cursor, recolour,
    clear or retitle the terminal, or hide text."""
    pattern = _CONTROL if keep_newlines else re.compile(_CONTROL.pattern[:-1] + r"\t\n]")
    return pattern.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), text)
