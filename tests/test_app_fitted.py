"""DP-GLOW's fitted clip box in the viewer, offscreen: offered exactly when the model file has
one, α disabled (not hidden) while it is chosen, the explanation under the noise rule naming
the box for the budget, the fall back to the published rule for a model without one (said in
the status bar, in the window's words), the spec's default followed, and the folder release
recording the fitted mode with the box in its report."""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import pytest
from helpers import with_fitted_box
from test_app_support import TIMEOUT_MS, make_window, settle, shared_pair, write_png
from test_app_viewer import export_with_dialog

pytest.importorskip("pytestqt")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from app.core.dpglow_words import ALPHA_UNUSED, FELL_BACK, MODE_TIP, NO_FITTED_BOX
from app.core.pane_keys import PaneKey
from app.qt.dialogs import model_markdown
from app.qt.main_window import ModelPaths
from glow_engine import mechanism_specs
from glow_engine.modelfile import load_model, save_model
from glow_engine.release.ledger import Ledger

BUDGETS = (1.0, 100.0, math.inf)  # the fitted rows: e_px 5 uses the box of 1, 20 that of 100


def mixture_saved(tmp_path_factory, fitted: bool) -> ModelPaths:
    """The shared tiny pair, its mixture model saved again with fitted boxes at BUDGETS, or
    with none (whatever the shared one holds)."""
    mixture, normal = shared_pair(tmp_path_factory)
    model = load_model(mixture)
    boxes = with_fitted_box(model, BUDGETS).fitted_box if fitted else None
    path = tmp_path_factory.mktemp("fitted" if fitted else "unfitted") / "mixture"
    save_model(path, model.flow, model.meta, model.calibration, boxes)
    return ModelPaths(path, normal)


@pytest.fixture(scope="module")
def fitted_models(tmp_path_factory) -> ModelPaths:
    return mixture_saved(tmp_path_factory, fitted=True)


@pytest.fixture(scope="module")
def plain_models(tmp_path_factory) -> ModelPaths:
    """A pair whose mixture model file holds no fitted box (e.g. one the user opened)."""
    return mixture_saved(tmp_path_factory, fitted=False)


def open_window(qtbot, settings, models: ModelPaths, tmp_path: Path):
    window = make_window(qtbot, settings, models)
    window.start(write_png(tmp_path / "chest.png", height=120, width=100))
    settle(qtbot, window)
    return window


@pytest.fixture
def fitted_window(qtbot, settings, fitted_models, tmp_path):
    folder = tmp_path / "fitted"  # beside another window's image
    folder.mkdir()
    return open_window(qtbot, settings, fitted_models, folder)


@pytest.fixture
def plain_window(qtbot, settings, plain_models, tmp_path):
    return open_window(qtbot, settings, plain_models, tmp_path)


def fitted_item(combo):
    return combo.model().item(combo.findData("fitted"))


def choose(combo, mode: str) -> None:
    combo.setCurrentIndex(combo.findData(mode))


def test_the_fitted_box_is_offered_exactly_when_the_model_has_one(plain_window, fitted_window):
    plain = fitted_item(plain_window.controls.mode)
    assert not plain.isEnabled() and plain.toolTip() == NO_FITTED_BOX
    assert "fitted clip box" in NO_FITTED_BOX and "--" not in NO_FITTED_BOX
    fitted = fitted_item(fitted_window.controls.mode)
    assert fitted.isEnabled() and fitted.toolTip() == MODE_TIP
    assert "fitted per budget on the model's training latents" in MODE_TIP
    assert "the same e_px" in MODE_TIP and "never on the image released" in MODE_TIP
    assert fitted.text() == "fitted box, chosen per budget"
    assert "Fitted clip boxes" in model_markdown(fitted_window.state.models)  # Model > info
    assert "Fitted clip boxes" not in model_markdown(plain_window.state.models)


def test_fitted_mode_disables_alpha_and_names_the_box_for_the_budget(qtbot, fitted_window):
    c, state = fitted_window.controls, fitted_window.state
    boxes = state.models.fitted_box

    def where(widget):
        return widget.mapTo(fitted_window, widget.rect().topLeft())

    choose(c.mode, "paper")  # whichever the default is
    before = {w: where(w) for w in (c.mode, c.alpha, c.rule, c.decoding, c.redraw)}
    assert c.alpha.isEnabled() and "α = 0.40" in c.rule.text()
    choose(c.mode, "fitted")
    assert state.params.mode == "fitted"
    assert not c.alpha.isEnabled() and c.alpha.isVisible() and c.alpha.toolTip() == ALPHA_UNUSED
    assert not c.alpha_label.isEnabled()
    c.apply(20)  # nearest fitted row: e_px 100
    settle(qtbot, fitted_window)
    at_20 = c.rule.text()
    assert boxes.for_budget(20).describe()[1:] in at_20 and "chosen for e_px 100" in at_20
    assert "noise S = its width, the same ε" in at_20
    assert boxes.for_budget(20).describe() in state.rendered.panes[PaneKey("dpglow")].caption
    c.apply(5)  # crosses to the row of e_px 1: another box, said so
    settle(qtbot, fitted_window)
    assert "chosen for e_px 1 " in c.rule.text() and c.rule.text() != at_20
    assert {w: where(w) for w in before} == before  # nothing moved
    choose(c.mode, "paper")
    assert c.alpha.isEnabled() and "α = 0.40" in c.rule.text()


def test_a_model_without_a_box_falls_back_to_the_published_rule(qtbot, fitted_window,
                                                                 plain_models):
    c, state = fitted_window.controls, fitted_window.state
    choose(c.mode, "fitted")
    settle(qtbot, fitted_window)
    fitted_window.load_models(plain_models)
    qtbot.waitUntil(lambda: state.models.fitted_box is None, timeout=TIMEOUT_MS)
    settle(qtbot, fitted_window)
    assert state.params.mode == "paper" and c.mode.currentData() == "paper"
    assert not fitted_item(c.mode).isEnabled() and c.alpha.isEnabled()
    said = fitted_window.statusBar().currentMessage()
    assert said == FELL_BACK and "Noise rule" in said and "--" not in said
    assert fitted_window.messages == []  # a note, not an error box
    assert state.rendered.panes[PaneKey("dpglow")].caption.startswith(
        "DP-GLOW paper-posterior ")  # the rule falls back, the decoding stays the default


@pytest.mark.parametrize(("default", "has_box"),
                         [("fitted", True), ("fitted", False), ("paper", True)])
def test_the_viewer_starts_in_the_spec_default_mode(qtbot, settings, plain_models,
                                                    fitted_models, tmp_path, monkeypatch,
                                                    default, has_box):
    """The noise rule's default is DP-GLOW's description's: the viewer starts in it, where
    the model has a box for the fitted one, and in the published rule where not."""
    spec = mechanism_specs.MECHANISM_SPECS["dpglow"]
    options = tuple(dataclasses.replace(o, default=default) if o.name == "mode" else o
                    for o in spec.options)
    monkeypatch.setitem(mechanism_specs.MECHANISM_SPECS, "dpglow",
                        dataclasses.replace(spec, options=options))
    window = open_window(qtbot, settings, fitted_models if has_box else plain_models, tmp_path)
    fell_back = default == "fitted" and not has_box
    mode = "paper" if fell_back else default
    assert window.state.params.mode == mode and window.controls.mode.currentData() == mode
    assert window.controls.alpha.isEnabled() is (mode != "fitted")
    assert (window.statusBar().currentMessage() == FELL_BACK) is fell_back


def test_the_batch_window_releases_with_the_fitted_box(qtbot, fitted_window, tmp_path):
    choose(fitted_window.controls.mode, "fitted")
    fitted_window.controls.decoding.setCurrentIndex(
        fitted_window.controls.decoding.findData("posterior-mean"))
    settle(qtbot, fitted_window)
    folder = tmp_path / "study"
    folder.mkdir()
    for i in range(2):
        write_png(folder / f"scan{i}.png", seed=i, height=40, width=36)
    fitted_window.settings.setValue("ledger", str(tmp_path / "ledger.sqlite"))
    fitted_window.settings.setValue("export_dir", str(tmp_path / "out"))
    fitted_window.show_batch()
    batch = fitted_window.batch_window
    assert batch.mode.currentData() == "fitted" and fitted_item(batch.mode).isEnabled()
    assert not batch.alpha.isEnabled() and batch.alpha.toolTip() == ALPHA_UNUSED
    batch.inputs.setText(str(folder))
    batch.budget.setText("1000")
    assert "chosen for e_px 100" in batch.meaning.text()
    batch.one_patient.setChecked(True)
    batch.start.click()
    qtbot.waitUntil(lambda: batch.request is None, timeout=60_000)
    done = fitted_window.state.batch_done
    assert done.counts == {"written": 2}
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        modes = {row["mode"] for row in ledger.releases()}
    assert modes == {"fitted-posterior"}
    page = done.report.read_text()
    box = fitted_window.state.models.fitted_box.for_budget(1000).describe()
    assert f"<th>clip box</th><td>{box}</td>" in page
    assert "<th>clip width α</th><td>—</td>" in page


def test_an_export_in_fitted_mode_records_it_and_its_box(qtbot, fitted_window, tmp_path):
    fitted_window.settings.setValue("export_dir", str(tmp_path / "out"))
    fitted_window.settings.setValue("ledger", str(tmp_path / "ledger.sqlite"))
    choose(fitted_window.controls.mode, "fitted")
    settle(qtbot, fitted_window)
    export_with_dialog(qtbot, fitted_window)
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        assert {row["mode"] for row in ledger.releases()} == {"fitted-posterior"}
    box = fitted_window.state.models.fitted_box.for_budget(100).describe()
    page = fitted_window.state.last_export.report.read_text()
    assert f"<th>clip box</th><td>{box}</td>" in page
    assert "DP-GLOW (fitted box, posterior mean)" in page
