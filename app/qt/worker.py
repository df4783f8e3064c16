"""The engine lanes: long-lived QThreads, each with its own session. The GUI thread never
runs torch.

Each lane's requests wait in an ``app.core.schedule.Schedule`` (newest wins per kind, by
priority, background kinds held back while the user is busy). Answers (results or
``Failed``) go back through the queued ``answered`` signal; the state then ignores answers to
outdated requests. ``EngineLanes`` runs one per lane, the preview lane, the release lane
and the PACS lane (``app.core.lanes`` says which request goes where): a folder release never
holds the previews back, nor a PACS that does not answer.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QThread, Signal

from app.core.jobs import JobControl
from app.core.lanes import Lane, heard_from, lanes_of
from app.core.messages import Kind, Request
from app.core.schedule import Schedule

if TYPE_CHECKING:
    from app.engine.session import Session

BACKGROUND_NICE = 10  # a background lane's priority below the previews' (Linux nice steps)


def engine_thread_count() -> int:
    """Torch threads for the engine: every core but one, which the GUI needs to paint.

    On a loaded 2-core machine one thread also avoids OpenMP threads spinning against each
    other, which was measured to make a decode 2-4x slower.
    """
    return max(1, (os.cpu_count() or 2) - 1)


def yield_cores(nice: int) -> None:
    """Lower the calling thread's priority, and with it the torch threads it starts. Linux
    gives each thread its own nice value; elsewhere Qt's low priority is the nearest."""
    if sys.platform.startswith("linux"):
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + nice)
    else:
        QThread.currentThread().setPriority(QThread.Priority.LowPriority)


def new_session(device: str = "auto", threads: int | None = None,
                control: JobControl | None = None) -> Session:
    """The engine, built on the worker thread: torch (about 2 s to import) loads there, after
    the window is up. `threads` sets torch's thread count, which is process-wide: the
    application passes it, tests sharing one process do not. `control`: the lane's, through
    which a long job reports progress and hears Cancel."""
    import torch

    from app.engine.session import Session

    if threads is not None:
        torch.set_num_threads(threads)
    return Session(device, control)


class EngineWorker(QThread):
    answered = Signal(object)  # a state value object (result or Failed)
    busy = Signal(str)  # what the engine is doing; "" when idle
    progressed = Signal(int, int, int)  # request id, done, total: a long job's progress

    def __init__(self, session_factory: Callable[[JobControl], Session] = new_session,
                 background: bool = False) -> None:
        """`background`: this lane yields the cores to the others (see yield_cores)."""
        super().__init__()
        self._factory = session_factory
        self.background = background
        self.control = JobControl(self.progressed.emit)
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

    def cancel(self, request_id: int) -> None:
        """Stop the long job answering `request_id` before its next image: at once, not
        behind the queue."""
        self.control.cancel(request_id)

    def stop(self, deadline_s: float | None = None) -> bool:
        """Drop what is pending, let the running request finish (a folder release after the
        image in hand), and end the thread; wait for that at most `deadline_s` (None: as
        long as it takes). True once it has ended."""
        self.request_stop()
        return self.wait() if deadline_s is None else self.wait(round(deadline_s * 1000))

    def request_stop(self) -> None:
        """Drop what is pending and cancel the running job between images; do not wait."""
        self.control.cancel_all()
        with self._cond:
            self._stopping = True
            self._schedule.clear()
            self._cond.notify()

    def run(self) -> None:
        if self.background:
            yield_cores(BACKGROUND_NICE)
        # built here: the session's torch state lives on this thread
        session = self._factory(self.control)
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


class EngineLanes(QObject):
    """The preview lane and the release lane, as one engine to the window: requests are
    routed by kind, and only the answers the state should hear come back."""

    answered = Signal(object)
    progressed = Signal(int, int, int)  # the release lane's: request id, done, total

    def __init__(self, session_factory: Callable[[JobControl], Session] = new_session) -> None:
        super().__init__()
        # Every lane but the previews' yields the cores: the slider stays as quick as the
        # machine allows while a release runs (docs/benchmarks.md).
        self.lanes = {lane: EngineWorker(session_factory, background=lane is not Lane.PREVIEW)
                      for lane in Lane}
        for lane, worker in self.lanes.items():
            worker.answered.connect(partial(self._answered, lane))
        self.release.progressed.connect(self.progressed)

    @property
    def preview(self) -> EngineWorker:
        return self.lanes[Lane.PREVIEW]

    @property
    def release(self) -> EngineWorker:
        return self.lanes[Lane.RELEASE]

    def start(self) -> None:
        for worker in self.lanes.values():
            worker.start()

    def submit(self, request: Request) -> None:
        for lane in lanes_of(request.kind):
            self.lanes[lane].submit(request)

    def cancel(self, request_id: int) -> None:
        self.release.cancel(request_id)

    def stop(self, deadline_s: float | None = None) -> bool:
        """Stop both lanes (a release ends after the image in hand); True once both ended.
        The deadline holds for both together."""
        start = time.monotonic()
        for worker in self.lanes.values():  # ask both first: they stop side by side
            worker.request_stop()
        stopped = True
        for worker in self.lanes.values():
            left = None if deadline_s is None else max(0.0, deadline_s - (time.monotonic() - start))
            stopped = worker.stop(left) and stopped
        return stopped

    def _answered(self, lane: Lane, answer: object) -> None:
        if heard_from(lane, answer.kind):
            self.answered.emit(answer)

