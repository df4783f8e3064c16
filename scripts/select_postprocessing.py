"""Choose DP-GLOW's default on the training split (issue 22): the clip box (published, or
fitted per budget: glow_engine.fitted_box) and the decode (the released latent as published, or
the posterior mean of the original latent given it), against the published default.

Each image is encoded once (the mixture model); per budget one standard-Laplace draw per image
(preview_noise, --seed) is scaled by each variant's own b_k, as the preview does. Measured per
image against the original: PSNR and SSIM of the 8-bit picture, the mixture model's bits/dim
of the picture, whose AUC (normal vs pneumonia) is the anomaly score's, the
out-of-distribution check's flag, the milliseconds the decode's estimate adds, and the share
re-identified (top-1 among the same images' originals) by the pixel and the adaptive latent
attacker (glow_engine.evaluation). Results per (split, budget, variant) are cached under OUT,
so an interrupted run resumes; the table goes to OUT/table.json.

    .venv/bin/python scripts/select_postprocessing.py OUT --images 60            # choose
    .venv/bin/python scripts/select_postprocessing.py OUT --images 60 --cross-fit \
        --variants fitted:plain,fitted:posterior-mean                            # decode
    .venv/bin/python scripts/select_postprocessing.py OUT --split val --images 0  # report once

The shipped fitted boxes were fitted on every training image, so a training image lies inside
its own box, which favours decoding the released latent as it is. --cross-fit refits the boxes
(the same quantile per level and budget) on the training images of every other patient.

The choice is made on the training split (nih_cxr14_subset_256.npz split == "train", balanced
by label); the val split is reported once, for the choice made.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from glow_engine.box_fitting import encode_latents, refit
from glow_engine.data import ImageSet, load_image_set
from glow_engine.evaluation.metrics import auc_with_ci, psnr, ssim
from glow_engine.evaluation.reid import latent_features, pixel_features, reid_ranks
from glow_engine.evaluation.runner import attacker_box
from glow_engine.flow.glow import log_p_8bit, pixels_to_model
from glow_engine.mechanisms import DPGlow, preview_noise
from glow_engine.modelfile import load_model
from glow_engine.ood import check, thumbnails, typicality_features
from glow_engine.resources import default_model_dir

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "nih_cxr14_subset_256.npz"
EXTRA = DATA.with_name("nih_cxr14_extra_256.npz")  # training images too (the models' card)
BUDGETS = "inf,1000,100,10,1,0.1"  # issue 22's budgets
VARIANTS = "paper:plain,paper:posterior-mean,fitted:plain,fitted:posterior-mean"


def images(split: str, n: int | None, seed: int
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The split's images, labels and patient ids; n (balanced by label) or all (n None)."""
    with np.load(DATA) as data:
        rows = np.flatnonzero(data["split"] == split)
        labels = data["labels"][rows]
        if n is not None:
            rng = np.random.default_rng(seed)
            rows = np.concatenate([rng.choice(rows[labels == c], n // 2, replace=False)
                                   for c in (0, 1)])
        return (data["images"][rows].astype(np.float32) / 255, data["labels"][rows],
                data["patient_ids"][rows])


def cross_fitted(model, patients: np.ndarray, batch: int):
    """The model with its fitted boxes refit on the training images of other patients."""
    train = ImageSet.concat([load_image_set(path, model.resolution, "train")
                             for path in (DATA, EXTRA)])
    rest = train.subset(~np.isin(train.patient_ids, patients), " without the chosen patients")
    latents = encode_latents(model, rest.images, batch)
    boxes = refit(model.fitted_box, latents, model.flow.level_slices(), rest.description)
    print(f"boxes refit on {len(rest)} of {len(train)} training images", flush=True)
    return dataclasses.replace(model, fitted_box=boxes)


def scores(model, pixels: np.ndarray, batch: int
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The mixture model's bits/dim (flow.glow.log_p_8bit), out-of-distribution flags and
    latents (what the adaptive attacker matches)."""
    bpd, flagged, latents = [], [], []
    for s in range(0, len(pixels), batch):
        chunk = pixels[s:s + batch]
        x = pixels_to_model(torch.from_numpy(chunk)[:, None])
        z, shares = model.flow.encode_with_level_logp(x)
        shares = shares.double().numpy()
        d = x[0].numel()
        bpd.append(-log_p_8bit(shares.sum(axis=1), d) / (d * math.log(2)))
        verdicts = check(model.calibration.ood, typicality_features(shares, chunk),
                         thumbnails(chunk))
        flagged.append([v.flagged for v in verdicts])
        latents.append(z.numpy())
    return np.concatenate(bpd), np.concatenate(flagged), np.concatenate(latents)


def top1(queries: np.ndarray, gallery: np.ndarray) -> float:
    """Share of privatised images whose own original ranks first in the gallery."""
    return float((reid_ranks(queries, gallery, np.arange(len(queries))) == 1).mean())


def measure(model, mech: DPGlow, enc, e_px: float, noise: torch.Tensor, pixels: np.ndarray,
            galleries: tuple[np.ndarray, np.ndarray], batch: int) -> dict:
    y = mech.perturb_preview(enc, e_px, noise)
    t0 = time.perf_counter()
    z = mech.estimate(y, e_px)
    ms = (time.perf_counter() - t0) * 1000 / len(pixels)
    out = np.concatenate([mech.decode(z[s:s + batch]) for s in range(0, len(z), batch)])
    bpd, flagged, latents = scores(model, out, batch)
    centre, width = attacker_box(mech, e_px, model.calibration, mech.alpha)
    gallery = latent_features(galleries[1], centre, width)
    return {"psnr": psnr(pixels, out), "ssim": ssim(pixels, out), "bpd": bpd, "ood": flagged,
            "ms": ms, "reid_pixel": top1(pixel_features(out), galleries[0]),
            "reid_latent": top1(latent_features(latents, centre, width), gallery)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--model", type=Path, default=default_model_dir("mixture"))
    ap.add_argument("--images", type=int, default=60, help="0: every image of the split")
    ap.add_argument("--split", default="train", choices=("train", "val"))
    ap.add_argument("--variants", default=VARIANTS, help="mode:estimate, comma-separated")
    ap.add_argument("--alpha", type=float, default=0.4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--budgets", default=BUDGETS, help="e_px, comma-separated")
    ap.add_argument("--cross-fit", action="store_true",
                    help="refit the fitted boxes without the chosen images' patients")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    model = load_model(args.model)
    pixels, labels, patients = images(args.split, args.images or None, args.seed)
    if args.cross_fit:
        model = cross_fitted(model, patients, args.batch)
    enc = DPGlow(model, alpha=args.alpha).encode(pixels)
    galleries = (pixel_features(pixels), enc.raw.numpy())
    noise = preview_noise(len(pixels), pixels[0].size, seed=args.seed)
    table = {}
    for e_px in (float(t) for t in args.budgets.split(",")):
        for variant in args.variants.split(","):
            mode, estimate = variant.split(":")
            key = (f"{args.split}-{mode}{'-xfit' if args.cross_fit else ''}-a{args.alpha:g}"
                   f"-e{e_px:g}-{estimate}")
            path = args.out / f"{key}.npz"
            if not path.exists():
                mech = DPGlow(model, alpha=args.alpha, mode=mode, estimate=estimate)
                np.savez(path, **measure(model, mech, enc, e_px, noise, pixels, galleries,
                                         args.batch))
            r = np.load(path)
            a = auc_with_ci(r["bpd"], labels, n_boot=1000)
            table[key] = {"psnr_median": float(np.median(r["psnr"])),
                          "psnr_mean": float(r["psnr"].mean()),
                          "ssim_mean": float(r["ssim"].mean()),
                          "auc": a.auc, "auc_lo": a.lo, "auc_hi": a.hi,
                          "ms_per_image": float(r["ms"]),
                          **{k: float(r[k].mean()) for k in ("ood", "reid_pixel", "reid_latent")}}
            print(key, {k: round(v, 4) for k, v in table[key].items()}, flush=True)
            (args.out / "table.json").write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
