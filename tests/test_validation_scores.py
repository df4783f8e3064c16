"""glow_engine.validation_scores: the validation score distribution shipped beside a model pair, and
`dpglow evaluate --write-reference`."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
from helpers import synthetic_cxr

from glow_engine.anomaly import AnomalyScorer
from glow_engine.cli import main
from glow_engine.resources import default_model_dir, default_validation_scores_path
from glow_engine.scores import ScoreKind
from glow_engine.validation_scores import (
    FORMAT,
    load_validation_scores,
    read_validation_scores,
    write_from_scores,
    write_validation_scores,
)

MIX, NORM = "a" * 64, "b" * 64


def _write(path: Path, **overrides) -> dict:
    args = dict(mixture_sha256=MIX, normal_sha256=NORM,
                labels=np.array([1, 0, -1, 0, 1, 0]),
                bpd_mixture=np.array([3.5, 2.9, 9.0, 2.5, 3.1, 2.7]),
                ratio_bits_per_pixel=np.array([0.01, 0.2, 0.0, 0.15, 0.03, 0.12]),
                data={"file": "val.npz", "split": "val"})
    args.update(overrides)
    write_validation_scores(path, **args)
    return args


def test_round_trip_keeps_numbers_per_label_and_nothing_else(tmp_path: Path) -> None:
    path = tmp_path / "ref.json"
    _write(path)
    body = json.loads(path.read_text())
    assert body["format"] == FORMAT and body["data"] == {"file": "val.npz", "split": "val",
                                                         "images": 5}
    assert set(body) == {"format", "format_version", "models", "data", "fields", "normal",
                         "abnormal"}
    ref = load_validation_scores(path, MIX, NORM)
    assert ref is not None and ref.mixture_sha256 == MIX and ref.normal_sha256 == NORM
    # Pairs stay together, sorted by bits/dim (the data file's order is not kept); the
    # unlabelled image (-1) is left out.
    assert ref.normal.bpd_mixture.tolist() == [2.5, 2.7, 2.9]
    assert ref.normal.ratio_bits_per_pixel.tolist() == [0.15, 0.12, 0.2]
    assert ref.abnormal.values(ScoreKind.BPD_MIXTURE).tolist() == [3.1, 3.5]
    assert ref.abnormal.values(ScoreKind.RATIO).tolist() == [0.03, 0.01]
    assert (ref.normal.label, ref.abnormal.label) == (0, 1)
    assert ref.description == "val.npz split val: 3 normal, 2 abnormal"


def test_other_models_missing_or_broken_files_give_none_with_a_reason(tmp_path: Path,
                                                                      caplog) -> None:
    path = tmp_path / "ref.json"
    _write(path)
    caplog.set_level(logging.INFO, logger="glow_engine.validation_scores")
    assert load_validation_scores(path, MIX, "c" * 64) is None
    assert load_validation_scores(path, "c" * 64, NORM) is None
    assert load_validation_scores(path, NORM, MIX) is None  # swapped roles are other models too
    assert "other models" in caplog.text
    assert load_validation_scores(path, MIX, None) is None  # no normal model: no ratio, no scores
    assert load_validation_scores(tmp_path / "absent.json", MIX, NORM) is None
    assert "does not exist" in caplog.text
    for text in ("{", "[]", json.dumps({"format": FORMAT, "format_version": 1}),
                 path.read_text().replace('"label": 1', '"label": 0')):
        broken = tmp_path / "broken.json"
        broken.write_text(text)
        assert load_validation_scores(broken, MIX, NORM) is None
    assert "cannot read" in caplog.text
    with pytest.raises(ValueError, match="normal"):
        _write(tmp_path / "one_label.json", labels=np.ones(6, int))
    with pytest.raises(ValueError, match="finite"):
        _write(tmp_path / "nan.json", bpd_mixture=np.array([math.nan, 1, 1, 1, 1, 1]))
    assert not (tmp_path / "one_label.json").exists()


def test_written_from_the_scorer_matches_its_scores(anomaly_model_pair, tmp_path: Path) -> None:
    normal, mixture = anomaly_model_pair
    pixels = np.concatenate([synthetic_cxr(3, False, 7), synthetic_cxr(3, True, 8)])
    labels = np.r_[np.zeros(3), np.ones(3)].astype(int)
    batch = AnomalyScorer(normal, mixture).evaluate(pixels)
    path = tmp_path / "ref.json"
    write_from_scores(path, batch, labels, normal, mixture, {"file": "x.npz", "split": "val"})
    ref = load_validation_scores(path, mixture.sha256, normal.sha256)
    assert ref is not None and ref.models["mixture"]["name"] == "mixture"
    singles = AnomalyScorer(normal, mixture).score(pixels)
    for group, rows in ((ref.normal, singles[:3]), (ref.abnormal, singles[3:])):
        rows = sorted(rows, key=lambda s: s.bpd_mixture)
        np.testing.assert_allclose(group.bpd_mixture, [s.bpd_mixture for s in rows], atol=1e-5)
        np.testing.assert_allclose(group.ratio_bits_per_pixel,
                                   [s.ratio_bits_per_pixel for s in rows], atol=1e-5)


def test_evaluate_writes_the_reference_from_the_originals_scores(anomaly_model_dirs,
                                                                 tmp_path: Path, capsys) -> None:
    imgs = np.concatenate([synthetic_cxr(4, False, 3), synthetic_cxr(4, True, 4)])
    npz = tmp_path / "val.npz"
    np.savez(npz, images=np.rint(imgs * 255).astype(np.uint8),
             labels=np.r_[np.zeros(4), np.ones(4)].astype(np.int64), split=np.array(["val"] * 8),
             patient_ids=np.array([f"p{i}" for i in range(8)]), ids=np.array(["secret.png"] * 8))
    out, ref_path = tmp_path / "eval", tmp_path / "reference_scores.json"
    normal_dir, mixture_dir = anomaly_model_dirs
    assert main(["evaluate", "--data", str(npz), "--split", "val", "--out", str(out),
                 "--normal", str(normal_dir), "--mixture", str(mixture_dir),
                 "--mechanisms", "idldp", "--epx", "inf", "--check-images", "2",
                 "--bootstrap", "10", "--no-synthetic", "--no-progress",
                 "--write-reference", str(ref_path)]) == 0
    assert "4 normal, 4 abnormal" in capsys.readouterr().out
    text = ref_path.read_text()
    assert "secret" not in text and "p1" not in text  # numbers only: no ids
    ref = read_validation_scores(ref_path)
    assert ref.data == {"file": "val.npz", "split": "val", "images": 8}
    original = json.loads((out / "results.json").read_text())["original"]["scores"]
    bpd = np.array(original["bpd_mixture"])
    np.testing.assert_allclose(ref.normal.bpd_mixture, np.sort(bpd[:4]), atol=1e-5)
    np.testing.assert_allclose(ref.abnormal.bpd_mixture, np.sort(bpd[4:]), atol=1e-5)
    meta = {name: json.loads((d / "model.json").read_text())["sha256"]
            for name, d in (("normal", normal_dir), ("mixture", mixture_dir))}
    assert load_validation_scores(ref_path, meta["mixture"], meta["normal"]) is not None
    # The privatised images' scores too (ID-LDP at inf: one entry), with the run's AUCs.
    [entry] = ref.privatised
    run = json.loads((out / "results.json").read_text())["runs"][0]
    assert (entry.mechanism, entry.mode, math.isinf(entry.e_px)) == ("idldp", "", True)
    np.testing.assert_allclose(np.sort(entry.values(ScoreKind.BPD_MIXTURE)),
                               np.sort(run["scores"]["bpd_mixture"]), atol=1e-5)
    assert entry.auc["bpd_mixture"]["auc"] == pytest.approx(run["auc"]["bpd_mixture"]["auc"])


def _entry(mechanism: str, mode: str, e_px, bpd: list[float], options=None) -> dict:
    half = len(bpd) // 2
    group = {"label": 0, "bpd_mixture": bpd[:half], "ratio_bits_per_pixel": [0.0] * half}
    return {"mechanism": mechanism, "mode": mode, "options": options or {}, "e_px": e_px,
            "auc": {"bpd_mixture": {"auc": 0.7, "ci95": [0.6, 0.8]},
                    "ratio": {"auc": 0.6, "ci95": [0.5, 0.7]}},
            "normal": group,
            "abnormal": {"label": 1, "bpd_mixture": bpd[half:],
                         "ratio_bits_per_pixel": [0.0] * (len(bpd) - half)}}


def test_a_privatised_pane_is_judged_at_its_own_or_the_nearest_measured_budget(tmp_path):
    path = tmp_path / "ref.json"
    _write(path, privatised=[
        _entry("dpglow", "paper", 10.0, [5.0, 5.5, 6.0, 6.5], {"alpha": 0.4}),
        _entry("dpglow", "paper", 100.0, [3.0, 3.2, 3.4, 3.6], {"alpha": 0.4}),
        _entry("dpglow", "paper", "inf", [2.0, 2.1, 2.2, 2.3], {"alpha": 0.4}),
        _entry("idldp", "", 100.0, [4.0, 4.2, 4.4, 4.6])])
    ref = read_validation_scores(path)
    match = ref.privatised_reference("dpglow", "paper", {"alpha": 0.4}, 100.0)
    assert match.exact and match.reference.e_px == 100.0
    near = ref.privatised_reference("dpglow", "paper", {"alpha": 0.4}, 30.0)
    assert not near.exact and near.reference.e_px == 10.0  # log scale: 30 is nearer 10
    assert ref.privatised_reference("dpglow", "paper", {"alpha": 0.4}, 60.0).reference.e_px \
        == 100.0
    assert not ref.privatised_reference("dpglow", "paper", {"alpha": 0.3}, 100.0).exact
    assert math.isinf(ref.privatised_reference("dpglow", "paper", {"alpha": 0.4},
                                               math.inf).reference.e_px)
    assert ref.privatised_reference("dpglow", "tight", {"alpha": 0.4}, 100.0) is None
    assert ref.privatised_reference("dppix", "block 8", {}, 100.0) is None
    at_100 = match.reference
    assert at_100.typical(3.3, ScoreKind.BPD_MIXTURE)
    assert not at_100.typical(5.0, ScoreKind.BPD_MIXTURE)  # typical at 10, not at 100
    # older files, without privatised entries, still load
    _write(path)
    assert read_validation_scores(path).privatised == ()


def test_the_shipped_reference_belongs_to_the_shipped_models() -> None:
    path = default_validation_scores_path()
    if not path.is_file():
        pytest.skip("no shipped reference")
    sha = {name: json.loads((default_model_dir(name) / "model.json").read_text())["sha256"]
           for name in ("mixture", "normal")}
    ref = load_validation_scores(path, sha["mixture"], sha["normal"])
    assert ref is not None, "retrained models need a new reference (dpglow evaluate " \
                            "--write-reference resources/models/reference_scores.json)"
    assert (len(ref.normal), len(ref.abnormal)) == (62, 55)
    assert ref.data["file"] == "nih_cxr14_subset_256.npz" and ref.data["split"] == "val"
