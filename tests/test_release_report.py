"""The release report: a real DP-Pix release (CSV list with patient ids) against the risk card of
an evaluation of the tiny model pair; the page names no identifier and shows the card's own
figures at the nearest measured budgets."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
import pytest
from helpers import synthetic_cxr, tiny_images
from PIL import Image

from glow_engine.cli import main
from glow_engine.mechanisms import DPPix
from glow_engine.release.batch import ReleaseOptions, release_folder
from glow_engine.release.ledger import Ledger
from glow_engine.release.report import facts_of, formal_meaning, write_release_report
from glow_engine.risk_card import RISK_CARD_NAME, RiskCard, read_risk_card

PATIENT_ID = "PID-8731-Quellbrook"


@pytest.fixture(scope="module")
def card(anomaly_model_dirs, tmp_path_factory) -> RiskCard:
    """The risk card of `dpglow evaluate` at e_px 1 and 10 (DP-Pix and ID-LDP)."""
    root = tmp_path_factory.mktemp("card")
    imgs = np.concatenate([synthetic_cxr(8, False, 3), synthetic_cxr(8, True, 4)])
    npz = root / "val.npz"
    np.savez(npz, images=np.rint(imgs * 255).astype(np.uint8),
             labels=np.r_[np.zeros(8), np.ones(8)].astype(np.int64),
             split=np.array(["val"] * 16), patient_ids=np.array([f"v{i // 2}" for i in range(16)]),
             views=np.array(["PA", "AP"] * 8))
    ref = root / "models" / "reference_scores.json"
    normal, mixture = anomaly_model_dirs
    assert main(["evaluate", "--data", str(npz), "--out", str(root / "eval"), "--normal",
                 str(normal), "--mixture", str(mixture), "--mechanisms", "dppix,idldp",
                 "--epx", "inf,1,10", "--bootstrap", "50", "--check-images", "4",
                 "--no-synthetic", "--no-progress", "--write-reference", str(ref)]) == 0
    return read_risk_card(ref.with_name(RISK_CARD_NAME))


def release(tmp_path: Path, e_px: float) -> tuple[Path, str]:
    """Three PNGs, two of them one patient's (CSV list); DP-Pix at `e_px`; the report."""
    folder = tmp_path / "in"
    folder.mkdir()
    for i, img in enumerate(tiny_images(3, seed=5)):
        Image.fromarray(np.rint(img * 255).astype(np.uint8)).save(folder / f"scan_{i}.png")
    listing = folder / "list.csv"
    listing.write_text(f"path,patient_id\nscan_0.png,{PATIENT_ID}\nscan_1.png,{PATIENT_ID}\n"
                       "scan_2.png,OTHER-1\n")
    mech = DPPix(32)
    with Ledger(tmp_path / "ledger.sqlite") as led:
        summary = release_folder([listing], mech, led, ReleaseOptions(e_px, tmp_path / "out"))
        facts = facts_of(mech, e_px, summary, led)
        keys = [r["patient_key"] for r in led.releases()]
        outputs = [r["output"] for r in led.releases()]
    return facts, keys + outputs


def test_report_names_nothing_and_shows_the_card(card: RiskCard, tmp_path: Path) -> None:
    facts, secrets = release(tmp_path, 3.0)
    assert facts.written == 3 and facts.images_per_patient == (2, 1) and facts.forced == 0
    assert facts.total_epsilon == 3 * 32 * 32
    page = write_release_report(tmp_path / "report.html", facts, card).read_text()
    for secret in (PATIENT_ID, "OTHER-1", "scan_0", "list.csv", str(tmp_path), *secrets):
        assert secret not in page
    # 3 is not measured: the nearest budgets below and above, each marked, with its figures
    assert "nearest measured budget below</strong>: e<sub>px</sub> 1 " in page
    assert "nearest measured budget above</strong>: e<sub>px</sub> 10 " in page
    for budget in ("1", "10"):
        row = card.body["mechanisms"]["dppix"][budget]
        assert f"<td>{row['reid_top1']:.2f}" in page and f"<td>{row['auc_bpd']:.2f} [" in page
    assert "total ε per patient, this release</th><td>largest 6144 (2 image(s))" in page
    assert "does not rule out recognising the patient" in page  # total epsilon 3072
    png = re.search(r'src="data:image/png;base64,([^"]+)"', page).group(1)
    assert base64.b64decode(png).startswith(b"\x89PNG")


def test_report_at_a_measured_budget_and_without_a_card(card: RiskCard, tmp_path: Path) -> None:
    facts, _ = release(tmp_path, 10.0)
    page = write_release_report(tmp_path / "r.html", facts, card).read_text()
    assert "measured at this budget (e<sub>px</sub> 10)" in page and "nearest" not in page
    alone = write_release_report(tmp_path / "n.html", facts, None).read_text()
    assert "Not measured: no risk card" in alone and "data:image/png" not in alone


def test_formal_meaning_in_plain_words() -> None:
    """The viewer's words (glow_engine.privacy_statement), not a second set."""
    assert "no noise is added" in formal_meaning(float("inf"))
    small = formal_meaning(1.0)
    assert "2.72" in small and "does not rule out" not in small
    assert "711,549 digits" in formal_meaning(1_638_400)


def test_privatize_writes_the_report_beside_the_operators_record(tmp_path: Path,
                                                                capsys) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(np.rint(tiny_images(1)[0] * 255).astype(np.uint8)).save(folder / "a.png")
    ledger = tmp_path / "private" / "ledger.sqlite"
    assert main(["privatize", str(folder), "--mechanism", "dppix", "--resolution", "32",
                 "--e-px", "2", "--out", str(tmp_path / "out"), "--ledger", str(ledger),
                 "--no-progress", "--confirm-one-patient-per-image"]) == 0
    (report,) = ledger.parent.glob("release-report-*.html")
    assert f"release report:     {report}" in capsys.readouterr().out
    assert not list((tmp_path / "out").glob("*.html"))  # not published with the images
    page = report.read_text()
    assert "DP-Pix (b=8)" in page and "2048 at 32 × 32" in page and "a.png" not in page
