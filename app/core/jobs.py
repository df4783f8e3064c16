"""How a long job on an engine lane reports progress and learns it was cancelled.

A request is plain data; what happens while it runs goes through the lane that runs it. The
worker owns one ``JobControl`` per lane and hands it to its session: the session reports
each image of a folder release here, and asks here, before each image, whether the user
cancelled. Qt-free: the worker passes a queued signal's emit as ``on_progress``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

Progress = Callable[[int, int, int], None]  # request id, done, total


class JobControl:
    def __init__(self, on_progress: Progress | None = None) -> None:
        self._on_progress = on_progress
        self._cancelled: set[int] = set()
        self._all = False  # the lane is stopping: every job stops
        self._lock = threading.Lock()  # cancel() runs on the GUI thread, the job on its lane

    def cancel(self, request_id: int) -> None:
        """Ask the job answering `request_id` to stop before its next image (also before it
        has started: it then starts none)."""
        with self._lock:
            self._cancelled.add(request_id)

    def cancel_all(self) -> None:
        with self._lock:
            self._all = True

    def cancelled(self, request_id: int) -> bool:
        with self._lock:
            return self._all or request_id in self._cancelled

    def progress(self, request_id: int, done: int, total: int) -> None:
        if self._on_progress is not None:
            self._on_progress(request_id, done, total)
