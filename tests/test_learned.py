"""The learned measures on tiny data: the downstream classifier, the siamese verification
attacker, the compressor and view baselines, and `dpglow evaluate --downstream
--learned-attacker` end to end with its cache and risk card (a few seconds each)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from helpers import synthetic_cxr
from scipy.ndimage import gaussian_filter

from glow_engine.cli import main
from glow_engine.data import ImageSet
from glow_engine.evaluation import baselines, cnn, downstream, reid, siamese
from glow_engine.risk_card import RISK_CARD_NAME, load_risk_card, read_risk_card

QUICK = cnn.Recipe(input=32, epochs=6, batch_size=8, lr=3e-3)  # seconds, not minutes


def image_set(images: np.ndarray, labels: np.ndarray, pids: list[str],
              views: list[str] | None = None) -> ImageSet:
    n = len(images)
    return ImageSet(np.rint(images * 255).astype(np.uint8), labels.astype(np.int64),
                    np.array(pids), np.array(views or ["PA"] * n), np.array([""] * n), "test")


def patients(n_patients: int, per_patient: int, seed: int) -> np.ndarray:
    """Each patient a distinct random texture, imaged `per_patient` times with small changes."""
    rng = np.random.default_rng(seed)
    base = gaussian_filter(rng.random((n_patients, 32, 32)), (0, 3, 3))
    base = (base - base.min()) / (base.max() - base.min())
    shots = base[:, None] + 0.03 * rng.standard_normal((n_patients, per_patient, 32, 32))
    return np.clip(shots, 0, 1).reshape(-1, 32, 32).astype(np.float32)


def test_classifier_learns_the_opacity_and_is_deterministic() -> None:
    x = np.concatenate([synthetic_cxr(16, False, 1), synthetic_cxr(16, True, 2)])
    y = np.r_[np.zeros(16), np.ones(16)].astype(np.int64)
    model = downstream.train_classifier(x, y, seed=3, recipe=QUICK)
    xv = np.concatenate([synthetic_cxr(10, False, 5), synthetic_cxr(10, True, 6)])
    yv = np.r_[np.zeros(10), np.ones(10)].astype(np.int64)
    result = downstream.auc(model, xv, yv, np.arange(20).astype(str), 200, 0)
    assert result["auc"] > 0.9 and result["ci95"][0] <= result["auc"]
    again = downstream.train_classifier(x, y, seed=3, recipe=QUICK)
    np.testing.assert_array_equal(downstream.scores(model, xv), downstream.scores(again, xv))
    other = downstream.train_classifier(x, y, seed=4, recipe=QUICK)
    assert not np.array_equal(downstream.scores(model, xv), downstream.scores(other, xv))
    with pytest.raises(ValueError, match="normal and abnormal"):
        downstream.train_classifier(x[:16], y[:16], seed=0, recipe=QUICK)


def test_verifier_links_images_of_one_patient() -> None:
    train, val = patients(24, 2, seed=1), patients(8, 2, seed=2)
    train_ids = np.repeat([f"t{i}" for i in range(24)], 2)
    val_ids = np.repeat([f"v{i}" for i in range(8)], 2)
    assert len(siamese.same_patient_pairs(train_ids)) == 24
    model = siamese.train_verifier(train, train_ids, seed=0, recipe=replace(QUICK, epochs=10))
    sim = siamese.similarity(model, val, val)
    assert sim.shape == (16, 16)
    result = reid.verification_auc(sim, val_ids, 200, 0)
    assert result["n_pos"] == 16 and result["auc"] > 0.8
    # retrained variant: fine-tuned from the network with privatised (here: noisy) queries
    noisy = np.clip(train + 0.3 * np.random.default_rng(0).standard_normal(train.shape), 0, 1)
    tuned = siamese.train_verifier(train, train_ids, 0, QUICK,
                                   queries=noisy.astype(np.float32), init=model)
    assert tuned is not model and not np.array_equal(siamese.similarity(tuned, val, val), sim)
    with pytest.raises(ValueError, match="several images"):
        siamese.train_verifier(train[:3], ["a", "b", "c"], 0, QUICK)


def test_verification_pairs_skip_the_own_image_and_unknown_patients() -> None:
    i, j, same = reid.verification_pairs(np.array(["a", "a", "b", ""]))
    assert len(i) == 6 and not np.any(i == j) and same.sum() == 2  # (0, 1) and (1, 0)
    sim = np.array([[9.0, 1, 0], [1, 9, 0], [0, 0, 9]])  # the diagonal would be a give-away
    assert reid.verification_auc(sim, np.array(["a", "a", "b"]), 50, 0)["auc"] == 1.0


def test_compressor_baseline_ranks_complexity_and_view_baseline_reads_the_view() -> None:
    smooth = np.full((4, 32, 32), 0.5, np.float32)
    busy = np.random.default_rng(0).random((4, 32, 32)).astype(np.float32)
    data = image_set(np.concatenate([smooth, busy]), np.r_[np.zeros(4), np.ones(4)],
                     [f"p{i}" for i in range(8)], ["AP"] * 3 + ["PA"] * 5)
    for name in ("png", "jpeg2000"):
        bpp = baselines.COMPRESSORS[name](np.concatenate([smooth, busy]))
        assert np.all(bpp[4:] > 4 * bpp[:4]) and np.all(bpp[4:] > 7)  # noise: incompressible
    result = baselines.compressor_aucs(np.concatenate([smooth, busy]), data, 100, 0)
    assert {"png", "jpeg2000"} <= set(result) and result["png"]["all"]["auc"] == 1.0
    view = baselines.view_auc(data, 100, 0)
    # normals: 3 AP + 1 PA, abnormals: 4 PA -> PA flags abnormal; AUC = (4 * 1 + ...) / 16
    assert view["abnormal_view"] == "PA" and view["auc"] == pytest.approx(0.875)


def test_complexity_correction_removes_what_the_compressor_explains() -> None:
    smooth = np.full((4, 32, 32), 0.5, np.float32)
    busy = np.random.default_rng(0).random((4, 32, 32)).astype(np.float32)
    pixels = np.concatenate([smooth, busy])
    data = image_set(pixels, np.r_[np.zeros(4), np.ones(4)], [f"p{i}" for i in range(8)])
    png = baselines.COMPRESSORS["png"](pixels)
    # a "flow" that is the compressor plus a constant ranks by complexity alone (AUC 1) ...
    tracks = png + 0.5  # exact in binary: the corrected scores tie exactly
    # ... and one that codes the normals worse than PNG does: still AUC 1 uncorrected (the
    # noise is far more complex), 0 once the complexity is taken out
    beyond = png + np.r_[np.ones(4), np.zeros(4)]
    result = baselines.complexity_corrected_aucs({"tracks": tracks, "beyond": beyond},
                                                 pixels, data, 100, 0)
    assert result["tracks"]["auc"] == pytest.approx(0.5)  # all ties once corrected
    assert baselines.compressor_aucs(pixels, data, 100, 0)["png"]["all"]["auc"] == 1.0
    assert result["beyond"]["auc"] == pytest.approx(0.0)


# --------------------------------------------------------------------------- command


@pytest.fixture(scope="module")
def split_npz(tmp_path_factory) -> Path:
    """24 training images (12 patients x 2) and 16 val images (8 patients x 2), half
    abnormal, mixed views, patients disjoint between the splits."""
    images = np.concatenate([synthetic_cxr(12, False, 7), synthetic_cxr(12, True, 8),
                             synthetic_cxr(8, False, 3), synthetic_cxr(8, True, 4)])
    labels = np.r_[np.zeros(12), np.ones(12), np.zeros(8), np.ones(8)].astype(np.int64)
    pids = [f"t{i // 2}" for i in range(24)] + [f"v{i // 2}" for i in range(16)]
    path = tmp_path_factory.mktemp("split") / "data.npz"
    np.savez(path, images=np.rint(images * 255).astype(np.uint8), labels=labels,
             split=np.array(["train"] * 24 + ["val"] * 16), patient_ids=np.array(pids),
             views=np.array(["PA", "AP"] * 20))
    return path


def _evaluate(npz: Path, out: Path, dirs, *extra: str) -> int:
    return main(["evaluate", "--data", str(npz), "--out", str(out), "--normal", str(dirs[0]),
                 "--mixture", str(dirs[1]), "--mechanisms", "dpglow-tight,dppix", "--epx",
                 "inf", "--learned-epx", "10", "--learned-epochs", "4", "--bootstrap", "50",
                 "--check-images", "4", "--no-synthetic", "--no-progress", *extra])


def test_evaluate_downstream_and_learned_attacker(split_npz: Path, anomaly_model_dirs,
                                                  tmp_path: Path, capsys) -> None:
    out, ref = tmp_path / "eval", tmp_path / "models" / "reference_scores.json"
    assert _evaluate(split_npz, out, anomaly_model_dirs, "--downstream", "--learned-attacker",
                     "--write-reference", str(ref)) == 0
    results = json.loads((out / "results.json").read_text())
    assert [(r["mechanism"], r["setting"]) for r in results["runs"]] == [
        ("dpglow-tight", "inf"), ("dpglow-tight", "10"), ("dppix", "inf"), ("dppix", "10")]
    learned = results["learned"]
    assert learned["config"]["train"]["images"] == 24
    assert learned["config"]["train"]["same_patient_pairs"] == 12
    assert set(learned["original"]) == {"downstream", "attacker"}
    for run in learned["runs"]:
        assert set(run["downstream"]) >= {"real_to_private", "private_to_real"}
        assert set(run["attacker"]) >= {"originals", "retrained"}
        assert 0 <= run["downstream"]["private_to_real"]["auc"] <= 1
    report = (out / "report.md").read_text()
    assert "siamese (retrained)" in report and "CNN privatised → real" in report
    assert (out / "learned.png").stat().st_size > 5000
    cache = out / "cache"
    assert (cache / "train__dppix__10.npz").exists()
    assert (cache / "original_verifier.safetensors").exists()
    assert not list(cache.glob("*.pt")) and not list(cache.glob("*.pkl"))  # no pickle

    # the risk card: numbers only, bound to both models, the figures of results.json
    card = read_risk_card(ref.with_name(RISK_CARD_NAME))
    text = ref.with_name(RISK_CARD_NAME).read_text()
    for pid in ("t0", "v0", "v7"):
        assert f'"{pid}"' not in text
    row = card.body["mechanisms"]["dppix"]["10"]
    run = next(r for r in results["runs"] if (r["mechanism"], r["setting"]) == ("dppix", "10"))
    lr = next(r for r in learned["runs"] if r["mechanism"] == "dppix")
    assert row["auc_bpd"] == run["auc"]["bpd_mixture"]["auc"]
    assert row["downstream_private_to_real"] == lr["downstream"]["private_to_real"]["auc"]
    assert row["verification_auc"] == max(
        [run["reid"][a]["verification"]["auc"] for a in ("pixel", "latent")]
        + [lr["attacker"][v]["auc"] for v in ("originals", "retrained")])
    assert row["total_epsilon"] == 10 * 32 * 32
    assert card.key_of("dppix", "b8") == "dppix" and card.key_of("dpglow", "tight")
    assert "inf-noclip" not in card.body["mechanisms"]["dpglow-tight"]
    mixture_sha, normal_sha = card.mixture_sha256, card.normal_sha256
    assert load_risk_card(ref.with_name(RISK_CARD_NAME), mixture_sha, normal_sha) is not None
    assert load_risk_card(ref.with_name(RISK_CARD_NAME), mixture_sha, "0" * 64) is None

    # resumed: nothing is trained again, the numbers are the same
    stamps = {p: p.stat().st_mtime_ns for p in cache.iterdir()}
    capsys.readouterr()
    assert _evaluate(split_npz, out, anomaly_model_dirs, "--downstream",
                     "--learned-attacker") == 0
    assert "training the" not in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    again = json.loads((out / "results.json").read_text())["learned"]
    assert [r["attacker"] for r in again["runs"]] == [r["attacker"] for r in learned["runs"]]


def test_learned_measures_need_disjoint_training_patients(split_npz: Path, anomaly_model_dirs,
                                                          tmp_path: Path, capsys) -> None:
    assert _evaluate(split_npz, tmp_path / "e", anomaly_model_dirs, "--downstream",
                     "--train-split", "val") == 2
    assert "share 8 patient(s)" in capsys.readouterr().err


def test_learned_measures_check_the_training_split_first(split_npz: Path, anomaly_model_dirs,
                                                          tmp_path: Path, capsys) -> None:
    """Refused before the (long) evaluation starts: nothing is written."""
    data = np.load(split_npz)
    one_each = tmp_path / "one_each.npz"  # training patients with one image each
    pids = np.array([f"x{i}" for i in range(24)] + list(data["patient_ids"][24:]))
    np.savez(one_each, **{k: data[k] for k in data.files if k != "patient_ids"},
             patient_ids=pids)
    out = tmp_path / "e"
    assert _evaluate(split_npz, out, anomaly_model_dirs, "--learned-attacker", "--train-data",
                     str(one_each)) == 2
    assert "several images" in capsys.readouterr().err and not out.exists()
