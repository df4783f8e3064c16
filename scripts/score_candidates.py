"""Candidate anomaly scores of a model pair on a split that is *not* the reported one.

    python scripts/score_candidates.py MIXTURE NORMAL DATA.npz [--split train]

Prints, per candidate (M's bits/dim, N's, the paper's ratio, PNG bits per pixel, and the
complexity-corrected bits/dim minus PNG bits per pixel of Serrà et al., ICLR 2020), the AUC
with a 95% patient-bootstrap interval and the correlation with PNG bits per pixel: how much
of the score is picture complexity. The viewer's score is chosen on this evidence and on
behaviour, never on the val split the evaluation reports (docs/evaluation.md, "Decisions").
Both models saw the training split: its likelihoods are optimistic, the ratio's most (N was
fine-tuned on exactly its normals).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from glow_engine.anomaly import AnomalyScorer
from glow_engine.data import load_image_set
from glow_engine.evaluation.metrics import auc_with_ci
from glow_engine.modelfile import load_model
from glow_engine.ood import png_bits_per_pixel


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mixture")
    p.add_argument("normal")
    p.add_argument("data")
    p.add_argument("--split", default="train")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    mixture, normal = load_model(args.mixture), load_model(args.normal)
    data = load_image_set(args.data, mixture.resolution, split=args.split)
    labelled = data.labels >= 0
    pixels = data.images[labelled].astype(np.float32) / 255
    labels, patients = data.labels[labelled], data.patient_ids[labelled]
    scores = AnomalyScorer(normal, mixture).evaluate(pixels)
    png = png_bits_per_pixel(pixels)
    candidates = {
        "bits/dim under M": scores.bpd_mixture, "bits/dim under N": scores.bpd_normal,
        "-(log p_N - log p_M)": -scores.ratio_nats, "PNG bits per pixel": png,
        "M bits/dim - PNG bpp": scores.bpd_mixture - png,
        "N bits/dim - PNG bpp": scores.bpd_normal - png}
    print(f"{args.data} split {args.split}: {len(labels)} images, {int(labels.sum())} "
          f"abnormal, {mixture.resolution}x{mixture.resolution}")
    for name, values in candidates.items():
        a = auc_with_ci(values, labels, patients, 2000, 0)
        print(f"{name:>22}: AUC {a.auc:.3f} [{a.lo:.2f}, {a.hi:.2f}]  "
              f"correlation with PNG bpp {np.corrcoef(values, png)[0, 1]:+.2f}")


if __name__ == "__main__":
    main()
