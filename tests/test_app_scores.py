"""The anomaly-score panel, offscreen: a privatised pane judged against the validation X-rays
privatised the same way (at its own or the nearest measured budget), scores marked stale
while their image has changed, and a plot axis that an absurd score cannot flatten."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from test_app_support import TIMEOUT_MS, make_window, settle, write_png

pytest.importorskip("pytestqt")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pyqtgraph as pg

from app.core.pane_keys import ORIGINAL, PaneKey
from app.core.state import Aspect
from app.qt.main_window import ModelPaths
from app.qt.scores import STALE, _axis_range
from glow_engine.resources import resource_path
from glow_engine.validation_scores import ValidationGroup, write_validation_scores


def _entry(mechanism: str, mode: str, e_px: float, centre: float, options=None) -> dict:
    values = [centre - 0.2, centre - 0.1, centre + 0.1, centre + 0.2]
    return {"mechanism": mechanism, "mode": mode, "options": options or {}, "e_px": e_px,
            "auc": {"bpd_mixture": {"auc": 0.7, "ci95": [0.6, 0.8]},
                    "ratio": {"auc": 0.6, "ci95": [0.5, 0.7]}},
            "normal": {"label": 0, "bpd_mixture": values[:2], "ratio_bits_per_pixel": [0, 0]},
            "abnormal": {"label": 1, "bpd_mixture": values[2:], "ratio_bits_per_pixel": [0, 0]}}


def _write_reference(models: ModelPaths, path: Path, privatised: list[dict]) -> None:
    sha = {name: json.loads((folder / "model.json").read_text())["sha256"]
           for name, folder in (("mixture", models.mixture), ("normal", models.normal))}
    labels = np.r_[np.zeros(3), np.ones(3)].astype(int)
    write_validation_scores(path, mixture_sha256=sha["mixture"], normal_sha256=sha["normal"],
                            labels=labels, bpd_mixture=np.linspace(4, 6, 6),
                            ratio_bits_per_pixel=np.zeros(6),
                            data={"file": "tiny.npz", "split": "val"}, privatised=privatised)


@pytest.fixture
def shipped_reference(tmp_path, monkeypatch) -> Path:
    """Where the viewer looks for the shipped reference (DPGLOW_RESOURCES), empty at first."""
    monkeypatch.setenv("DPGLOW_RESOURCES", str(tmp_path / "resources"))
    path = tmp_path / "resources" / "models" / "reference_scores.json"
    path.parent.mkdir(parents=True)
    (tmp_path / "resources" / "icons").symlink_to(resource_path("icons"))
    return path


def _row(panel, key: str) -> int:
    return [s.key for s in panel._scores()].index(key)


def _flag(panel, key: str) -> str:
    return panel.table.item(_row(panel, key), 3).text()


def test_a_privatised_pane_is_judged_against_privatised_references(
        qtbot, settings, models, tmp_path, shipped_reference) -> None:
    w = make_window(qtbot, settings, models)
    w.start(write_png(tmp_path / "chest.png"))
    settle(qtbot, w)
    s = w.state
    dpglow, idldp = s.scores[PaneKey("dpglow")].bpd_mixture, s.scores[PaneKey("idldp")].bpd_mixture
    # DP-GLOW measured at the pane's own budget, around its score; ID-LDP only at 30 and far
    # from its score.
    _write_reference(models, shipped_reference, [
        _entry("dpglow", s.params.mode_of("dpglow"), 100.0, dpglow, {"alpha": s.params.alpha}),
        _entry("idldp", s.params.mode_of("idldp"), 30.0, idldp + 50)])
    w.load_models(models)
    qtbot.waitUntil(lambda: s.settled and s.models.reference is not None
                    and PaneKey("dpglow") in s.scores, timeout=TIMEOUT_MS)
    panel = w.scores
    assert _flag(panel, PaneKey("dpglow")) == ""  # typical of DP-GLOW at e_px 100
    assert _flag(panel, PaneKey("idldp")) == "⚠ OOD"  # outside ID-LDP's range at (nearest) 30
    assert "Atypical for a privatised X-ray at its setting: ID-LDP" in panel.warning.text()
    assert "DP-GLOW" not in panel.warning.text()
    panel.table.selectRow(_row(panel, PaneKey("dpglow")))  # the plot draws DP-GLOW's reference
    assert panel.selected == PaneKey("dpglow")
    assert "val. normal, privatised (2)" in panel.legend.text()
    x, _ = panel.histograms["normal"].getData()
    assert x.min() == pytest.approx(dpglow - 0.2, abs=1e-4)
    said = panel.reference_info.text()
    assert "privatised the same way at ε/px 100." in said and "AUC of 0.70" in said
    assert "does not tell whether this patient has pneumonia" in said
    panel.table.selectRow(_row(panel, PaneKey("idldp")))
    said = panel.reference_info.text()
    assert "ε/px 30 (the nearest measured setting; this pane is at ε/px 100)" in said
    caption = w.grid.panes[PaneKey("idldp")].caption.text()
    assert "atypical" in caption and "out of distribution" not in caption
    assert "⚠" not in w.grid.panes[PaneKey("dpglow")].caption.text()


def test_scores_of_changed_images_are_marked_until_the_new_ones_arrive(qtbot, window) -> None:
    s = window.state
    panel = window.scores
    assert STALE not in {_flag(panel, k) for k in (ORIGINAL, PaneKey("dpglow"))}
    # A new picture in the DP-GLOW pane (as a new budget brings), its score not yet in.
    old = s.rendered
    pane = replace(old.panes[PaneKey("dpglow")], frame=old.panes[PaneKey("dpglow")].frame.copy())
    s.rendered = replace(old, panes={**old.panes, PaneKey("dpglow"): pane})
    s.changed.emit(frozenset({Aspect.RENDERED}))
    assert _flag(panel, PaneKey("dpglow")) == STALE
    assert _flag(panel, ORIGINAL) != STALE  # its image did not change
    assert STALE in window.grid.panes[PaneKey("dpglow")].caption.text()
    s.rendered = old  # the scores belong to these frames again
    s.changed.emit(frozenset({Aspect.SCORES}))
    assert _flag(panel, PaneKey("dpglow")) != STALE


def test_an_absurd_score_does_not_flatten_the_plot(qtbot, window) -> None:
    group = ValidationGroup(0, np.array([2.0, 3.0, 4.0]), np.zeros(3))
    lo, hi = _axis_range({"normal": group, "abnormal": group}, [3.7], [2.5, 9654.755])
    assert lo == 2.0 and hi < 10  # the reference decides, not the outlier
    assert _axis_range(None, [], [2.5, 2.6, 9654.755])[1] < 10
    s = window.state
    dpglow = PaneKey("dpglow")
    s.scores = {**s.scores, dpglow: replace(s.scores[dpglow], bpd_mixture=9654.755)}
    s.changed.emit(frozenset({Aspect.SCORES}))
    panel = window.scores
    assert panel.shown_range[1] < 100
    labels = [i.label.format for i in panel.plot.getPlotItem().items
              if isinstance(i, pg.InfiniteLine) and getattr(i, "label", None) is not None]
    assert any("DP-GLOW 9655 →" in text for text in labels)  # pinned to the edge, value shown
    cell = panel.table.item(_row(panel, PaneKey("dpglow")), 0).text()
    assert cell == "9655"  # whole, not cut to "9654.7…"
