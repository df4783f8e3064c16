"""The anomaly score of the paper's Appendix A, and the simpler one the viewer shows.

Two flows of the same architecture: N, trained on normal images only, and M, trained on the
normal + abnormal mixture (the model DP-GLOW privatises with). For an image x,

    log p(normal | x) = log p_N(x) - log p_M(x) + const        (Bayes; "ratio", higher = normal)

We report log-probabilities of the **8-bit image** (the flow's continuous density at the bin
centre times the bin volume 256^-D), so that bits/dim = -log p / (D ln 2) is the familiar
number; the constant cancels in the ratio. Every score is reported both ways:

* ``ScoreKind.RATIO``: the paper's log-ratio (its negative is the abnormality).
* ``ScoreKind.BPD_MIXTURE``: M's bits/dim alone (higher = less typical of the training data).

The kinds and the score values live in ``glow_engine.scores`` (no torch). The viewer shows
``DEFAULT_SCORE_KIND``, M's bits/dim, chosen on the training split, not on the val split the
evaluation reports: it is largely a measure of picture complexity (it tracks PNG's bits per
pixel), but the ratio's lead on the training split is biased (N was fine-tuned on exactly those
normals) and did not carry over to unseen patients. The evidence, with the shipped pair's
numbers, is in docs/evaluation.md ("Decisions") and the mixture model's card; neither score
survives every mechanism, so both are reported everywhere.

Every scored image also goes through the out-of-distribution check (glow_engine.ood:
two-sided, complexity-aware typicality, orientation and polarity, colour), fitted when M was
calibrated; a flagged image (a photo, a gradient, an inverted or turned chest) keeps the
privacy guarantee, but not the utility or the meaning of its score. M files calibrated before
that check existed carry only their training bits/dim percentiles: for them the flag is the
old one-sided rule, bits/dim above the 99.5th percentile, which misses simple pictures.
"""

from __future__ import annotations

import numpy as np
import torch

from glow_engine.bits import bits_per_pixel
from glow_engine.errors import UserError
from glow_engine.flow.glow import log_p_8bit, pixels_to_model
from glow_engine.modelfile import LoadedModel
from glow_engine.ood import check, thumbnails, typicality_features
from glow_engine.scores import Score, ScoreBatch

__all__ = ["AnomalyScorer"]


class AnomalyScorer:
    """Scores [0, 1] images at the models' resolution with a normal (N) and a mixture (M) flow.

    Deterministic: the input is the 8-bit bin centre (pixels_to_model), no dequantisation.
    """

    def __init__(self, normal: LoadedModel, mixture: LoadedModel, batch_size: int = 16) -> None:
        if normal.resolution != mixture.resolution:
            raise UserError(f"the normal model is {normal.resolution}x{normal.resolution} but "
                            f"the mixture model is {mixture.resolution}x{mixture.resolution}")
        cal = mixture.calibration
        if cal is None or "bpd_p995" not in cal.info:
            raise UserError("the mixture model is not calibrated (run `dpglow calibrate`): its "
                            "bits/dim percentile is needed to flag out-of-distribution images")
        self.normal, self.mixture = normal, mixture
        self.ood_reference = cal.ood
        self.ood_threshold = float(cal.info["bpd_p995"])
        self.batch_size = batch_size

    @property
    def resolution(self) -> int:
        return self.mixture.resolution

    def score(self, pixels: np.ndarray, colour: np.ndarray | None = None) -> list[Score]:
        """float (B, R, R) or (R, R) in [0, 1] -> one Score per image. `colour` (B,) says which
        sources had colour (the out-of-distribution check reports it)."""
        return self.evaluate(pixels, colour=colour).scores()

    @torch.inference_mode()
    def evaluate(self, pixels: np.ndarray, keep_latent: bool = False,
                 colour: np.ndarray | None = None) -> ScoreBatch:
        pixels = np.asarray(pixels, dtype=np.float32)
        if pixels.ndim == 2:
            pixels = pixels[None]
        r = self.resolution
        if pixels.shape[1:] != (r, r):
            raise UserError(f"images must be {r}x{r} for these models, got "
                            f"{pixels.shape[1]}x{pixels.shape[2]}")
        lp_n, shares_m, latents = [], [], []
        for start in range(0, len(pixels), self.batch_size):
            chunk = pixels[start:start + self.batch_size]
            lp_n.append(self._log_p(self.normal, chunk)[0])
            shares, z = self._log_p(self.mixture, chunk, keep_latent)
            shares_m.append(shares)
            if keep_latent:
                latents.append(z)
        d = r * r
        shares = np.concatenate(shares_m) if shares_m else np.zeros((0, 1))
        n, m = _concat([s.sum(axis=1) for s in lp_n]), shares.sum(axis=1)
        n, m = log_p_8bit(n, d), log_p_8bit(m, d)
        bpd_n, bpd_m = -bits_per_pixel(n, d), -bits_per_pixel(m, d)
        if self.ood_reference is None:
            return ScoreBatch(n, m, bpd_n, bpd_m, bpd_m > self.ood_threshold, d,
                              _concat(latents) if keep_latent else None)
        verdicts = check(self.ood_reference, typicality_features(shares, pixels),
                         thumbnails(pixels), colour)
        return ScoreBatch(n, m, bpd_n, bpd_m, np.array([v.flagged for v in verdicts]), d,
                          _concat(latents) if keep_latent else None,
                          [v.reasons for v in verdicts])

    @staticmethod
    def _log_p(model: LoadedModel, pixels: np.ndarray,
               keep_latent: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Each level's share of the continuous log-density (B, L nats) and optionally the
        standardised latent."""
        device = next(model.flow.parameters()).device
        x = pixels_to_model(torch.from_numpy(pixels).to(device)[:, None])
        z, shares = model.flow.encode_with_level_logp(x)
        latent = z.float().cpu().numpy() if keep_latent else None
        return shares.double().cpu().numpy(), latent


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0)
