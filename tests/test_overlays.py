"""glow_engine.overlays: block markers, flip, contrast and similarity on synthetic images."""

from __future__ import annotations

import math

import numpy as np
import pytest

from glow_engine.imaging.frame import to_square
from glow_engine.overlays import (
    BlockMarker,
    apply_overlays,
    contrast_kept,
    marker_contrast,
    marker_in_frame,
    marker_mask,
    similarity,
)


def ramp(h: int = 64, w: int = 64) -> np.ndarray:
    """Left-right asymmetric image, so a flip is visible."""
    return np.tile(np.linspace(0.1, 0.6, w, dtype=np.float32), (h, 1))


def test_mask_is_centred_square_scaled_by_long_side() -> None:
    m = BlockMarker(row=0.5, col=0.5, size=0.25)
    mask = marker_mask((64, 64), m)
    rows, cols = np.nonzero(mask)
    assert mask.sum() == 16 * 16
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (24, 39, 24, 39)
    # Same fractions on a 1024 image cover the same anatomy at 16x the side.
    assert marker_mask((1024, 1024), m).sum() == 256 * 256


def test_mask_clipped_at_border() -> None:
    mask = marker_mask((32, 32), BlockMarker(row=0.0, col=1.0, size=0.25))
    assert mask.sum() == 4 * 4 and mask[0, -1] and not mask[-1, 0]


def test_apply_paints_marker_and_leaves_input_alone() -> None:
    img = ramp()
    m = BlockMarker(0.3, 0.7, 0.1, intensity=1.0)
    out = apply_overlays(img, [m])
    assert out.dtype == np.float32
    assert np.all(out[marker_mask(img.shape, m)] == 1.0)
    assert np.array_equal(out[~marker_mask(img.shape, m)], img[~marker_mask(img.shape, m)])
    assert img.max() < 0.7  # input untouched


def test_flip_first_then_markers_in_displayed_coordinates() -> None:
    img = ramp()
    m = BlockMarker(0.5, 0.1, 0.1, intensity=0.0)
    out = apply_overlays(img, [m], flip=True)
    assert out[0, 0] == pytest.approx(img[0, -1])  # mirrored
    assert np.all(out[marker_mask(img.shape, m)] == 0.0)  # marker stays on the left
    assert np.array_equal(apply_overlays(apply_overlays(img, flip=True), flip=True), img)


def test_invalid_marker_rejected() -> None:
    with pytest.raises(ValueError):
        BlockMarker(1.5, 0.5, 0.1)
    with pytest.raises(ValueError):
        BlockMarker(0.5, 0.5, 0.0)
    with pytest.raises(ValueError):
        BlockMarker(0.5, 0.5, 0.1, intensity=2.0)


def test_contrast_of_bright_block_on_flat_background() -> None:
    m = BlockMarker(0.5, 0.5, 0.2, intensity=0.9)
    marked = apply_overlays(np.full((64, 64), 0.2, np.float32), [m])
    assert marker_contrast(marked, m) == pytest.approx(0.7)


def test_contrast_kept_identity_blank_and_half() -> None:
    m = BlockMarker(0.4, 0.6, 0.15)
    marked = apply_overlays(ramp(), [m])
    assert contrast_kept(marked, marked, m) == pytest.approx(1.0)
    assert contrast_kept(marked, np.full_like(marked, 0.3), m) == pytest.approx(0.0)
    halfway = (marked + ramp()) / 2  # marker at half strength
    kept = contrast_kept(marked, halfway, m)
    assert 0.45 < kept < 0.6
    assert math.isnan(contrast_kept(np.full((32, 32), 0.5), np.zeros((32, 32)), m))


def test_similarity() -> None:
    rng = np.random.default_rng(0)
    a = rng.random((32, 32))
    assert similarity(a, a) == pytest.approx(1.0)
    assert similarity(a, 2 * a + 1) == pytest.approx(1.0)
    assert similarity(a, 1 - a) == pytest.approx(-1.0)
    assert abs(similarity(a, rng.random((32, 32)))) < 0.15
    assert similarity(a, np.zeros((32, 32))) == 0.0
    with pytest.raises(ValueError):
        similarity(a, a[:16])


def test_marker_maps_to_model_frame_of_non_square_image() -> None:
    wide = np.zeros((100, 200), np.float32)
    m = BlockMarker(0.25, 0.75, 0.1)
    marked = apply_overlays(wide, [m])
    frame, placement = to_square(marked, 64)
    mf = marker_in_frame(m, placement, 64)
    assert mf.size == m.size
    inside = frame[marker_mask(frame.shape, mf)]
    assert inside.mean() > 0.8  # the painted block lands under the mapped marker
