"""A run's API writes that no next Job waits for (statuses, Events, Job TTLs), made behind its pass.

A pass decides these writes, assumes they succeed and returns, so that the run's next pass (a node finished
meanwhile) does not wait for a round of API calls on a busy API server: that wait, not the pass's own work, was
most of the operator's reaction time at scale. Per run the writes stay in pass order (a later status patch never
overtakes an earlier one) and at most two batches are in flight. A write that fails is handed back to the
run's next pass, which undoes what its pass assumed (so the write is made again) and raises the failure
unless the undo settles it (an ExperimentNode deleted by hand).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import queue
from collections.abc import Callable, Sequence

log = logging.getLogger('kubescientist.operator')


@dataclasses.dataclass(frozen=True)
class Write:
    """One API call of a pass that nothing in the pass waits for."""

    call: Callable[[], object]
    """Makes the call; raises if it failed."""
    undo: Callable[[BaseException], bool] = lambda error: False
    """Run by the next pass when the call failed: forget what was assumed; True when that settles it."""


class Outbox:
    """The background writes of one run, batch by batch in the order its passes sent them."""

    def __init__(self, lanes: concurrent.futures.Executor | None, calls: concurrent.futures.Executor) -> None:
        """``lanes``: where batches wait their turn (None: each batch is made before ``send`` returns);
        ``calls``: where a batch's calls are made at once."""
        self.lanes = lanes
        self.calls = calls
        self.sent: list[concurrent.futures.Future[None]] = []
        self.failed: queue.SimpleQueue[tuple[Write, BaseException]] = queue.SimpleQueue()

    def send(self, writes: Sequence[Write]) -> None:
        """Make ``writes`` after the batches sent before; waits while two batches are still in flight."""
        if not writes:
            return
        if self.lanes is None:
            self._make(writes, None)
            self.settle()
            return
        self.sent = [f for f in self.sent if not f.done()]
        if len(self.sent) >= 2:
            self.sent[0].result()  # back-pressure: passes cannot run ahead of the API server without bound
        before = self.sent[-1] if self.sent else None
        self.sent.append(self.lanes.submit(self._make, writes, before))

    def _make(self, writes: Sequence[Write], before: concurrent.futures.Future[None] | None) -> None:
        if before is not None:
            concurrent.futures.wait([before])
        futures = [self.calls.submit(w.call) for w in writes]
        for write, future in zip(writes, futures):
            error = future.exception()
            if error is not None:
                self.failed.put((write, error))

    def settle(self) -> None:
        """Undo what failed writes assumed, in the pass thread; raise the first failure no undo settled."""
        unsettled: BaseException | None = None
        while not self.failed.empty():
            write, error = self.failed.get()
            if not write.undo(error):
                log.warning("a background API write failed: %r", error)
                unsettled = unsettled or error
        if unsettled is not None:
            raise unsettled

    def drain(self) -> None:
        """Wait until every batch sent is made (tests and shutdown)."""
        for future in list(self.sent):
            future.result()
        self.sent.clear()
