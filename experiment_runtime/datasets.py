"""An object-storage dataset, fetched into a node's pod before its program starts (the init container).

    python -m experiment_runtime fetch-dataset --dest DIR --max-bytes N --objects-json JSON

JSON is a list of {"path", "size", "url"}: each object's path below the dataset's prefix and a presigned
GET URL, so the pod holds no credential. The files land under DIR (an emptyDir with a size limit), which
the node's container mounts read-only. A path that would leave DIR, or objects larger in all than
`--max-bytes`, fail the pod before anything is fetched; the message names the dataset's object.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path, PurePosixPath
from typing import Any

from experiment_runtime.pod import TransferError, fetch


class DatasetError(ValueError):
    """The object list is unusable (bad path, too large in all)."""


def fetch_dataset(objects: list[dict[str, Any]], dest: Path, max_bytes: int) -> int:
    """Fetches every object to its path under `dest`; returns the bytes written."""
    total = sum(int(o["size"]) for o in objects)
    if total > max_bytes:
        raise DatasetError(f"{dest}: the dataset holds {total} bytes, more than its maxSize of {max_bytes}")
    planned = []
    for entry in objects:
        relative = PurePosixPath(str(entry["path"]))
        if not relative.parts or relative.is_absolute() or ".." in relative.parts:
            raise DatasetError(f"{dest}: object path {str(entry['path'])!r} would leave the dataset folder")
        planned.append((dest.joinpath(*relative.parts), str(entry["url"]), int(entry["size"])))
    written = 0
    for target, url, size in planned:
        # The listed size bounds the transfer: an object that grew since the listing is not read past it.
        data = fetch(url, f"dataset file {target.relative_to(dest)}", limit=size)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        written += len(data)
    return written


def main(args: argparse.Namespace) -> int:
    try:
        objects = json.loads(args.objects_json)
        if not isinstance(objects, list):
            raise DatasetError("--objects-json: must be a JSON list")
        written = fetch_dataset(objects, args.dest, args.max_bytes)
    except (DatasetError, TransferError, OSError, KeyError, TypeError, ValueError) as err:
        print(f"cannot fetch the dataset: {err}", file=sys.stderr)
        return 1
    print(f"fetched {len(objects)} files, {written} bytes, into {args.dest}")
    return 0


def add_parser(commands: Any) -> None:
    """Register the `fetch-dataset` subcommand."""
    parser = commands.add_parser("fetch-dataset", help="fetch an object-storage dataset into a folder")
    parser.add_argument("--dest", type=Path, required=True, help="the folder the files land in")
    parser.add_argument("--max-bytes", type=int, required=True, help="the most bytes the dataset may hold")
    parser.add_argument("--objects-json", required=True, help='[{"path", "size", "url"}, ...]')
