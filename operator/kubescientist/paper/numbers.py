"""The number checker: every number in the prose must be a recorded fact, up to the rounding it is written with.

A number written with ``d`` decimals matches a recorded value ``r`` when ``r`` rounds to it: ``|w - r| <= 0.5e-d``
(``0.973`` matches ``0.97338``, ``0.9700`` does not: it claims a precision the record does not have). A
number marked as a percentage (``97.3\\%``) matches ``r/100`` or ``r``. Signs are ignored, because prose
says "drops by 0.12" for a recorded change of -0.12. A number that matches nothing is rewritten when
exactly one recorded value is within 1% of it and the writer evidently rounded it wrongly, and flagged
(``\\unverified{...}``) otherwise.

Only prose is read: LaTeX comments, command arguments that are not text (``\\ref``, ``\\label``, ``\\cite``,
``\\includegraphics``, environment names and column specs) and lengths (``0.9\\linewidth``, ``2pt``) are
masked out first.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import re
from typing import Iterable, Iterator, Literal

NEAR_MISS = 0.01
"""Relative distance within which an unmatched number is taken as a wrongly rounded recorded value."""


@dataclasses.dataclass(frozen=True)
class Fact:
    """A number the run recorded, or one derived from recorded numbers, with where it comes from."""

    value: float
    """The value at full precision."""
    source: str
    """What it is, e.g. ``n0007 mod97 val_accuracy final`` or ``tuning seed mean``."""


class Facts:
    """The numbers a paper about a run may state."""

    def __init__(self, facts: Iterable[Fact] = ()) -> None:
        self._values: list[float] = []
        self._sources: list[str] = []
        self._seen: set[float] = set()
        for fact in facts:
            self.add(fact.value, fact.source)

    def add(self, value: float, source: str) -> None:
        """Record ``value`` (its absolute value: signs are not checked); the first source of a value is kept."""
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return
        key = abs(float(value))
        if key in self._seen:
            return
        self._seen.add(key)
        at = bisect.bisect(self._values, key)
        self._values.insert(at, key)
        self._sources.insert(at, source)

    def __iter__(self) -> Iterator[Fact]:
        return (Fact(v, s) for v, s in zip(self._values, self._sources))

    def within(self, value: float, tolerance: float) -> list[Fact]:
        """Facts with ``|fact - value| <= tolerance``, nearest first."""
        lo = bisect.bisect_left(self._values, value - tolerance)
        hi = bisect.bisect_right(self._values, value + tolerance)
        found = [Fact(self._values[i], self._sources[i]) for i in range(lo, hi)]
        return sorted(found, key=lambda f: abs(f.value - value))


Status = Literal["matched", "rewritten", "unverified"]


@dataclasses.dataclass(frozen=True)
class Finding:
    """One number found in the prose and what the checker made of it."""

    text: str
    """The number as written (``0.973``, ``97.3\\%``, ``3\\times 10^{-3}``)."""
    start: int
    """Where it starts in the checked text."""
    end: int
    """Where it ends in the checked text."""
    value: float
    """Its value as written (percent sign not applied)."""
    status: Status
    """matched: a recorded value rounds to it; rewritten: corrected to one; unverified: matches none."""
    source: str | None = None
    """The recorded fact it matches (or was rewritten to)."""
    replacement: str | None = None
    """The corrected number, when rewritten."""

    def to_dict(self) -> dict[str, object]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


_MASKED_COMMANDS = {
    # name: how many leading {...} arguments are not prose (None = all of them)
    "ref": None, "eqref": None, "autoref": None, "cref": None, "Cref": None, "pageref": None, "label": None,
    "cite": None, "citep": None, "citet": None, "citeauthor": None, "citeyear": None, "nocite": None,
    "includegraphics": None, "url": None, "href": 1, "input": None, "include": None, "vspace": None,
    "hspace": None, "setlength": None, "addtolength": None, "begin": None, "end": None, "unverified": None,
    "bibliography": None, "bibliographystyle": None, "graphicspath": None, "usepackage": None,
    "documentclass": None, "hypersetup": None, "resizebox": 2, "rule": None, "fontsize": None,
    "multicolumn": 2, "multirow": 2, "color": None, "textcolor": 1, "definecolor": None, "cmidrule": None,
    "newcommand": None, "renewcommand": None, "arraystretch": None, "linespread": None, "addplot": None,
}
_COMMAND = re.compile(r"\\([A-Za-z]+)\*?")
_COMMENT = re.compile(r"(?<!\\)%.*")
# Lengths with a unit (``2pt``) are skipped as numbers followed by letters; only ``0.9\linewidth`` needs masking.
_LENGTH = re.compile(r"\d*\.?\d+\s*\\(?:linewidth|textwidth|columnwidth|textheight)")
_SCIENTIFIC = re.compile(
    r"(?<![\w.])(?P<m>\d+(?:\.\d+)?)\s*(?:\\times|\\cdot|×)\s*10\^\{?\s*(?P<e>[-+−]?\d+)\s*\}?"
    r"|(?<![\w.\\])10\^\{?\s*(?P<e2>[-+−]?\d+)\s*\}?"
    r"|(?<![\w.])(?P<m3>\d+(?:\.\d+)?)[eE](?P<e3>[-+]?\d+)(?![\w])")
_NUMBER = re.compile(r"(?<![\w.\\])(?P<int>\d{1,3}(?:(?:,|\{,\})\d{3})+|\d+)?(?P<frac>\.\d+)?(?![\w])")
_PERCENT = re.compile(r"\s*(?:\\%|%|\s?percent\b|\s?per cent\b)")


def mask(tex: str) -> str:
    """``tex`` with everything that is not prose blanked out (same length, so offsets stay valid)."""
    chars = list(tex)

    def blank(start: int, end: int) -> None:
        for i in range(start, end):
            if chars[i] != "\n":
                chars[i] = " "

    for match in _COMMENT.finditer(tex):
        blank(match.start(), match.end())
    for match in _COMMAND.finditer(tex):
        name = match.group(1)
        if name not in _MASKED_COMMANDS:
            continue
        limit = _MASKED_COMMANDS[name]
        end, braces = match.end(), 0
        while end < len(tex) and tex[end] in "[{" and (limit is None or braces < limit or tex[end] == "["):
            close = _group_end(tex, end)
            if close < 0:
                break
            braces += tex[end] == "{"
            end = close
        blank(match.start(), end)
    masked = "".join(chars)
    for match in _LENGTH.finditer(masked):
        blank(match.start(), match.end())
    return "".join(chars)


def _group_end(tex: str, start: int) -> int:
    """The index after the group opened at ``start`` (``{...}`` nested, ``[...]`` flat); -1 if unclosed."""
    closing = "}" if tex[start] == "{" else "]"
    depth, i = 0, start
    while i < len(tex):
        char = tex[i]
        if char == "\\":
            i += 2  # an escaped brace does not open or close a group
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        if depth == 0 and char == closing:
            return i + 1
        i += 1
    return -1


@dataclasses.dataclass(frozen=True)
class _Written:
    start: int
    end: int
    value: float
    tolerance: float
    percent: bool
    decimals: int | None


def find_numbers(tex: str) -> list[_Written]:
    """The numbers of the prose, with the rounding tolerance each is written with."""
    masked = mask(tex)
    found: list[_Written] = []
    taken: list[tuple[int, int]] = []
    for match in _SCIENTIFIC.finditer(masked):
        mantissa = match.group("m") or match.group("m3") or "1"
        exponent = int((match.group("e") or match.group("e2") or match.group("e3")).replace("−", "-"))
        places = len(mantissa.split(".")[1]) if "." in mantissa else 0
        found.append(_Written(match.start(), match.end(), float(mantissa) * 10.0 ** exponent,
                              0.5 * 10.0 ** (exponent - places), False, None))
        taken.append((match.start(), match.end()))
    for match in _NUMBER.finditer(masked):
        if not match.group("int") and not match.group("frac"):
            continue
        if any(s <= match.start() < e for s, e in taken):
            continue
        digits = (match.group("int") or "0").replace("{,}", "").replace(",", "")
        fraction = match.group("frac") or ""
        places = len(fraction) - 1 if fraction else 0
        end = match.end()
        percent = _PERCENT.match(masked, end)
        if percent:
            end = percent.end()
        found.append(_Written(match.start(), end, float(digits + fraction), 0.5 * 10.0 ** -places,
                              percent is not None, places))
    return sorted(found, key=lambda w: w.start)


def check(tex: str, facts: Facts) -> list[Finding]:
    """Every number of the prose of ``tex``, matched against ``facts``."""
    findings = []
    for written in find_numbers(tex):
        text = tex[written.start:written.end]
        match = _match(written, facts)
        if match is not None:
            findings.append(Finding(text, written.start, written.end, written.value, "matched", match.source))
            continue
        rewrite = _near_miss(written, facts)
        if rewrite is not None:
            fact, replacement = rewrite
            findings.append(Finding(text, written.start, written.end, written.value, "rewritten", fact.source,
                                    replacement))
        else:
            findings.append(Finding(text, written.start, written.end, written.value, "unverified"))
    return findings


def _scales(written: _Written) -> list[tuple[float, float, str]]:
    """(value, tolerance, note) readings of a written number, likeliest first: as written, as a percentage."""
    plain = (written.value, written.tolerance, "")
    scaled = (written.value / 100, written.tolerance / 100, " (as a percentage)")
    # Only a number marked as a percentage is read as one: "every 50 steps" must not match a recorded 0.5.
    return [scaled, plain] if written.percent else [plain]


def _match(written: _Written, facts: Facts) -> Fact | None:
    for value, tolerance, note in _scales(written):
        # A relative slack of 1e-9 absorbs binary floating point in values that sit exactly on a rounding edge.
        hits = facts.within(value, tolerance * (1 + 1e-9) + 1e-12)
        if hits:
            return Fact(hits[0].value, hits[0].source + note)
    return None


def _near_miss(written: _Written, facts: Facts) -> tuple[Fact, str] | None:
    if written.decimals is None or written.value == 0:
        return None
    for value, _, note in _scales(written):
        hits = facts.within(value, abs(value) * NEAR_MISS)
        if not hits:
            continue
        scale = 100.0 if note else 1.0
        shown = {f"{hit.value * scale:.{written.decimals}f}" for hit in hits}
        if len(shown) != 1:
            return None
        text = shown.pop()
        if float(text) == 0:
            return None
        suffix = r"\%" if written.percent else ""
        return Fact(hits[0].value, hits[0].source + note), text + suffix
    return None


def enforce(tex: str, findings: Iterable[Finding]) -> str:
    """``tex`` with rewritten numbers replaced and unverified ones wrapped in ``\\unverified{...}``."""
    out = tex
    for finding in sorted(findings, key=lambda f: f.start, reverse=True):
        if finding.status == "rewritten" and finding.replacement is not None:
            out = out[:finding.start] + finding.replacement + out[finding.end:]
        elif finding.status == "unverified":
            out = out[:finding.start] + r"\unverified{" + finding.text + "}" + out[finding.end:]
    return out
