"""`dpglow info`, `dpglow calibrate` and the CLI's error handling."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from glow_engine.calibration import calibrate
from glow_engine.cli import SUBCOMMANDS, main
from glow_engine.modelfile import load_model, read_metadata, save_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

VENV_BIN = Path(sys.executable).parent


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_info_text(capsys, engine_model_dir):
    code, out, err = run_cli(capsys, "info", engine_model_dir)
    assert code == 0 and err == ""
    meta = read_metadata(engine_model_dir)
    assert f"sha256 {meta['sha256'][:16]}" in out
    assert "resolution  32x32, 1 channel, 8-bit input" in out
    assert "L=2 levels, K=2 steps, width 16" in out
    assert "7 steps" in out
    assert "calibration 5 images (synthetic)" in out


def test_info_json_is_the_verified_metadata(capsys, engine_model_dir):
    code, out, _ = run_cli(capsys, "info", engine_model_dir, "--json")
    assert code == 0
    assert json.loads(out) == read_metadata(engine_model_dir)


def test_info_on_an_uncalibrated_single_file(capsys, make_flow, tmp_path):
    save_model(tmp_path / "m.safetensors", make_flow(), {"name": "bare"})
    code, out, _ = run_cli(capsys, "info", tmp_path / "m.safetensors")
    assert code == 0 and "calibration none (run `dpglow calibrate`" in out


def test_errors_are_one_line_without_traceback(capsys, engine_model_dir, tmp_path):
    code, out, err = run_cli(capsys, "info", tmp_path / "missing")
    assert code == 2 and out == ""
    assert err.startswith("error: Model not found") and err.count("\n") == 1
    damaged = Path(shutil.copytree(engine_model_dir, tmp_path / "damaged"))
    weights = damaged / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    code, _, err = run_cli(capsys, "info", damaged)
    assert code == 2 and "damaged or truncated" in err and "Traceback" not in err


def test_calibrate_writes_the_range_into_a_model(capsys, engine_model_dir, engine_npz,
                                                 tmp_path):
    out_path = tmp_path / "calibrated.safetensors"
    code, out, err = run_cli(capsys, "calibrate", engine_model_dir, "--data", engine_npz,
                             "--out", out_path, "--batch-size", "10", "--device", "cpu")
    assert code == 0, err
    assert "calibrated on 48 images" in out
    model = load_model(out_path)
    assert model.calibration.info["images"] == 48
    assert model.calibration.info["data"] == "tiny.npz split=train"
    with np.load(engine_npz) as z:
        images = z["images"][z["split"] == "train"]
    expected = calibrate(model, [images], "all at once", progress=False)
    np.testing.assert_allclose(model.calibration.lo, expected.lo, atol=1e-5)
    np.testing.assert_allclose(model.calibration.hi, expected.hi, atol=1e-5)
    code, out, _ = run_cli(capsys, "info", out_path)
    assert "calibration 48 images (tiny.npz split=train)" in out


@pytest.mark.parametrize("data, split, message", [
    ("missing.npz", "train", "cannot read images from"),
    (None, "test", "no calibration images"),
])
def test_calibrate_errors(capsys, engine_model_dir, engine_npz, tmp_path, data, split,
                          message):
    code, _, err = run_cli(capsys, "calibrate", engine_model_dir, "--data",
                           tmp_path / data if data else engine_npz, "--split", split,
                           "--out", tmp_path / "out")
    assert code == 2 and message in err and "Traceback" not in err


@pytest.mark.slow
def test_console_script(engine_model_dir, tmp_path):
    """The installed `dpglow` entry point: help lists every subcommand; errors exit 2."""
    exe = VENV_BIN / "dpglow"
    if not exe.exists():
        pytest.skip(f"{exe} is not installed (pip install -e .)")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    done = subprocess.run([exe, "--help"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0 and all(name in done.stdout for name in SUBCOMMANDS)
    done = subprocess.run([exe, "info", tmp_path / "missing"], capture_output=True,
                          text=True, env=env, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: Model not found")
