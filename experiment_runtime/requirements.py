"""Whether this interpreter holds a node's Python requirements, checked in its pod before the program starts.

A cluster does not install packages per run: the image must hold them (``spec.runtime.image``). The
requirements are the ``requirements.txt`` beside the template's entrypoint plus ``spec.runtime.requirements``
(passed as ``--requirement``). Each must be an installed distribution, in a version that satisfies its
specifier where the ``packaging`` library is there to compare. What is missing is a configuration error of
the run (the operator fails the run with this message), never a buggy node for the search to debug.
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

FILE = "requirements.txt"
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def read(code_dir: Path) -> list[str]:
    """The requirement lines of the template's requirements.txt (comments, blanks and options dropped)."""
    path = code_dir / FILE
    if not path.is_file():
        return []
    lines = []
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            lines.append(line)
    return lines


def missing(requirements: list[str]) -> list[str]:
    """The requirements this interpreter does not satisfy, each with why in brackets."""
    out = []
    for requirement in dict.fromkeys(requirements):
        match = _NAME.match(requirement)
        if match is None:
            out.append(f"{requirement} (not a requirement)")
            continue
        try:
            version = importlib.metadata.version(match.group(1))
        except importlib.metadata.PackageNotFoundError:
            out.append(f"{requirement} (not installed)")
            continue
        if not _satisfied(requirement, version):
            out.append(f"{requirement} (installed: {version})")
    return out


def message(absent: list[str]) -> str:
    """The configuration error: what is missing and how to build an image that has it."""
    packages = " ".join(f"'{entry.split(' (')[0]}'" for entry in absent)
    return (f"configuration error: the node image lacks the requirement(s) {', '.join(absent)} (from the "
            f"template's {FILE} or spec.runtime.requirements); build an image FROM it with "
            f"`RUN pip install {packages}` and set spec.runtime.image to it")


def _satisfied(requirement: str, version: str) -> bool:
    try:
        from packaging.requirements import InvalidRequirement, Requirement
    except ImportError:  # no packaging in this image: presence is all that can be checked
        return True
    try:
        return Requirement(requirement).specifier.contains(version, prereleases=True)
    except InvalidRequirement:
        return True
