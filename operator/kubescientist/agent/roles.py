"""The roles LLM work is done in: each role has its own model, and costs are counted per role."""

from __future__ import annotations

from typing import Literal

Role = Literal["ideation", "code", "feedback", "vision", "writeup", "review"]
ROLES: tuple[Role, ...] = ("ideation", "code", "feedback", "vision", "writeup", "review")
