"""Latent calibration (docs/method.md section 2): streamed per-element min/max over images."""

from __future__ import annotations

import weakref
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from helpers import tiny_images, to_uint8

from glow_engine.calibration import calibrate
from glow_engine.choices import DEFAULT_ALPHA
from glow_engine.errors import UserError
from glow_engine.flow.glow import pixels_to_model
from glow_engine.modelfile import Calibration, LoadedModel

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def model(make_flow) -> LoadedModel:
    return LoadedModel(make_flow(), {"name": "tiny"}, None, "0" * 64)


def _images(n: int, seed: int = 0) -> np.ndarray:
    return to_uint8(tiny_images(n, seed))


def _one_shot(model: LoadedModel, images: np.ndarray) -> torch.Tensor:
    x = pixels_to_model(torch.from_numpy(images).float()[:, None] / 255)
    return model.flow.encode(x).double()


def test_streamed_range_equals_one_shot_min_max(model):
    images = _images(40)
    cal = calibrate(model, (images[i:i + 7] for i in range(0, 40, 7)), "synthetic",
                    progress=False)
    z = _one_shot(model, images)
    np.testing.assert_allclose(cal.lo, z.min(0).values.numpy(), atol=1e-5)
    np.testing.assert_allclose(cal.hi, z.max(0).values.numpy(), atol=1e-5)
    assert cal.lo.shape == (model.flow.num_pixels,) and cal.lo.dtype == np.float64
    assert cal.info["images"] == 40 and cal.info["data"] == "synthetic"
    assert cal.info["default_alpha"] == DEFAULT_ALPHA
    assert cal.info["bpd_p50"] <= cal.info["bpd_p995"] <= cal.info["bpd_max"]
    assert cal.info["delta_mean"] == pytest.approx(float((cal.hi - cal.lo).mean()))


def test_calibration_keeps_no_earlier_batch(model):
    """Memory does not grow with the number of images: each batch can be freed as soon as
    the next one is asked for (the loop variable still holds the previous one)."""
    refs: list[weakref.ref] = []
    retained: list[int] = []

    def stream() -> Iterator[np.ndarray]:
        for k in range(12):  # numpy arrays hold no cycles: refcounting frees them at once
            retained.append(sum(r() is not None for r in refs[:-1]))
            batch = _images(4, seed=k)
            refs.append(weakref.ref(batch))
            yield batch

    cal = calibrate(model, stream(), "stream", progress=False)
    assert cal.info["images"] == 48
    assert retained == [0] * 12


def test_derived_vectors():
    cal = Calibration(np.array([-1.0, 0.0]), np.array([3.0, 0.5]))
    np.testing.assert_array_equal(cal.delta, [4.0, 0.5])
    np.testing.assert_array_equal(cal.centre, [1.0, 0.25])
    np.testing.assert_allclose(cal.width(0.4), [1.6, 0.2])


def test_no_images_and_non_finite_latents_are_user_errors(model, monkeypatch):
    with pytest.raises(UserError, match="no calibration images"):
        calibrate(model, iter([]), "nothing", progress=False)
    nan = torch.full((2, model.flow.num_pixels), float("nan"))
    levels = model.flow.cfg.levels
    monkeypatch.setattr(model.flow, "encode_with_level_logp",
                        lambda x: (nan, torch.zeros(2, levels)))
    with pytest.raises(UserError, match="non-finite latent"):
        calibrate(model, [_images(2)], "nan", progress=False)


def test_folders_are_streamed_a_batch_at_a_time(tmp_path):
    """Calibration input from a folder is read lazily, batch by batch: memory does not grow
    with the number of images (a file removed after the first batch only fails later)."""
    from PIL import Image

    from glow_engine.data import stream_image_set

    for i, img in enumerate(_images(10)):
        Image.fromarray(img).save(tmp_path / f"img{i:02d}.png")
    total, desc, chunks = stream_image_set(tmp_path, 32, batch_size=4)
    assert total == 10 and "folder" in desc
    first = next(chunks)
    assert first.shape == (4, 32, 32) and first.dtype == np.uint8
    (tmp_path / "img09.png").unlink()  # not read yet
    assert next(chunks).shape == (4, 32, 32)
    with pytest.raises(Exception, match="img09"):
        next(chunks)
