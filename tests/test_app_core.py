"""The viewer's Qt-free view logic (app.core), without Qt: which lane runs which request,
a long job's progress and Cancel, what a folder release did in the officer's words, the
budget slider's scale and presets, the panes' keys and labels."""

from __future__ import annotations

import math

from app.core.budget_scale import (
    SLIDER_INF,
    block_sides,
    budget_presets,
    e_px_to_position,
    position_to_e_px,
)
from app.core.jobs import JobControl
from app.core.lanes import PACS_KINDS, RELEASE_KINDS, Lane, heard_from, lanes_of
from app.core.messages import Kind
from app.core.pane_keys import MAIN_KEYS, ORIGINAL, STRIP_KEYS, PaneKey
from app.core.release_summary import release_summary


def test_requests_go_to_their_lane_and_the_state_hears_each_answer_once() -> None:
    assert lanes_of(Kind.BATCH) == lanes_of(Kind.PACS_RELEASE) == (Lane.RELEASE,)
    assert lanes_of(Kind.MODELS) == (Lane.PREVIEW, Lane.RELEASE)  # each its own instances
    assert all(lanes_of(k) == (Lane.PACS,) for k in PACS_KINDS)  # network waits
    others = set(Kind) - RELEASE_KINDS - PACS_KINDS - {Kind.MODELS}
    assert all(lanes_of(k) == (Lane.PREVIEW,) for k in others)
    for kind in Kind:  # exactly one lane's answer is heard
        heard = [lane for lane in lanes_of(kind) if heard_from(lane, kind)]
        assert len(heard) == 1


def test_a_cancel_names_its_release_and_a_stopping_lane_cancels_all() -> None:
    seen = []
    control = JobControl(lambda *progress: seen.append(progress))
    control.cancel(7)
    assert control.cancelled(7) and not control.cancelled(8)
    control.progress(8, 1, 3)
    assert seen == [(8, 1, 3)]
    control.cancel_all()
    assert control.cancelled(8)


def test_the_summary_says_what_was_released_and_what_was_not_started() -> None:
    cut = release_summary({"written": 8, "not-started": 4}, cancelled=True)
    assert cut[0] == "<b>Released 8 of 12 images.</b>"
    assert "Not started: 4 (cancelled)" in cut[1] and "nothing was spent" in cut[1]
    late = " ".join(release_summary({"written": 12}, cancelled=True))
    assert "Released 12 of 12" in late and "Cancel came after the last image" in late
    mixed = " ".join(release_summary({"written": 2, "done-earlier": 1, "refused": 1,
                                      "skipped": 3}, cancelled=False))
    assert "Released 2 of 4 images" in mixed and "nothing spent again" in mixed
    assert "Refused" in mixed or "refused" in mixed


def test_slider_axis() -> None:
    assert position_to_e_px(0) == 1e-6 and position_to_e_px(400) == 0.01
    assert position_to_e_px(1000) == 10_000 and math.isinf(position_to_e_px(SLIDER_INF))
    for e_px in (1e-6, 1e-4, 0.1, 1, 10, 100, 1000, 10_000, math.inf):
        assert position_to_e_px(e_px_to_position(e_px)) == e_px


def test_presets_and_block_sides_follow_the_resolution() -> None:
    at_256 = dict((text, e_px) for text, e_px in budget_presets(256))
    assert at_256["Total ε = 1 for the whole image"] * 256 * 256 == 1.0
    assert math.isinf(at_256["∞: no noise (no privacy)"])
    assert not any(text.startswith("Total") for text, _ in budget_presets(None))
    assert block_sides(256) == [2, 4, 8, 16, 32] and block_sides(48) == [2, 4, 8, 16]


def test_pane_keys_name_each_pane_once_and_say_its_labels() -> None:
    dppix_10 = PaneKey("dppix", 10.0)
    assert dppix_10 in STRIP_KEYS and PaneKey("dppix", 10) == dppix_10  # one value, any spelling
    assert MAIN_KEYS[0] is ORIGINAL and ORIGINAL.original and not ORIGINAL.in_strip
    assert len(set(MAIN_KEYS + STRIP_KEYS)) == 1 + 3 + 3 * 3
    assert (ORIGINAL.label, ORIGINAL.short) == ("Original", "orig")
    assert (dppix_10.label, dppix_10.short) == ("DP-Pix · 10", "DP-Pix@10")
    assert PaneKey("dpglow").pending_title(True) == "DP-GLOW  (computing…)"
    assert dppix_10.pending_title(False) == "ε/px 10"  # its group's title names DP-Pix
