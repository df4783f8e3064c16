"""The two engine lanes: a folder release runs on its own lane while the previews keep
answering the slider, and the window's Cancel reaches it between images. The release is
held inside its run (between two images) until the test lets it go, so a release that held
the only engine thread would leave every slider move unanswered and fail here."""

from __future__ import annotations

import os
import sys
import threading

import pytest
from test_app_officer import release, start_release
from test_app_support import TIMEOUT_MS, Gate, write_png

pytest.importorskip("pytestqt")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from app.core.budget_scale import position_to_e_px
from app.core.messages import Kind
from app.core.pane_keys import PaneKey
from app.qt.worker import BACKGROUND_NICE, yield_cores


def a_folder(root, n: int):
    folder = root / "many"
    folder.mkdir()
    for i in range(n):
        write_png(folder / f"scan{i}.png", seed=i, height=40, width=36)
    return folder


def test_the_slider_is_answered_while_a_folder_release_runs(qtbot, window, tmp_path,
                                                           monkeypatch) -> None:
    gate = Gate(monkeypatch, at=1)  # the release is held after its first image
    batch = start_release(window, a_folder(tmp_path, 3), tmp_path)
    assert gate.reached.wait(TIMEOUT_MS / 1000)
    for position in (120, 160, 200):
        window.controls.slider.setValue(position)
        e_px = position_to_e_px(position)
        qtbot.waitUntil(lambda e=e_px: not window.state.waiting(Kind.RENDER)
                        and window.state.rendered.panes[PaneKey("dpglow")].e_px == e,
                        timeout=TIMEOUT_MS)
    assert window.state.waiting(Kind.BATCH) and batch.request is not None  # still held
    gate.open.set()
    qtbot.waitUntil(lambda: batch.request is None, timeout=TIMEOUT_MS)
    assert window.state.batch_done.counts == {"written": 3}
    assert "Released 3 of 3 images" in batch.summary.text()


def test_cancel_reaches_the_release_between_images(qtbot, window, tmp_path,
                                                   monkeypatch) -> None:
    gate = Gate(monkeypatch, at=1)  # held after the first image: Cancel comes then
    batch = release(qtbot, window, a_folder(tmp_path, 5), tmp_path, cancel_at=gate)
    assert window.state.batch_done.counts == {"written": 1, "not-started": 4}
    assert "Not started: 4 (cancelled)" in batch.summary.text()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
def test_the_release_lane_yields_the_cores_to_the_previews(window) -> None:
    assert not window.engine.preview.background and window.engine.release.background
    seen = {}

    def lane() -> None:
        tid = threading.get_native_id()
        before = os.getpriority(os.PRIO_PROCESS, tid)
        yield_cores(BACKGROUND_NICE)
        seen["raised"] = os.getpriority(os.PRIO_PROCESS, tid) - before

    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    thread = threading.Thread(target=lane)
    thread.start()
    thread.join()
    assert seen["raised"] == BACKGROUND_NICE
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before  # only its own
