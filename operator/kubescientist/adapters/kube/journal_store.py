"""A run's journal in object storage: change records appended as small objects, a snapshot now and then.

Layout under the run's prefix::

    journal.json                  the snapshot: the journal (``Journal.to_dict()``), the run's ``uid`` and
                                  ``logNext``, the first chunk it does not hold
    journal/<uid>/<k:08d>.jsonl   chunk k: the change records of one save, one JSON record a line

A save puts one chunk with what changed since the last save (``Journal.changes()``), so it costs the same at
node 10 as at node 10,000; a new snapshot is written once the chunks since the last one hold as many records
as the journal has nodes (O(1) per change, amortised), and when the run is over, since readers of a finished
run (tests, people) read ``journal.json``. Loading reads the snapshot and then chunks ``logNext``,
``logNext + 1``, ... until one is missing. Records are positional upserts: replaying a chunk the snapshot
already holds changes nothing. A run's first save writes a snapshot, so a new run with an old run's name
never reads the old run's chunks (they are under the old uid). A snapshot written before chunks existed (no
``logNext``) loads as is.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from kubescientist.adapters.kube.storage import Store
from kubescientist.core.journal import Change, Journal

MIN_SNAPSHOT_RECORDS = 1000
"""Below this many records since the last snapshot, chunks are not folded into a new one."""


def snapshot_key(run_prefix: str) -> str:
    return f"{run_prefix}journal.json"


def chunk_key(run_prefix: str, uid: str, number: int) -> str:
    return f"{run_prefix}journal/{uid}/{number:08d}.jsonl"


def read_journal(get: Callable[[str], bytes | None], run_prefix: str) -> tuple[Journal, int, int, str] | None:
    """The saved journal, the number of the next chunk, the records since the snapshot and the uid of the run
    that saved it ("" for a snapshot from before chunks); None if none."""
    raw = get(snapshot_key(run_prefix))
    if raw is None:
        return None
    snapshot: dict[str, Any] = json.loads(raw)
    number, uid = int(snapshot.get("logNext", 0)), str(snapshot.get("uid", ""))
    changes: list[Change] = []
    while uid and (data := get(chunk_key(run_prefix, uid, number))) is not None:
        changes += [json.loads(line) for line in data.decode().splitlines() if line]
        number += 1
    return Journal.replay(changes, snapshot), number, len(changes), uid


class S3JournalStore:
    """Saves one run's journal through ``store``; ``save`` after every pass that changed it."""

    def __init__(self, store: Store, uid: str) -> None:
        self.store = store
        self.uid = uid
        self._loaded = False
        """Whether a snapshot of this run exists (loaded, or written by this store)."""
        self._next = 0
        """The number of the next chunk."""
        self._logged = 0
        """Records in chunks since the last snapshot."""
        self._unwritten: list[Change] = []
        """Records taken from the journal that a failed put did not store yet (retried on the next save)."""
        self._final = False
        """Whether the snapshot of the ended run is written."""

    def load(self) -> Journal | None:
        """The run's saved journal; None if there is none, or only an older run's of the same name."""
        found = read_journal(self.store.get, self.store.run_prefix)
        if found is None or found[3] not in ("", self.uid):
            return None
        journal, self._next, self._logged, uid = found
        # A snapshot from before chunks names no uid: the first save writes one that does.
        self._loaded = uid == self.uid
        self._final = _over(journal) and self._logged == 0
        return journal

    def save(self, journal: Journal) -> None:
        """Put what changed since the last save as the next chunk; a snapshot when due."""
        if not self._loaded:
            self.snapshot(journal)
            return
        self._put_chunk(journal)
        if self._logged >= max(MIN_SNAPSHOT_RECORDS, len(journal.nodes)) or (_over(journal) and not self._final):
            self.snapshot(journal)

    def snapshot(self, journal: Journal) -> None:
        """Put the whole journal as ``journal.json``; it holds every chunk written so far."""
        if self._loaded:
            self._put_chunk(journal)
        else:
            self._unwritten += journal.changes()  # a first snapshot holds everything
        self.store.put_json(snapshot_key(self.store.run_prefix),
                            {"uid": self.uid, "logNext": self._next, **journal.to_dict()})
        self._unwritten, self._loaded, self._logged = [], True, 0
        self._final = _over(journal)

    def _put_chunk(self, journal: Journal) -> None:
        self._unwritten += journal.changes()
        if not self._unwritten:
            return
        data = "".join(json.dumps(change, default=str) + "\n" for change in self._unwritten).encode()
        self.store.put(chunk_key(self.store.run_prefix, self.uid, self._next), data, "application/x-ndjson")
        self._next += 1
        self._logged += len(self._unwritten)
        self._unwritten = []


def _over(journal: Journal) -> bool:
    return journal.phase != "searching" and not journal.any_unfinished()
