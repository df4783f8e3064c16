"""`dpglow score` and `dpglow evaluate` on the real chest X-rays in ../shared/data with the
shipped models (skipped when either is absent). Small: a few images, one budget."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from glow_engine.cli import main
from glow_engine.resources import available_default_models

DATA = Path(os.environ.get("DPGLOW_SHARED_DATA")
            or Path(__file__).resolve().parents[1].parent / "shared" / "data")
VAL = DATA / "nih_cxr14_subset_256.npz"

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(not VAL.is_file(), reason=f"real data not found at {DATA}"),
    pytest.mark.skipif(available_default_models() != ["mixture", "normal"],
                       reason="the shipped models (resources/models/mixture, normal) are absent"),
]


def test_score_real_pngs_in_distribution_and_noise_outside(tmp_path: Path, capsys) -> None:
    pngs = sorted((DATA / "png1024").glob("*.png"))[:4]
    noise = tmp_path / "noise.png"
    # 4x4-pixel blocks of uniform noise: still noise after resizing to the model (<= 128 px)
    cells = np.random.default_rng(0).integers(0, 256, (128, 128), np.uint8)
    Image.fromarray(np.kron(cells, np.ones((4, 4), np.uint8))).save(noise)
    assert main(["score", "--json", *map(str, pngs), str(noise)]) == 0
    recs = json.loads(capsys.readouterr().out)["images"]
    assert len(recs) == len(pngs) + 1
    assert all(np.isfinite(r["ratio_nats"]) for r in recs)
    assert all(0 < r["bpd_mixture"] < 8 for r in recs[:-1])
    assert sum(r["out_of_distribution"] for r in recs[:-1]) <= 1
    assert recs[-1]["out_of_distribution"]


def test_evaluate_real_val_subset(tmp_path: Path, capsys) -> None:
    out = tmp_path / "eval"
    argv = ["evaluate", "--data", str(VAL), "--split", "val", "--out", str(out),
            "--limit", "12", "--epx", "inf-noclip,10", "--mechanisms", "dpglow-tight,idldp",
            "--bootstrap", "100", "--no-progress", "--no-synthetic"]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["images"] == 12 and len(results["runs"]) == 4
    exact = next(r for r in results["runs"]
                 if r["mechanism"] == "idldp" and r["setting"] == "inf-noclip")
    assert exact["reid"]["pixel"]["top1"] == 1.0
    assert (out / "report.md").is_file() and (out / "auc_vs_reid.png").is_file()
    capsys.readouterr()
