"""Why bits/dim inverts under ID-LDP: the bits/dim that pixel noise adds, against the original's.

    python scripts/noise_vs_complexity.py MIXTURE NORMAL DATA.npz [--split val] [--epx 1000,100,10]

Adds ID-LDP's preview noise (seed 0, as the evaluation's previews) at each budget and prints,
per budget, the AUC of M's bits/dim on the originals and on the noisy images, the correlation
between an original's bits/dim and what the noise adds, and the mean of both for the normal
and the abnormal images. A negative correlation means simple pictures lose more to the same
noise; when the normal images are the simpler ones, that can flip the score's order.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from glow_engine.anomaly import AnomalyScorer
from glow_engine.data import load_image_set
from glow_engine.evaluation.metrics import auc
from glow_engine.mechanisms.idldp import IDLDP
from glow_engine.mechanisms.noise import preview_noise
from glow_engine.modelfile import load_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mixture")
    p.add_argument("normal")
    p.add_argument("data")
    p.add_argument("--split", default="val")
    p.add_argument("--epx", default="1000,100,10")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    mixture, normal = load_model(args.mixture), load_model(args.normal)
    scorer = AnomalyScorer(normal, mixture)
    data = load_image_set(args.data, mixture.resolution, split=args.split)
    labelled = data.labels >= 0
    pixels = data.images[labelled].astype(np.float32) / 255
    labels = data.labels[labelled]
    original = scorer.evaluate(pixels).bpd_mixture
    mech = IDLDP(mixture.resolution)
    encoded = mech.encode(pixels)
    unit = preview_noise(len(pixels), mixture.resolution**2, 0)
    normal_, abnormal = labels == 0, labels == 1
    print(f"{args.data} split {args.split}: {len(labels)} images ({int(abnormal.sum())} "
          f"abnormal); M's bits/dim on the originals: AUC {auc(original, labels):.3f}, mean "
          f"{original[normal_].mean():.3f} normal / {original[abnormal].mean():.3f} abnormal")
    for e_px in (float(v) for v in args.epx.split(",")):
        noisy = scorer.evaluate(mech.preview(encoded, e_px, unit).astype(np.float32)).bpd_mixture
        added = noisy - original
        print(f"e_px {e_px:g}: AUC {auc(noisy, labels):.3f}; correlation(original, added) "
              f"{np.corrcoef(original, added)[0, 1]:+.2f}; added on average "
              f"{added[normal_].mean():.3f} normal / {added[abnormal].mean():.3f} abnormal")


if __name__ == "__main__":
    main()
