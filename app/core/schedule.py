"""Which request the engine runs next: pure logic, Qt-free, so it is tested without a thread.

One slot per kind: a new request replaces the pending one of its kind, so when the slider
moves faster than decoding only the newest position is computed (stale requests are dropped,
never queued). Kinds are served in ``Kind`` order. Idle kinds wait until nothing in the
foreground has been asked for or finished for ``idle_after_s``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

from app.core.messages import Kind, Request

IDLE_AFTER_S = 0.25


class Schedule:
    """The pending requests. Not thread-safe: the worker holds its lock around every call."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 idle_after_s: float = IDLE_AFTER_S) -> None:
        self._clock = clock
        self._idle_after_s = idle_after_s
        self._pending: dict[Kind, Request] = {}
        self._last_activity = -idle_after_s  # last foreground request submitted or finished
        self.dropped: Counter[Kind] = Counter()  # requests replaced before they ran

    def __bool__(self) -> bool:
        return bool(self._pending)

    def put(self, request: Request) -> None:
        if request.kind in self._pending:
            self.dropped[request.kind] += 1
        self._pending[request.kind] = request
        self._touch(request)

    def wait_before_next(self) -> float | None:
        """0: run the next request now; else how long to wait (None: until a new request)."""
        if not self._pending:
            return None
        if not self._next_kind().idle:
            return 0.0
        quiet = self._clock() - self._last_activity
        return max(0.0, self._idle_after_s - quiet)

    def pop(self) -> Request:
        return self._pending.pop(self._next_kind())

    def finished(self, request: Request) -> None:
        """After one turn: quiet time counts from here; what is left of the request (a
        folder's other images) is queued unless a newer request of its kind is waiting."""
        self._touch(request)
        rest = request.rest()
        if rest is not None and rest.kind not in self._pending:
            self._pending[rest.kind] = rest

    def clear(self) -> None:
        self._pending.clear()

    @property
    def label(self) -> str:
        """What the engine does next, for the status bar; "" when nothing is pending."""
        return self._next_kind().label if self._pending else ""

    def _next_kind(self) -> Kind:
        return next(kind for kind in Kind if kind in self._pending)

    def _touch(self, request: Request) -> None:
        if not request.kind.idle:
            self._last_activity = self._clock()
