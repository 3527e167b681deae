"""Citations: references come only from literature results, and every ``\\cite`` key must resolve to one.

A model that invents a reference cannot get it into the paper: ``references.bib`` is written from the
literature records alone, and a ``\\cite`` key that names none of them is mapped to the record it evidently
means (same key up to case and punctuation) or removed.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from typing import Any, Iterable, Mapping, Sequence

from kubescientist.paper.fmt import escape


@dataclasses.dataclass(frozen=True)
class Reference:
    """One work the literature search returned."""

    key: str
    """The BibTeX key the paper cites it by (ASCII letters, digits and ``:-_``)."""
    title: str
    """The work's title."""
    authors: tuple[str, ...] = ()
    """Author names, ``First Last`` or ``Last, First``."""
    year: int | None = None
    """Year of publication."""
    venue: str = ""
    """Journal, conference or preprint server."""
    url: str = ""
    """Where to read it."""
    doi: str = ""
    """Its DOI, without the ``https://doi.org/`` prefix."""
    abstract: str = ""
    """Its abstract or a summary (not printed; context for a writer model)."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reference:
        authors = data.get("authors") or ()
        if isinstance(authors, str):
            authors = [a.strip() for a in authors.split(" and ")]
        names = tuple(str(a.get("name", "")) if isinstance(a, Mapping) else str(a) for a in authors)
        year = int(data["year"]) if str(data.get("year", "")).isdigit() else None
        title = str(data.get("title", "")).strip()
        return cls(
            key=make_key(str(data.get("key") or _readable(str(data.get("id") or ""))), names, year, title),
            title=title, authors=names, year=year, venue=str(data.get("venue") or ""),
            url=str(data.get("url") or ""), doi=str(data.get("doi") or ""),
            abstract=str(data.get("abstract") or ""))

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def _readable(identifier: str) -> str:
    """A source's id when it reads as a cite key (``power2022grokking``), not a hash or a URL (then "")."""
    if re.fullmatch(r"[A-Za-z][A-Za-z0-9:_-]{0,39}", identifier) and not re.fullmatch(r"[0-9a-f]{32,}", identifier):
        return identifier
    return ""


def make_key(key: str, authors: Sequence[str], year: object, title: str) -> str:
    """A BibTeX-safe key: the given one made ASCII, else ``lastnameYEARfirstword``."""
    if key:
        return _ascii(key, keep=":-_")
    last = authors[0].split(",")[0].split()[-1] if authors and authors[0].split() else "anon"
    first = next((w for w in re.findall(r"[A-Za-z]+", _ascii(title, keep=" ")) if len(w) > 3), "work")
    return f"{_ascii(last, keep='').lower()}{year or ''}{first.lower()}"


def _ascii(text: str, keep: str) -> str:
    flat = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(c for c in flat if c.isalnum() or c in keep)


def unique(references: Iterable[Reference]) -> tuple[Reference, ...]:
    """References with duplicate titles dropped and clashing keys made distinct (``key``, ``keyb``, ...)."""
    out: list[Reference] = []
    titles: set[str] = set()
    keys: set[str] = set()
    for ref in references:
        title = re.sub(r"\W+", " ", ref.title.lower()).strip()
        if not ref.title or title in titles:
            continue
        key, suffix = ref.key, ord("b")
        while key in keys:
            key, suffix = f"{ref.key}{chr(suffix)}", suffix + 1
        titles.add(title)
        keys.add(key)
        out.append(dataclasses.replace(ref, key=key))
    return tuple(out)


def bibtex(references: Sequence[Reference]) -> str:
    """``references.bib``: one entry per reference, every field escaped (nothing taken verbatim)."""
    entries = []
    for ref in references:
        fields = {"title": "{" + escape(ref.title) + "}",
                  "author": " and ".join(escape(a) for a in ref.authors) or "Anonymous"}
        if ref.year:
            fields["year"] = str(ref.year)
        kind = "misc"
        if ref.venue:
            kind = "article"
            fields["journal"] = escape(ref.venue)
        if ref.doi:
            fields["doi"] = escape(ref.doi)
        if ref.url:
            # \url takes the address verbatim; only the characters BibTeX itself would choke on are removed.
            fields["howpublished"] = r"\url{" + re.sub(r"[{}\s]", "", ref.url) + "}"
        body = ",\n".join(f"  {name} = {{{value}}}" for name, value in fields.items())
        entries.append(f"@{kind}{{{ref.key},\n{body}\n}}\n")
    return "\n".join(entries)


_CITE = re.compile(r"(~?)\\(cite[tp]?|citeauthor|citeyear)(\*?)((?:\[[^\]]*\]){0,2})\{([^}]*)\}")


@dataclasses.dataclass(frozen=True)
class CitationFix:
    """What happened to one unknown ``\\cite`` key."""

    key: str
    """The key as written."""
    replacement: str | None
    """The known key it was mapped to; None when it was removed."""


def cited_keys(tex: str) -> list[str]:
    """Every key cited in ``tex``, in order, with repeats."""
    return [k.strip() for m in _CITE.finditer(tex) for k in m.group(5).split(",") if k.strip()]


def resolve(tex: str, known: Iterable[str]) -> tuple[str, list[CitationFix]]:
    """``tex`` with every ``\\cite`` key known: unknown keys mapped to the obvious known key or dropped.

    A citation command left with no key is removed together with the tie before it, so the sentence reads
    on without a dangling ``[?]``.
    """
    known_keys = list(known)
    by_norm = {_norm(k): k for k in known_keys}
    fixes: list[CitationFix] = []

    def fix(match: re.Match[str]) -> str:
        tie, command, star, options, keys = match.groups()
        kept: list[str] = []
        for key in (k.strip() for k in keys.split(",")):
            if not key:
                continue
            if key in known_keys:
                kept.append(key)
                continue
            replacement = by_norm.get(_norm(key))
            fixes.append(CitationFix(key, replacement))
            if replacement is not None:
                kept.append(replacement)
        if not kept:
            return ""
        return f"{tie}\\{command}{star}{options}{{{','.join(dict.fromkeys(kept))}}}"

    return _CITE.sub(fix, tex), fixes


def _norm(key: str) -> str:
    return re.sub(r"[^a-z0-9]", "", key.lower())
