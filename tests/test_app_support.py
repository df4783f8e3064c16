"""Helpers shared by the viewer's tests (no tests here): one tiny calibrated model pair per
session (built by helpers.saved_pair), a test PNG, and the window.

A 32x32 GLOW with random weights is enough to exercise every path of the viewer in well
under a second; what the pictures look like is not what these tests check.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from helpers import saved_pair

_SHARED: dict[str, tuple[Path, Path]] = {}


def shared_pair(tmp_path_factory) -> tuple[Path, Path]:
    """One model pair for every viewer test module of a session (read-only for them)."""
    if "pair" not in _SHARED:
        _SHARED["pair"] = saved_pair(tmp_path_factory.mktemp("app_models"))
    return _SHARED["pair"]


def write_png(path: Path, height: int = 96, width: int = 80, seed: int = 3) -> Path:
    from glow_engine.imaging.write import save_png

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    pixels = 0.5 + 0.3 * np.sin(x / 9.0) * np.cos(y / 7.0) + 0.05 * rng.random((height, width))
    save_png(pixels, path)
    return path


# --------------------------------------------------------------------------- the window

TIMEOUT_MS = 20_000


def make_window(qtbot, settings, models, size: tuple[int, int] = (1300, 850)):
    """A shown MainWindow, closed (and its worker stopped) at the test's teardown; started
    as app.__main__ starts it."""
    from app.qt.collector import collect_on_gui_thread
    from app.qt.main_window import MainWindow
    from app.qt.theme import configure_plots

    configure_plots()
    restore_gc = collect_on_gui_thread()
    window = MainWindow(settings, models, device="cpu")
    window.closed.connect(restore_gc)
    qtbot.addWidget(window)
    window.resize(*size)
    window.show()
    return window


def settle(qtbot, window) -> None:
    """Until every request has its answer and the main panes are rendered."""
    qtbot.waitUntil(lambda: window.state.settled and window.state.rendered is not None,
                    timeout=TIMEOUT_MS)


class Gate:
    """Wraps the release path's stop check: before image `at` (0-based) the run waits until
    the test opens the gate, then asks the lane as usual."""

    def __init__(self, monkeypatch, at: int, release_job=None) -> None:
        """`release_job`: the module whose release_folder is gated (app.engine.release)."""
        self.at, self.asked, self.reached = at, 0, threading.Event()
        self.open = threading.Event()
        if release_job is None:
            from app.engine import release as release_job

        real = release_job.release_folder

        def gated(inputs, mech, ledger, opts, *, on_progress, should_stop):
            def stop() -> bool:
                if self.asked == self.at:
                    self.reached.set()
                    assert self.open.wait(TIMEOUT_MS / 1000), "the test never let it go"
                self.asked += 1
                return should_stop()
            return real(inputs, mech, ledger, opts, on_progress=on_progress, should_stop=stop)

        monkeypatch.setattr(release_job, "release_folder", gated)


def open_batch(window, folder: Path, tmp_path: Path, e_px: str = "10"):
    """The folder release window on `folder` at `e_px`, its ledger and output in tmp_path."""
    window.settings.setValue("ledger", str(tmp_path / "ledger.sqlite"))
    window.settings.setValue("export_dir", str(tmp_path / "out"))
    window.show_batch()
    batch = window.batch_window
    batch.inputs.setText(str(folder))
    batch.budget.setText(e_px)
    return batch
