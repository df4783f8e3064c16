"""What an anomaly score is: its two kinds and the values the scorer returns (numbers only).

Kept apart from ``glow_engine.anomaly`` (the scorer, which needs torch and the models) so that
the viewer's panes and plots, the reference distributions and the reports can show scores
without importing torch. The kinds and the viewer's choice between them are explained in
``glow_engine.anomaly``.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass

import numpy as np

from glow_engine.bits import bits_per_pixel
from glow_engine.ood import OODReason

__all__ = ["DEFAULT_SCORE_KIND", "Score", "ScoreBatch", "ScoreKind"]


class ScoreKind(enum.StrEnum):
    RATIO = "ratio"  # log p_N - log p_M (paper, Appendix A)
    BPD_MIXTURE = "bpd_mixture"  # bits/dim under M alone

    @property
    def label(self) -> str:
        return {ScoreKind.RATIO: "log p_N - log p_M",
                ScoreKind.BPD_MIXTURE: "bits/dim under M"}[self]


DEFAULT_SCORE_KIND = ScoreKind.BPD_MIXTURE


@dataclass(frozen=True)
class Score:
    """One image's scores. log-probabilities in nats of the 8-bit image."""

    log_p_normal: float
    log_p_mixture: float
    ratio_nats: float  # log p_N - log p_M; higher = more normal
    ratio_bits_per_pixel: float
    bpd_normal: float
    bpd_mixture: float
    out_of_distribution: bool
    ood_reasons: tuple[OODReason, ...] = ()  # why it is flagged (ood.py); () when it is not

    @property
    def ood_description(self) -> str:
        """What the out-of-distribution check found, in words."""
        if self.ood_reasons:
            return "; ".join(r.label for r in self.ood_reasons)
        return "outside the model's distribution" if self.out_of_distribution else ""

    @property
    def ood_summary(self) -> str:
        """ood_description in a few words, without the guesses at what an input might be."""
        if self.ood_reasons:
            return "; ".join(r.short for r in self.ood_reasons)
        return self.ood_description

    def abnormality(self, kind: ScoreKind = DEFAULT_SCORE_KIND) -> float:
        """Higher = more abnormal, whichever score is chosen (the AUC's orientation)."""
        return -self.ratio_nats if kind is ScoreKind.RATIO else self.bpd_mixture

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ScoreBatch:
    """Scores of many images as arrays (what the evaluation needs), plus M's latents."""

    log_p_normal: np.ndarray
    log_p_mixture: np.ndarray
    bpd_normal: np.ndarray
    bpd_mixture: np.ndarray
    out_of_distribution: np.ndarray
    num_pixels: int
    latent_mixture: np.ndarray | None = None  # (B, R*R) float32 when asked for
    ood_reasons: list[tuple[OODReason, ...]] | None = None  # per image, when checked (ood.py)

    @property
    def ratio_nats(self) -> np.ndarray:
        return self.log_p_normal - self.log_p_mixture

    def abnormality(self, kind: ScoreKind) -> np.ndarray:
        return -self.ratio_nats if kind is ScoreKind.RATIO else self.bpd_mixture

    def scores(self) -> list[Score]:
        d = self.num_pixels
        reasons = self.ood_reasons or [()] * len(self.log_p_normal)
        return [Score(float(n), float(m), float(n - m), float(bits_per_pixel(n - m, d)),
                      float(bn), float(bm), bool(ood), why)
                for n, m, bn, bm, ood, why in zip(self.log_p_normal, self.log_p_mixture,
                                                  self.bpd_normal, self.bpd_mixture,
                                                  self.out_of_distribution, reasons,
                                                  strict=True)]
