"""The journal stores: the local JSONL log with snapshots, and S3 chunks with snapshots.

Each save writes only what changed; loading (snapshot plus log) gives back the journal exactly, after a
snapshot, after a torn last line, and for a new run that reuses an old run's name.
"""

from __future__ import annotations

import json
import pathlib

from kube_fakes import FakeStore
from kubescientist.adapters.kube.journal_store import S3JournalStore, read_journal
from kubescientist.adapters.kube.storage import S3Config
from kubescientist.adapters.local import journal_store as local
from kubescientist.core.engine import Engine
from kubescientist.core.journal import Journal, NodeConfig, Outcome
from kubescientist.core.plan import Proposal
from kubescientist.core.spec import run_spec_from_dict

SPEC = run_spec_from_dict({
    "idea": {"inline": {"title": "t"}}, "objective": {"metric": "acc"},
    "stages": [{"name": n, "maxNodes": 6} for n in ("initial", "tuning", "research", "ablation")],
    "search": {"parallelism": 2, "drafts": 2}, "seeds": 2, "seed": 3,
})


def steps(engine: Engine):  # type: ignore[no-untyped-def]
    """Drive the engine one change at a time: every config new, every node good; yields after each change."""
    counter = 0
    while not engine.done:
        node = engine.next_pending()
        if node is None:
            plan = engine.plan(0.0)
            if plan is not None:
                counter += 1
                proposal = None if plan.config else Proposal(NodeConfig(seed=3, params={"x": counter}), "new")
                engine.commit(plan, proposal)
                yield
                continue
        running = [n for n in engine.journal.unfinished() if n.status == "running"]
        if node is not None and len(running) < 2:
            engine.start(node.id)
        else:
            value = 0.5 + (running[0].config.params["x"] % 7) / 100 + running[0].config.seed / 1000
            engine.complete(running[0].id, Outcome(buggy=False, metrics={"d": {"acc": {"final": value}}}))
        yield


def test_local_store_saves_changes_and_loads_the_journal_back(tmp_path: pathlib.Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(local, "MIN_SNAPSHOT_RECORDS", 10)
    store = local.JournalStore(tmp_path)
    assert store.load() is None
    engine = Engine(SPEC, Journal())
    sizes = []
    for _ in steps(engine):
        store.save(engine.journal)
        sizes.append(store.log_path.stat().st_size if store.log_path.exists() else 0)
        again = local.JournalStore(tmp_path).load()
        assert again is not None and again.to_dict() == engine.journal.to_dict()
    assert (tmp_path / "journal.json").exists()  # the log was folded into snapshots on the way
    assert max(sizes) < 60_000
    store.snapshot(engine.journal)
    assert store.log_path.read_text() == ""
    assert Journal.from_dict(json.loads((tmp_path / "journal.json").read_text())).to_dict() == \
        engine.journal.to_dict()


def test_local_store_drops_a_torn_last_line(tmp_path: pathlib.Path) -> None:
    store = local.JournalStore(tmp_path)
    engine = Engine(SPEC, Journal())
    for count, _ in enumerate(steps(engine)):
        store.save(engine.journal)
        if count == 5:
            break
    saved = engine.journal.to_dict()
    with open(store.log_path, "a") as log:
        log.write('{"op": "node", "node": {"id": "n00')  # the process died mid-append
    again = local.JournalStore(tmp_path).load()
    assert again is not None and again.to_dict() == saved


def _s3() -> tuple[dict[str, bytes], FakeStore]:
    objects: dict[str, bytes] = {}
    config = S3Config(endpoint="http://s3.test:9000", bucket="b", prefix="", access_key="a", secret_key="s")
    return objects, FakeStore(config, "ns", "demo", objects)


def test_s3_store_appends_one_chunk_per_save_and_replays_them() -> None:
    objects, store = _s3()
    journal_store = S3JournalStore(store, "uid-1")
    engine = Engine(SPEC, Journal())
    for _ in steps(engine):
        before = set(objects)
        journal_store.save(engine.journal)
        written = set(objects) - before
        assert len(written) <= 2  # a chunk, and now and then a snapshot (first save, end of run)
        found = read_journal(store.get, store.run_prefix)
        assert found is not None and found[0].to_dict() == engine.journal.to_dict()
    snapshot = json.loads(objects["runs/ns/demo/journal.json"])
    assert snapshot["uid"] == "uid-1" and snapshot["phase"] == "succeeded"  # the finished run's snapshot
    # A restarted operator continues the numbering.
    resumed = S3JournalStore(store, "uid-1")
    journal = resumed.load()
    assert journal is not None and journal.to_dict() == engine.journal.to_dict()


def test_a_new_run_with_an_old_name_does_not_read_the_old_chunks() -> None:
    objects, store = _s3()
    old = S3JournalStore(store, "old")
    engine = Engine(SPEC, Journal())
    for count, _ in enumerate(steps(engine)):
        old.save(engine.journal)
        if count == 12:
            break
    fresh = S3JournalStore(store, "new")
    journal = Journal()
    Engine(SPEC, journal)
    fresh.save(journal)
    found = read_journal(store.get, store.run_prefix)
    assert found is not None and found[0].to_dict() == journal.to_dict()


def test_a_snapshot_from_before_chunks_loads_and_is_replaced_on_the_first_save() -> None:
    objects, store = _s3()
    engine = Engine(SPEC, Journal())
    for count, _ in enumerate(steps(engine)):
        if count == 8:
            break
    objects["runs/ns/demo/journal.json"] = json.dumps(engine.journal.to_dict()).encode()  # the old format
    journal_store = S3JournalStore(store, "uid-1")
    journal = journal_store.load()
    assert journal is not None and journal.to_dict() == engine.journal.to_dict()
    engine = Engine(SPEC, journal)
    for count, _ in enumerate(steps(engine)):
        journal_store.save(engine.journal)
        if count == 8:
            break
    assert json.loads(objects["runs/ns/demo/journal.json"])["uid"] == "uid-1"
    assert S3JournalStore(store, "uid-1").load().to_dict() == engine.journal.to_dict()  # type: ignore[union-attr]
    assert S3JournalStore(store, "another-run").load() is None
