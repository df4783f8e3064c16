"""Shared pytest fixtures."""

import pytest


@pytest.fixture(autouse=True)
def _no_user_files(tmp_path_factory, monkeypatch):
    """No test reads or writes the user's own ledger, releases or settings: HOME and the XDG
    folders point into a fresh temporary folder for every test."""
    home = tmp_path_factory.mktemp("home")
    for name, sub in (("HOME", ""), ("XDG_DATA_HOME", ".local/share"),
                      ("XDG_CONFIG_HOME", ".config"), ("XDG_CACHE_HOME", ".cache")):
        monkeypatch.setenv(name, str(home / sub))
    monkeypatch.delenv("DPGLOW_LEDGER", raising=False)

# Every image and model builder lives in helpers.py; these fixtures share what they build.


@pytest.fixture(scope="session")
def tiny_model():
    """A LoadedModel: Glow(resolution 32, 2 levels, depth 2, width 16), calibrated, so DP-GLOW
    runs without a trained model (the mechanisms and release tests)."""
    import helpers

    return helpers.tiny_model()


@pytest.fixture(scope="session")
def anomaly_model_pair():
    """(normal, mixture) LoadedModels at 32x32 on synthetic "chest X-rays"; M is calibrated on
    its training images (the anomaly and evaluation tests)."""
    import numpy as np
    from helpers import fitted_model, synthetic_cxr

    normal = synthetic_cxr(48, False, 0)
    mixture = np.concatenate([normal, synthetic_cxr(48, True, 1)])
    return fitted_model(normal, "normal"), fitted_model(mixture, "mixture", mixture)


@pytest.fixture(scope="session")
def anomaly_model_dirs(anomaly_model_pair, tmp_path_factory):
    """The same pair saved as model directories (normal, mixture)."""
    from helpers import with_fitted_box

    from glow_engine.modelfile import save_model

    root = tmp_path_factory.mktemp("models")
    paths = []
    for model in anomaly_model_pair:
        path = root / model.meta["name"]
        boxes = None if model.calibration is None else with_fitted_box(model).fitted_box
        save_model(path, model.flow, model.meta, model.calibration, boxes)
        paths.append(path)
    return paths[0], paths[1]


@pytest.fixture
def make_flow():
    """make_flow(resolution=32, levels=2, depth=2, width=16, seed=0, scale=0.05) -> Glow whose
    couplings and priors are not the identity (the flow, model file and training tests)."""
    from helpers import perturbed_flow

    return perturbed_flow


@pytest.fixture(scope="session")
def engine_npz(tmp_path_factory):
    """A .npz like ../shared/data's: 48 train + 16 val uint8 32x32 images, labels 0/1."""
    import numpy as np
    from helpers import tiny_images, to_uint8

    path = tmp_path_factory.mktemp("engine_data") / "tiny.npz"
    labels = np.arange(64) % 2
    split = np.array(["train"] * 48 + ["val"] * 16)
    np.savez(path, images=to_uint8(tiny_images(64, seed=3)), labels=labels, split=split)
    return path


@pytest.fixture(scope="session")
def engine_model_dir(tmp_path_factory):
    """A saved, calibrated model directory (32x32, L=2, K=2, width 16)."""
    import numpy as np
    from helpers import perturbed_flow, with_fitted_box

    from glow_engine.modelfile import Calibration, LoadedModel, save_model

    flow = perturbed_flow()
    n = flow.num_pixels
    lo, hi = -np.linspace(1, 3, n), np.linspace(1, 3, n)
    path = tmp_path_factory.mktemp("engine_models") / "tiny"
    meta = {"name": "tiny", "training": {"steps": 7}}
    cal = Calibration(lo, hi, {"images": 5, "data": "synthetic"})
    boxes = with_fitted_box(LoadedModel(flow, meta, cal, "")).fitted_box  # the default mode's
    save_model(path, flow, meta, cal, boxes)
    return path


@pytest.fixture
def one_torch_thread():
    """One intra-op thread during the test: tiny tensors gain nothing from threads, and on a
    busy machine every parallel op waits for a descheduled thread (25x slower, measured)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------- viewer window
# (test_app_*.py) The main window offscreen on the tiny model pair of test_app_support.


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """ModelPaths of the tiny shared pair (read-only)."""
    from test_app_support import shared_pair

    from app.qt.main_window import ModelPaths

    return ModelPaths(*shared_pair(tmp_path_factory))


@pytest.fixture
def settings(tmp_path):
    """Viewer settings in a file of the test's own, never the user's."""
    from PySide6.QtCore import QSettings

    return QSettings(str(tmp_path / "viewer.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def window(qtbot, settings, models, tmp_path):
    """The window with a 120x100 PNG open, rendered and scored."""
    from test_app_support import make_window, settle, write_png

    w = make_window(qtbot, settings, models)
    w.start(write_png(tmp_path / "chest.png", height=120, width=100))
    settle(qtbot, w)
    return w
