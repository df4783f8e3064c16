"""Model files: round trips, and one clear ModelFileError for every way a file can be bad."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import model_contents, rewrite_model
from safetensors.numpy import save_file
from safetensors.torch import safe_open

from glow_engine.flow import Glow
from glow_engine.modelfile import (
    META_KEY,
    META_NAME,
    WEIGHTS_NAME,
    Calibration,
    ModelFileError,
    load_model,
    read_metadata,
    save_model,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def model_dir(engine_model_dir, tmp_path) -> Path:
    """A private copy of the shared calibrated model directory, free to damage."""
    return Path(shutil.copytree(engine_model_dir, tmp_path / "model"))


@pytest.fixture
def model_file(model_dir, tmp_path) -> Path:
    """The same model in the single-file form."""
    loaded = load_model(model_dir)
    path = tmp_path / "single.safetensors"
    save_model(path, loaded.flow, loaded.meta, loaded.calibration, loaded.fitted_box)
    return path


def test_directory_round_trip_keeps_weights_metadata_and_calibration(make_flow, model_dir):
    flow = make_flow()
    loaded = load_model(model_dir)
    for k, v in flow.state_dict().items():
        assert torch.equal(loaded.flow.state_dict()[k], v), k
    assert not loaded.flow.training and loaded.flow.is_initialized()
    assert loaded.meta["name"] == "tiny" and loaded.meta["training"]["steps"] == 7
    assert loaded.meta["architecture"] == flow.cfg.to_dict()
    assert loaded.sha256 == read_metadata(model_dir)["sha256"] == loaded.meta["sha256"]
    assert loaded.calibration.lo.shape == (flow.num_pixels,)
    assert loaded.calibration.info == {"images": 5, "data": "synthetic"}
    np.testing.assert_array_equal(loaded.calibration.delta, loaded.calibration.hi -
                                  loaded.calibration.lo)
    x = torch.rand(2, 1, 32, 32) - 0.5
    torch.testing.assert_close(loaded.flow.encode(x), flow.encode(x), atol=0, rtol=0)


def test_single_file_round_trip(model_dir, model_file):
    a, b = load_model(model_dir), load_model(model_file)
    assert b.sha256 == a.sha256  # the hash covers content, not the container
    assert b.meta == a.meta
    np.testing.assert_array_equal(b.calibration.hi, a.calibration.hi)
    with safe_open(str(model_file), framework="np") as f:
        assert json.loads(f.metadata()[META_KEY])["sha256"] == a.sha256


def test_model_without_calibration_and_resave_without_it(make_flow, tmp_path):
    save_model(tmp_path / "m", make_flow(), {"name": "plain", "calibration": {"stale": 1}})
    loaded = load_model(tmp_path / "m")
    assert loaded.calibration is None and "calibration" not in loaded.meta


def test_loading_never_unpickles(monkeypatch, model_dir, model_file):
    def refuse(*args, **kwargs):
        raise AssertionError("a model file was unpickled")

    for module, name in ((pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"),
                         (torch, "load")):
        monkeypatch.setattr(module, name, refuse)
    assert load_model(model_dir).flow.is_initialized()
    assert load_model(model_file).calibration is not None


# ---------------------------------------------------------------- damaged files


def _error(path) -> str:
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    assert info.value.__cause__ is None  # `from None`: the user sees one line, no chain
    return message


def test_missing_model(tmp_path):
    assert "not found" in _error(tmp_path / "nowhere")


def test_missing_part_of_a_directory(model_dir, tmp_path):
    (model_dir / META_NAME).unlink()
    assert f"incomplete: {META_NAME} is missing" in _error(model_dir)
    shutil.copy(model_dir / WEIGHTS_NAME, tmp_path / "w")
    (model_dir / WEIGHTS_NAME).unlink()
    assert "weights.safetensors and model.json are missing" in _error(model_dir)
    assert "incomplete" in _error(Path(shutil.copytree(model_dir, tmp_path / "empty")))


@pytest.mark.parametrize("keep", [0.5, 0.999])
def test_truncated_weights(model_dir, model_file, keep):
    for path in (model_dir / WEIGHTS_NAME, model_file):
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * keep)])
    assert "damaged or truncated" in _error(model_dir)
    assert "damaged or truncated" in _error(model_file)


def test_tampered_weight(model_dir):
    tensors, meta = model_contents(model_dir)
    name = next(k for k in tensors if k.endswith("coupling.net.2.weight"))
    tensors[name] = tensors[name].copy()
    tensors[name].flat[0] += 1e-3
    rewrite_model(model_dir, tensors, meta, rehash=False)
    assert "integrity check" in _error(model_dir)


def test_tampered_calibration_and_json(model_dir):
    tensors, meta = model_contents(model_dir)
    tensors["calibration.max"] = tensors["calibration.max"] * 2
    rewrite_model(model_dir, tensors, meta, rehash=False)
    assert "integrity check" in _error(model_dir)
    tensors, meta = model_contents(model_dir)
    rewrite_model(model_dir, tensors, dict(meta, name="renamed"), rehash=False)
    assert "integrity check" in _error(model_dir)
    (model_dir / META_NAME).write_text("{not json")
    assert "damaged" in _error(model_dir)
    (model_dir / META_NAME).write_text("[1, 2]")
    assert "not a JSON object" in _error(model_dir)


def test_tampered_single_file(model_file):
    data = bytearray(model_file.read_bytes())
    data[-5] ^= 0xFF  # a byte of the last tensor
    model_file.write_bytes(bytes(data))
    assert "integrity check" in _error(model_file)


def test_architecture_mismatch(model_dir):
    tensors, meta = model_contents(model_dir)
    meta["architecture"] = dict(meta["architecture"], width=32)
    rewrite_model(model_dir, tensors, meta, rehash=True)
    assert "does not match its declared architecture" in _error(model_dir)
    meta["architecture"] = dict(meta["architecture"], resolution=48)  # invalid config
    rewrite_model(model_dir, tensors, meta, rehash=True)
    assert "does not match its declared architecture" in _error(model_dir)
    del meta["architecture"]
    rewrite_model(model_dir, tensors, meta, rehash=True)
    assert "does not match its declared architecture" in _error(model_dir)
    meta["architecture"] = {"resolution": 32, "levels": 2, "depth": 3, "width": 16}
    rewrite_model(model_dir, tensors, meta, rehash=True)
    assert "Missing key(s)" in _error(model_dir)  # names the first problem, not a heading


def test_missing_weight(model_dir):
    tensors, meta = model_contents(model_dir)
    del tensors[next(k for k in tensors if k.endswith("invconv.lower"))]
    rewrite_model(model_dir, tensors, meta, rehash=True)
    assert "does not match its declared architecture" in _error(model_dir)


def test_calibration_length_mismatch(model_dir):
    tensors, meta = model_contents(model_dir)
    for key in ("calibration.min", "calibration.max"):
        tensors[key] = tensors[key][:-1]
    rewrite_model(model_dir, tensors, meta, rehash=True)
    assert "shapes (1023,) and (1023,), the flow needs (1024,)" in _error(model_dir)


@pytest.mark.parametrize("damage, expected", [
    ("half", "only half of its calibration"),
    ("square", "shapes (32, 32) and (32, 32), the flow needs (1024,)"),
    ("nan", "not a valid range"),
    ("inverted", "not a valid range"),
])
def test_invalid_calibration(model_dir, damage, expected):
    tensors, meta = model_contents(model_dir)
    lo, hi = tensors["calibration.min"], tensors["calibration.max"]
    if damage == "half":
        del tensors["calibration.max"]
    elif damage == "square":
        tensors["calibration.min"], tensors["calibration.max"] = (lo.reshape(32, 32),
                                                                  hi.reshape(32, 32))
    elif damage == "nan":
        tensors["calibration.min"] = np.where(np.arange(lo.size) == 3, np.nan, lo)
    else:
        tensors["calibration.min"], tensors["calibration.max"] = hi, lo
    rewrite_model(model_dir, tensors, meta, rehash=True)
    assert expected in _error(model_dir)


def test_not_a_model_and_newer_format(model_dir, tmp_path):
    plain = tmp_path / "plain.safetensors"
    save_file({"a": np.zeros(3, np.float32)}, str(plain))
    assert "not a DP-GLOW model" in _error(plain)
    tensors, meta = model_contents(model_dir)
    rewrite_model(model_dir, tensors, dict(meta, format="something-else"), rehash=True)
    assert "not a DP-GLOW model file" in _error(model_dir)
    rewrite_model(model_dir, tensors, dict(meta, format_version=99), rehash=True)
    assert "newer version" in _error(model_dir)
    rewrite_model(model_dir, tensors, dict(meta, format_version="1"), rehash=True)
    assert "invalid format version" in _error(model_dir)


def test_read_metadata_verifies_too(model_dir):
    tensors, meta = model_contents(model_dir)
    rewrite_model(model_dir, tensors, dict(meta, name="renamed"), rehash=False)
    with pytest.raises(ModelFileError, match="integrity check"):
        read_metadata(model_dir)


def test_saved_model_loads_onto_a_fresh_flow_without_reinitialising(model_dir):
    loaded = load_model(model_dir)
    before = {k: v.clone() for k, v in loaded.flow.state_dict().items()}
    loaded.flow.train()
    with torch.no_grad():
        loaded.flow(torch.rand(4, 1, 32, 32) * 2)
    for k, v in loaded.flow.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert isinstance(loaded.flow, Glow) and isinstance(loaded.calibration, Calibration)
