"""A run's background writes: in pass order, bounded, and failures undone by the next pass."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Iterator

import pytest

from kubescientist.adapters.kube.outbox import Outbox, Write


@pytest.fixture
def pools() -> Iterator[tuple[concurrent.futures.ThreadPoolExecutor, concurrent.futures.ThreadPoolExecutor]]:
    lanes = concurrent.futures.ThreadPoolExecutor(4)
    calls = concurrent.futures.ThreadPoolExecutor(8)
    yield lanes, calls
    lanes.shutdown(wait=True)
    calls.shutdown(wait=True)


def test_without_lanes_a_batch_is_made_before_send_returns_and_its_failure_raises() -> None:
    made: list[str] = []
    with concurrent.futures.ThreadPoolExecutor(2) as calls:
        outbox = Outbox(None, calls)
        outbox.send([Write(lambda: made.append("a")), Write(lambda: made.append("b"))])
        assert sorted(made) == ["a", "b"]

        undone: list[BaseException] = []

        def fail() -> None:
            raise RuntimeError("API down")

        with pytest.raises(RuntimeError, match="API down"):
            outbox.send([Write(fail, lambda error: undone.append(error) is not None)])
        assert len(undone) == 1  # undone first, then raised: the pass fails and says why


def test_batches_of_a_run_are_made_in_the_order_sent(pools: tuple[concurrent.futures.ThreadPoolExecutor, ...]) -> None:
    lanes, calls = pools
    outbox = Outbox(lanes, calls)
    release = threading.Event()
    made: list[str] = []
    outbox.send([Write(lambda: (release.wait(5), made.append("first")))])
    outbox.send([Write(lambda: made.append("second"))])
    time.sleep(0.2)
    assert made == []  # the second batch waits for the first, however fast it would be
    release.set()
    outbox.drain()
    assert made == ["first", "second"]


def test_at_most_two_batches_are_in_flight(pools: tuple[concurrent.futures.ThreadPoolExecutor, ...]) -> None:
    lanes, calls = pools
    outbox = Outbox(lanes, calls)
    release = threading.Event()
    outbox.send([Write(lambda: release.wait(5))])
    outbox.send([Write(lambda: None)])
    third = threading.Thread(target=outbox.send, args=([Write(lambda: None)],))
    third.start()
    third.join(0.3)
    assert third.is_alive()  # the pass that sends a third batch waits for the first to be made
    release.set()
    third.join(5)
    assert not third.is_alive()
    outbox.drain()


def test_a_background_failure_is_undone_and_raised_by_the_next_pass(
        pools: tuple[concurrent.futures.ThreadPoolExecutor, ...]) -> None:
    lanes, calls = pools
    outbox = Outbox(lanes, calls)
    assumed = {"node-a": "Running", "node-b": "Running"}

    def fail() -> None:
        raise RuntimeError("500 from the API server")

    def gone() -> None:
        raise LookupError("404")

    outbox.send([Write(fail, lambda error: assumed.pop("node-a") is None),
                 Write(gone, lambda error: assumed.pop("node-b") is not None)])
    outbox.drain()
    assert assumed == {"node-a": "Running", "node-b": "Running"}  # nothing touched outside the pass thread
    with pytest.raises(RuntimeError, match="500"):
        outbox.settle()
    assert assumed == {}  # both undone: the next pass writes them again
    outbox.settle()  # reported once
