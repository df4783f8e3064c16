"""One long-lived QThread that owns the engine. The GUI thread never runs torch.

Requests wait in an ``app.core.schedule.Schedule`` (newest wins per kind, by priority, background
kinds held back while the user is busy). Answers (results or ``Failed``) go back through the
queued ``answered`` signal; the state then ignores answers to outdated requests.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtCore import QThread, Signal

from app.core.messages import Kind, Request
from app.core.schedule import Schedule

if TYPE_CHECKING:
    from app.engine.session import Session


def engine_thread_count() -> int:
    """Torch threads for the engine: every core but one, which the GUI needs to paint.

    On a loaded 2-core machine one thread also avoids OpenMP threads spinning against each
    other, which was measured to make a decode 2-4x slower.
    """
    return max(1, (os.cpu_count() or 2) - 1)


def new_session(device: str = "auto", threads: int | None = None) -> Session:
    """The engine, built on the worker thread: torch (about 2 s to import) loads there, after
    the window is up. `threads` sets torch's thread count, which is process-wide: the
    application passes it, tests sharing one process do not."""
    import torch

    from app.engine.session import Session

    if threads is not None:
        torch.set_num_threads(threads)
    return Session(device)


class EngineWorker(QThread):
    answered = Signal(object)  # a state value object (result or Failed)
    busy = Signal(str)  # what the engine is doing; "" when idle

    def __init__(self, session_factory: Callable[[], Session] = new_session) -> None:
        super().__init__()
        self._factory = session_factory
        self._cond = threading.Condition()
        self._schedule = Schedule()
        self._stopping = False
        self.computed: Counter[Kind] = Counter()  # requests actually run, per kind

    @property
    def dropped(self) -> Counter[Kind]:
        """Requests replaced before they ran, per kind."""
        return self._schedule.dropped

    def submit(self, request: Request) -> None:
        with self._cond:
            self._schedule.put(request)
            self._cond.notify()

    def stop(self, deadline_s: float | None = None) -> bool:
        """Drop what is pending, let the running request finish, and end the thread; wait
        for that at most `deadline_s` (None: as long as it takes). True once it has ended."""
        with self._cond:
            self._stopping = True
            self._schedule.clear()
            self._cond.notify()
        return self.wait() if deadline_s is None else self.wait(round(deadline_s * 1000))

    def run(self) -> None:
        session = self._factory()  # built here: the session's torch state lives on this thread
        while (request := self._next()) is not None:
            self.busy.emit(request.kind.label)
            answer = session.handle(request)
            self.computed[request.kind] += 1
            with self._cond:
                if not self._stopping:
                    self._schedule.finished(request)
                label = self._schedule.label
            if not self._stopping:
                self.answered.emit(answer)
            self.busy.emit(label)

    def _next(self) -> Request | None:
        with self._cond:
            while not self._stopping:
                wait = self._schedule.wait_before_next()
                if wait == 0.0:
                    return self._schedule.pop()
                self._cond.wait(wait)
            return None
