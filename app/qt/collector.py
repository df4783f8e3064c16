"""Python's cyclic garbage collection on the GUI thread only, while the window is open.

The collector runs in whichever thread happens to allocate. If it frees a Qt object on the
engine thread, Qt can deadlock (seen: a test hung for good in QObject::~QObject on the worker
thread). So while the window lives, automatic collection is off and a timer on the GUI thread
collects instead (pyqtgraph's GarbageCollector, with the usual generation thresholds).
"""

from __future__ import annotations

import gc
from collections.abc import Callable

from pyqtgraph.util.garbage_collector import GarbageCollector


def collect_on_gui_thread(interval_s: float = 1.0) -> Callable[[], None]:
    """Switch automatic collection off and collect on a GUI-thread timer instead, from before
    the window is built (a QApplication must exist). Returns what puts collection back as it
    was: connect it to ``MainWindow.closed`` (the engine thread has ended by then)."""
    was_enabled = gc.isenabled()
    collector = GarbageCollector(interval=interval_s)

    def restore() -> None:  # holds the collector: a connected function is kept alive
        collector.timer.stop()
        if was_enabled:
            gc.enable()

    return restore
