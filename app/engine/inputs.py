"""The current input as every mechanism sees it, and what each mechanism keeps of it.

The expensive, deterministic part of privatising is cached here per input: the overlaid
frame in the model's square, each mechanism built with its options, and each mechanism's
noise-free encoding. Rendering and release both start from these, so a preview and an
export of the same input never encode it twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from app.core.messages import PrivacyParams, Source
from app.core.pane_keys import MECHANISMS
from app.engine.lru import LRU
from glow_engine.imaging.frame import Placement, from_square, to_square
from glow_engine.mechanism_specs import spec_of
from glow_engine.mechanisms import Encoded, Mechanism, create_mechanism
from glow_engine.modelfile import LoadedModel
from glow_engine.overlays import BlockMarker, apply_overlays

# How many of each are kept (least recently used evicted first).
_CACHE_INPUTS = 2  # the current input and the one before (undo a marker)
_CACHE_ENCODINGS = len(MECHANISMS) * _CACHE_INPUTS  # every mechanism's of each
_CACHE_MECHANISMS = 4 * len(MECHANISMS)


@dataclass(frozen=True, eq=False)
class Prepared:
    """One input as every mechanism sees it."""

    key: tuple  # (source key, markers, flip): what the frame depends on
    frame: np.ndarray  # (R, R) overlaid input in the model frame
    placement: Placement
    crop: np.ndarray  # the frame cropped back to the image's aspect (for metrics)
    markers: tuple[BlockMarker, ...]  # fractions of the image: valid on `crop` as well


class Inputs:
    """Frames, mechanisms and encodings, each keyed by what it depends on besides the model
    (a model load clears them)."""

    def __init__(self, model: Callable[[], LoadedModel]) -> None:
        self._model = model
        self._mechanisms: LRU[tuple, Mechanism] = LRU(_CACHE_MECHANISMS)  # mechanism_key
        self._frames: LRU[tuple, Prepared] = LRU(_CACHE_INPUTS)  # Prepared.key
        self._encodings: LRU[tuple, Encoded] = LRU(_CACHE_ENCODINGS)  # input, encoding key

    def clear(self) -> None:
        for cache in (self._mechanisms, self._frames, self._encodings):
            cache.clear()

    def mechanism(self, name: str, p: PrivacyParams) -> Mechanism:
        return self._mechanisms.get(
            mechanism_key(name, p),
            lambda: create_mechanism(name, self._model(), **p.options_of(name)))

    def prepare(self, source: Source, markers: tuple[BlockMarker, ...],
                flip: bool) -> Prepared:
        r = self._model().resolution
        key = (source.key, markers, flip)

        def build() -> Prepared:
            # Overlays go on at full resolution, exactly as the original pane shows them.
            frame, placement = to_square(apply_overlays(source.pixels, markers, flip), r)
            return Prepared(key, frame, placement, from_square(frame, placement), markers)

        return self._frames.get(key, build)

    def encoding(self, prep: Prepared, name: str, p: PrivacyParams) -> Encoded:
        """The noise-free part, once per input and clip box: the box depends on alpha, not
        on the sensitivity mode, so switching paper <-> tight only rescales the noise."""
        return self._encodings.get(
            (prep.key, spec_of(name).encoding_key(p.options_of(name))),
            lambda: self.mechanism(name, p).encode(prep.frame))


def mechanism_key(name: str, p: PrivacyParams) -> tuple:
    """What a mechanism depends on besides the model: the options it is built with."""
    return (name, *sorted(p.options_of(name).items()))
