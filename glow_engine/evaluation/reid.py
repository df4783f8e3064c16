"""Re-identification attacks: find a privatised image's original in a gallery of originals.

The attacker holds the originals (the worst case LDP must withstand) and ranks them by
similarity to each privatised query. Two attackers:

* ``pixel``: Pearson correlation of 32x32 thumbnails after histogram equalisation. Averaging
  down to 32x32 cancels most independent pixel noise (ID-LDP), equalisation cancels global
  brightness/contrast changes.
* ``latent`` (adaptive, knows the mechanism and has the model): re-encodes the privatised
  image with the same GLOW, clips the latent into DP-GLOW's box and standardises each element
  by the box width, then correlates with the gallery treated the same way. Both DP-GLOW modes
  use noise b_k proportional to w_k, so after dividing by w_k every element carries the same
  noise: plain correlation is then the natural matched filter.

Features are rows of unit length with zero mean, so similarity is one matrix product.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from glow_engine.evaluation.metrics import auc_with_ci

__all__ = ["ReidResult", "latent_features", "pixel_features", "reid_ranks", "same_patient_ranks",
           "summarise", "verification_auc", "verification_pairs"]

THUMBNAIL = 32


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Centre each row and scale it to unit length (constant rows stay zero)."""
    x = x - x.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def pixel_features(pixels: np.ndarray, size: int = THUMBNAIL) -> np.ndarray:
    """(B, R, R) [0, 1] -> (B, size*size): block-mean thumbnail, histogram-equalised."""
    pixels = np.asarray(pixels, np.float64)
    b, r, _ = pixels.shape
    size = min(size, r)
    if r % size:
        raise ValueError(f"thumbnail size {size} must divide the resolution {r}")
    f = r // size
    thumbs = pixels.reshape(b, size, f, size, f).mean(axis=(2, 4)).reshape(b, -1)
    equalised = rankdata(thumbs, axis=1) / thumbs.shape[1]  # empirical CDF = equalisation
    return _unit_rows(equalised)


def latent_features(latents: np.ndarray, centre: np.ndarray, width: np.ndarray) -> np.ndarray:
    """(B, N) flow latents -> clipped into the box c +- w/2, divided by w, unit rows."""
    w = np.where(width > 0, width, 1.0)
    u = np.clip((np.asarray(latents, np.float64) - centre) / w, -0.5, 0.5)
    return _unit_rows(u)


def reid_ranks(queries: np.ndarray, gallery: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Rank (1 = best) of gallery[truth[i]] among all gallery rows for query i.

    Ties count against the attacker (rank = 1 + number of rows at least as similar, other
    than the truth), so a constant query is never "re-identified".
    """
    sim = queries @ gallery.T
    target = sim[np.arange(len(queries)), truth][:, None]
    return (sim >= target).sum(axis=1)  # includes the truth itself


def same_patient_ranks(queries: np.ndarray, gallery: np.ndarray,
                       patient_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For queries whose patient has other gallery images: the rank of the best of those
    among all gallery images except the query's own original. Returns (ranks, others count);
    queries without another image of their patient get rank 0 and count 0."""
    n = len(queries)
    sim = queries @ gallery.T
    pids = np.asarray(patient_ids).astype(str)
    ranks, counts = np.zeros(n, np.int64), np.zeros(n, np.int64)
    for i in range(n):
        others = (pids == pids[i]) & (np.arange(n) != i) & (pids[i] != "")
        if not others.any():
            continue
        row = np.delete(sim[i], i)
        best = sim[i][others].max()
        ranks[i] = 1 + int((row > best).sum())
        counts[i] = int(others.sum())
    return ranks, counts


def _chance_top_k(n_gallery: int, n_targets: int, k: int) -> float:
    """P(at least one of n_targets lands in the top k of a random ordering of n_gallery)."""
    if n_gallery <= 0 or n_targets <= 0:
        return math.nan
    k = min(k, n_gallery)
    return 1.0 - math.comb(n_gallery - n_targets, k) / math.comb(n_gallery, k)


def _mean(values: np.ndarray | list[float]) -> float:
    return float(np.mean(values)) if len(values) else math.nan


@dataclass(frozen=True)
class ReidResult:
    top1: float
    top5: float
    chance_top1: float
    chance_top5: float
    median_rank: float
    same_patient_queries: int
    same_patient_top1: float
    same_patient_top5: float
    same_patient_chance_top1: float
    same_patient_chance_top5: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def summarise(own_ranks: np.ndarray, sp_ranks: np.ndarray, sp_counts: np.ndarray,
              n_gallery: int) -> ReidResult:
    has = sp_counts > 0
    sp = sp_ranks[has]
    chance = [(_chance_top_k(n_gallery - 1, int(c), 1), _chance_top_k(n_gallery - 1, int(c), 5))
              for c in sp_counts[has]]
    return ReidResult(
        top1=_mean(own_ranks <= 1), top5=_mean(own_ranks <= 5),
        chance_top1=_chance_top_k(n_gallery, 1, 1), chance_top5=_chance_top_k(n_gallery, 1, 5),
        median_rank=float(np.median(own_ranks)),
        same_patient_queries=int(has.sum()),
        same_patient_top1=_mean(sp <= 1), same_patient_top5=_mean(sp <= 5),
        same_patient_chance_top1=_mean([c[0] for c in chance]),
        same_patient_chance_top5=_mean([c[1] for c in chance]))


def verification_pairs(patient_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All ordered pairs (i, j), i != j, of images whose patients are known: (i, j, same)."""
    pids = np.asarray(patient_ids).astype(str)
    i, j = np.nonzero(~np.eye(len(pids), dtype=bool))
    known = (pids[i] != "") & (pids[j] != "")
    i, j = i[known], j[known]
    return i, j, (pids[i] == pids[j]).astype(np.int64)


def verification_auc(similarity: np.ndarray, patient_ids: np.ndarray, n_boot: int,
                     seed: int) -> dict:
    """Verification AUC: does similarity[i, j] (query i, privatised; gallery j, original) tell
    same-patient pairs from different-patient pairs? Over every pair of two different images,
    so a query's own original never counts. The interval resamples query patients."""
    i, j, same = verification_pairs(patient_ids)
    pids = np.asarray(patient_ids).astype(str)
    return auc_with_ci(similarity[i, j], same, pids[i], n_boot, seed).to_dict()
