"""Shared pytest fixtures."""

import pytest

# --------------------------------------------------------------------------- tiny_model
# (privacy mechanisms / release tests) A 32x32 GLOW small enough to build in a second, with
# a calibration from smooth random images, so DP-GLOW can run without a trained model.


def tiny_images(n: int, seed: int = 0, size: int = 32):
    """Smooth random [0, 1] float32 images (n, size, size): blurred noise plus a gradient."""
    import numpy as np

    rng = np.random.default_rng(seed)
    coarse = rng.random((n, size // 8, size // 8))
    smooth = np.kron(coarse, np.ones((8, 8)))
    ramp = np.linspace(0, 0.3, size)[None, None, :]
    return np.clip(0.6 * smooth + ramp + 0.05 * rng.random((n, size, size)), 0, 1).astype(
        np.float32)


@pytest.fixture(scope="session")
def tiny_model():
    """A LoadedModel: Glow(resolution 32, 2 levels, depth 2, width 16), calibrated."""
    import torch

    from glow_engine.flow import Glow, GlowConfig
    from glow_engine.flow.glow import pixels_to_model
    from glow_engine.modelfile import Calibration, LoadedModel

    torch.manual_seed(0)
    flow = Glow(GlowConfig(resolution=32, levels=2, depth=2, width=16))
    x = pixels_to_model(torch.from_numpy(tiny_images(64))[:, None])
    flow.initialize_actnorm(x)
    flow.eval()
    with torch.inference_mode():
        z = flow.encode(x).double().numpy()
    calibration = Calibration(z.min(0), z.max(0), {"images": 64, "data": "tiny synthetic"})
    return LoadedModel(flow, meta={"name": "tiny", "architecture": flow.cfg.to_dict()},
                       calibration=calibration, sha256="0" * 64)


# --------------------------------------------------------------------------- anomaly / evaluation
# A tiny normal-only model N and mixture model M on synthetic "chest X-rays". Data-dependent
# actnorm init alone fits each model to the first two moments of its data, which is enough for
# N and M to disagree on the synthetic "opacity" (no training steps: keeps the fixture < 2 s).

EVAL_RES = 32


def synthetic_cxr(n: int, abnormal: bool, seed: int, resolution: int = EVAL_RES):
    """float32 (n, R, R) in [0, 1]: a bright mediastinum on a dark background with smooth
    texture; `abnormal` adds a bright round "opacity" in one lung field."""
    import numpy as np
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:resolution, 0:resolution] / resolution
    out = np.empty((n, resolution, resolution), np.float32)
    for i in range(n):
        img = 0.25 + 0.35 * np.exp(-((xx - 0.45) ** 2) / 0.05) * (0.6 + 0.4 * yy)
        img += 0.08 * gaussian_filter(rng.standard_normal((resolution, resolution)), 2)
        if abnormal:
            cy, cx = rng.uniform(0.3, 0.7), rng.choice([0.25, 0.75])
            img += 0.35 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.01)
        out[i] = np.clip(img, 0, 1)
    return out


def _actnorm_fitted_model(pixels, name: str, calibrate_on=None):
    import numpy as np
    import torch

    from glow_engine.calibration import calibrate
    from glow_engine.flow import Glow, GlowConfig
    from glow_engine.flow.glow import dequantize
    from glow_engine.modelfile import LoadedModel

    torch.manual_seed(0)
    flow = Glow(GlowConfig(resolution=EVAL_RES, levels=2, depth=2, width=16))
    u8 = torch.from_numpy(np.rint(pixels * 255).astype(np.uint8))[:, None]
    flow.initialize_actnorm(dequantize(u8, torch.Generator().manual_seed(1)))
    flow.eval()
    model = LoadedModel(flow, {"name": name}, None, name * 4)
    if calibrate_on is not None:
        u8c = np.rint(calibrate_on * 255).astype(np.uint8)
        model.calibration = calibrate(model, [u8c], "synthetic", progress=False)
    return model


@pytest.fixture(scope="session")
def anomaly_model_pair():
    """(normal, mixture) LoadedModels at 32x32; M is calibrated on its training images."""
    import numpy as np

    normal = synthetic_cxr(48, False, 0)
    mixture = np.concatenate([normal, synthetic_cxr(48, True, 1)])
    return (_actnorm_fitted_model(normal, "normal", None),
            _actnorm_fitted_model(mixture, "mixture", mixture))


@pytest.fixture(scope="session")
def anomaly_model_dirs(anomaly_model_pair, tmp_path_factory):
    """The same pair saved as model directories (normal, mixture)."""
    from glow_engine.modelfile import save_model

    root = tmp_path_factory.mktemp("models")
    paths = []
    for model in anomaly_model_pair:
        path = root / model.meta["name"]
        save_model(path, model.flow, model.meta, model.calibration)
        paths.append(path)
    return paths[0], paths[1]


# --------------------------------------------------------------------------- engine
# (flow / model file / training / calibration / CLI tests) Small flows whose couplings and
# priors are *not* the identity (fresh ones are: their last convs start at zero), and a tiny
# .npz in the project's format.


def _perturbed_flow(resolution: int = 32, levels: int = 2, depth: int = 2, width: int = 16,
                    seed: int = 0, scale: float = 0.05):
    """An actnorm-initialised Glow with every parameter jittered, in eval mode."""
    import torch

    from glow_engine.flow import Glow, GlowConfig
    from glow_engine.flow.glow import pixels_to_model

    torch.manual_seed(seed)
    flow = Glow(GlowConfig(resolution, levels, depth, width, seed=seed))
    pixels = torch.from_numpy(tiny_images(16, seed, resolution))[:, None]
    flow.initialize_actnorm(pixels_to_model(pixels))
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))
    return flow.eval()


@pytest.fixture
def make_flow():
    """make_flow(resolution=32, levels=2, depth=2, width=16, seed=0, scale=0.05) -> Glow."""
    return _perturbed_flow


@pytest.fixture(scope="session")
def engine_npz(tmp_path_factory):
    """A .npz like ../shared/data's: 48 train + 16 val uint8 32x32 images, labels 0/1."""
    import numpy as np

    path = tmp_path_factory.mktemp("engine_data") / "tiny.npz"
    images = np.rint(tiny_images(64, seed=3) * 255).astype(np.uint8)
    labels = np.arange(64) % 2
    split = np.array(["train"] * 48 + ["val"] * 16)
    np.savez(path, images=images, labels=labels, split=split)
    return path


@pytest.fixture(scope="session")
def engine_model_dir(tmp_path_factory):
    """A saved, calibrated model directory (32x32, L=2, K=2, width 16) and its flow."""
    import numpy as np

    from glow_engine.modelfile import Calibration, save_model

    flow = _perturbed_flow()
    n = flow.num_pixels
    lo, hi = -np.linspace(1, 3, n), np.linspace(1, 3, n)
    path = tmp_path_factory.mktemp("engine_models") / "tiny"
    save_model(path, flow, {"name": "tiny", "training": {"steps": 7}},
               Calibration(lo, hi, {"images": 5, "data": "synthetic"}))
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

    from app.main_window import ModelPaths

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
