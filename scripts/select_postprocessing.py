"""Choose DP-GLOW's post-processing on the training split (issue 22): the plain decode of the
released latent against estimates of the original latent from it and public facts.

Each training image is encoded once (the mixture model, the clip box of --alpha); per budget
one standard-Laplace draw per image (preview_noise, --seed) is scaled by the mechanism's own
b_k, as the preview does, and every estimator decodes the same noisy latent. Measured per
image against the original: PSNR and SSIM of the 8-bit picture, and the mixture model's
bits/dim of the picture, whose AUC (normal vs pneumonia) is the anomaly score's. Results per
(budget, estimator) are cached under OUT, so an interrupted run resumes.

    .venv/bin/python scripts/select_postprocessing.py OUT [--images 60] [--mode paper]

Training images only (nih_cxr14_subset_256.npz split == "train", balanced by label): the
choice is made here, and the val split is reported once by `dpglow evaluate`.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from glow_engine.evaluation.metrics import auc_with_ci, psnr, ssim
from glow_engine.flow.glow import log_p_8bit, pixels_to_model
from glow_engine.mechanisms import create_mechanism, preview_noise
from glow_engine.mechanisms.posterior import posterior_mean
from glow_engine.modelfile import load_model
from glow_engine.resources import default_model_dir

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "nih_cxr14_subset_256.npz"
BUDGETS = (math.inf, 1000.0, 100.0, 30.0, 10.0, 3.0, 1.0, 0.1)
Estimator = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


ESTIMATORS: dict[str, Estimator] = {
    "plain": lambda y, lo, hi, b: y,
    "posterior-mean": posterior_mean,
}


def training_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    with np.load(DATA) as data:
        train = np.flatnonzero(data["split"] == "train")
        labels = data["labels"][train]
        rng = np.random.default_rng(seed)
        pick = np.concatenate([rng.choice(train[labels == c], n // 2, replace=False)
                               for c in (0, 1)])
        return data["images"][pick].astype(np.float32) / 255, data["labels"][pick]


def bits_per_dim(flow, pixels: np.ndarray, batch: int) -> np.ndarray:
    out = []
    for s in range(0, len(pixels), batch):
        x = pixels_to_model(torch.from_numpy(pixels[s:s + batch])[:, None])
        with torch.inference_mode():
            logp = flow(x).double().numpy()
        d = x[0].numel()
        out.append(-log_p_8bit(logp, d) / (d * math.log(2)))
    return np.concatenate(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--images", type=int, default=60)
    ap.add_argument("--mode", default="paper")
    ap.add_argument("--alpha", type=float, default=0.4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=20)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    model = load_model(default_model_dir("mixture"))
    mech = create_mechanism("dpglow", model, alpha=args.alpha, mode=args.mode)
    pixels, labels = training_images(args.images, args.seed)
    enc = mech.encode(pixels)
    lo, hi, _ = mech._box_tensors()
    noise = preview_noise(len(pixels), pixels[0].size, seed=args.seed)
    table = {}
    for e_px in BUDGETS:
        y = mech.perturb_preview(enc, e_px, noise)
        b = mech.scale_vector(e_px) if math.isfinite(e_px) else torch.zeros_like(lo)
        for name, estimate in ESTIMATORS.items():
            key = f"{args.mode}-a{args.alpha:g}-e{e_px:g}-{name}"
            path = args.out / f"{key}.npz"
            if not path.exists():
                t0 = time.perf_counter()
                z = estimate(y, lo, hi, b)
                ms = (time.perf_counter() - t0) * 1000 / len(pixels)
                out = np.concatenate([mech.decode(z[s:s + args.batch])
                                      for s in range(0, len(z), args.batch)])
                np.savez(path, psnr=psnr(pixels, out), ssim=ssim(pixels, out),
                         bpd=bits_per_dim(model.flow, out, args.batch), ms=ms)
            r = np.load(path)
            a = auc_with_ci(r["bpd"], labels, n_boot=1000)
            table[key] = {"psnr_median": float(np.median(r["psnr"])),
                          "ssim_mean": float(r["ssim"].mean()),
                          "auc": a.auc, "auc_lo": a.lo, "auc_hi": a.hi,
                          "ms_per_image": float(r["ms"])}
            print(key, {k: round(v, 4) for k, v in table[key].items()}, flush=True)
            (args.out / "table.json").write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
