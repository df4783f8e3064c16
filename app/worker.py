"""One long-lived QThread that owns the engine. The GUI thread never runs torch.

Requests wait in one slot per kind: a new request replaces the pending one of its kind, so
when the slider moves faster than decoding only the newest position is computed (stale
requests are dropped, never queued). Kinds are served by priority, so a model load or an
open is never stuck behind a folder of thumbnails. Answers (results or ``Failed``) go back
through the queued ``answered`` signal; the state then ignores answers to outdated requests.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from PySide6.QtCore import QThread, Signal

from app.state import (
    ExportRequest,
    LoadModelsRequest,
    OpenRequest,
    RenderRequest,
    Request,
    SampleRequest,
    ScoreRequest,
    ThumbRequest,
)

if TYPE_CHECKING:
    from app.session import Session

# Highest first. Folder thumbnails come last: one image per turn, so they never delay a frame.
PRIORITY = ("models", "open", "export", "render", "strip", "scores", "thumbs")
# Background kinds wait until the user has paused this long: an anomaly score started during
# a slider drag would hold the next frame back for a whole scoring pass.
IDLE_KINDS = frozenset({"scores", "thumbs"})
IDLE_AFTER_S = 0.25
LABELS = {
    "models": "loading models", "open": "opening image", "export": "exporting",
    "render": "privatising", "strip": "privatising strip", "scores": "scoring",
    "thumbs": "scoring folder",
}


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

    from app.session import Session

    if threads is not None:
        torch.set_num_threads(threads)
    return Session(device)


def kind_of(request: Request) -> str:
    if isinstance(request, RenderRequest):
        return "strip" if request.strip else "render"
    return {
        LoadModelsRequest: "models", OpenRequest: "open", SampleRequest: "open",
        ScoreRequest: "scores", ExportRequest: "export", ThumbRequest: "thumbs",
    }[type(request)]


class EngineWorker(QThread):
    answered = Signal(object)  # a state value object (result or Failed)
    busy = Signal(str)  # what the engine is doing; "" when idle

    def __init__(self, session_factory: Callable[[], Session] = new_session) -> None:
        super().__init__()
        self._factory = session_factory
        self._cond = threading.Condition()
        self._pending: dict[str, Request] = {}
        self._stopping = False
        self._last_activity = 0.0  # last foreground request submitted or finished
        self.computed: Counter[str] = Counter()  # requests actually run, per kind
        self.dropped: Counter[str] = Counter()  # requests replaced before they ran

    def submit(self, request: Request) -> None:
        kind = kind_of(request)
        with self._cond:
            if kind in self._pending:
                self.dropped[kind] += 1
            self._pending[kind] = request
            if kind not in IDLE_KINDS:
                self._last_activity = time.monotonic()
            self._cond.notify()

    def stop(self) -> None:
        """Drop what is pending, let the running request finish, and end the thread."""
        with self._cond:
            self._stopping = True
            self._pending.clear()
            self._cond.notify()
        self.wait()

    def run(self) -> None:
        session = self._factory()  # built here: the session's torch state lives on this thread
        while (request := self._next()) is not None:
            kind = kind_of(request)
            self.busy.emit(LABELS[kind])
            answer = session.handle(request)
            self.computed[kind] += 1
            if kind not in IDLE_KINDS:
                self._last_activity = time.monotonic()  # quiet time counts from here
            if isinstance(request, ThumbRequest):
                self._requeue_rest(request)
            if not self._stopping:
                self.answered.emit(answer)
            with self._cond:
                label = LABELS[self._peek()] if self._pending else ""
            self.busy.emit(label)

    def _next(self) -> Request | None:
        with self._cond:
            while not self._stopping:
                wait = self._wait_before_next()
                if wait == 0.0:
                    return self._pending.pop(self._peek())
                self._cond.wait(wait)
            return None

    def _wait_before_next(self) -> float | None:
        """0: run the next request now; else how long to wait (None: until notified)."""
        if not self._pending:
            return None
        if self._peek() not in IDLE_KINDS:
            return 0.0
        quiet = time.monotonic() - self._last_activity
        return 0.0 if quiet >= IDLE_AFTER_S else IDLE_AFTER_S - quiet

    def _peek(self) -> str:
        return next(k for k in PRIORITY if k in self._pending)

    def _requeue_rest(self, request: ThumbRequest) -> None:
        """A folder is scored one image per turn; a newer folder request replaces the rest."""
        with self._cond:
            if len(request.paths) > 1 and "thumbs" not in self._pending and not self._stopping:
                self._pending["thumbs"] = replace(request, paths=request.paths[1:])
