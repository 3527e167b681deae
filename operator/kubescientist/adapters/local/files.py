"""Crash-safe file writes for the run folder: a reader never sees half a journal."""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
from typing import Any


def write_json(path: pathlib.Path, data: Any) -> None:
    """Write JSON atomically: to a temporary file in the same folder, fsync, then rename over."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(data, out, indent=2, sort_keys=False, default=str)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: pathlib.Path) -> Any:
    return json.loads(path.read_text())


def read_json_object(path: pathlib.Path) -> dict[str, Any] | None:
    """A JSON object from ``path``, or None where the file is missing, unreadable or not an object: for
    views of a run folder that show what is there."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
