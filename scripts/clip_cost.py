"""What DP-GLOW's clip alone removes (e_px = inf with clip), level by level.

    python scripts/clip_cost.py MIXTURE DATA.npz [--split val] [--alpha 0.4 ...]

For each alpha: the share of latent coordinates outside the clip box per level (finest
first), PSNR / SSIM of the clip-only reconstruction against the original, and the same when
only one level is clipped (the others kept): which scale the clip's cost comes from. Prints
numbers only (no pixels); docs/evaluation.md quotes them.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from glow_engine.data import load_image_set
from glow_engine.evaluation.metrics import psnr, ssim
from glow_engine.flow.glow import model_to_pixels, pixels_to_model
from glow_engine.mechanisms.dpglow import DPGlow
from glow_engine.modelfile import load_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mixture")
    p.add_argument("data")
    p.add_argument("--split", default="val")
    p.add_argument("--alpha", type=float, action="append")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.mixture)
    flow = model.flow
    data = load_image_set(args.data, model.resolution, split=args.split)
    pixels = torch.from_numpy(data.images.astype(np.float32) / 255)
    with torch.inference_mode():
        z = torch.cat([flow.encode(pixels_to_model(c[:, None])) for c in pixels.split(16)])
    original = data.images.astype(np.float32) / 255
    slices = flow.level_slices()

    def rebuilt(latent: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            parts = [model_to_pixels(flow.decode(c))[:, 0] for c in latent.split(16)]
        return torch.cat(parts).numpy()

    print(f"{len(original)} images of {args.data} split {args.split}, "
          f"{model.resolution}x{model.resolution}, levels finest first")
    for alpha in args.alpha or [0.4]:
        box = DPGlow(model, alpha=alpha)  # the mechanism's own box, c_k +- alpha Delta_k / 2
        width, lo = (torch.from_numpy(v).float() for v in (box.width, box.lo))
        clipped = torch.minimum(torch.maximum(z, lo), lo + width)
        outside = (clipped != z).float().mean(dim=0)
        shares = " ".join(f"{outside[s].mean().item():.1%}" for s in slices)
        full = rebuilt(clipped)
        print(f"alpha {alpha:g}: outside the box per level {shares}; all levels clipped: "
              f"PSNR {np.median(psnr(original, full)):.1f} dB, "
              f"SSIM {np.median(ssim(original, full)):.3f} (medians)")
        for i, s in enumerate(slices):
            one = z.clone()
            one[:, s] = clipped[:, s]
            part = rebuilt(one)
            print(f"  only level {i + 1} clipped: PSNR {np.median(psnr(original, part)):.1f} dB,"
                  f" SSIM {np.median(ssim(original, part)):.3f}")


if __name__ == "__main__":
    main()
