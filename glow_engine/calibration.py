"""Latent calibration (docs/method.md section 2): per-element min/max over the training images.

Streams over the images in batches, so memory does not grow with their number (beyond the
few numbers and the 32x32 thumbnail the out-of-distribution check keeps of each). Also records
the bits/dim distribution of the same images and fits the out-of-distribution check's
reference on them (ood.py).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from tqdm import tqdm

from glow_engine.choices import DEFAULT_ALPHA
from glow_engine.errors import UserError
from glow_engine.flow.glow import bits_per_dim, pixels_to_model
from glow_engine.modelfile import Calibration, LoadedModel
from glow_engine.ood import fit_reference, thumbnails, typicality_features


class CalibrationError(UserError, ValueError):
    """Calibration impossible (no images, or a latent that is not finite)."""


@torch.inference_mode()
def calibrate(model: LoadedModel, image_batches: Iterable[np.ndarray], description: str,
              total: int | None = None, progress: bool = True) -> Calibration:
    """image_batches yields uint8 arrays (B, R, R) at the model resolution."""
    flow = model.flow
    device = next(flow.parameters()).device
    lo = hi = None
    bpd: list[np.ndarray] = []
    features: list[np.ndarray] = []
    thumbs: list[np.ndarray] = []
    n = 0
    bar = tqdm(total=total, desc="calibrating", unit="img", disable=not progress)
    for u8 in image_batches:
        pixels = torch.from_numpy(np.asarray(u8)).to(device).float()[:, None] / 255
        z, level_logp = flow.encode_with_level_logp(pixels_to_model(pixels))
        logp, z = level_logp.sum(dim=1), z.double()
        if not torch.isfinite(z).all():
            raise CalibrationError("the model produced a non-finite latent on a training "
                                   "image")
        lo = z.min(0).values if lo is None else torch.minimum(lo, z.min(0).values)
        hi = z.max(0).values if hi is None else torch.maximum(hi, z.max(0).values)
        bpd.append(bits_per_dim(logp, flow.num_pixels).cpu().numpy())
        plain = pixels[:, 0].cpu().numpy()
        features.append(typicality_features(level_logp.double().cpu().numpy(), plain))
        thumbs.append(thumbnails(plain).astype(np.float32))
        n += len(u8)
        bar.update(len(u8))
    bar.close()
    if n == 0:
        raise CalibrationError("no calibration images")
    all_bpd = np.concatenate(bpd)
    lo_np, hi_np = lo.cpu().numpy(), hi.cpu().numpy()
    if reason := Calibration(lo_np, hi_np).degenerate():
        raise CalibrationError(f"the calibration images give a degenerate range: {reason}")
    info = {
        "images": n, "data": description, "default_alpha": DEFAULT_ALPHA,
        "bpd_mean": float(all_bpd.mean()), "bpd_p50": float(np.percentile(all_bpd, 50)),
        "bpd_p995": float(np.percentile(all_bpd, 99.5)), "bpd_max": float(all_bpd.max()),
        "delta_mean": float((hi_np - lo_np).mean()), "delta_min": float((hi_np - lo_np).min()),
        "delta_max": float((hi_np - lo_np).max()),
    }
    try:
        ood = fit_reference(np.concatenate(features), np.concatenate(thumbs))
    except ValueError as e:
        raise CalibrationError(str(e)) from None
    info["ood_limit"] = ood.limit
    return Calibration(lo_np, hi_np, info, ood)
