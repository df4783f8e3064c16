"""Training: loss goes down, --resume continues, NaN stops cleanly, DDP ranks stay identical."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.numpy import load_file as load_numpy
from safetensors.torch import load_file

import glow_engine.train as train_mod
from glow_engine.cli import main
from glow_engine.modelfile import load_model
from glow_engine.train import TrainingDiverged, TrainOptions, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

VENV_BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]
TINY = {"resolution": 32, "levels": 2, "depth": 2, "width": 16}


def options(npz: Path, out: Path, **kw) -> TrainOptions:
    base = dict(data=[str(npz)], out=out, val_data=[str(npz)], batch_size=16, lr=2e-3,
                warmup_steps=1, epochs=1, augment=0.0, device="cpu", **TINY)
    return TrainOptions(**{**base, **kw})


def checkpoint_state(out: Path) -> dict:
    return json.loads((out / "checkpoint" / "state.json").read_text())


def test_training_reduces_loss_and_resume_continues(engine_npz, tmp_path):
    out = tmp_path / "run"
    final = train(options(engine_npz, out, epochs=1))
    assert checkpoint_state(out)["step"] == 3  # 48 training images / batch 16
    assert load_model(final).meta["training"]["steps"] == 3
    assert sorted(p.name for p in (out / "checkpoint").iterdir()) == [
        "model", "optimizer.safetensors", "state.json"]  # safetensors and JSON: no pickle

    train(options(engine_npz, out, epochs=4, resume=True))
    state = checkpoint_state(out)
    assert state["step"] == 12 and state["epoch"] == 4
    history = state["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert [h["step"] for h in history] == [3, 6, 9, 12]
    assert history[-1]["val_bpd"] < history[0]["val_bpd"] - 0.05
    adam = load_numpy(str(out / "checkpoint" / "optimizer.safetensors"))
    assert {float(v[0]) for k, v in adam.items() if k.endswith(".step")} == {12.0}
    model = load_model(out / "model")
    assert model.meta["training"]["steps"] == 12
    assert model.meta["validation"]["bpd"] == pytest.approx(history[-1]["val_bpd"])


def test_label_filter_and_metadata(engine_npz, tmp_path):
    model = load_model(train(options(engine_npz, tmp_path / "normal", label=0, val_data=[])))
    tr = model.meta["training"]
    assert tr["images"] == 24 and tr["label_filter"] == 0 and tr["steps"] == 1
    assert model.meta["architecture"]["width"] == 16
    assert model.flow.is_initialized()


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_checkpoint(engine_npz, tmp_path,
                                                                    monkeypatch, capsys):
    out = tmp_path / "run"
    train(options(engine_npz, out, epochs=1))
    good = load_file(str(out / "checkpoint" / "model" / "weights.safetensors"))
    monkeypatch.setattr(train_mod, "bits_per_dim", lambda logp, n: logp * float("nan"))
    with pytest.raises(TrainingDiverged, match="NaN/inf"):
        train(options(engine_npz, out, epochs=3, resume=True))
    assert checkpoint_state(out)["step"] == 3
    kept = load_model(out / "checkpoint" / "model").flow.state_dict()
    assert all(torch.equal(kept[k[5:]], v) for k, v in good.items() if k.startswith("flow."))
    code = main(["train", "--data", str(engine_npz), "--out", str(tmp_path / "cli"),
                 "--resolution", "32", "--levels", "2", "--depth", "1", "--width", "8",
                 "--epochs", "1", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "error: the training loss became NaN/inf" in err
    assert "Traceback" not in err


def test_huge_learning_rate_diverges_cleanly(engine_npz, tmp_path):
    with pytest.raises(TrainingDiverged):
        train(options(engine_npz, tmp_path / "run", lr=1e30, epochs=2))


def test_unreadable_data_is_a_user_error(tmp_path, capsys):
    code = main(["train", "--data", str(tmp_path / "missing.npz"), "--out", str(tmp_path)])
    assert code == 2 and "cannot read images from" in capsys.readouterr().err


@pytest.mark.slow
def test_torchrun_ddp_ranks_end_with_identical_weights(engine_npz, tmp_path):
    """2 CPU processes under gloo; each rank sees different images (and augmentation), so
    only DDP's gradient averaging keeps them equal."""
    torchrun = VENV_BIN / "torchrun"
    if not torchrun.exists():
        pytest.skip(f"{torchrun} not found")
    weights = tmp_path / "ranks"
    cmd = [torchrun, "--standalone", "--nproc_per_node=2", "-m", "glow_engine.train",
           "--data", engine_npz, "--out", tmp_path / "run", "--resolution", "32",
           "--levels", "2", "--depth", "1", "--width", "8", "--batch-size", "8",
           "--epochs", "1", "--warmup-steps", "1", "--device", "cpu",
           "--rank-weights-dir", weights]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    done = subprocess.run([str(c) for c in cmd], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rank0 = load_file(str(weights / "rank0.safetensors"))
    rank1 = load_file(str(weights / "rank1.safetensors"))
    assert rank0.keys() == rank1.keys()
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    meta = load_model(tmp_path / "run" / "model").meta["training"]
    assert meta["processes"] == 2 and meta["batch_size"] == 16 and meta["steps"] == 3
    init = load_model(tmp_path / "run" / "checkpoint" / "model").flow.state_dict()
    assert all(torch.equal(init[k], rank0[k]) for k in rank0)  # checkpoint = final state


def test_fine_tuning_trains_at_the_models_resolution(engine_npz, tmp_path):
    base = load_model(train(options(engine_npz, tmp_path / "base", max_steps=1)))
    # --resolution left at its default (128) must not shrink or grow the images
    tuned = load_model(train(options(engine_npz, tmp_path / "tuned", max_steps=1,
                                     init_from=str(base.path), resolution=128)))
    assert tuned.resolution == base.resolution == TINY["resolution"]
    assert tuned.meta["validation"]["bpd"] == pytest.approx(
        base.meta["validation"]["bpd"], abs=1.0)  # same scale: the images fit the flow


def test_fewer_images_than_a_batch_is_a_user_error(engine_npz, tmp_path, capsys):
    code = main(["train", "--data", str(engine_npz), "--out", str(tmp_path / "run"),
                 "--label", "1", "--batch-size", "32", "--resolution", "32", "--levels", "2",
                 "--depth", "1", "--width", "8", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "24 training images" in err and "Traceback" not in err


def test_resuming_a_finished_run_keeps_its_record(engine_npz, tmp_path):
    out = tmp_path / "run"
    train(options(engine_npz, out, epochs=1))
    model = load_model(train(options(engine_npz, out, epochs=1, resume=True)))
    assert model.meta["training"]["steps"] == 3 and model.meta["training"]["epochs"] == 1
    assert model.meta["validation"]["bpd"] is not None
