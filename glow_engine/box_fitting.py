"""Fit DP-GLOW's clip boxes (fitted_box.py) on training images: `dpglow fit-box`.

1. Encode every training image and take, per latent element, the quantiles Q_p and Q_1-p of
   the standardised latents for each candidate p (p = 0 is the min-max range, the published
   box at alpha = 1).
2. Hold out a few training images (all images of a few patients, never in step 1's fit) and,
   per budget, choose the quantile per level that minimises the mean squared pixel error of
   the decoded privatised image: first one p for every level, then each level in turn
   (coarsest first) with the others fixed. The noise is the preview's (one standard-Laplace
   draw per held-out image, scaled per budget); the decode is the estimate chosen for the
   release (mechanisms/dpglow.py), so the box suits what the user sees.
3. Refit the chosen quantiles on every training image.

Only training images are used, so the validation split stays unseen by the choice.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import torch
from tqdm import tqdm

from glow_engine.budget import format_number
from glow_engine.data import ImageSet
from glow_engine.errors import UserError
from glow_engine.fitted_box import FittedBox, FittedBoxes
from glow_engine.mechanisms.base import Encoded
from glow_engine.mechanisms.dpglow import DPGlow
from glow_engine.mechanisms.noise import preview_noise
from glow_engine.modelfile import LoadedModel

__all__ = ["QUANTILES", "fit_boxes", "refit"]

QUANTILES = (0.0, 0.001, 0.005, 0.02, 0.05, 0.1, 0.2, 0.3)


@torch.inference_mode()
def encode_latents(model: LoadedModel, images: np.ndarray, batch_size: int = 32,
                   progress: bool = True) -> np.ndarray:
    """uint8 (n, R, R) -> standardised latents, float32 (n, N)."""
    mech = DPGlow(model, mode="paper")  # any box: the raw latents are what is kept
    out = [mech.encode(images[i:i + batch_size].astype(np.float32) / 255).raw.cpu().numpy()
           for i in tqdm(range(0, len(images), batch_size), desc="encoding", unit="batch",
                         disable=not progress)]
    return np.concatenate(out)


def quantile_boxes(latents: np.ndarray, quantiles: Sequence[float]
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Per candidate p, the per-element [Q_p, Q_1-p]: (P, N) lower and upper."""
    q = np.asarray(quantiles, dtype=np.float64)
    both = np.quantile(latents, np.concatenate([q, 1 - q]), axis=0)
    return both[:len(q)], both[len(q):]


def held_out(patient_ids: np.ndarray, n: int, seed: int) -> np.ndarray:
    """A boolean mask of about n images: every image of randomly drawn patients."""
    if (np.asarray(patient_ids) == "").any():
        raise UserError("the training images need patient IDs (the images the boxes are "
                        "chosen on must be whole patients, never in the fit)")
    patients = np.unique(patient_ids)
    order = np.random.default_rng(seed).permutation(patients)
    mask = np.zeros(len(patient_ids), dtype=bool)
    for patient in order:
        if mask.sum() >= n:
            break
        mask |= patient_ids == patient
    if mask.all():
        raise UserError(f"too few training patients to hold {n} images out for the choice")
    return mask


def assemble(e_px: float, choice: Sequence[int], lower: np.ndarray, upper: np.ndarray,
             quantiles: Sequence[float], slices: Sequence[slice]) -> FittedBox:
    """The box taking level l's elements from candidate choice[l]."""
    lo, hi = np.empty(lower.shape[1]), np.empty(lower.shape[1])
    for part, i in zip(slices, choice, strict=True):
        lo[part], hi[part] = lower[i, part], upper[i, part]
    return FittedBox(e_px, tuple(quantiles[i] for i in choice), lo, hi)


class _Chooser:
    """Scores a candidate box (one quantile index per level) at a budget on held-out images."""

    def __init__(self, model: LoadedModel, latents: np.ndarray, pixels: np.ndarray,
                 lower: np.ndarray, upper: np.ndarray, quantiles: Sequence[float],
                 estimate: str, seed: int) -> None:
        self.model, self.pixels, self.estimate = model, pixels, estimate
        self.lower, self.upper, self.quantiles = lower, upper, tuple(quantiles)
        raw = torch.from_numpy(latents)
        self.encoded = Encoded(raw, raw, 0, True)  # the box is applied per candidate
        self.noise = preview_noise(len(latents), latents.shape[1], seed)
        self.slices = model.flow.level_slices()

    def error(self, e_px: float, choice: Sequence[int]) -> float:
        box = assemble(e_px, choice, self.lower, self.upper, self.quantiles, self.slices)
        boxes = FittedBoxes((box,))
        mech = DPGlow(dataclasses.replace(self.model, fitted_box=boxes), mode="fitted",
                      estimate=self.estimate)
        picture = mech.preview(self.encoded, e_px, self.noise)
        return float(np.mean((picture - self.pixels) ** 2))


def _choose(chooser: _Chooser, e_px: float, levels: int, bar: tqdm) -> tuple[list[int], float]:
    """One quantile for every level, then each level in turn, coarsest first."""
    def error(choice: list[int]) -> float:
        bar.update(1)
        return chooser.error(e_px, choice)

    candidates = range(len(chooser.quantiles))
    errors = {i: error([i] * levels) for i in candidates}
    best = min(errors, key=errors.__getitem__)
    choice, best_error = [best] * levels, errors[best]
    for level in reversed(range(levels)):
        for i in candidates:
            if i == choice[level]:
                continue
            trial = [*choice[:level], i, *choice[level + 1:]]
            if (e := error(trial)) < best_error:
                choice, best_error = trial, e
    return choice, best_error


def fit_boxes(model: LoadedModel, data: ImageSet, budgets: Sequence[float], *,
              estimate: str = "posterior-mean", held_out_images: int = 32, seed: int = 0,
              quantiles: Sequence[float] = QUANTILES, batch_size: int = 32,
              progress: bool = True) -> tuple[FittedBoxes, list[dict]]:
    """The boxes, and per budget what was chosen and the held-out images' mean squared pixel
    error with it and with the published box (paper mode, alpha 0.4)."""
    if model.calibration is None:
        raise UserError("this model has no latent calibration; run `dpglow calibrate` first")
    latents = encode_latents(model, data.images, batch_size, progress)
    out = held_out(data.patient_ids, held_out_images, seed)
    lower, upper = quantile_boxes(latents[~out], quantiles)
    chooser = _Chooser(model, latents[out], data.images[out].astype(np.float32) / 255, lower,
                       upper, quantiles, estimate, seed)
    levels = len(chooser.slices)
    steps = len(budgets) * (len(quantiles) + levels * (len(quantiles) - 1))
    bar = tqdm(total=steps, desc="choosing boxes", unit="box", disable=not progress)
    chosen, report = [], []
    for e_px in sorted(budgets):
        choice, error = _choose(chooser, e_px, levels, bar)
        chosen.append((e_px, choice))
        report.append({"e_px": format_number(e_px),
                       "quantiles": [quantiles[i] for i in choice], "mse": error,
                       "mse_published": _published_error(chooser, e_px)})
    bar.close()
    lower, upper = quantile_boxes(latents, quantiles)  # refit on every training image
    info = {"fitted_on": data.description, "images": len(data),
            "held_out_images": int(out.sum()), "estimate": estimate, "seed": seed,
            "candidates": list(quantiles),
            "objective": "mean squared pixel error of the decoded preview on held-out "
                         "training images"}
    rows = tuple(assemble(e, c, lower, upper, quantiles, chooser.slices) for e, c in chosen)
    if any((row.width <= 0).any() for row in rows):
        raise UserError("some latent elements are constant over the training images: no box "
                        "can be fitted; check the model's calibration images")
    return FittedBoxes(rows, info), report


def refit(boxes: FittedBoxes, latents: np.ndarray, slices: Sequence[slice],
          fitted_on: str) -> FittedBoxes:
    """The same quantile per level and budget, taken from other latents: a box fitted without
    the images it is judged on (the decode's choice on training images, which the shipped
    boxes were fitted on, would otherwise judge them inside their own box)."""
    quantiles = sorted({p for row in boxes.rows for p in row.quantiles})
    lower, upper = quantile_boxes(latents, quantiles)
    rows = tuple(assemble(row.e_px, [quantiles.index(p) for p in row.quantiles], lower, upper,
                          quantiles, slices) for row in boxes.rows)
    return FittedBoxes(rows, {**boxes.info, "fitted_on": fitted_on, "images": len(latents)})


def _published_error(chooser: _Chooser, e_px: float) -> float:
    """The same held-out error with the published box (paper mode, alpha 0.4, plain)."""
    mech = DPGlow(chooser.model, mode="paper", estimate="plain")
    picture = mech.preview(chooser.encoded, e_px, chooser.noise)
    return float(np.mean((picture - chooser.pixels) ** 2))


def describe(report: list[dict]) -> str:
    lines = ["e_px     quantiles per level (finest first)   PSNR fitted   PSNR published"]
    for row in report:
        q = "/".join(f"{p:g}" for p in row["quantiles"])
        lines.append(f"{row['e_px']:<8} {q:<36} {_psnr(row['mse']):>8.2f} dB "
                     f"{_psnr(row['mse_published']):>10.2f} dB")
    return "\n".join(lines)


def _psnr(mse: float) -> float:
    return math.inf if mse <= 0 else 10 * math.log10(1 / mse)
