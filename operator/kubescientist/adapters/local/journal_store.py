"""The journal on disk: an append-only log of change records, and a snapshot now and then.

``journal.jsonl`` holds one change record per line (``Journal.changes()``); ``journal.json`` is a whole
snapshot (``Journal.to_dict()``), written atomically. A save appends what changed since the last save, so it
costs the same at node 10 as at node 10,000; a snapshot is taken once the log holds as many records as the
journal has nodes (so snapshots cost O(1) per change, amortised), and whenever the driver asks
(``snapshot()``: at the end of a run, on Ctrl-C), since the paper, the tree view and tests read
``journal.json``. Loading reads the snapshot and replays the log. Records are positional upserts, so a crash
between a snapshot and the log's truncation replays records the snapshot holds, harmlessly; a torn last
line (a crash mid-append) is dropped.

    store = JournalStore(run_folder)
    journal = store.load() or Journal()
    ...; store.save(journal)   # after every change
    store.snapshot(journal)    # at checkpoints
"""

from __future__ import annotations

import json
import os
import pathlib

from kubescientist.adapters.local.files import read_json, write_json
from kubescientist.core.journal import Change, Journal

MIN_SNAPSHOT_RECORDS = 1000
"""Below this many records since the last snapshot the log is never folded into a new one."""


class JournalStore:
    def __init__(self, folder: pathlib.Path) -> None:
        self.snapshot_path = folder / "journal.json"
        self.log_path = folder / "journal.jsonl"
        self._logged = 0
        """Records in the log since the last snapshot."""
        self._unwritten: list[Change] = []
        """Records taken from the journal that a failed write did not get to disk yet."""

    def exists(self) -> bool:
        return self.snapshot_path.exists() or self.log_path.exists()

    def load(self) -> Journal | None:
        """The saved journal (snapshot plus log), or None when nothing was saved."""
        if not self.exists():
            return None
        snapshot = read_json(self.snapshot_path) if self.snapshot_path.exists() else None
        changes = self._read_log()
        self._logged = len(changes)
        return Journal.replay(changes, snapshot)

    def save(self, journal: Journal) -> None:
        """Append what changed since the last save; fold the log into a snapshot once it is long."""
        self._unwritten += journal.changes()
        if not self._unwritten:
            return
        lines = "".join(json.dumps(change, default=str) + "\n" for change in self._unwritten)
        with open(self.log_path, "a") as log:
            log.write(lines)
            log.flush()
        self._logged += len(self._unwritten)
        self._unwritten = []
        if self._logged >= max(MIN_SNAPSHOT_RECORDS, len(journal.nodes)):
            self.snapshot(journal)

    def snapshot(self, journal: Journal) -> None:
        """Write the whole journal to ``journal.json`` and start an empty log."""
        self._unwritten += journal.changes()  # the snapshot holds them
        write_json(self.snapshot_path, journal.to_dict())
        self._unwritten = []
        empty = self.log_path.with_name(f".{self.log_path.name}.new")
        empty.write_bytes(b"")
        os.replace(empty, self.log_path)
        self._logged = 0

    def _read_log(self) -> list[Change]:
        if not self.log_path.exists():
            return []
        lines = self.log_path.read_text().split("\n")
        changes = []
        for number, line in enumerate(lines, 1):
            if not line:
                continue
            try:
                changes.append(json.loads(line))
            except json.JSONDecodeError:
                if number == len(lines):
                    break  # a torn last line (no newline after it): the process died mid-append
                raise ValueError(f"{self.log_path}: line {number} is not a change record") from None
        return changes
