"""One model pair, one rule for the figures measured for it: the viewer's budget panel and the
release report of `dpglow privatize` quote the same risk card for a user's own models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import tiny_images
from PIL import Image

from app.core.messages import LoadModelsRequest, ModelsInfo
from app.engine.session import Session
from glow_engine import cli
from glow_engine.model_pair import HISTOGRAM_BINS, ModelPair, find_risk_card
from glow_engine.modelfile import load_model
from glow_engine.risk_card import RISK_CARD_NAME


def write_card(path: Path, mixture_sha: str, normal_sha: str) -> None:
    """A risk card of DP-GLOW (paper) measured at e_px 100 with these two models."""
    row = {"total_epsilon": 100 * 32 * 32, "reid_top1": 0.123, "ssim": 0.456, "auc_bpd": 0.789}
    path.write_text(json.dumps({
        "format": "dp-glow-risk-card", "format_version": 1,
        "models": {"mixture": {"sha256": mixture_sha}, "normal": {"sha256": normal_sha}},
        "resolution": 32, "images": 16, "patients": 8, "data": "synthetic",
        "config": {"alpha": 0.4, "block": 8},
        "chance": {"reid_top1": 0.0625, "reid_top5": 0.3125, "verification_auc": 0.5,
                   "flip_detected": 0.5},
        "fields": {}, "original": {"auc_bpd": 0.8},
        "identities": {"dpglow-paper": {"mechanism": "dpglow", "mode": "paper",
                                        "label": "DP-GLOW (paper, α=0.4)"}},
        "mechanisms": {"dpglow-paper": {"100": row}}}))


@pytest.fixture()
def own_pair(anomaly_model_dirs, tmp_path: Path) -> tuple[Path, Path]:
    """A user's own pair (not the shipped one) with a risk card beside it."""
    normal, mixture = (Path(shutil.copytree(d, tmp_path / "mine" / d.name))
                       for d in anomaly_model_dirs)
    write_card(mixture.parent / RISK_CARD_NAME, load_model(mixture).sha256,
               load_model(normal).sha256)
    return normal, mixture


def test_the_figures_beside_the_models_are_used_only_for_those_models(own_pair) -> None:
    normal, mixture = own_pair
    pair = ModelPair.load(mixture, normal)
    assert pair.risk_card is not None and pair.scorer is not None
    assert pair.histogram_bins == HISTOGRAM_BINS and pair.resolution == 32
    assert ModelPair.load(mixture).risk_card is not None  # its figures need only M
    other = load_model(normal)  # another mixture model, same folder: not its figures
    assert find_risk_card(other) is None


def test_viewer_and_release_report_quote_the_same_card(own_pair, tmp_path: Path,
                                                       capsys) -> None:
    """The viewer once found this card (beside the mixture model) while the release report
    of the same models looked only at the shipped card and said nothing was measured."""
    normal, mixture = own_pair
    info = Session(device="cpu").handle(LoadModelsRequest(1, mixture, normal))
    assert isinstance(info, ModelsInfo) and info.risk_card is not None
    assert info.risk_card.body["mechanisms"]["dpglow-paper"]["100"]["reid_top1"] == 0.123
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(np.rint(tiny_images(1, seed=3)[0] * 255).astype(np.uint8)).save(
        folder / "a.png")
    assert cli.main(["privatize", str(folder), "--e-px", "100", "--out", str(tmp_path / "out"),
                     "--mode", "paper", "--estimate", "plain", "--model", str(mixture),
                     "--ledger", str(tmp_path / "ledger.sqlite"), "--no-progress",
                     "--confirm-one-patient-per-image"]) == 0
    capsys.readouterr()
    [report] = tmp_path.glob("release-report-*.html")
    page = report.read_text()
    assert "Not measured" not in page and "<td>0.12</td>" in page and "<td>0.79</td>" in page
