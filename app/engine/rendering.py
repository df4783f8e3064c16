"""Rendering: the previews behind the panes, their anomaly scores, and synthetic samples.

A slider move costs one decode and a cheap noise rescale: the encoding is kept by
``app.engine.inputs``, each mechanism's preview draw and each preview frame here, each keyed
by what it depends on. Previews only ever show noise from these seeded draws; a release
draws fresh noise from the OS CSPRNG (``app.engine.release``).
"""

from __future__ import annotations

import hashlib
import math
import secrets
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from app.core.messages import (
    Kind,
    PaneContent,
    PrivacyParams,
    Rendered,
    RenderRequest,
    SampleRequest,
    ScoreRequest,
    Scores,
    Source,
)
from app.core.pane_keys import MECHANISMS, PaneKey
from app.engine.inputs import Inputs, Prepared, mechanism_key
from app.engine.lru import LRU
from glow_engine.anomaly import AnomalyScorer
from glow_engine.flow.glow import model_to_pixels
from glow_engine.imaging.frame import from_square
from glow_engine.mechanisms import preview_noise
from glow_engine.model_pair import ModelPair
from glow_engine.overlays import contrast_kept, similarity

# How many of each are kept (least recently used evicted first).
_CACHE_NOISE = 2 * len(MECHANISMS)  # each mechanism's current draw and the one before
_CACHE_SCORES = 64
_CACHE_PREVIEWS = 128  # 256 KB each at 256x256 (float32): 32 MB


class Rendering:
    """Previews, preview noise and scores; cleared with the models."""

    def __init__(self, inputs: Inputs, pair: Callable[[], ModelPair],
                 scorer: Callable[[], AnomalyScorer | None]) -> None:
        self._inputs, self._pair, self._scorer = inputs, pair, scorer
        self._noise: LRU[tuple, torch.Tensor] = LRU(_CACHE_NOISE)  # mechanism, draw, size
        self._scores: LRU[str, Any] = LRU(_CACHE_SCORES)  # frame digest -> Score
        # input, mechanism, budget, draw, clip -> preview frame
        self._previews: LRU[tuple, np.ndarray] = LRU(_CACHE_PREVIEWS)
        # One secret stream per mechanism, random per session: no one else can regenerate
        # a preview (the state's noise_seed only numbers the draws within the session), and
        # no pane's noise is another pane's draw read again.
        self._streams = {name: secrets.randbits(62) for name in MECHANISMS}

    def clear(self) -> None:
        for cache in (self._noise, self._scores, self._previews):
            cache.clear()

    @torch.inference_mode()
    def sample(self, request: SampleRequest) -> Source:
        pair = self._pair()
        generator = torch.Generator().manual_seed(request.seed)
        x = pair.mixture.flow.sample(1, temperature=pair.sample_temperature,
                                     generator=generator)
        pixels = model_to_pixels(x)[0, 0].float().cpu().numpy()
        return Source(pixels, "Synthetic sample", request.id,
                      note="drawn from the model: no patient data")

    @torch.inference_mode()
    def render(self, request: RenderRequest) -> Rendered:
        """The main panes (RenderRequest) or the strip (its subclass StripRequest)."""
        p, strip = request.params, request.kind is Kind.STRIP
        prep = self._inputs.prepare(request.source, request.markers, request.flip)
        panes: dict[PaneKey, PaneContent] = {}
        for name in MECHANISMS:
            mech = self._inputs.mechanism(name, p)
            for e_px in request.budgets:
                key = PaneKey(name, e_px if strip else None)
                frame = self._preview(prep, name, e_px, p)
                # a strip pane's group in the window names the mechanism
                title = f"ε/px {e_px:g}" if strip else _title(mech.label, e_px)
                panes[key] = PaneContent(key, title, from_square(frame, prep.placement),
                                         frame, mech.describe(e_px, p.clip), e_px)
        e_px = request.budgets[0]
        return Rendered(
            request.id, request.kind, panes, prep.frame, prep.crop, _metrics(prep, panes),
            {n: self._inputs.mechanism(n, p).noise_scale(e_px) for n in MECHANISMS},
        )

    def _preview(self, prep: Prepared, name: str, e_px: float, p: PrivacyParams) -> np.ndarray:
        """One preview frame. Kept per input, budget and draw: going back to a recent slider
        position (or to a strip budget) costs nothing instead of a full decode."""
        def draw() -> np.ndarray:
            mech = self._inputs.mechanism(name, p)
            frame = mech.preview(self._inputs.encoding(prep, name, p), e_px,
                                 self._unit_noise(name, p.noise_seed), clip=p.clip)
            return np.asarray(frame, dtype=np.float32).reshape(prep.frame.shape)

        key = (prep.key, mechanism_key(name, p), e_px, p.noise_seed, p.clip)
        return self._previews.get(key, draw)

    def _unit_noise(self, name: str, seed: int) -> torch.Tensor:
        """`name`'s preview draw of one image, from its own stream: drawn once, rescaled by
        every slider position."""
        n = self._pair().resolution ** 2
        return self._noise.get((name, seed, n),
                               lambda: preview_noise(1, n, self._streams[name] + seed))

    def score(self, request: ScoreRequest) -> Scores:
        """Scores of every frame; frames scored before (the original, the strip) are reused."""
        scorer = self._scorer()
        if scorer is None:
            return Scores(request.id, {})
        digests = {k: (hashlib.sha1(f.tobytes()).hexdigest(), k in request.colour)
                   for k, f in request.frames.items()}
        known = {k: self._scores[d] for k, d in digests.items() if d in self._scores}
        todo = [k for k in digests if k not in known]
        if todo:  # one batch for all new frames
            fresh = scorer.score(np.stack([request.frames[k] for k in todo]),
                                 np.array([k in request.colour for k in todo]))
            for key, score in zip(todo, fresh, strict=True):
                self._scores.put(digests[key], score)
                known[key] = score
        return Scores(request.id, {k: known[k] for k in digests})


def _title(label: str, e_px: float) -> str:
    """"DP-GLOW (paper, α=0.4)   ε/px = 100": which mechanism and variant, at which budget."""
    budget = "∞" if math.isinf(e_px) else f"{e_px:g}"
    return f"{label}   ε/px = {budget}"


def _metrics(prep: Prepared,
             panes: dict[PaneKey, PaneContent]) -> dict[PaneKey, dict[str, float]]:
    """Re-identification evidence per pane: similarity to the original, marker contrast kept.

    Computed on the cropped model-resolution images, where the markers' fractions still hold.
    """
    out: dict[PaneKey, dict[str, float]] = {}
    for key, pane in panes.items():
        row = {"similarity": similarity(prep.crop, pane.pixels)}
        for i, marker in enumerate(prep.markers):
            row[f"marker{i + 1}"] = contrast_kept(prep.crop, pane.pixels, marker)
        out[key] = row
    return out
