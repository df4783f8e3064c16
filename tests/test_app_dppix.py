"""DP-Pix in the window, offscreen: its pane beside DP-GLOW's and ID-LDP's follows the slider
and the block size, it has its group in the fixed-budget strip and its rows in the score
table, and the export dialog and the batch window release it through the release path with
its block size recorded in the ledger."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
from test_app_officer import release
from test_app_support import TIMEOUT_MS, settle, write_png

pytest.importorskip("pytestqt")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from app.core.pane_keys import PaneKey
from app.engine import release as release_job
from app.qt.export import ExportDialog
from glow_engine.mechanisms import DPPix
from glow_engine.release.ledger import Ledger
from glow_engine.risk_card import RiskCard


def test_the_dppix_pane_follows_the_slider_and_the_block_size(qtbot, window) -> None:
    pane = window.grid.panes[PaneKey("dppix")]
    assert pane.isVisible() and pane.title.text() == "DP-Pix (b=8)   ε/px = 100"
    assert (pane.image.image == window.state.rendered.panes[PaneKey("dppix")].pixels).all()
    assert pane.info.text().startswith("DP-Pix · ε/px 100 · total ε")
    assert "Score:" in pane.caption.text()
    before = pane.image.image.copy()
    window.controls.apply(0.1)
    settle(qtbot, window)
    assert pane.title.text() == "DP-Pix (b=8)   ε/px = 0.1"
    assert not (pane.image.image == before).all()
    assert "DP-Pix 0.156 (block means, pixel units)" in window.controls.total.toolTip()
    block = window.controls.block
    assert [block.itemData(i) for i in range(block.count())] == [2, 4, 8, 16, 32]
    block.setCurrentIndex(block.findData(4))
    settle(qtbot, window)
    assert window.state.params.block == 4 and pane.title.text() == "DP-Pix (b=4)   ε/px = 0.1"
    assert "block 4" in pane.title.toolTip()


def test_the_strip_and_the_score_table_hold_dppix(qtbot, window) -> None:
    window.act["strip"].trigger()
    qtbot.waitUntil(lambda: window.state.settled and window.state.strip is not None
                    and PaneKey("dppix", 10.0) in window.state.scores, timeout=TIMEOUT_MS)
    grid = window.grid
    assert grid.strip_titles["dppix"].isVisible() and grid.strip_titles["dppix"].text() == "DP-Pix"
    for budget in ("1000", "100", "10"):
        pane = grid.panes[PaneKey("dppix", float(budget))]
        assert pane.isVisible() and pane.title.text() == f"ε/px {budget}"
        assert "DP-Pix block 8" in pane.title.toolTip()
    grid.enlarge(PaneKey("dppix", 100.0))  # alone: only its own group's title stays
    assert grid.strip_titles["dppix"].isVisible()
    assert not grid.strip_titles["dpglow"].isVisible()
    assert not grid.panes[PaneKey("dppix", 10.0)].isVisible()
    grid.enlarge(PaneKey("dppix", 100.0))
    table = window.scores.table
    rows = [table.verticalHeaderItem(r).text() for r in range(table.rowCount())]
    assert rows[:4] == ["Original", "DP-GLOW", "ID-LDP", "DP-Pix"] and "DP-Pix · 10" in rows
    assert "DP-Pix" in window.scores.legend.text()


def card_with_dppix() -> RiskCard:
    row = {"reid_top1": 0.42, "ssim": 0.31, "auc_bpd": 0.61}
    return RiskCard({
        "models": {}, "images": 117, "patients": 78, "chance": {"reid_top1": 0.009},
        "original": {"auc_bpd": 0.84},
        "identities": {"dppix": {"mechanism": "dppix", "mode": "b8", "label": "DP-Pix"}},
        "mechanisms": {"dppix": {"100": row}}})


def test_an_export_with_dppix_goes_through_release_one_with_its_mode(qtbot, window, tmp_path,
                                                                     monkeypatch) -> None:
    ledger_path = tmp_path / "ledger.sqlite"
    window.settings.setValue("export_dir", str(tmp_path / "out"))
    window.settings.setValue("ledger", str(ledger_path))
    window.state.models = replace(window.state.models, risk_card=card_with_dppix())
    released = []

    def spy(item, mech, ledger, opts):
        released.append(mech)
        return real(item, mech, ledger, opts)

    real = release_job.release_one
    monkeypatch.setattr(release_job, "release_one", spy)
    window.export_dialog()
    dialog = window.findChildren(ExportDialog)[-1]
    dialog.mechanism.setCurrentIndex(dialog.mechanism.findData("dppix"))
    assert dialog.mechanism.currentText() == "DP-Pix (b=8)"
    # the risk card's DP-Pix row is found by the mode a release records ("b8")
    assert "42% of DP-Pix images matched" in dialog.meaning.text()
    dialog.one_patient.setChecked(dialog.needs_patient)  # a PNG: a patient of its own
    dialog.accept()
    settle(qtbot, window)
    assert [(m.name, m.block) for m in released] == [("dppix", 8)]
    assert isinstance(released[0], DPPix)
    with Ledger(ledger_path) as ledger:
        (row,) = ledger.releases()
    assert (row["mechanism"], row["mode"], row["status"]) == ("dppix", "b8", "written")
    assert window.state.last_export.path.parent == tmp_path / "out"


def test_the_batch_window_releases_dppix_at_its_block_size(qtbot, window, tmp_path) -> None:
    folder = tmp_path / "study"
    folder.mkdir()
    write_png(folder / "scan.png")
    window.settings.setValue("ledger", str(tmp_path / "ledger.sqlite"))  # never the user's
    window.settings.setValue("export_dir", str(tmp_path / "out"))
    window.show_batch()
    batch = window.batch_window
    assert batch.ledger.text() == str(tmp_path / "ledger.sqlite")
    batch.mechanism.setCurrentIndex(batch.mechanism.findData("dppix"))
    batch.block.setCurrentIndex(batch.block.findData(16))
    release(qtbot, window, folder, tmp_path)
    assert window.state.batch_done.counts == {"written": 1}
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        (row,) = ledger.releases()
    assert (row["mechanism"], row["mode"]) == ("dppix", "b16")
