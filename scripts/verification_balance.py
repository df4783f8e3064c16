"""How much one patient weighs in the verification AUC: the pixel attacker on the originals.

    python scripts/verification_balance.py DATA.npz [--split val]

A verification AUC's positives are the ordered same-patient pairs of a split; a patient with n
images contributes n(n - 1) of them. Prints how the positives spread over patients, and the
pixel-correlation attacker's verification AUC on the originals three ways: over every pair (as
the evaluation reports it), without the patient with the most images, and with each query
patient's same-patient pairs weighted equally.
"""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np

from glow_engine.data import load_image_set
from glow_engine.evaluation.metrics import auc
from glow_engine.evaluation.reid import pixel_features, verification_pairs


def weighted_auc(scores: np.ndarray, same: np.ndarray, weights: np.ndarray) -> float:
    """Mann-Whitney AUC with a weight per positive (negatives count once), ties one half."""
    pos, neg = scores[same == 1], np.sort(scores[same == 0])
    below = np.searchsorted(neg, pos, side="left")
    ties = np.searchsorted(neg, pos, side="right") - below
    w = weights[same == 1]
    return float((w * (below + ties / 2)).sum() / (w.sum() * len(neg)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data")
    p.add_argument("--split", default="val")
    p.add_argument("--resolution", type=int, default=256)
    args = p.parse_args()
    data = load_image_set(args.data, args.resolution, split=args.split)
    patients = np.asarray(data.patient_ids).astype(str)
    features = pixel_features(data.images.astype(np.float32) / 255)
    i, j, same = verification_pairs(patients)
    scores = (features @ features.T)[i, j]
    positives = Counter(patients[i][same == 1].tolist())
    top, top_pairs = positives.most_common(1)[0]
    print(f"{args.data} split {args.split}: {len(patients)} images, {len(set(patients))} "
          f"patients; {int(same.sum())} same-patient pairs from {len(positives)} patients, "
          f"{top_pairs} of them from one patient")
    without = (patients[i] != top) & (patients[j] != top)
    balanced = np.array([1 / positives.get(q, 1) for q in patients[i]])
    print(f"pixel attacker on the originals: every pair {auc(scores, same):.3f}; without that "
          f"patient {auc(scores[without], same[without]):.3f}; query patients weighted equally "
          f"{weighted_auc(scores, same, balanced):.3f}")


if __name__ == "__main__":
    main()
