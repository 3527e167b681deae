"""Numbers and text as they appear in the paper: rounding to a stated precision, LaTeX escaping, markdown.

Every number the paper prints goes through ``number`` or ``mean_pm`` so that the number checker can trace
it back to the recorded value it was rounded from.
"""

from __future__ import annotations

import math
import re

from kubescientist.core import stats

_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
}
_LATEX_SPECIAL_RE = re.compile("|".join(re.escape(c) for c in _LATEX_SPECIALS))

SIGNIFICANT = 4
"""Significant digits of a number printed without an error bar."""


def escape(text: str) -> str:
    """Plain text made safe for LaTeX: every character that means something to TeX is escaped."""
    return _LATEX_SPECIAL_RE.sub(lambda m: _LATEX_SPECIALS[m.group(0)], text)


def number(value: float, digits: int = SIGNIFICANT, *, sign: bool = False) -> str:
    """``value`` rounded to ``digits`` significant digits, as LaTeX text.

    Negative numbers, explicit signs and powers of ten are set in math mode: a text-mode ``-`` is a hyphen.
    """
    body = _number_body(value, digits)
    if sign and value > 0:
        body = "+" + body
    return f"${body}$" if (body[0] in "+-" or "\\" in body) else body


def _number_body(value: float, digits: int) -> str:
    if value == int(value) and abs(value) < 1e6:
        return str(int(value))
    if not math.isfinite(value):
        return str(value)
    magnitude = math.floor(math.log10(abs(value)))
    if magnitude < -3 or magnitude >= 6:
        mantissa, exponent = f"{value:.{digits - 1}e}".split("e")
        mantissa = mantissa.rstrip("0").rstrip(".")
        return rf"{mantissa}\times 10^{{{int(exponent)}}}"
    decimals = max(0, digits - 1 - magnitude)
    return _trim(f"{value:.{decimals}f}")


_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``n noun`` as prose: small counts in words (``two nodes``), larger ones in digits (``18 nodes``)."""
    word = _WORDS[n] if 0 <= n < len(_WORDS) else str(n)
    return f"{word} {noun if n == 1 else plural or noun + 's'}"


def decimals_for(stderr: float) -> int:
    """The one precision rule (``kubescientist.core.stats``): a standard error to one significant digit, two
    when it starts with 1; a mean or difference beside it to the same decimal places."""
    return stats.decimals_for(stderr)


def fixed(value: float, places: int | None, *, sign: bool = False) -> str:
    """``value`` to ``places`` decimals (the precision of the error bar it is read against), as LaTeX; with no
    error bar (``None``), ``SIGNIFICANT`` significant digits."""
    if places is None:
        return number(value, sign=sign)
    body = f"{value:+.{places}f}" if sign else f"{value:.{places}f}"
    return f"${body}$" if body[0] in "+-" else body


def mean_pm(mean: float, stderr: float, n: int, *, math_mode: bool = True) -> str:
    """``mean ± s.e.``, the mean rounded to the precision of its standard error (one sample: the mean). Several
    seeds with one value are flagged, not shown as ``± 0``: the program ignores its seed."""
    if n >= 2 and stderr == 0:
        return f"{number(mean)} (identical over {n} seeds)"
    if n < 2 or stderr <= 0:
        return number(mean)
    places = min(decimals_for(stderr), 8)
    body = rf"{mean:.{places}f} \pm {stderr:.{places}f}"
    return f"${body}$" if math_mode else body


def param(value: object) -> str:
    """A hyperparameter value as LaTeX text."""
    if isinstance(value, bool):
        return r"\texttt{" + str(value).lower() + "}"
    if isinstance(value, (int, float)):
        return number(float(value))
    if value is None:
        return r"\texttt{none}"
    return r"\texttt{" + escape(str(value)) + "}"


_ABBREVIATIONS = {"val": "validation", "acc": "accuracy", "lr": "learning rate"}


def label(name: str) -> str:
    """A metric, dataset or stage name as a human-readable label: ``val_acc`` -> ``validation accuracy``."""
    return " ".join(_ABBREVIATIONS.get(word, word) for word in name.split("_"))


def _trim(text: str) -> str:
    return text.rstrip("0").rstrip(".") if "." in text else text


_BOLD = re.compile(r"\*\*(.+?)\*\*")
_ITALIC = re.compile(r"(?<![*\w])\*(?!\s)(.+?)(?<!\s)\*(?![*\w])")
_CODE = re.compile(r"`([^`]+)`")


def markdown(text: str) -> str:
    """The small subset of markdown an idea description uses (paragraphs, lists, emphasis, code) as LaTeX."""
    out: list[str] = []
    in_list = False
    for raw in text.strip().splitlines():
        line = raw.strip()
        item = re.match(r"^[-*+]\s+(.*)$", line) or re.match(r"^\d+[.)]\s+(.*)$", line)
        if item:
            if not in_list:
                out.append(r"\begin{itemize}")
                in_list = True
            out.append(r"\item " + _inline(item.group(1)))
            continue
        if in_list:
            out.append(r"\end{itemize}")
            in_list = False
        heading = re.match(r"^#+\s+(.*)$", line)
        if heading:
            out.append(r"\paragraph{" + _inline(heading.group(1)) + "}")
        else:
            out.append(_inline(line))
    if in_list:
        out.append(r"\end{itemize}")
    return "\n".join(out)


def _inline(text: str) -> str:
    # Code spans are cut out first so that their underscores and asterisks stay literal.
    pieces = _CODE.split(text)
    out = []
    for i, piece in enumerate(pieces):
        if i % 2:
            out.append(r"\texttt{" + escape(piece) + "}")
            continue
        piece = escape(piece)
        piece = _BOLD.sub(r"\\textbf{\1}", piece)
        piece = _ITALIC.sub(r"\\emph{\1}", piece)
        out.append(piece)
    return "".join(out)
