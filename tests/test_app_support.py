"""Helpers shared by the viewer's tests (no tests here): a tiny calibrated model pair.

A 32x32 GLOW with random weights is enough to exercise every path of the viewer in well
under a second; what the pictures look like is not what these tests check.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from glow_engine.calibration import calibrate
from glow_engine.flow import Glow, GlowConfig
from glow_engine.flow.glow import pixels_to_model
from glow_engine.modelfile import load_model, save_model

TINY = GlowConfig(resolution=32, levels=2, depth=2, width=16)


def smooth_images(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Blurry random uint8 images: closer to radiographs than white noise."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((n, size // 8, size // 8))
    up = np.kron(coarse, np.ones((8, 8)))
    return (up * 200 + 20).astype(np.uint8)


def make_model(path: Path, seed: int, calibrated: bool = True, resolution: int = 32) -> Path:
    cfg = GlowConfig(resolution=resolution, levels=2, depth=2, width=16, seed=seed)
    flow = Glow(cfg)
    images = smooth_images(64, resolution, seed)
    flow.initialize_actnorm(pixels_to_model(torch.from_numpy(images).float()[:, None] / 255))
    save_model(path, flow, {"name": path.name, "data": "synthetic test images"})
    if calibrated:
        loaded = load_model(path)
        cal = calibrate(loaded, [images], "synthetic test images", progress=False)
        save_model(path, flow, {"name": path.name, "data": "synthetic test images"}, cal)
    return path


def make_pair(root: Path) -> tuple[Path, Path]:
    """(mixture, normal) model folders under root."""
    return make_model(root / "mixture", seed=1), make_model(root / "normal", seed=2)


_SHARED: dict[str, tuple[Path, Path]] = {}


def shared_pair(tmp_path_factory) -> tuple[Path, Path]:
    """One model pair for every viewer test module of a session (read-only for them)."""
    if "pair" not in _SHARED:
        _SHARED["pair"] = make_pair(tmp_path_factory.mktemp("app_models"))
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
    """A shown MainWindow, closed (and its worker stopped) at the test's teardown."""
    from app.main_window import MainWindow

    window = MainWindow(settings, models, device="cpu")
    qtbot.addWidget(window)
    window.resize(*size)
    window.show()
    return window


def settle(qtbot, window) -> None:
    """Until every request has its answer and the main panes are rendered."""
    qtbot.waitUntil(lambda: window.state.settled and window.state.rendered is not None,
                    timeout=TIMEOUT_MS)
