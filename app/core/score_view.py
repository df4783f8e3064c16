"""What the anomaly-score views (the score table and plot, the captions under the panes) show
for each pane: its score, whether that score is still the one of the image on screen, and
what it is judged against. Qt-free.

The original is judged by the model's own out-of-distribution check (glow_engine.ood). A
privatised image is not an X-ray the model was trained on: it is judged against the
validation X-rays privatised by the same mechanism and variant at the same budget, or at the
nearest measured one (glow_engine.validation_scores), and flagged only when its score lies
outside the range those reached. Without such a reference (other models, an older file) the
model's own check stands.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.core.pane_keys import ORIGINAL, PaneKey
from app.core.state import ViewState
from glow_engine.privacy_statement import scientific
from glow_engine.scores import Score, ScoreKind
from glow_engine.validation_scores import ReferenceMatch

STALE = "updating…"  # the mark of a score whose image has changed since it was scored


def score_text(value: float) -> str:
    """A score written whole: 3 decimals, or a power of ten when it is absurd (a cut
    "9654.7…" must never read as a plausible value)."""
    return f"{value:.3f}" if abs(value) < 1000 else scientific(value)


@dataclass(frozen=True)
class PaneScore:
    key: PaneKey
    score: Score
    stale: bool  # its image changed since it was scored: the new score is on its way
    match: ReferenceMatch | None  # a privatised pane's reference, if one was measured

    @property
    def out_of_distribution(self) -> bool:
        """The flag the views show: atypical for what this pane is."""
        if self.match is None:
            return self.score.out_of_distribution
        return not self.match.reference.typical(self.score.bpd_mixture, ScoreKind.BPD_MIXTURE)


class ScoredFrames:
    """Which image each score was computed for. The state takes a score only while it answers
    the newest score request, made for the panes on screen then; a pane whose image has
    changed since keeps its old score until the new one arrives, and is marked stale."""

    def __init__(self) -> None:
        self._frames: dict[PaneKey, np.ndarray] = {}

    def scored(self, state: ViewState) -> None:
        """The state has just taken new scores: they belong to the frames on screen now."""
        self._frames = current_frames(state)

    def stale(self, state: ViewState, key: PaneKey) -> bool:
        frame = current_frames(state).get(key)
        return frame is not None and frame is not self._frames.get(key)


def current_frames(state: ViewState) -> dict[PaneKey, np.ndarray]:
    """Pane key -> the model-frame image on screen (what a score is computed from)."""
    rendered = state.rendered
    if rendered is None:
        return {}
    frames = {ORIGINAL: rendered.original_frame}
    for result in (rendered, state.strip if state.display.strip else None):
        if result is not None:
            frames.update({k: p.frame for k, p in result.panes.items()})
    return frames


def pane_score(state: ViewState, frames: ScoredFrames, key: PaneKey) -> PaneScore | None:
    score = state.scores.get(key)
    if score is None:
        return None
    return PaneScore(key, score, frames.stale(state, key), reference_match(state, key))


def reference_match(state: ViewState, key: PaneKey) -> ReferenceMatch | None:
    """The privatised validation images a privatised pane is judged against (None for the
    original, or where none were measured for these models)."""
    models = state.models
    reference = models.reference if models is not None else None
    e_px = pane_budget(state, key)
    if key.original or reference is None or e_px is None:
        return None
    name = key.mechanism
    p = state.params
    return reference.privatised_reference(name, p.mode_of(name), p.options_of(name), e_px)


def pane_budget(state: ViewState, key: PaneKey) -> float | None:
    """The per-pixel budget a privatised pane shows (None before it is rendered)."""
    result = state.strip if key.in_strip else state.rendered
    content = None if result is None else result.panes.get(key)
    return None if content is None else content.e_px
