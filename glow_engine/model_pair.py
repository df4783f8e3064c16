"""A pair of models, loaded once, with everything that depends on exactly these models.

The mixture model M (weights, latent calibration, and the out-of-distribution reference fitted
with it) is what DP-GLOW privatises with; the normal-only model N, where one is loaded, makes
the anomaly scorer with it. Beside them live the figures `dpglow evaluate --write-reference`
measured for a pair: the validation scores and the risk card. The viewer's session, `dpglow
score`, `dpglow privatize` and the release reports all take them from here, under one rule:

    A measured file is looked for beside the mixture model's folder, then beside the shipped
    models, and used only when it records the sha256 content hash of every loaded model its
    figures depend on: the risk card's (re-identification, similarity, the AUC of M's
    bits/dim) on M, the validation scores on M and N. A release that uses no model (ID-LDP or
    DP-Pix at a given resolution) is described by the shipped pair's card.

so a budget panel, an export and a release report never quote figures measured on other
models, and always quote the same ones.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch

from glow_engine.anomaly import AnomalyScorer
from glow_engine.modelfile import LoadedModel, load_model
from glow_engine.resources import default_risk_card_path, default_validation_scores_path
from glow_engine.risk_card import RiskCard, load_risk_card
from glow_engine.validation_scores import ValidationScores, load_validation_scores

__all__ = ["HISTOGRAM_BINS", "SAMPLE_TEMPERATURE", "ModelPair", "find_risk_card",
           "find_validation_scores"]

T = TypeVar("T")

# The viewer's "New sample" draws at this temperature: lower ones give pictures far simpler
# than any chest X-ray, and 1 now and then a broken one (the shipped mixture model's card,
# "Synthetic samples", has the counts).
SAMPLE_TEMPERATURE = 0.9
# Bins of the score histograms over the validation scores' range: about 0.1 bits/dim with
# the shipped models.
HISTOGRAM_BINS = 18


class ModelPair:
    """M (and N where given), the scorer made of both, and their measured figures."""

    def __init__(self, mixture: LoadedModel, normal: LoadedModel | None = None) -> None:
        self.mixture, self.normal = mixture, normal
        # built now, so that models that cannot score together are refused at load
        self.scorer = None if normal is None else AnomalyScorer(normal, mixture)
        self.validation_scores = find_validation_scores(mixture, normal)
        self.risk_card = find_risk_card(mixture)
        self.sample_temperature = SAMPLE_TEMPERATURE
        self.histogram_bins = HISTOGRAM_BINS

    @classmethod
    def load(cls, mixture: str | Path, normal: str | Path | None = None,
             device: str | torch.device = "cpu") -> ModelPair:
        """Load and verify both model files (glow_engine.modelfile)."""
        return cls(load_model(mixture, device),
                   None if normal is None else load_model(normal, device))

    @property
    def resolution(self) -> int:
        return self.mixture.resolution


def find_risk_card(mixture: LoadedModel | None) -> RiskCard | None:
    """The risk card that describes releases with `mixture` (None: a release without a
    model), by the module's rule."""
    return _first_measured(mixture, default_risk_card_path(), lambda path: load_risk_card(
        path, None if mixture is None else mixture.sha256, None))


def find_validation_scores(mixture: LoadedModel,
                           normal: LoadedModel | None) -> ValidationScores | None:
    """The validation scores of exactly this pair (none without a normal model)."""
    if normal is None:
        return None
    return _first_measured(mixture, default_validation_scores_path(), lambda path:
                           load_validation_scores(path, mixture.sha256, normal.sha256))


def _first_measured(mixture: LoadedModel | None, shipped: Path,
                    load: Callable[[Path], T | None]) -> T | None:
    """The first file that `load` accepts (each loader checks the recorded hashes and logs
    why it refuses one): beside the mixture model's folder, then the shipped one."""
    beside = [] if mixture is None or mixture.path is None else \
        [Path(mixture.path).parent / shipped.name]
    for path in dict.fromkeys(p.resolve() for p in (*beside, shipped)):
        found = load(path)
        if found is not None:
            return found
    return None
