"""DP-GLOW and ID-LDP behind the Mechanism interface, on the tiny 32x32 model (tiny_model)."""

from __future__ import annotations

import itertools
import math
import os

import numpy as np
import pytest
import torch
from helpers import tiny_images
from scipy import stats

from glow_engine.errors import UserError
from glow_engine.flow.glow import model_to_pixels, pixels_to_model
from glow_engine.mechanisms import (
    IDLDP,
    BudgetError,
    DPGlow,
    Mechanism,
    NonFiniteOutputError,
    create_mechanism,
    preview_noise,
)
from glow_engine.mechanisms.box import from_grid, release_scale, to_grid
from glow_engine.modelfile import LoadedModel

R = 32
N = R * R


@pytest.fixture()
def images() -> np.ndarray:
    return tiny_images(3, seed=7)


def margin_mask(mech: DPGlow | IDLDP, z: torch.Tensor, margin: float) -> np.ndarray:
    """Elements at least `margin` box widths inside the box (the second clip almost never
    touches them, so their noise is the bare Laplace)."""
    u = (z.double().cpu().numpy() - mech.lo) / mech.width
    return (u > margin) & (u < 1 - margin)


# --------------------------------------------------------------------------- interface


def test_shapes_dtype_and_8bit_output(tiny_model: LoadedModel, images: np.ndarray) -> None:
    mech = DPGlow(tiny_model, mode="tight")
    assert isinstance(mech, Mechanism) and mech.resolution == R
    single, batch = mech.encode(images[0]), mech.encode(images)
    assert not single.batched and batch.batched and batch.clipped.shape == (3, N)
    noise = preview_noise(3, N, seed=1)
    for out in (mech.preview(batch, 100, noise), mech.release(batch, 100)):
        assert out.shape == (3, R, R) and out.dtype == np.float32
        assert np.allclose(out * 255, np.rint(out * 255), atol=1e-4)
        assert out.min() >= 0 and out.max() <= 1
    assert mech.preview(single, 100, noise[:1]).shape == (R, R)
    assert mech.release(single, 10).shape == (R, R)
    with pytest.raises(ValueError):
        mech.encode(np.zeros((R + 1, R + 1), np.float32))


def test_registry_labels_and_descriptions(tiny_model: LoadedModel) -> None:
    tight = create_mechanism("dpglow", tiny_model, mode="tight", alpha=0.4, estimate="plain")
    assert isinstance(tight, DPGlow) and tight.label == "DP-GLOW (tight, α=0.4)"
    default = create_mechanism("dpglow", tiny_model, mode="tight", alpha=0.4)
    assert default.label == "DP-GLOW (tight, α=0.4, posterior mean)"
    text = tight.describe(100)
    for part in ("DP-GLOW", "tight", "alpha=0.4", "e_px=100", "102400", "sha256:000000000000"):
        assert part in text
    assert "no privacy guarantee" in tight.describe(math.inf, clip=False)
    idldp = create_mechanism("idldp", tiny_model)
    assert isinstance(idldp, IDLDP) and idldp.resolution == R and idldp.label == "ID-LDP"
    assert idldp.describe(10) == "ID-LDP e_px=10 (total epsilon 10240)"
    with pytest.raises(UserError, match="unknown mechanism"):
        create_mechanism("no-such", tiny_model)


def test_modes_scale_noise_by_one_over_alpha(tiny_model: LoadedModel) -> None:
    paper, tight = DPGlow(tiny_model, 0.4, "paper"), DPGlow(tiny_model, 0.4, "tight")
    delta = tiny_model.calibration.delta
    assert paper.noise_scale(10) == pytest.approx(delta.mean() / 10)
    assert tight.noise_scale(10) == pytest.approx(0.4 * delta.mean() / 10)
    assert IDLDP(R).noise_scale(4) == pytest.approx(0.25)
    assert paper.noise_scale(math.inf) == 0


def test_bad_construction(tiny_model: LoadedModel) -> None:
    uncalibrated = LoadedModel(tiny_model.flow, {}, None, "0" * 64)
    with pytest.raises(UserError, match="calibrat"):
        DPGlow(uncalibrated)
    with pytest.raises(UserError):
        DPGlow(tiny_model, mode="loose")
    with pytest.raises(UserError):
        DPGlow(tiny_model, alpha=0)


# --------------------------------------------------------------------------- e_px = inf


def test_inf_without_clip_is_the_plain_reconstruction(tiny_model: LoadedModel,
                                                      images: np.ndarray) -> None:
    mech = DPGlow(tiny_model)
    enc = mech.encode(images)
    flow = tiny_model.flow
    with torch.inference_mode():
        x = pixels_to_model(torch.from_numpy(images)[:, None])
        plain = model_to_pixels(flow.decode(flow.encode(x)))[:, 0].numpy()
    noise = preview_noise(3, N, seed=0)
    assert np.array_equal(mech.preview(enc, math.inf, noise, clip=False), plain)
    assert np.array_equal(mech.release(enc, math.inf, clip=False), plain)


def test_inf_changes_nothing_but_the_clip(tiny_model: LoadedModel, images: np.ndarray) -> None:
    mech = DPGlow(tiny_model, alpha=0.4)
    enc = mech.encode(images)
    lo, hi = mech.lo, mech.lo + mech.width
    expected = np.clip(enc.raw.double().numpy(), lo, hi)
    noise = preview_noise(3, N, seed=0)
    z_prev = mech.perturb_preview(enc, math.inf, noise).double().numpy()
    z_rel = mech.perturb_release(enc, math.inf).double().numpy()
    assert np.allclose(z_prev, expected, atol=1e-6) and np.array_equal(z_prev, z_rel)
    assert np.array_equal(mech.preview(enc, math.inf, noise), mech.release(enc, math.inf))
    # a box covering every latent (alpha = 1 on the calibration images) clips nothing
    wide = DPGlow(tiny_model, alpha=1.0)
    calib = tiny_images(64)  # the images the tiny model was calibrated on, in the same batch
    enc_wide = wide.encode(calib)  # (another batch size or thread count rounds differently)
    noise = preview_noise(len(calib), N, seed=0)
    # (up to the float32 rounding of the box edges, which sit exactly on calibration latents)
    assert torch.allclose(wide.perturb_preview(enc_wide, math.inf, noise), enc_wide.raw,
                          rtol=0, atol=1e-6)
    assert np.array_equal(wide.preview(enc_wide, math.inf, noise),
                          wide.preview(enc_wide, math.inf, noise, clip=False))


def test_idldp_at_inf_is_the_quantised_input(images: np.ndarray) -> None:
    mech = IDLDP(R)
    enc = mech.encode(images)
    assert np.array_equal(mech.release(enc, math.inf), np.round(images * 255) / 255)


# --------------------------------------------------------------------------- non-finite


def test_nonfinite_latents_go_to_the_box_centre(tiny_model: LoadedModel, images: np.ndarray,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    mech = DPGlow(tiny_model, mode="tight")
    real = mech.to_latent

    def broken(pixels: torch.Tensor) -> torch.Tensor:
        z = real(pixels).clone()
        z[:, :3] = torch.tensor([math.nan, math.inf, -math.inf])
        return z

    monkeypatch.setattr(mech, "to_latent", broken)
    enc = mech.encode(images)
    assert enc.nonfinite == 9
    centre = torch.as_tensor(mech.lo + mech.width / 2, dtype=torch.float32)
    for z in (enc.raw, enc.clipped):
        assert torch.isfinite(z).all() and torch.allclose(z[:, :3], centre[:3].expand(3, 3))
    assert np.isfinite(mech.release(enc, 10)).all()


def test_nonfinite_decode_is_refused(tiny_model: LoadedModel, images: np.ndarray,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    mech = DPGlow(tiny_model)
    enc = mech.encode(images)
    monkeypatch.setattr(mech, "to_image", lambda z: torch.full((3, R, R), math.inf))
    with pytest.raises(NonFiniteOutputError, match="non-finite"):
        mech.release(enc, 100)


def test_release_without_clip_is_refused(tiny_model: LoadedModel, images: np.ndarray) -> None:
    mech = DPGlow(tiny_model)
    with pytest.raises(BudgetError, match="clip"):
        mech.release(mech.encode(images), 100, clip=False)


@pytest.mark.parametrize("e_px", [5e-324, 1e-300, 1e300])
def test_a_budget_beyond_the_sampler_is_refused_in_one_line(tiny_model: LoadedModel,
                                                            e_px: float) -> None:
    """The refusal's own wording once overflowed (a float of the noise scale) at 5e-324."""
    for mech in (DPGlow(tiny_model), IDLDP(R)):
        with pytest.raises(BudgetError, match="cannot be released") as caught:
            mech.check_budget(e_px)
        assert "usable e_px" in str(caught.value) and "\n" not in str(caught.value)


# --------------------------------------------------------------------------- distributions


@pytest.mark.parametrize("mode", ["tight", "paper"])
def test_preview_noise_is_laplace_b_k(tiny_model: LoadedModel, mode: str) -> None:
    mech = DPGlow(tiny_model, mode=mode)
    enc = mech.encode(tiny_images(8, seed=3))
    e_px = 100.0
    z = enc.clipped
    noisy = mech.perturb_preview(enc, e_px, preview_noise(8, N, seed=5))
    b = mech.scale_vector(e_px)
    keep = margin_mask(mech, z, 0.25)
    scaled = ((noisy - z) / b).double().numpy()[keep]
    assert scaled.size > 2000
    assert stats.kstest(scaled, "laplace").pvalue > 1e-4


def test_preview_moves_smoothly_with_e_px(tiny_model: LoadedModel, images: np.ndarray) -> None:
    mech = DPGlow(tiny_model, mode="tight")
    enc = mech.encode(images)
    noise = preview_noise(3, N, seed=2)
    z1, z2 = (mech.perturb_preview(enc, e, noise, clip=False) for e in (100.0, 101.0))
    z_far = mech.perturb_preview(enc, 1.0, noise, clip=False)
    assert (z1 - z2).abs().max() < 0.02 * (z1 - z_far).abs().max()


@pytest.mark.parametrize("mode", ["tight", "paper"])
def test_release_noise_is_discrete_laplace_in_grid_units(tiny_model: LoadedModel,
                                                         mode: str) -> None:
    mech = DPGlow(tiny_model, mode=mode)
    enc = mech.encode(tiny_images(8, seed=4))
    e_px = 100.0
    k_in = to_grid(enc.clipped.double().numpy(), mech.lo, mech.width)
    noisy = mech.perturb_release(enc, e_px).double().numpy()
    k_out = to_grid(noisy, mech.lo, mech.width)
    t, s = release_scale(e_px, mech.ratio)
    keep = margin_mask(mech, enc.clipped, 0.25)
    steps = (k_out - k_in)[keep] / (t / s)
    assert steps.size > 2000
    assert stats.kstest(steps, "laplace").pvalue > 1e-4


def test_idldp_noise_is_laplace_in_pixels() -> None:
    mech = IDLDP(R)
    enc = mech.encode(np.full((4, R, R), 0.5, np.float32))
    e_px = 10.0  # b = 0.1: a clip beyond 0.5 away has probability e^-5 / 2
    noisy = mech.perturb_preview(enc, e_px, preview_noise(4, N, seed=9)).numpy()
    released = mech.perturb_release(enc, e_px).numpy()
    for z in (noisy, released):
        inside = (z > 0) & (z < 1)
        assert stats.kstest((z[inside] - 0.5) / 0.1, "laplace").pvalue > 1e-4


# --------------------------------------------------------------------------- exact privacy loss


def output_log_pmf(k: np.ndarray, t: int, s: int, steps: int) -> np.ndarray:
    """log P(out = y | in = k) for clip(k + L, 0, steps), L discrete Laplace of scale t/s;
    (len(k), steps + 1), exact up to float64 rounding of the closed forms."""
    q = math.exp(-s / t)
    y = np.arange(steps + 1)[None, :]
    d = (y - k[:, None]).astype(float)
    logp = math.log((1 - q) / (1 + q)) + np.abs(d) * math.log(q)
    # the clip piles the tails onto the ends: P(L <= -k) and P(L >= steps - k) = q^a / (1 + q)
    logp[:, 0] = k * math.log(q) - math.log(1 + q)
    logp[:, -1] = (steps - k) * math.log(q) - math.log(1 + q)
    return logp


@pytest.mark.parametrize(("mode", "e_px"), [("tight", 0.5), ("tight", 2.0), ("paper", 1.0)])
def test_exact_privacy_loss_on_a_4_element_latent(tiny_model: LoadedModel, mode: str,
                                                  e_px: float) -> None:
    """Two different images, the first 4 latent elements, a 2^3-step grid: enumerate all
    9^4 outputs and check the privacy loss never exceeds epsilon = 4 * e_px."""
    g = 3
    mech = DPGlow(tiny_model, mode=mode)
    lo, width = mech.lo[:4], mech.width[:4]
    z = mech.encode(tiny_images(2, seed=11)).clipped.double().numpy()[:, :4]
    # add the extreme pair (opposite corners of the box), where the loss is largest
    corners = np.stack([lo, lo + width])
    t, s = release_scale(e_px, mech.ratio, grid_bits=g)
    for za, zb in ((z[0], z[1]), (corners[0], corners[1])):
        ka, kb = to_grid(za, lo, width, g), to_grid(zb, lo, width, g)
        pa, pb = output_log_pmf(ka, t, s, 2**g), output_log_pmf(kb, t, s, 2**g)
        assert np.allclose(np.exp(pa).sum(1), 1)
        worst = max(abs(sum(pa[i, y[i]] - pb[i, y[i]] for i in range(4)))
                    for y in itertools.product(range(2**g + 1), repeat=4))
        assert worst <= 4 * e_px * (1 + 1e-9)
    if mode == "tight":
        assert worst >= 4 * e_px * (1 - 1e-6)  # the corners attain it: the bound is tight


def test_exact_privacy_loss_on_the_full_latent(tiny_model: LoadedModel) -> None:
    """All 1,024 elements with the real 2^20 grid: by independence the worst joint loss is the
    sum of per-element worst losses, each a maximum over the 2^20 + 1 outputs."""
    mech = DPGlow(tiny_model, mode="tight")
    e_px = 3.0
    z = mech.encode(tiny_images(2, seed=12)).clipped.double().numpy()
    k = to_grid(z, mech.lo, mech.width)
    t, s = release_scale(e_px, mech.ratio)
    q_log = -s / t
    # |log ratio| of interior outputs is |(|y-a| - |y-b|)| * s/t <= |a-b| s/t; the ends give
    # the same bound, so the per-element maximum is |a - b| * s / t exactly.
    per_element = np.abs(k[0] - k[1]) * -q_log
    assert per_element.sum() <= N * e_px
    sample = np.random.default_rng(0).choice(N, 16, replace=False)
    for i in sample:  # check the closed form against enumerating the element's whole grid
        pa = output_log_pmf(k[0, i:i + 1], t, s, 2**20)
        pb = output_log_pmf(k[1, i:i + 1], t, s, 2**20)
        assert np.abs(pa - pb).max() == pytest.approx(per_element[i], rel=1e-6, abs=1e-9)


def test_grid_round_trip(tiny_model: LoadedModel) -> None:
    mech = DPGlow(tiny_model)
    k = np.array([[0, 1, 2**20 - 1, 2**20] * (N // 4)])
    assert np.array_equal(to_grid(from_grid(k, mech.lo, mech.width), mech.lo, mech.width), k)


# --------------------------------------------------------------------------- randomness source


def test_release_randomness_is_os_urandom_only(tiny_model: LoadedModel, images: np.ndarray,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    mech = DPGlow(tiny_model, mode="tight")
    enc = mech.encode(images)
    a, b = mech.release(enc, 10), mech.release(enc, 10)
    assert not np.array_equal(a, b)
    torch.manual_seed(0)
    np.random.seed(0)
    c = mech.release(enc, 10)
    torch.manual_seed(0)
    np.random.seed(0)
    assert not np.array_equal(c, mech.release(enc, 10))  # seeding changes nothing

    calls = []

    def fake_urandom(n: int) -> bytes:  # a fixed stream: releases become repeatable
        calls.append(n)
        return np.random.default_rng(len(calls)).bytes(n)

    monkeypatch.setattr(os, "urandom", fake_urandom)
    first = mech.release(enc, 10)
    calls.clear()
    assert np.array_equal(first, mech.release(enc, 10)) and calls
