"""Utility metrics: ROC AUC with a bootstrap interval, SSIM and PSNR. NumPy/SciPy only."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.stats import rankdata

__all__ = ["AucResult", "auc", "auc_with_ci", "psnr", "ssim"]

_CHUNK_CELLS = 4_000_000  # bootstrap weights evaluated at once (32 MB of float64 per array)


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve, label 1 = positive (higher score = more positive).

    Mann-Whitney form with mid-ranks, so ties count one half. NaN without both classes.
    """
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels)
    pos = labels == 1
    n_pos, n_neg = int(pos.sum()), int((labels == 0).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    keep = (labels == 0) | pos
    ranks = rankdata(scores[keep])
    return float((ranks[pos[keep]].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _weighted_aucs(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUC of the scores with each row of (S, n) weights as every element's multiplicity (a
    bootstrap resample), ties counting one half; NaN for rows without both classes.

    Sorted once: per row, every tie group's positives beat the negative weight below it.
    """
    order = np.argsort(scores, kind="stable")
    _, starts = np.unique(scores[order], return_index=True)
    pos = np.add.reduceat(weights[:, order] * labels[order], starts, axis=1)
    neg = np.add.reduceat(weights[:, order] * (1 - labels[order]), starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    u = (pos * (below + neg / 2)).sum(1)
    n_pos, n_neg = pos.sum(1), neg.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan)


@dataclass(frozen=True)
class AucResult:
    auc: float
    lo: float  # 95% bootstrap percentile interval
    hi: float
    n_pos: int
    n_neg: int

    def to_dict(self) -> dict:
        return {"auc": self.auc, "ci95": [self.lo, self.hi], "n_pos": self.n_pos,
                "n_neg": self.n_neg}


def auc_with_ci(scores: np.ndarray, labels: np.ndarray, groups: np.ndarray | None = None,
                n_boot: int = 2000, seed: int = 0) -> AucResult:
    """AUC and its 95% percentile bootstrap interval.

    With `groups` (patient IDs) whole patients are resampled (as many patients as there are,
    with replacement): images of one patient are not independent, and resampling them singly
    would make the interval too narrow. Images with a label other than 0/1 (unknown) are
    ignored. Resamples that miss a class are dropped.
    """
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels)
    keep = (labels == 0) | (labels == 1)
    scores, labels = scores[keep], labels[keep].astype(np.float64)
    point = auc(scores, labels)
    n_pos, n_neg = int(labels.sum()), int((labels == 0).sum())
    if math.isnan(point) or n_boot <= 0:
        return AucResult(point, math.nan, math.nan, n_pos, n_neg)
    members = np.unique(np.arange(len(scores)) if groups is None else np.asarray(groups)[keep],
                        return_inverse=True)[1]
    boot = np.concatenate([_weighted_aucs(scores, labels, counts[:, members])
                           for counts in _cluster_counts(members.max() + 1, len(scores), n_boot,
                                                         seed)])
    boot = boot[np.isfinite(boot)]
    lo, hi = np.percentile(boot, [2.5, 97.5]) if boot.size else (math.nan, math.nan)
    return AucResult(point, float(lo), float(hi), n_pos, n_neg)


def _cluster_counts(k: int, n: int, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """How often each of k clusters is drawn in each of n_boot resamples of k clusters with
    replacement: (rows, k) counts, in chunks that keep every (rows, n) weight array of n scores
    small (a verification AUC has one score per image pair: 13,000 of them for 117 images)."""
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK_CELLS // max(n, 1))
    for start in range(0, n_boot, rows):
        yield rng.multinomial(k, np.full(k, 1 / k), size=min(rows, n_boot - start))


def _as_batch(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x[None] if x.ndim == 2 else x


def psnr(reference: np.ndarray, test: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """Peak signal-to-noise ratio in dB per image of (B, H, W) or (H, W) (inf if identical)."""
    ref, tst = _as_batch(reference), _as_batch(test)
    mse = ((ref - tst) ** 2).mean(axis=(1, 2))
    with np.errstate(divide="ignore"):
        return 10 * np.log10(data_range**2 / mse)


def ssim(reference: np.ndarray, test: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """Mean SSIM per image (Wang et al. 2004: Gaussian window sigma 1.5, 11 taps, K1 0.01,
    K2 0.03), of (B, H, W) or (H, W) arrays."""
    x, y = _as_batch(reference), _as_batch(test)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2

    def blur(a: np.ndarray) -> np.ndarray:
        return gaussian_filter(a, sigma=1.5, truncate=3.5, axes=(1, 2))  # radius 5 -> 11 taps

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s.mean(axis=(1, 2))
