"""The out-of-distribution check (glow_engine.ood): typicality, orientation, colour.

Unit tests use synthetic chests and fitted features; the realdata test tries the shipped mixture
model's check (fitted on its training images by `dpglow calibrate`) on real validation chests,
on chests inverted, turned and cropped at test time (never stored), and on made pictures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import synthetic_cxr
from PIL import Image, ImageDraw
from safetensors.numpy import load_file, save_file

from glow_engine import ood
from glow_engine.flow.glow import pixels_to_model
from glow_engine.modelfile import Calibration, ModelFileError, load_model, save_model
from glow_engine.ood import OODReason, OODReference

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def chests(n: int, seed: int = 0, res: int = 64) -> np.ndarray:
    """Synthetic frontal 'chests' with an up-down asymmetry (bright abdomen below), so that
    each turn is a different picture."""
    yy = np.mgrid[0:res, 0:res][0] / res
    return np.clip(synthetic_cxr(n, False, seed, res) + 0.3 * (yy > 0.75), 0, 1)


def made_features(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cov = np.array([[1.0, 0.5, 0.2], [0.5, 1.0, 0.3], [0.2, 0.3, 1.0]]) * 0.04
    return rng.multivariate_normal([2.0, 1.0, 4.0], cov, size=n)


@pytest.fixture(scope="module")
def reference() -> OODReference:
    train = chests(200)
    return ood.fit_reference(made_features(200, 0), ood.thumbnails(train))


def test_thumbnails_are_standardised_and_negate_under_inversion():
    img = chests(3)
    t = ood.thumbnails(img)
    assert t.shape == (3, ood.THUMB * ood.THUMB)
    np.testing.assert_allclose(t.mean(axis=1), 0, atol=1e-9)
    np.testing.assert_allclose(t.std(axis=1), 1, atol=1e-6)
    np.testing.assert_allclose(ood.thumbnails(1 - img), -t, atol=1e-6)
    np.testing.assert_allclose(ood.thumbnails(0.5 * img + 0.2), t, atol=1e-6)  # window-free


def test_png_bits_track_picture_complexity():
    flat = np.full((1, 64, 64), 0.5)
    noise = np.random.default_rng(0).random((1, 64, 64))
    flat_bits, noise_bits = ood.png_bits_per_pixel(np.concatenate([flat, noise]))
    assert flat_bits < 0.2 < 7.0 < noise_bits


def test_typicality_is_two_sided_and_names_the_side(reference):
    typical = made_features(50, 1)
    simple, complex_ = typical[:1] - 2.0, typical[:1] + 2.0
    thumbs = ood.thumbnails(chests(52, seed=5))
    verdicts = ood.check(reference, np.concatenate([typical, simple, complex_]), thumbs)
    assert sum(v.flagged for v in verdicts[:50]) <= 2  # the 99.5th percentile: few false flags
    assert verdicts[50].reasons == (OODReason.TOO_SIMPLE,)
    assert verdicts[51].reasons == (OODReason.ATYPICAL,)
    assert verdicts[51].distance > verdicts[51].limit == reference.limit


def test_a_flow_that_cannot_explain_a_picture_gets_it_flagged(reference):
    """Level shares of -1e25 nats (the shipped flow on privatised pictures) or NaN (a flow
    that broke) give a finite distance far above the limit, never a NaN that is not flagged."""
    pixels = chests(3, seed=6)
    shares = np.array([[-1e25, -1e25], [np.nan, -10.0], [-np.inf, np.nan]])
    features = ood.typicality_features(shares, pixels)
    assert np.isfinite(features).all()
    verdicts = ood.check(reference, features, ood.thumbnails(pixels))
    assert all(v.reasons == (OODReason.ATYPICAL,) for v in verdicts)
    assert all(np.isfinite(v.distance) for v in verdicts)


def test_orientation_and_polarity_are_recognised(reference):
    new = chests(20, seed=9)  # not among the fitted images
    feats = np.tile(reference.mean, (20, 1))  # typical in every other respect
    cases = {
        "upright": new, "mirrored": new[:, :, ::-1],
        "inverted": 1 - new, "turned 90°": np.rot90(new, 1, axes=(1, 2)),
        "turned 180°": np.rot90(new, 2, axes=(1, 2)),
    }
    got = {name: ood.check(reference, feats, ood.thumbnails(np.ascontiguousarray(p)))
           for name, p in cases.items()}
    assert all(not v.flagged for v in got["upright"] + got["mirrored"])
    assert all(v.reasons == (OODReason.INVERTED,) for v in got["inverted"])
    for turn in ("turned 90°", "turned 180°"):
        assert all(v.reasons == (OODReason.TURNED,) and v.orientation == turn
                   for v in got[turn])


def test_colour_is_reported_and_orientation_is_not_for_far_pictures(reference):
    feats = np.stack([reference.mean, reference.mean + 10])
    thumbs = ood.thumbnails(1 - chests(2))  # both look inverted
    near, far = ood.check(reference, feats, thumbs, colour=np.array([True, False]))
    assert near.reasons == (OODReason.COLOUR, OODReason.INVERTED)
    assert far.reasons == (OODReason.ATYPICAL,)  # a far picture's "orientation" is noise
    assert "colour" in near.describe() and "inverted" in near.describe()


def test_reference_travels_in_the_model_file_and_damage_is_refused(tmp_path, reference,
                                                                   make_flow):
    flow = make_flow()
    n = flow.num_pixels
    cal = Calibration(np.zeros(n), np.ones(n), {"bpd_p995": 5.0}, reference)
    save_model(tmp_path / "m", flow, {"name": "m"}, cal)
    back = load_model(tmp_path / "m").calibration.ood
    for name, value in reference.tensors().items():
        np.testing.assert_array_equal(back.tensors()[name], value, err_msg=name)
    broken = {**reference.tensors(), "ood.precision": np.full((2, 2), np.nan)}
    with pytest.raises(ValueError, match="malformed"):
        OODReference.from_tensors(broken)
    del broken["ood.mean"]
    with pytest.raises(ValueError, match="incomplete"):
        OODReference.from_tensors(broken)
    # a file whose limit was loosened fails its integrity check
    weights = tmp_path / "m" / "weights.safetensors"
    tensors = load_file(str(weights))
    tensors["ood.limit"] = tensors["ood.limit"] * 100
    save_file(tensors, str(weights))
    with pytest.raises(ModelFileError, match="integrity"):
        load_model(tmp_path / "m")


# ---------------------------------------------------------------- real images

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MPL_PHOTO = Path(__import__("matplotlib").get_data_path()) / "sample_data" / "grace_hopper.jpg"


def _made_pictures(r: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:r, 0:r] / r
    f = np.fft.fftfreq(r)
    k = np.hypot(f[:, None], f[None])
    k[0, 0] = 1
    plasma = np.real(np.fft.ifft2(np.fft.fft2(rng.standard_normal((r, r))) / k**1.5))
    page = Image.new("L", (r, r), 255)
    draw = ImageDraw.Draw(page)
    for y in range(0, r, 10):
        draw.text((4, y), "Lorem ipsum dolor sit amet, consectetur", fill=0)
    photo = Image.open(MPL_PHOTO).convert("L").resize((r, r), Image.LANCZOS)
    return {"gradient": 0.8 * xx + 0.2 * yy,
            "plasma texture": (plasma - plasma.min()) / np.ptp(plasma),
            "text page": np.asarray(page) / 255.0, "photograph": np.asarray(photo) / 255.0}


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"{SHARED_DATA} is absent")
def test_check_on_real_chests_and_made_pictures():
    from glow_engine.resources import default_model_dir

    model = load_model(default_model_dir("mixture"))
    r = model.resolution

    def frame(u8: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(u8)).float()[:, None] / 255
        return torch.nn.functional.interpolate(t, size=(r, r), mode="area")[:, 0].numpy()

    def features(pixels: np.ndarray) -> np.ndarray:
        x = pixels_to_model(torch.from_numpy(np.ascontiguousarray(pixels, np.float32))[:, None])
        with torch.inference_mode():
            shares = model.flow.encode_with_level_logp(x)[1].double().numpy()
        return ood.typicality_features(shares, pixels)

    def flagged(pixels: np.ndarray) -> np.ndarray:
        pixels = np.ascontiguousarray(pixels)
        return np.array([v.flagged for v in ood.check(ref, features(pixels),
                                                       ood.thumbnails(pixels))])

    ref = model.calibration.ood  # the shipped check, fitted by `dpglow calibrate`
    assert ref is not None, "the shipped mixture model was calibrated without the OOD check"
    with np.load(SHARED_DATA / "nih_cxr14_subset_256.npz") as data:
        val = frame(data["images"][data["split"] == "val"])
    assert flagged(val).mean() <= 0.02  # false flags on unseen patients' real chests
    assert flagged(1 - val[:20]).all()
    for turn in (1, 2, 3):
        assert flagged(np.rot90(val[:20], turn, axes=(1, 2))).mean() >= 0.95
    half = r // 4
    assert flagged(np.stack([np.asarray(Image.fromarray(v).resize((r, r))) for v in
                             val[:20, half:-half, half:-half]])).mean() >= 0.9
    for name, picture in _made_pictures(r).items():
        assert flagged(picture[None]).all(), name
