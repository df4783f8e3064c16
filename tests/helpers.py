"""What the tests build: synthetic images and tiny GLOW models (no tests here).

The one home of every test image and model builder; conftest.py turns them into fixtures,
and test modules import them as `from helpers import ...`. A 32x32 GLOW with two levels of
two steps builds in well under a second, which is all the mechanisms, the release, the
scorer and the viewer need.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from scipy.ndimage import gaussian_filter

from glow_engine.calibration import calibrate
from glow_engine.fitted_box import FittedBox, FittedBoxes
from glow_engine.flow import Glow, GlowConfig
from glow_engine.flow.glow import dequantize, pixels_to_model
from glow_engine.modelfile import (
    META_NAME,
    WEIGHTS_NAME,
    Calibration,
    LoadedModel,
    content_hash,
    load_model,
    save_model,
)

TINY_RES = 32


# --------------------------------------------------------------------------- images


def tiny_images(n: int, seed: int = 0, size: int = TINY_RES) -> np.ndarray:
    """Smooth random [0, 1] float32 images (n, size, size): blurred noise plus a gradient."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((n, size // 8, size // 8))
    smooth = np.kron(coarse, np.ones((8, 8)))
    ramp = np.linspace(0, 0.3, size)[None, None, :]
    return np.clip(0.6 * smooth + ramp + 0.05 * rng.random((n, size, size)), 0, 1).astype(
        np.float32)


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """[0, 1] images as the uint8 a data file or a PNG holds."""
    return np.rint(pixels * 255).astype(np.uint8)


def synthetic_cxr(n: int, abnormal: bool, seed: int, resolution: int = TINY_RES) -> np.ndarray:
    """float32 (n, R, R) in [0, 1]: a bright mediastinum on a dark background with smooth
    texture; `abnormal` adds a bright round "opacity" in one lung field."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:resolution, 0:resolution] / resolution
    out = np.empty((n, resolution, resolution), np.float32)
    for i in range(n):
        img = 0.25 + 0.35 * np.exp(-((xx - 0.45) ** 2) / 0.05) * (0.6 + 0.4 * yy)
        img += 0.08 * gaussian_filter(rng.standard_normal((resolution, resolution)), 2)
        if abnormal:
            cy, cx = rng.uniform(0.3, 0.7), rng.choice([0.25, 0.75])
            img += 0.35 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.01)
        out[i] = np.clip(img, 0, 1)
    return out


# --------------------------------------------------------------------------- models


def tiny_flow(actnorm_input: torch.Tensor, *, resolution: int = TINY_RES, levels: int = 2,
              depth: int = 2, width: int = 16, seed: int = 0, jitter: float = 0.0) -> Glow:
    """A Glow (eval mode) whose actnorms are initialised on `actnorm_input` (model scale).

    `jitter` adds that much Gaussian noise to every parameter, so couplings and priors are not
    the identity (a fresh flow's are: its last convolutions start at zero).
    """
    torch.manual_seed(seed)  # some layers draw their initial weights from the global generator
    flow = Glow(GlowConfig(resolution, levels, depth, width, seed=seed))
    flow.initialize_actnorm(actnorm_input)
    if jitter:
        gen = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for p in flow.parameters():
                p.add_(jitter * torch.randn(p.shape, generator=gen))
    return flow.eval()


def model_input(pixels: np.ndarray) -> torch.Tensor:
    """[0, 1] images (n, R, R) -> the flow's input (n, 1, R, R) at the bin centres."""
    return pixels_to_model(torch.from_numpy(np.ascontiguousarray(pixels))[:, None])


def perturbed_flow(resolution: int = TINY_RES, levels: int = 2, depth: int = 2, width: int = 16,
                   seed: int = 0, scale: float = 0.05) -> Glow:
    """A flow with every parameter jittered, actnorm-initialised on tiny_images."""
    return tiny_flow(model_input(tiny_images(16, seed, resolution)), resolution=resolution,
                     levels=levels, depth=depth, width=width, seed=seed, jitter=scale)


def encoded_calibration(flow: Glow, pixels: np.ndarray, data: str) -> Calibration:
    """The latent box of `pixels` straight from their encodings (no bits/dim percentiles)."""
    with torch.inference_mode():
        z = flow.encode(model_input(pixels)).double().numpy()
    return Calibration(z.min(0), z.max(0), {"images": len(pixels), "data": data})


def tiny_model() -> LoadedModel:
    """A calibrated LoadedModel for the mechanisms and the release: 32x32, L=2, K=2, width 16."""
    images = tiny_images(64)
    flow = tiny_flow(model_input(images))
    return with_fitted_box(LoadedModel(
        flow, meta={"name": "tiny", "architecture": flow.cfg.to_dict()},
        calibration=encoded_calibration(flow, images, "tiny synthetic"), sha256="0" * 64))


def with_fitted_box(model: LoadedModel,
                    budgets: Sequence[float] = (1.0, 100.0, math.inf)) -> LoadedModel:
    """`model` with a fitted box per budget made from its calibration range, without
    `dpglow fit-box`: the box at the i-th of n budgets is the calibration box shrunk about its
    centre to (i + 1) / n of its width, so every budget's box differs from the others and
    from the published one (alpha 0.4)."""
    cal, levels, n = model.calibration, model.flow.cfg.levels, len(budgets)
    rows = tuple(FittedBox(e_px, (0.01 * (n - 1 - i),) * levels,
                           cal.centre - (i + 1) / n * cal.delta / 2,
                           cal.centre + (i + 1) / n * cal.delta / 2)
                 for i, e_px in enumerate(budgets))
    return dataclasses.replace(model, fitted_box=FittedBoxes(rows, {"fitted_on": "test"}))


def fitted_model(pixels: np.ndarray, name: str,
                 calibrate_on: np.ndarray | None = None) -> LoadedModel:
    """A model fitted to `pixels` by data-dependent actnorm init alone (the first two moments:
    enough for a normal and a mixture model to disagree on an "opacity"), calibrated with
    `dpglow calibrate`'s code on `calibrate_on` if given."""
    u8 = torch.from_numpy(to_uint8(pixels))[:, None]
    flow = tiny_flow(dequantize(u8, torch.Generator().manual_seed(1)))
    model = LoadedModel(flow, {"name": name}, None, name * 4)
    if calibrate_on is not None:
        model.calibration = calibrate(model, [to_uint8(calibrate_on)], "synthetic",
                                      progress=False)
    return model


def saved_model(path: Path, seed: int, calibrated: bool = True,
                resolution: int = TINY_RES, fitted: bool = True) -> Path:
    """A model folder as `dpglow train` + `dpglow calibrate` (+ `dpglow fit-box` if fitted)
    leave it, on synthetic images."""
    images = tiny_images(64, seed, resolution)
    flow = tiny_flow(model_input(images), resolution=resolution, seed=seed)
    meta = {"name": path.name, "data": "synthetic test images"}
    save_model(path, flow, meta)
    if calibrated:  # with fitted boxes, as `dpglow fit-box` leaves it: the default mode
        cal = calibrate(load_model(path), [to_uint8(images)], "synthetic test images",
                        progress=False)
        boxed = with_fitted_box(LoadedModel(flow, meta, cal, "")) if fitted else None
        save_model(path, flow, meta, cal, boxed and boxed.fitted_box)
    return path


def saved_pair(root: Path, fitted: bool = True) -> tuple[Path, Path]:
    """(mixture, normal) model folders under root; the mixture with fitted boxes if fitted."""
    return (saved_model(root / "mixture", seed=1, fitted=fitted),
            saved_model(root / "normal", seed=2, fitted=False))


def model_contents(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    """A model folder's tensors and metadata, as stored."""
    return load_file(str(path / WEIGHTS_NAME)), json.loads((path / META_NAME).read_text())


def rewrite_model(path: Path, tensors: dict[str, np.ndarray], meta: dict, rehash: bool) -> None:
    """Write tensors + metadata back into a model folder, with a valid hash if `rehash` (a
    consistent but wrong file) or the stale one (a tampered file)."""
    if rehash:
        meta = dict(meta, sha256=content_hash(tensors, meta))
    save_file(tensors, str(path / WEIGHTS_NAME))
    (path / META_NAME).write_text(json.dumps(meta))
