"""DP-GLOW's fitted clip boxes (issue 22 part 2): the model file form, the choice of a box per
budget, the exact accounting of "fitted" mode, and `dpglow fit-box`."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import model_contents, rewrite_model, tiny_images, to_uint8, with_fitted_box
from PIL import Image

from glow_engine import box_fitting
from glow_engine.box_fitting import QUANTILES, fit_boxes, held_out, quantile_boxes
from glow_engine.cli import main
from glow_engine.data import ImageSet
from glow_engine.errors import UserError
from glow_engine.fitted_box import FittedBox, FittedBoxError, FittedBoxes
from glow_engine.mechanisms import DPGlow, preview_noise
from glow_engine.mechanisms import box as box_module
from glow_engine.mechanisms.box import GRID_STEPS
from glow_engine.mechanisms.posterior import posterior_mean
from glow_engine.modelfile import LoadedModel, ModelFileError, load_model, save_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N = 32 * 32  # latent elements of the tiny 32x32 model


@pytest.fixture(scope="module")
def boxed(tiny_model: LoadedModel) -> LoadedModel:
    """The tiny model with boxes at e_px 1, 100 and inf: 1/3, 2/3 and all of the calibration
    range (the published box at alpha 0.4 lies between the first two)."""
    return with_fitted_box(tiny_model)


@pytest.fixture()
def images() -> np.ndarray:
    return tiny_images(3, seed=11)


@pytest.fixture(scope="module")
def saved(tiny_model, boxed, tmp_path_factory) -> tuple[Path, Path]:
    """(without, with) fitted boxes: the tiny model saved as model folders (read-only)."""
    root = tmp_path_factory.mktemp("fitted_box_models")
    save_model(root / "plain", tiny_model.flow, tiny_model.meta, tiny_model.calibration)
    save_model(root / "boxed", boxed.flow, boxed.meta, boxed.calibration, boxed.fitted_box)
    return root / "plain", root / "boxed"


def _copy(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / folder.name))


def _same_boxes(a: FittedBoxes, b: FittedBoxes) -> None:
    assert [(r.e_px, r.quantiles) for r in a.rows] == [(r.e_px, r.quantiles) for r in b.rows]
    for x, y in zip(a.rows, b.rows, strict=True):
        np.testing.assert_array_equal(x.lower.astype(np.float32), y.lower)
        np.testing.assert_array_equal(x.upper.astype(np.float32), y.upper)


# --------------------------------------------------------------------------- model file


@pytest.mark.parametrize("name", ["boxed", "boxed.safetensors"])
def test_a_fitted_box_survives_the_model_file(boxed, tmp_path, name) -> None:
    model = boxed
    path = tmp_path / name
    sha = save_model(path, model.flow, model.meta, model.calibration, model.fitted_box)
    loaded = load_model(path)
    assert loaded.sha256 == sha
    _same_boxes(model.fitted_box, loaded.fitted_box)
    assert loaded.fitted_box.info == {"fitted_on": "test"}
    assert loaded.meta["fitted_box"]["rows"][-1] == {"e_px": "inf", "quantiles": [0.0, 0.0]}


def test_the_hash_binds_the_box_and_a_tampered_box_is_refused(boxed, tmp_path) -> None:
    model = boxed
    first = save_model(tmp_path / "a", model.flow, model.meta, model.calibration,
                       model.fitted_box)
    rows = list(model.fitted_box.rows)
    rows[1] = dataclasses.replace(rows[1], lower=rows[1].lower - 1e-3)
    changed = FittedBoxes(tuple(rows), model.fitted_box.info)
    assert save_model(tmp_path / "b", model.flow, model.meta, model.calibration,
                      changed) != first
    tensors, meta = model_contents(tmp_path / "a")
    tensors["fitted_box.1.upper"] = tensors["fitted_box.1.upper"] + np.float32(0.01)
    rewrite_model(tmp_path / "a", tensors, meta, rehash=False)
    with pytest.raises(ModelFileError, match="integrity check"):
        load_model(tmp_path / "a")
    tensors, meta = model_contents(tmp_path / "b")
    meta["fitted_box"]["rows"][0]["quantiles"] = [0.3, 0.3]  # the description is bound too
    rewrite_model(tmp_path / "b", tensors, meta, rehash=False)
    with pytest.raises(ModelFileError, match="integrity check"):
        load_model(tmp_path / "b")


def test_a_model_without_a_box_reads_as_before(boxed, saved, tmp_path) -> None:
    """A file written before fitted boxes (none of their tensors or metadata) loads with
    fitted_box None; saving without one writes exactly that form, even from a boxed model's
    metadata."""
    assert load_model(saved[0]).fitted_box is None
    path = tmp_path / "m"
    save_model(path, boxed.flow, boxed.meta, boxed.calibration, boxed.fitted_box)
    again = load_model(path)
    save_model(path, again.flow, again.meta, again.calibration)
    tensors, meta = model_contents(path)
    assert "fitted_box" not in meta and not any(k.startswith("fitted_box") for k in tensors)
    assert load_model(path).fitted_box is None


def _damage(tensors: dict, meta: dict, how: str) -> None:
    rows = meta["fitted_box"]["rows"]
    if how == "missing tensor":
        del tensors["fitted_box.1.upper"]
    elif how == "extra tensor":
        tensors["fitted_box.7.lower"] = tensors["fitted_box.0.lower"]
    elif how == "no description":
        del meta["fitted_box"]
    elif how == "tensors without a row":
        del rows[-1]
    elif how == "wrong shape":
        tensors["fitted_box.0.lower"] = tensors["fitted_box.0.lower"][:-1]
        tensors["fitted_box.0.upper"] = tensors["fitted_box.0.upper"][:-1]
    elif how == "non-finite":
        tensors["fitted_box.2.upper"] = np.where(np.arange(N) == 5, np.inf,
                                                 tensors["fitted_box.2.upper"])
    elif how == "lower >= upper":
        tensors["fitted_box.0.upper"] = tensors["fitted_box.0.lower"].copy()
    elif how == "inverted":
        tensors["fitted_box.0.lower"], tensors["fitted_box.0.upper"] = (
            tensors["fitted_box.0.upper"], tensors["fitted_box.0.lower"])
    elif how == "one quantile":
        rows[0]["quantiles"] = [0.01]
    elif how == "quantile 0.5":
        rows[0]["quantiles"] = [0.5, 0.0]
    elif how == "bad budget":
        rows[0]["e_px"] = "-1"
    elif how == "budgets out of order":
        rows[0]["e_px"], rows[1]["e_px"] = rows[1]["e_px"], rows[0]["e_px"]
    else:
        raise AssertionError(how)


@pytest.mark.parametrize("how", [
    "missing tensor", "extra tensor", "no description", "tensors without a row", "wrong shape",
    "non-finite", "lower >= upper", "inverted", "one quantile", "quantile 0.5", "bad budget",
    "budgets out of order"])
def test_an_inconsistent_box_is_one_model_file_error(saved, tmp_path, how) -> None:
    """Consistently hashed but wrong: a half-written box never reaches the mechanism."""
    path = _copy(saved[1], tmp_path)
    tensors, meta = model_contents(path)
    _damage(tensors, meta, how)
    rewrite_model(path, tensors, meta, rehash=True)
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    message = str(info.value)
    assert message.startswith("Model boxed: ") and "box" in message and "\n" not in message


def test_calibrate_keeps_the_fitted_box(capsys, saved, tmp_path, engine_npz) -> None:
    path = saved[1]
    before = load_model(path).fitted_box
    out = tmp_path / "recalibrated.safetensors"
    assert main(["calibrate", str(path), "--data", str(engine_npz), "--out", str(out),
                 "--device", "cpu", "--no-progress"]) == 0, capsys.readouterr().err
    after = load_model(out)
    assert after.calibration.info["images"] == 48
    _same_boxes(after.fitted_box, before)
    assert after.fitted_box.info == before.info


# --------------------------------------------------------------------------- box per budget


def _rows(*budgets: float) -> FittedBoxes:
    return FittedBoxes(tuple(FittedBox(e, (0.0,), np.zeros(2), np.ones(2)) for e in budgets))


def test_a_budget_uses_the_nearest_row_in_log_ties_to_the_smaller() -> None:
    boxes = _rows(1, 100, math.inf)
    def pick(e_px: float) -> float:
        return boxes.for_budget(e_px).e_px

    assert [pick(e) for e in (1, 100, math.inf)] == [1, 100, math.inf]
    assert pick(9.9) == 1 and pick(10.1) == 100
    assert pick(10) == 1  # exactly between 1 and 100 in log: the smaller budget's, noisier box
    assert pick(0.001) == 1 and pick(1e6) == 100  # a finite budget never takes the inf row
    assert _rows(1, 100).for_budget(math.inf).e_px == 100  # no inf row: the largest
    assert _rows(math.inf).for_budget(3).e_px == math.inf  # only an inf row: it


def test_the_rows_must_be_distinct_and_in_order() -> None:
    with pytest.raises(FittedBoxError):
        _rows(100, 1)
    with pytest.raises(FittedBoxError):
        _rows(1, 1)
    with pytest.raises(FittedBoxError):
        FittedBoxes(())


# --------------------------------------------------------------------------- accounting

BUDGETS = (0.5, 1, 10, 30, 100, 1000)


def test_fitted_noise_is_the_budget_box_width_over_e_px(boxed) -> None:
    """S_k = w_k of the budget's box (ratio 1): b_k = w_k / e_px per element."""
    mech = DPGlow(boxed, mode="fitted")
    assert mech.ratio == 1
    for e_px in BUDGETS:
        box = boxed.fitted_box.for_budget(e_px)
        np.testing.assert_allclose(mech.scale_vector(e_px).numpy(), box.width / e_px,
                                   rtol=1e-6)
        assert mech.noise_scale(e_px) == pytest.approx(np.mean(box.width) / e_px, rel=1e-12)
        assert box.describe() in mech.describe(e_px)
    # the boxes differ per budget, so a box from the wrong budget would show
    assert mech.noise_scale(1) * 1 != pytest.approx(mech.noise_scale(100) * 100)


def test_published_modes_ignore_a_fitted_box(tiny_model, boxed, images) -> None:
    """paper: S = Delta, box alpha * Delta; tight: S = w = alpha * Delta, both on the
    published box at every budget; a model file with a fitted box gives the same pictures."""
    cal = tiny_model.calibration
    noise = preview_noise(3, N, seed=5)
    lo, hi = cal.centre - 0.2 * cal.delta, cal.centre + 0.2 * cal.delta
    for mode, sensitivity in (("paper", cal.delta), ("tight", 0.4 * cal.delta)):
        plain, with_box = DPGlow(tiny_model, mode=mode), DPGlow(boxed, mode=mode)
        for mech in (plain, with_box):
            np.testing.assert_allclose(mech.lo, lo)
            np.testing.assert_allclose(mech.width, 0.4 * cal.delta)
            for e_px in BUDGETS:
                np.testing.assert_allclose(mech.scale_vector(e_px).numpy(),
                                           sensitivity / e_px, rtol=1e-6)
        enc_a, enc_b = plain.encode(images), with_box.encode(images)
        for e_px in (1, 100):
            expected = np.clip(np.clip(enc_b.raw.double().numpy(), lo, hi)
                               + noise.double().numpy() * sensitivity / e_px, lo, hi)
            np.testing.assert_allclose(with_box.perturb_preview(enc_b, e_px, noise).numpy(),
                                       expected, rtol=0, atol=1e-5)
        for e_px in (1, 100, math.inf):
            np.testing.assert_array_equal(plain.preview(enc_a, e_px, noise),
                                          with_box.preview(enc_b, e_px, noise))
            np.testing.assert_array_equal(plain.release(enc_a, math.inf),
                                          with_box.release(enc_b, math.inf))


def _inside(z: torch.Tensor, box: FittedBox) -> bool:
    z = z.double().numpy()
    tol = 1e-5 * box.width
    return bool(((z >= box.lower - tol) & (z <= box.upper + tol)).all())


def test_the_release_grid_is_the_budget_box(boxed, images, monkeypatch) -> None:
    """The released latent lies in the budget's box, its exact noise scale is w_k / e_px in
    latent units, and without noise it is the input clipped into that box."""
    mech = DPGlow(boxed, mode="fitted", estimate="plain")
    enc = mech.encode(images)
    published = mech.lo, mech.lo + mech.width
    for e_px in (0.5, 1, 100, 1000, math.inf):
        box = boxed.fitted_box.for_budget(e_px)
        z = mech.perturb_release(enc, e_px)
        assert _inside(z, box)
        if e_px >= 100:  # these boxes are wider than the published one, and it shows
            zz = z.double().numpy()
            assert ((zz < published[0] - 1e-3) | (zz > published[1] + 1e-3)).any()
    scales = []
    real_scale = box_module.release_scale
    monkeypatch.setattr(box_module, "release_scale",
                        lambda e, ratio, *a: scales.append((e, ratio)) or real_scale(e, ratio, *a))
    monkeypatch.setattr(box_module, "discrete_laplace",
                        lambda n, t, s: np.zeros(n, dtype=np.int64))
    for e_px in (1, 100):
        box = boxed.fitted_box.for_budget(e_px)
        z = mech.perturb_release(enc, e_px).double().numpy()
        expected = np.clip(enc.raw.double().numpy(), box.lower, box.upper)
        np.testing.assert_allclose(z, expected, rtol=0, atol=float(box.width.max()) / GRID_STEPS)
        t, s = real_scale(e_px, Fraction(1))
        np.testing.assert_allclose(t / s * box.width / GRID_STEPS, box.width / e_px, rtol=1e-6)
    assert scales == [(1, 1), (100, 1)]  # ratio S/w = 1: the grid noise is 2^g / e_px steps


def test_the_preview_uses_the_budget_box(boxed, images) -> None:
    mech = DPGlow(boxed, mode="fitted", estimate="plain")
    enc = mech.encode(images)
    for e_px in (1, 100, 1000):
        box = boxed.fitted_box.for_budget(e_px)
        quiet = mech.perturb_preview(enc, e_px, torch.zeros(3, N)).double().numpy()
        np.testing.assert_allclose(quiet, np.clip(enc.raw.double().numpy(), box.lower,
                                                  box.upper), rtol=0, atol=1e-5)
        loud = mech.perturb_preview(enc, e_px, torch.full((3, N), 1e6)).double().numpy()
        np.testing.assert_allclose(loud, np.broadcast_to(box.upper, loud.shape), atol=1e-5)
        noise = preview_noise(3, N, seed=2)  # the first clip is into this box too
        inside = np.clip(enc.raw.double().numpy(), box.lower, box.upper)
        expected = np.clip(inside + noise.double().numpy() * box.width / e_px, box.lower,
                           box.upper)
        np.testing.assert_allclose(mech.perturb_preview(enc, e_px, noise).double().numpy(),
                                   expected, rtol=0, atol=1e-5)
    at_inf = mech.perturb_preview(enc, math.inf, torch.zeros(3, N))
    assert torch.equal(at_inf, mech.perturb_release(enc, math.inf))


def test_preview_and_release_share_the_posterior_mean(boxed, images, monkeypatch) -> None:
    """Both decode estimate(noisy, e_px) with the budget's box: with the noise held at zero
    (the release's drawn, the preview's given), both are the posterior mean of the input
    clipped into that box, which differs from the plain decode."""
    e_px = 100
    box = boxed.fitted_box.for_budget(e_px)
    mech = DPGlow(boxed, mode="fitted", estimate="posterior-mean")
    enc = mech.encode(images)
    calls = []
    real = DPGlow.estimate
    monkeypatch.setattr(DPGlow, "estimate",
                        lambda self, noisy, e, clip=True: calls.append(e) or real(self, noisy,
                                                                                  e, clip))
    monkeypatch.setattr(box_module, "discrete_laplace",
                        lambda n, t, s: np.zeros(n, dtype=np.int64))
    preview = mech.preview(enc, e_px, torch.zeros(3, N))
    release = mech.release(enc, e_px)
    assert calls == [e_px, e_px]
    clipped = torch.from_numpy(np.clip(enc.raw.double().numpy(), box.lower, box.upper))
    lo, hi = (torch.from_numpy(a) for a in (box.lower, box.upper))
    expected = mech.decode(posterior_mean(clipped, lo, hi, torch.from_numpy(box.width / e_px))
                           .float())
    np.testing.assert_allclose(preview, expected, atol=1.01 / 255)
    np.testing.assert_allclose(release, expected, atol=1.01 / 255)
    assert np.mean(preview == expected) > 0.99 and np.mean(release == preview) > 0.99
    plain = DPGlow(boxed, mode="fitted", estimate="plain").preview(enc, e_px, torch.zeros(3, N))
    assert np.abs(plain - expected).max() > 2 / 255  # so the test tells the two apart


def test_fitted_mode_without_a_box_is_one_line(tiny_model, capsys, engine_model_dir,
                                               tmp_path) -> None:
    unfitted = dataclasses.replace(tiny_model, fitted_box=None)
    with pytest.raises(UserError) as info:
        DPGlow(unfitted, mode="fitted")
    assert "no fitted clip box" in str(info.value) and "\n" not in str(info.value)
    loaded = load_model(engine_model_dir)
    engine_model_dir = tmp_path / "unfitted"
    save_model(engine_model_dir, loaded.flow, loaded.meta, loaded.calibration)
    picture = tmp_path / "in" / "a.png"
    picture.parent.mkdir()
    Image.fromarray(to_uint8(tiny_images(1)[0])).save(picture)
    out = tmp_path / "out"
    code = main(["privatize", str(picture), "--model", str(engine_model_dir), "--mode",
                 "fitted", "--e-px", "100", "--out", str(out), "--ledger",
                 str(tmp_path / "ledger.sqlite"), "--no-progress",
                 "--confirm-one-patient-per-image"])
    err = capsys.readouterr().err
    assert code == 2 and "no fitted clip box" in err and err.count("\n") == 1
    assert not out.exists() or not any(out.rglob("*.png"))


def test_the_label_names_the_fitted_box(boxed) -> None:
    assert DPGlow(boxed, mode="fitted", estimate="posterior-mean").label == \
        "DP-GLOW (fitted box, posterior mean)"
    assert DPGlow(boxed, mode="fitted", estimate="plain").label == "DP-GLOW (fitted box)"
    assert DPGlow(boxed, mode="tight").label == "DP-GLOW (tight, α=0.4)"


# --------------------------------------------------------------------------- fitting


def test_quantile_boxes_are_numpys_quantiles() -> None:
    latents = np.random.default_rng(0).standard_normal((41, 6))
    lower, upper = quantile_boxes(latents, (0.0, 0.1, 0.25))
    np.testing.assert_array_equal(lower[0], latents.min(0))
    np.testing.assert_array_equal(upper[0], latents.max(0))
    for i, q in enumerate((0.0, 0.1, 0.25)):
        np.testing.assert_allclose(lower[i], np.quantile(latents, q, axis=0), rtol=1e-12)
        np.testing.assert_allclose(upper[i], np.quantile(latents, 1 - q, axis=0), rtol=1e-12)


def test_refit_takes_each_rows_quantiles_from_the_other_latents() -> None:
    """The selection's cross-fit: the same quantile per level and budget, other latents."""
    rng = np.random.default_rng(1)
    slices = (slice(0, 4), slice(4, 6))
    fit_on, other = rng.standard_normal((50, 6)), 3 + rng.standard_normal((30, 6))
    quantiles = (0.0, 0.1, 0.2)
    lower, upper = quantile_boxes(fit_on, quantiles)
    boxes = FittedBoxes((box_fitting.assemble(1.0, [2, 0], lower, upper, quantiles, slices),
                         box_fitting.assemble(math.inf, [0, 1], lower, upper, quantiles,
                                              slices)), {"fitted_on": "a"})
    same = box_fitting.refit(boxes, fit_on, slices, "a")
    for before, after in zip(boxes.rows, same.rows, strict=True):
        np.testing.assert_array_equal(before.lower, after.lower)
        np.testing.assert_array_equal(before.upper, after.upper)
    moved = box_fitting.refit(boxes, other, slices, "b")
    assert [r.quantiles for r in moved.rows] == [(0.2, 0.0), (0.0, 0.1)]
    assert moved.info == {"fitted_on": "b", "images": 30}
    np.testing.assert_allclose(moved.rows[0].lower[:4], np.quantile(other[:, :4], 0.2, axis=0))
    np.testing.assert_array_equal(moved.rows[0].upper[4:], other[:, 4:].max(0))
    np.testing.assert_allclose(moved.rows[1].upper[4:], np.quantile(other[:, 4:], 0.9, axis=0))


def test_held_out_images_are_whole_patients() -> None:
    patients = np.array(["a", "a", "b", "c", "c", "c", "d", "e", "e", "f"])
    for seed in range(6):
        mask = held_out(patients, 3, seed)
        assert mask.sum() >= 3 and not mask.all()
        for p in np.unique(patients):
            assert len(set(mask[patients == p])) == 1  # all of a patient's images or none
    with pytest.raises(UserError, match="too few training patients"):
        held_out(np.array(["a", "a", "a"]), 1, 0)


def _training_set(n_patients: int = 12, per_patient: int = 2) -> ImageSet:
    n = n_patients * per_patient
    pids = np.repeat([f"P{i}" for i in range(n_patients)], per_patient)
    return ImageSet(to_uint8(tiny_images(n, seed=9)), np.zeros(n, np.int64), pids,
                    np.full(n, ""), np.array([f"img{i}" for i in range(n)]), "synthetic train")


def test_fit_boxes_chooses_on_held_out_patients_and_never_worsens(tiny_model,
                                                                  monkeypatch) -> None:
    """The quantiles are fitted on the other patients' latents, the choice per budget is one
    candidate per level no worse on the held-out patients than the min-max box (p = 0 on every
    level) or any single p, and the stored box is the choice refitted on every image."""
    data = _training_set()
    candidates = (0.0, 0.02, 0.2)
    fits, scores = [], {}
    real_quantiles, real_error = box_fitting.quantile_boxes, box_fitting._Chooser.error

    def spy_quantiles(latents, quantiles):
        fits.append(latents.copy())
        return real_quantiles(latents, quantiles)

    def spy_error(self, e_px, choice):
        scores[e_px, tuple(choice)] = real_error(self, e_px, choice)
        return scores[e_px, tuple(choice)]

    monkeypatch.setattr(box_fitting, "quantile_boxes", spy_quantiles)
    monkeypatch.setattr(box_fitting._Chooser, "error", spy_error)
    boxes, report = fit_boxes(tiny_model, data, [100, 1, math.inf], held_out_images=6, seed=3,
                              quantiles=candidates, progress=False)
    latents = box_fitting.encode_latents(tiny_model, data.images, progress=False)
    out = held_out(data.patient_ids, 6, 3)
    assert 6 <= out.sum() < len(out)
    assert not set(data.patient_ids[out]) & set(data.patient_ids[~out])
    np.testing.assert_array_equal(fits[0], latents[~out])  # the choice's fit: no held-out image
    np.testing.assert_array_equal(fits[-1], latents)  # the stored box: every image
    levels = tiny_model.flow.cfg.levels
    slices = tiny_model.flow.level_slices()
    assert [r.e_px for r in boxes.rows] == [1, 100, math.inf]
    for row, rep in zip(boxes.rows, report, strict=True):
        assert len(row.quantiles) == levels and set(row.quantiles) <= set(candidates)
        choice = tuple(candidates.index(q) for q in row.quantiles)
        assert rep["mse"] == scores[row.e_px, choice]
        assert rep["mse"] <= scores[row.e_px, (0,) * levels]
        assert rep["mse"] <= min(scores[row.e_px, (i,) * levels] for i in range(3))
        for part, q in zip(slices, row.quantiles, strict=True):
            np.testing.assert_allclose(row.lower[part], np.quantile(latents, q, axis=0)[part],
                                       atol=1e-6)
            np.testing.assert_allclose(row.upper[part],
                                       np.quantile(latents, 1 - q, axis=0)[part], atol=1e-6)
    assert boxes.info["held_out_images"] == int(out.sum()) and boxes.info["images"] == 24
    assert QUANTILES[0] == 0  # the default candidates include the min-max range


def _npz(path: Path, with_patients: bool = True) -> Path:
    data = _training_set()
    fields = {"images": data.images, "split": np.array(["train"] * len(data))}
    if with_patients:
        fields["patient_ids"] = data.patient_ids
    np.savez(path, **fields)
    return path


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def test_fit_box_cli_writes_a_loadable_box_and_leaves_the_input(capsys, saved,
                                                                 tmp_path) -> None:
    model = saved[0]
    npz = _npz(tmp_path / "train.npz")
    before = _digest(model)
    out = tmp_path / "fitted.safetensors"
    code = main(["fit-box", str(model), "--data", str(npz), "--out", str(out), "--budgets",
                 "inf,100,1", "--held-out-images", "6", "--device", "cpu", "--no-progress"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "fitted 3 boxes on 24 training images" in printed.out
    assert _digest(model) == before and load_model(model).fitted_box is None
    loaded = load_model(out)
    assert [r.e_px for r in loaded.fitted_box.rows] == [1, 100, math.inf]
    assert loaded.fitted_box.info["fitted_on"] == "train.npz split=train"
    assert DPGlow(loaded, mode="fitted").fitted_box(100) is loaded.fitted_box.rows[1]


@pytest.mark.parametrize("extra, message", [
    (["--budgets", "inf-noclip,100"], "drop the -noclip budgets"),
    (["--budgets", "fast"], "cannot read the budget"),
    (["--held-out-images", "0"], "at least 1"),
])
def test_fit_box_cli_refusals_are_one_line(capsys, saved, tmp_path, extra, message) -> None:
    model = saved[0]
    npz = _npz(tmp_path / "train.npz")
    before = _digest(model)
    out = tmp_path / "fitted"
    code = main(["fit-box", str(model), "--data", str(npz), "--out", str(out), "--device",
                 "cpu", "--no-progress", *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists() and _digest(model) == before


def test_fit_box_needs_patients_to_hold_out(capsys, saved, tmp_path) -> None:
    """Without patient ids nothing tells the held-out images from the rest's patients."""
    model = saved[0]
    out = tmp_path / "fitted"
    code = main(["fit-box", str(model), "--data", str(_npz(tmp_path / "t.npz", False)),
                 "--out", str(out), "--budgets", "10", "--held-out-images", "4", "--device",
                 "cpu", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "need patient IDs" in err and err.count("\n") == 1
    assert not out.exists()
