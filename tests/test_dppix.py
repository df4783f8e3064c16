"""DP-Pix (Fan 2018) behind the Mechanism interface: pixelisation, calibration on the e_px axis,
the exact privacy loss of its release path, and the m-neighbourhood comparison setting."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from helpers import tiny_images, to_uint8
from PIL import Image
from scipy import stats
from test_mechanisms import output_log_pmf

from glow_engine import cli
from glow_engine.errors import UserError
from glow_engine.evaluation.settings import (
    DEFAULT_MECHANISMS,
    MECHANISMS,
    build_mechanism,
    encode_group,
)
from glow_engine.mechanisms import BudgetError, DPPix, create_mechanism, preview_noise
from glow_engine.mechanisms.box import GRID_BITS, release_scale, to_grid
from glow_engine.mechanisms.noise import rational_scale
from glow_engine.release.ledger import Ledger

R, B = 32, 8
BLOCKS = (R // B) ** 2


def block_means(images: np.ndarray, b: int = B) -> np.ndarray:
    n, r, _ = images.shape
    return images.reshape(n, r // b, b, r // b, b).mean(axis=(2, 4)).reshape(n, -1)


def test_pixelises_into_blocks_and_registers() -> None:
    images = tiny_images(3, seed=1)
    mech = create_mechanism("dppix", None, resolution=R, block=B)
    assert isinstance(mech, DPPix) and mech.mode == "b8" and mech.model_sha256 == ""
    enc = mech.encode(images)
    assert enc.clipped.shape == (3, BLOCKS)
    np.testing.assert_allclose(enc.clipped.numpy(), block_means(images), atol=1e-6)
    out = mech.release(enc, math.inf)  # no noise: the pixelised image, 8-bit
    expected = np.round(np.kron(block_means(images).reshape(3, 4, 4), np.ones((B, B))) * 255)
    np.testing.assert_allclose(out * 255, expected, atol=1e-3)
    noisy = mech.release(enc, 1.0)
    assert noisy.shape == (3, R, R) and noisy.min() >= 0 and noisy.max() <= 1
    tiles = noisy.reshape(3, 4, B, 4, B)
    assert np.all(tiles == tiles[:, :, :1, :, :1])  # constant within every block
    assert mech.describe(10) == "DP-Pix block 8 e_px=10 (total epsilon 10240)"
    with pytest.raises(UserError, match="divide"):
        DPPix(R, block=5)
    with pytest.raises(UserError):
        DPPix(R, m=0)


def test_calibration_is_sensitivity_over_block_epsilon() -> None:
    """Per block: sensitivity 1 (the full range, any two images), budget e_px * b^2, so the
    scale is 1 / (b^2 e_px); over the (R/b)^2 blocks that is e_px * R^2 = total_epsilon."""
    mech = DPPix(R, B)
    for e_px in (0.1, 1.0, 37.0):
        per_block = e_px * B * B
        assert mech.noise_scale(e_px) == pytest.approx(1 / per_block, rel=1e-12)
        assert per_block * BLOCKS == pytest.approx(e_px * R * R)
        # release: grid sensitivity 2^g steps, scale 2^g / (b^2 e_px) steps, rounded up
        t, s = release_scale(e_px, mech.ratio)
        assert (t, s) == rational_scale(mech.ratio * (1 << GRID_BITS) / Fraction(e_px))
        assert t / s >= (1 << GRID_BITS) / per_block
        assert t / s <= (1 << GRID_BITS) / per_block * (1 + 2**-23)
    assert mech.noise_scale(math.inf) == 0


@pytest.mark.parametrize("e_px", [0.01, 0.2])
def test_exact_privacy_loss_black_vs_white(e_px: float) -> None:
    """The extreme pair (all black, all white) moves every block mean by the full range. The
    worst joint privacy loss of the released grid integers is the sum over blocks of the
    per-block maximum over its whole output grid; it must equal, not exceed, e_px * R * R."""
    mech = DPPix(R, B)
    pair = np.stack([np.zeros((R, R), np.float32), np.ones((R, R), np.float32)])
    k = to_grid(mech.encode(pair).clipped.double().numpy(), mech.lo, mech.width)
    assert np.array_equal(k[0], np.zeros(BLOCKS)) and np.array_equal(k[1],
                                                                      np.full(BLOCKS, 1 << 20))
    t, s = release_scale(e_px, mech.ratio)
    pa = output_log_pmf(k[0, :1], t, s, 1 << GRID_BITS)  # every block alike: enumerate one
    pb = output_log_pmf(k[1, :1], t, s, 1 << GRID_BITS)
    assert np.exp(pa).sum() == pytest.approx(1)
    per_block = float(np.abs(pa - pb).max())
    assert per_block <= e_px * B * B * (1 + 1e-9)
    assert per_block >= e_px * B * B * (1 - 1e-6)  # attained: the calibration is tight
    total = BLOCKS * per_block
    assert total == pytest.approx(e_px * R * R, rel=1e-6) and total <= e_px * R * R * (1 + 1e-9)


def test_preview_and_release_noise_are_laplace_of_that_scale() -> None:
    mech = DPPix(R, 2)  # 256 blocks per image
    grey = np.full((8, R, R), 0.5, np.float32)
    enc = mech.encode(grey)
    e_px = 5.0  # scale 1 / (4 * 5) = 0.05: the clip at 0.5 away is 10 scales out
    scale = 1 / (4 * e_px)
    noisy = mech.perturb_preview(enc, e_px, preview_noise(8, R * R, seed=3)).double().numpy()
    released = mech.perturb_release(enc, e_px).double().numpy()
    for z in (noisy, released):
        assert z.shape == (8, 256)
        assert stats.kstest(((z - 0.5) / scale).ravel(), "laplace").pvalue > 1e-4
    # the preview is seedable, the release is not
    again = mech.perturb_preview(enc, e_px, preview_noise(8, R * R, seed=3)).double().numpy()
    assert np.array_equal(noisy, again)
    assert not np.array_equal(released, mech.perturb_release(enc, e_px).double().numpy())


def test_m_neighbourhood_is_a_labelled_comparison_that_is_never_released() -> None:
    """Fan's m-neighbourhood: sensitivity 255 m / b^2 per block in 8-bit units for the whole
    image's epsilon (here e_px * R^2); R^2 / m times less noise than local DP at equal epsilon.
    PriCheXy-Net's b = 8, m = 1, epsilon = 0.1 has the noise of local-DP DP-Pix at e_px = 0.1."""
    fan = DPPix(R, B, m=1)
    ldp = DPPix(R, B)
    e_px = 0.5
    eps = e_px * R * R
    assert fan.noise_scale(e_px) * 255 == pytest.approx(255 * 1 / B**2 / eps, rel=1e-12)
    assert DPPix(R, B, m=3).noise_scale(e_px) == pytest.approx(3 * fan.noise_scale(e_px))
    assert ldp.noise_scale(e_px) == pytest.approx(fan.noise_scale(e_px) * R * R)
    assert fan.noise_scale(0.1 / (R * R)) == pytest.approx(ldp.noise_scale(0.1))
    assert "not local DP" in fan.label and "not local DP" in fan.describe(e_px)
    assert fan.mode == "b8-m1"
    enc = fan.encode(tiny_images(1))
    assert fan.preview(enc, e_px, preview_noise(1, R * R, 0)).shape == (1, R, R)
    for refused in (lambda: fan.check_budget(e_px), lambda: fan.release(enc, e_px)):
        with pytest.raises(BudgetError, match="never released"):
            refused()
    # one pixel changed by the full range moves one block mean by 1/b^2: loss e_px * R^2
    one = np.zeros((2, R, R), np.float32)
    one[1, 0, 0] = 1
    z = fan.encode(one).clipped.double().numpy()
    assert np.abs(z[0] - z[1]).sum() / fan.noise_scale(e_px) == pytest.approx(eps, rel=1e-6)


def test_release_is_refused_without_the_clip() -> None:
    mech = DPPix(R, B)
    with pytest.raises(BudgetError, match="clip"):
        mech.release(mech.encode(tiny_images(1)), 10, clip=False)


def test_privatize_releases_dppix_through_the_registry(tmp_path: Path) -> None:
    """`dpglow privatize --mechanism dppix`: no model needed with --resolution; the ledger
    records the block size as the mode and the total epsilon on the common axis."""
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(to_uint8(tiny_images(1)[0])).save(src / "a.png")
    out, ledger = tmp_path / "out", tmp_path / "ledger.sqlite"
    assert cli.main(["privatize", str(src), "--mechanism", "dppix", "--resolution", str(R),
                     "--e-px", "0.5", "--out", str(out), "--ledger", str(ledger),
                     "--no-progress", "--confirm-one-patient-per-image"]) == 0
    (written,) = out.glob("*.png")
    tiles = np.asarray(Image.open(written)).reshape(4, B, 4, B)
    assert np.all(tiles == tiles[:, :1, :, :1])
    with Ledger(ledger) as led:
        (row,) = led.releases()
    assert row["mechanism"] == "dppix" and row["mode"] == "b8"
    assert row["total_epsilon"] == 0.5 * R * R


def test_evaluation_keys(tiny_model) -> None:
    """The evaluation's `dppix` is the local-DP mechanism, `dppix-m1` the labelled comparison;
    both share one encoding (the block means), DP-GLOW's is another."""
    ldp, fan = (build_mechanism(k, tiny_model, 0.4, block=4) for k in ("dppix", "dppix-m1"))
    assert (ldp.m, ldp.block, fan.m) == (None, 4, 1)
    assert "dppix" in DEFAULT_MECHANISMS.split(",") and "dppix-m1" not in DEFAULT_MECHANISMS
    assert "not local DP" in MECHANISMS["dppix-m1"]
    assert encode_group("dppix", 0.4, 4) == encode_group("dppix-m1", 0.4, 4)
    assert encode_group("dppix", 0.4, 4) != encode_group("dppix", 0.4, 8)
