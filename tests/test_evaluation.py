"""glow_engine.evaluation and `dpglow evaluate` / `dpglow score` on synthetic data and the tiny
normal/mixture model pair of tests/conftest.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from helpers import synthetic_cxr
from PIL import Image

from glow_engine.cli import main
from glow_engine.errors import UserError
from glow_engine.evaluation import checks, reid
from glow_engine.evaluation.metrics import _weighted_aucs, auc, auc_with_ci, psnr, ssim
from glow_engine.evaluation.settings import Setting, parse_mechanisms, parse_settings
from glow_engine.overlays import BlockMarker

# --------------------------------------------------------------------------- metrics


def test_auc_known_values() -> None:
    labels = np.array([0, 0, 1, 1])
    assert auc(np.array([0.1, 0.4, 0.35, 0.8]), labels) == pytest.approx(0.75)
    assert auc(np.array([1, 2, 3, 4]), labels) == 1.0
    assert auc(np.array([4, 3, 2, 1]), labels) == 0.0
    assert auc(np.array([1, 1, 1, 1]), labels) == 0.5  # ties count one half
    assert auc(np.array([0.0, 1.0, 1.0, 2.0]), labels) == pytest.approx(0.875)
    assert math.isnan(auc(np.array([1.0, 2.0]), np.array([1, 1])))
    # unknown labels (-1) are ignored
    assert auc(np.array([9.0, 0.1, 0.8]), np.array([-1, 0, 1])) == 1.0


def test_weighted_auc_is_the_auc_of_the_resample() -> None:
    rng = np.random.default_rng(0)
    s = np.round(rng.random(30), 1)  # with ties
    lab = (rng.random(30) > 0.5).astype(float)
    weights = rng.integers(0, 3, (20, 30)).astype(float)
    expected = [auc(np.repeat(s, w.astype(int)), np.repeat(lab, w.astype(int)))
                for w in weights]
    np.testing.assert_allclose(_weighted_aucs(s, lab, weights), expected)


def test_bootstrap_interval_contains_point_and_is_deterministic() -> None:
    rng = np.random.default_rng(1)
    labels = np.r_[np.zeros(40), np.ones(40)].astype(int)
    scores = labels * 0.8 + rng.standard_normal(80)
    groups = np.repeat(np.arange(40), 2)
    for g in (None, groups):
        r = auc_with_ci(scores, labels, g, n_boot=500, seed=3)
        assert r.lo <= r.auc <= r.hi
        assert 0.5 < r.auc < 0.95 and r.hi - r.lo > 0.05
        assert r == auc_with_ci(scores, labels, g, n_boot=500, seed=3)
    assert math.isnan(auc_with_ci(scores[:40], labels[:40]).lo)


def test_ssim_and_psnr() -> None:
    rng = np.random.default_rng(2)
    a = synthetic_cxr(2, False, 0)
    assert np.allclose(ssim(a, a), 1.0)
    noisy = np.clip(a + 0.2 * rng.standard_normal(a.shape), 0, 1)
    assert np.all(ssim(a, noisy) < 0.8)
    # constant images: only the luminance term, (2 * 0.08 + C1) / (0.04 + 0.16 + C1)
    flat = ssim(np.full((16, 16), 0.2), np.full((16, 16), 0.4))
    assert flat[0] == pytest.approx((0.16 + 1e-4) / (0.2 + 1e-4))
    assert psnr(a[0], np.clip(a[0] + 0.1, 0, 2)) == pytest.approx(20.0, abs=1e-6)
    assert np.isinf(psnr(a, a)).all()


# --------------------------------------------------------------------------- re-identification


def test_pixel_attacker_finds_identical_images_and_is_at_chance_on_noise() -> None:
    rng = np.random.default_rng(3)
    gallery = rng.random((60, 64, 64))
    g = reid.pixel_features(gallery)
    truth = np.arange(60)
    assert np.all(reid.reid_ranks(reid.pixel_features(gallery * 0.5 + 0.2), g, truth) == 1)
    ranks = reid.reid_ranks(reid.pixel_features(rng.random((60, 64, 64))), g, truth)
    assert ranks.mean() == pytest.approx(30.5, abs=8)  # uniform ranks: mean (n + 1) / 2
    assert (ranks == 1).mean() < 0.1
    const = reid.pixel_features(np.full((60, 64, 64), 0.3))
    assert np.all(reid.reid_ranks(const, g, truth) == 60)  # ties count against the attacker


def test_latent_features_clip_to_box_and_standardise() -> None:
    centre, width = np.zeros(4), np.array([1.0, 2.0, 4.0, 0.0])
    f = reid.latent_features(np.array([[10.0, 0.0, -1.0, 3.0]]), centre, width)
    expected = np.array([0.5, 0.0, -0.25, 0.5])
    expected -= expected.mean()
    np.testing.assert_allclose(f[0], expected / np.linalg.norm(expected))


def test_same_patient_ranks_and_chance() -> None:
    gallery = np.eye(4)
    queries = np.array([[1.0, 0.9, 0, 0], [0.1, 1, 0, 0.5], [0, 0, 1, 0], [0, 0, 0, 1]])
    ranks, counts = reid.same_patient_ranks(queries, gallery, np.array(["a", "a", "b", "c"]))
    assert counts.tolist() == [1, 1, 0, 0]
    assert ranks.tolist() == [1, 2, 0, 0]  # query 1 prefers image 3 over its sibling 0
    s = reid.summarise(np.array([1, 1, 2, 9]), ranks, counts, 4)
    assert s.top1 == 0.5 and s.chance_top1 == 0.25 and s.same_patient_top1 == 0.5
    assert s.same_patient_chance_top1 == pytest.approx(1 / 3)


# --------------------------------------------------------------------------- marker and flip


def test_marker_check_identity_and_erased() -> None:
    plain = synthetic_cxr(4, False, 1)
    m = BlockMarker(0.3, 0.7, 0.15)
    marked = checks.marked(plain, m)
    same = checks.marker_check(plain, marked, plain, marked, m)
    assert same["marker_kept_mean"] == pytest.approx(1.0)
    assert same["contrast_kept_mean"] == pytest.approx(1.0)
    gone = checks.marker_check(plain, marked, plain, plain, m)  # privatising removed it
    assert gone["marker_kept_mean"] == pytest.approx(0.0)
    blank = np.full_like(plain, 0.4)
    assert checks.marker_check(plain, marked, blank, blank, m)["contrast_kept_mean"] == 0.0


def test_flip_detector() -> None:
    orig = synthetic_cxr(12, False, 2)
    perfect = checks.flip_check(orig, orig, checks.flipped(orig))
    assert perfect["accuracy"] == 1.0 and perfect["flipped_detected"] == 1.0
    # A mechanism that erases everything: the detector cannot tell (constant -> never "flipped")
    blank = np.full_like(orig, 0.5)
    assert checks.flip_check(orig, blank, blank)["accuracy"] == 0.5


# --------------------------------------------------------------------------- settings


def test_parse_settings_and_mechanisms() -> None:
    s = parse_settings("inf-noclip, inf,1000,100,10,100")
    assert [x.key for x in s] == ["inf-noclip", "inf", "1000", "100", "10"]
    assert s[0] == Setting(math.inf, False) and s[0].label == "∞ (no clip)" and not s[1].noisy
    for bad in ("100-noclip", "abc", "-1", "0", ""):
        with pytest.raises(UserError):
            parse_settings(bad)
    assert parse_mechanisms("idldp,dpglow-tight") == ["idldp", "dpglow-tight"]
    with pytest.raises(UserError, match="unknown"):
        parse_mechanisms("dpglow")


# --------------------------------------------------------------------------- commands


@pytest.fixture(scope="module")
def val_npz(tmp_path_factory) -> Path:
    """16 synthetic images, half abnormal, 2 images per patient, mixed views, split val."""
    imgs = np.concatenate([synthetic_cxr(8, False, 3), synthetic_cxr(8, True, 4)])
    path = tmp_path_factory.mktemp("data") / "val.npz"
    np.savez(path, images=np.rint(imgs * 255).astype(np.uint8),
             labels=np.r_[np.zeros(8), np.ones(8)].astype(np.int64),
             split=np.array(["val"] * 16), patient_ids=np.array([f"p{i // 2}" for i in range(16)]),
             views=np.array(["PA", "AP"] * 8))
    return path


def _evaluate(npz: Path, out: Path, dirs: tuple[Path, Path], *extra: str) -> int:
    return main(["evaluate", "--data", str(npz), "--split", "val", "--out", str(out),
                 "--normal", str(dirs[0]), "--mixture", str(dirs[1]), "--epx", "inf,10",
                 "--bootstrap", "100", "--no-progress", *extra])


def test_evaluate_end_to_end_and_resume(val_npz: Path, anomaly_model_dirs, tmp_path: Path,
                                        capsys) -> None:
    out = tmp_path / "eval"
    assert _evaluate(val_npz, out, anomaly_model_dirs) == 0
    results = json.loads((out / "results.json").read_text())  # strict JSON (no Infinity)
    assert results["images"] == 16 and len(results["runs"]) == 12  # 6 mechanisms x 2
    runs = {(r["mechanism"], r["setting"]): r for r in results["runs"]}
    assert runs[("dpglow-fitted-posterior", "10")]["mode"] == "fitted-posterior"  # the default
    exact = runs[("idldp", "inf")]  # no noise, no change: everything at its maximum
    assert exact["reid"]["pixel"]["top1"] == 1.0 and exact["marker"]["marker_kept_mean"] == 1.0
    assert exact["auc"]["ratio"]["auc"] == results["original"]["auc"]["ratio"]["auc"]
    assert exact["psnr"][0] == "inf"
    clipped = runs[("dpglow-paper", "inf")]
    assert clipped["marker"]["marker_kept_mean"] < 0.5  # the clip erases most of the marker
    noisy = runs[("idldp", "10")]["summary"]
    assert noisy["ssim"] < 0.5 and 0 <= noisy["reid_best_top1"] <= 1
    assert runs[("dpglow-paper", "10")]["summary"]["auc_bpd"]["ci95"][0] is not None
    # baselines beside every AUC: on the originals, the compressors equal the unchanged run's
    base = results["original"]["baselines"]
    assert set(base) == {"png", "jpeg2000", "view"} and base["view"]["abnormal_view"] in (
        "AP", "PA")
    assert exact["baselines"]["png"] == base["png"]
    assert runs[("idldp", "10")]["baselines"]["png"]["bpp_mean"] > base["png"]["bpp_mean"]
    # verification AUC: unchanged originals give the originals' value
    assert exact["reid"]["pixel"]["verification"] == results["original"]["verification"]["pixel"]
    pix = runs[("dppix", "inf")]
    assert pix["name"] == "dppix" and pix["mode"] == "b8" and "block 8" in pix["describe"]
    report = (out / "report.md").read_text()
    assert "| e_px (ε = e_px·H·W) |" in report and "## ID-LDP" in report and "0.643" in report
    assert "## Utility beside its baselines" in report and "View-only baseline" in report
    assert "## Verification: same patient or not?" in report and "## DP-Pix" in report
    for name in ("auc_vs_epsilon", "reid_vs_epsilon", "auc_vs_reid", "quality_vs_reid",
                 "marker_flip", "baselines", "examples_idldp", "examples_synthetic_dpglow-fitted"):
        assert (out / f"{name}.png").stat().st_size > 5000
    cached = {p: p.stat().st_mtime_ns for p in (out / "cache").glob("*.json")}
    assert len(cached) == 12

    # Resumes from the cache (nothing recomputed) and reproduces the same numbers.
    assert _evaluate(val_npz, out, anomaly_model_dirs, "--no-synthetic") == 0
    assert {p: p.stat().st_mtime_ns for p in cached} == cached
    again = json.loads((out / "results.json").read_text())
    assert again["runs"] == results["runs"]

    # A different seed invalidates the cache; the same seed from scratch is deterministic.
    fresh = tmp_path / "fresh"
    assert _evaluate(val_npz, fresh, anomaly_model_dirs, "--no-synthetic",
                     "--mechanisms", "idldp", "--epx", "10") == 0
    first = json.loads((fresh / "results.json").read_text())["runs"][0]
    assert first["scores"] == runs[("idldp", "10")]["scores"]
    assert _evaluate(val_npz, fresh, anomaly_model_dirs, "--no-synthetic", "--mechanisms",
                     "idldp", "--epx", "10", "--seed", "1") == 0
    other = json.loads((fresh / "results.json").read_text())["runs"][0]
    # (not the scores: the tiny flows explain none of these noisy pictures, which all score
    # the escape's 8 + 20/D bits/dim, flow.glow.log_p_8bit)
    assert other["psnr"] != first["psnr"]
    capsys.readouterr()


def test_evaluate_rejects_bad_options(val_npz: Path, anomaly_model_dirs, tmp_path: Path,
                                      capsys) -> None:
    assert _evaluate(val_npz, tmp_path, anomaly_model_dirs, "--epx", "10-noclip") == 2
    assert _evaluate(val_npz, tmp_path, anomaly_model_dirs, "--split", "test") == 2
    assert "need >= 2" in capsys.readouterr().err
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a zip")
    assert _evaluate(broken, tmp_path, anomaly_model_dirs) == 2
    assert "cannot read images from" in capsys.readouterr().err


def test_score_command(anomaly_model_dirs, tmp_path: Path, capsys) -> None:
    imgs = np.concatenate([synthetic_cxr(1, False, 5), synthetic_cxr(1, True, 6)])
    paths = []
    for i, img in enumerate(imgs):
        big = np.kron(img, np.ones((4, 4)))  # 128x128: scored at the model's 32x32
        paths.append(tmp_path / f"img{i}.png")
        Image.fromarray(np.rint(big * 255).astype(np.uint8)).save(paths[-1])
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 64), np.uint8)).save(noise)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    normal, mixture = anomaly_model_dirs
    argv = ["score", *map(str, [*paths, noise, broken]), "--json",
            "--normal", str(normal), "--mixture", str(mixture)]
    assert main(argv) == 1  # one file failed; the others were still scored
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert "broken.png" in captured.err
    recs = {Path(r["path"]).name: r for r in doc["images"]}
    assert "error" in recs["broken.png"]
    assert recs["img0.png"]["ratio_nats"] > recs["img1.png"]["ratio_nats"]  # normal > abnormal
    assert not recs["img0.png"]["out_of_distribution"]
    assert recs["noise.png"]["out_of_distribution"]
    assert main(argv[:3] + argv[-4:]) == 0
    assert "abnormality" in capsys.readouterr().out
