"""Viewer latency, offscreen: slider change -> repainted privatised pane, and opening a
1024x1024 PNG -> every pane shown; with --release-images N, also what a folder release on the
release lane does to the slider and what the slider does to the release.

    python benchmarks/bench_viewer.py [--model-dir DIR | --synthetic] [--changes 60]
                                      [--release-images N]

"Repainted" means the DP-GLOW pane's viewport received its paint event with the image of the
newest request, timed by an event filter; both mechanisms are recomputed per change. The
engine's own share (the worker computing a render request, every mechanism and the
re-identification metrics) is timed around Session.handle and reported beside it. Changes
are made one after another, each once the previous is on screen (a steady drag). Default
models are the shipped pair; --synthetic builds an untrained pair of the shipped mixture
model's architecture (read from its model.json), which costs exactly as much to run.

--release-images N releases a folder of N 1024x1024 PNGs (into a fresh folder and ledger
each time, after one warm-up release) three ways: alone, one image per batch (the window's
setting, so Cancel is honoured between images); alone, eight per batch (`dpglow privatize`'s
default); and one per batch while the slider moves as above (on a fresh preview draw).
Reported: images per second of each, and the slider's latency during the third.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from PySide6.QtCore import QEvent, QEventLoop, QObject, QSettings, QTimer
from PySide6.QtWidgets import QApplication

from app.core.budget_scale import e_px_to_position
from app.core.messages import Answer, FolderRelease, Kind, Request
from app.core.pane_keys import PaneKey
from app.core.state import Aspect
from app.engine import release as release_job
from app.engine.session import Session
from app.qt import worker
from app.qt.collector import collect_on_gui_thread
from app.qt.main_window import MainWindow, ModelPaths
from app.qt.theme import configure_plots
from app.qt.worker import engine_thread_count
from glow_engine.resources import default_model_dir

TIMEOUT_S = 120.0


class PaintClock(QObject):
    """Records when a widget last painted, and when the state last took a new picture."""

    def __init__(self) -> None:
        super().__init__()
        self.last = 0.0
        self.accepted = 0.0

    def on_changed(self, aspects: frozenset[Aspect]) -> None:
        if Aspect.RENDERED in aspects:
            self.accepted = time.perf_counter()

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Paint:
            self.last = time.perf_counter()
        return False


class RenderClock:
    """Wall time of each main-pane render request the worker's Session handles."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def install(self) -> None:
        clock, handle = self, Session.handle

        def timed(session: Session, request: Request) -> Answer:
            start = time.perf_counter()
            try:
                return handle(session, request)
            finally:
                if request.kind is Kind.RENDER:
                    clock.seconds.append(time.perf_counter() - start)

        Session.handle = timed


def synthetic_models(root: Path) -> ModelPaths:
    import torch

    from glow_engine.calibration import calibrate
    from glow_engine.flow import Glow, GlowConfig
    from glow_engine.flow.glow import pixels_to_model
    from glow_engine.modelfile import load_model, read_metadata, save_model
    from glow_engine.resources import default_model_dir

    shipped = read_metadata(default_model_dir("mixture"))["architecture"]
    cell = shipped["resolution"] // 16
    rng = np.random.default_rng(0)
    images = (np.kron(rng.random((32, 16, 16)), np.ones((cell, cell))) * 200 + 20).astype(
        np.uint8)
    paths = []
    for seed, name in ((1, "mixture"), (2, "normal")):
        flow = Glow(GlowConfig.from_dict(shipped | {"seed": seed}))
        flow.initialize_actnorm(pixels_to_model(torch.from_numpy(images).float()[:, None] / 255))
        meta = {"name": name, "data": "untrained benchmark model"}
        save_model(root / name, flow, meta)
        cal = calibrate(load_model(root / name), [images], "benchmark images", progress=False)
        save_model(root / name, flow, meta, cal)
        paths.append(root / name)
    return ModelPaths(*paths)


def test_image(root: Path) -> Path:
    from glow_engine.imaging.write import save_png

    y, x = np.mgrid[0:1024, 0:1024] / 1024
    pixels = 0.3 + 0.4 * np.exp(-((x - 0.5) ** 2) / 0.05) + 0.05 * np.sin(40 * x * y)
    path = root / "bench_1024.png"
    save_png(pixels, path)
    return path


def wait(app: QApplication, condition, what: str) -> None:
    """Block in the event loop (no busy polling: a spinning GUI thread would steal the CPU
    the engine needs) until condition() holds; the heartbeat timer wakes it regularly."""
    heartbeat = QTimer()
    heartbeat.start(20)
    deadline = time.perf_counter() + TIMEOUT_S
    while not condition():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        app.processEvents(QEventLoop.ProcessEventsFlag.WaitForMoreEvents)
    heartbeat.stop()


def painted_current(window: MainWindow, clock: PaintClock, since: float) -> bool:
    """The newest request's picture is in the state and the pane painted after it came."""
    s = window.state
    return (s.rendered is not None and s.is_current(Kind.RENDER, s.rendered.request_id)
            and since < clock.accepted < clock.last)


def bench_open(app, window, clock, image: Path, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        window.open_path(image)
        wait(app, lambda t0=t0: window.state.source.path == image
             and window.state.rendered is not None
             and painted_current(window, clock, t0), "the opened image")
        times.append(clock.last - t0)
    return times


def bench_slider(app, window, clock, changes: int, until=lambda: False) -> list[float]:
    """Latency of each of `changes` slider moves (stopping early once until() holds)."""
    slider = window.controls.slider
    start = e_px_to_position(100.0)
    times = []
    for i in range(changes):
        if until():
            break
        # 61 distinct positions around e_px = 100, in steps of 7 (mod 61): no position repeats,
        # so no answer comes from the session's preview cache.
        position = start - 29 + (i * 7) % 61 + (1 if (i * 7) % 61 >= 29 else 0)
        t0 = time.perf_counter()
        slider.setValue(position)
        wait(app, lambda t0=t0: painted_current(window, clock, t0), "a repaint")
        times.append(clock.last - t0)
    return times


def fresh_draw(app, window: MainWindow) -> None:
    """A new preview draw: the slider's positions repeat from run to run, and its previews
    would otherwise come from the session's cache."""
    window.state.new_noise()
    wait(app, lambda: not window.state.waiting(Kind.RENDER), "the new draw")


def release_images(root: Path, n: int) -> Path:
    from glow_engine.imaging.write import save_png

    folder = root / "release_in"
    folder.mkdir()
    y, x = np.mgrid[0:1024, 0:1024] / 1024
    for i in range(n):
        pixels = 0.3 + 0.4 * np.exp(-((x - 0.5) ** 2) / 0.05) + 0.05 * np.sin((20 + i) * x * y)
        save_png(pixels, folder / f"image{i:03d}.png")
    return folder


def start_release(window: MainWindow, folder: Path, out: Path) -> int:
    """A folder release on the release lane, as the batch window asks for it."""
    request = window.state.release_folder(FolderRelease(
        inputs=(folder,), mechanism="dpglow", params=window.state.params,
        out_dir=out / "released", fmt="png", ledger_path=out / "ledger.sqlite"))
    return request.id


def released(window: MainWindow, request_id: int) -> bool:
    done = window.state.batch_done
    return done is not None and done.request_id == request_id


def bench_release(app, window, clock, folder: Path, tmp: Path, changes: int) -> dict:
    """Images per second of a folder release alone (1 and 8 per batch) and while the slider
    moves, and the slider's latency meanwhile."""
    out: dict[str, object] = {}
    warm = start_release(window, folder, tmp / "warm-up")  # the release lane's first run
    wait(app, lambda: released(window, warm), "the warm-up release")
    for run, batch, slider in (("alone_1_per_batch", 1, False),
                               ("alone_8_per_batch", 8, False),
                               ("with_slider_1_per_batch", 1, True)):
        release_job.WINDOW_BATCH = batch  # read by the release lane for each release
        t0 = time.perf_counter()
        rid = start_release(window, folder, tmp / run)
        if slider:
            fresh_draw(app, window)
            out["slider_during_release"] = summary(
                bench_slider(app, window, clock, changes, lambda r=rid: released(window, r)))
        wait(app, lambda r=rid: released(window, r), "the folder release")
        seconds = time.perf_counter() - t0
        written = window.state.batch_done.counts.get("written", 0)
        out[f"release_{run}"] = {"images": written, "seconds": round(seconds, 2),
                                 "images_per_s": round(written / seconds, 3)}
    release_job.WINDOW_BATCH = 1
    return out


def summary(times: list[float]) -> dict[str, float]:
    ms = sorted(t * 1000 for t in times)
    return {"n": len(ms), "median_ms": round(statistics.median(ms), 1),
            "p95_ms": round(ms[min(len(ms) - 1, int(0.95 * len(ms)))], 1),
            "min_ms": round(ms[0], 1), "max_ms": round(ms[-1], 1)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model-dir", type=Path, help="folder with mixture/ and normal/")
    p.add_argument("--synthetic", action="store_true", help="untrained default-size models")
    p.add_argument("--image", type=Path, help="a 1024x1024 PNG (default: a synthetic one)")
    p.add_argument("--changes", type=int, default=60, help="at most 61 (all distinct)")
    p.add_argument("--opens", type=int, default=5)
    p.add_argument("--release-images", type=int, default=0,
                   help="also time a folder release of this many images (0: skip)")
    p.add_argument("--release-nice", type=int, default=worker.BACKGROUND_NICE,
                   help="how far the release lane yields the cores (0: not at all)")
    args = p.parse_args()
    worker.BACKGROUND_NICE = args.release_nice  # read when the release lane starts
    tmp = Path(tempfile.mkdtemp(prefix="bench_viewer_"))
    if args.synthetic:
        models = synthetic_models(tmp)
    else:
        root = args.model_dir
        models = ModelPaths(root / "mixture" if root else default_model_dir("mixture"),
                            root / "normal" if root else default_model_dir("normal"))
    app = QApplication.instance() or QApplication([])
    configure_plots()  # as dpglow-viewer does
    restore_gc = collect_on_gui_thread()
    window = MainWindow(QSettings(str(tmp / "viewer.ini"), QSettings.Format.IniFormat), models,
                        threads=engine_thread_count())
    window.closed.connect(restore_gc)
    window.resize(1680, 1000)
    window.show()
    clock = PaintClock()
    window.grid.panes[PaneKey("dpglow")].graphics.viewport().installEventFilter(clock)
    window.state.changed.connect(clock.on_changed)
    try:
        result = run(app, window, clock, models, args, tmp)
    finally:
        window.close()  # stops the worker thread
    print(json.dumps(result, indent=2))
    return 0 if result else 1


def run(app, window, clock, models, args, tmp) -> dict | None:
    renders = RenderClock()
    renders.install()  # before the worker builds its Session
    t0 = time.perf_counter()
    window.start()
    wait(app, lambda: window.state.rendered is not None or window.messages, "the models")
    if window.messages:
        print("\n".join(window.messages), file=sys.stderr)
        return None
    load_s = time.perf_counter() - t0
    image = args.image or test_image(tmp)
    opens = bench_open(app, window, clock, image, args.opens)
    renders.seconds.clear()
    slider = bench_slider(app, window, clock, args.changes)
    slider_renders = summary(renders.seconds)
    during = {}
    if args.release_images:
        during = bench_release(app, window, clock, release_images(tmp, args.release_images),
                               tmp, args.changes)
    return {
        "models": str(models.mixture.parent) + (" (synthetic, untrained)" if args.synthetic
                                                 else ""),
        "device": window.state.models.device,
        "start_to_first_sample_s": round(load_s, 2),
        "open_1024_png_to_shown": summary(opens),
        "slider_to_repaint": summary(slider),
        "slider_engine_render": slider_renders,
        "renders_computed": window.worker.computed[Kind.RENDER],
        "renders_dropped": window.worker.dropped[Kind.RENDER],
        "cpus": os.cpu_count(),
        "engine_threads_per_lane": engine_thread_count(),
        "release_lane_nice": worker.BACKGROUND_NICE,
        **during,
    }


if __name__ == "__main__":
    sys.exit(main())
