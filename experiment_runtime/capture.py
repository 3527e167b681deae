"""Bounded capture of an output stream: keep the head and the tail, count everything.

A program that prints gigabytes must not exhaust the runner's memory, yet both the start of the
output (the configuration it printed) and the end (the traceback) are what a reader needs.
"""

from __future__ import annotations


class BoundedCapture:
    """Keeps the first and last bytes of a stream up to `limit` in all, and the total byte count."""

    def __init__(self, limit: int) -> None:
        if limit < 2:
            raise ValueError(f"limit: must be >= 2, got {limit}")
        self._head_limit = limit // 2
        self._tail_limit = limit - self._head_limit
        self._head = bytearray()
        self._tail = bytearray()
        self.total_bytes = 0

    def feed(self, data: bytes) -> None:
        self.total_bytes += len(data)
        room = self._head_limit - len(self._head)
        if room > 0:
            self._head += data[:room]
            data = data[room:]
        if not data:
            return
        self._tail += data
        # Trim only when the tail doubles its bound, so a stream of small writes costs amortised O(1).
        if len(self._tail) > 2 * self._tail_limit:
            del self._tail[: len(self._tail) - self._tail_limit]

    @property
    def truncated(self) -> bool:
        return self.total_bytes > self._head_limit + self._tail_limit

    def text(self) -> str:
        """The kept bytes as text; when bytes were dropped, a marker line says how many."""
        tail = bytes(self._tail[-self._tail_limit :]) if self._tail else b""
        if not self.truncated:
            return (bytes(self._head) + tail).decode("utf-8", errors="replace")
        dropped = self.total_bytes - len(self._head) - len(tail)
        marker = f"\n[... {dropped} bytes dropped ...]\n"
        return self._head.decode("utf-8", errors="replace") + marker + tail.decode("utf-8", errors="replace")
