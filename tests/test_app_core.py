"""The viewer's Qt-free view logic (app.core), without Qt: which lane runs which request,
a long job's progress and Cancel, what a folder release did in the officer's words."""

from __future__ import annotations

from app.core.jobs import JobControl
from app.core.lanes import Lane, heard_from, lanes_of
from app.core.messages import Kind
from app.core.release_summary import release_summary


def test_requests_go_to_their_lane_and_the_state_hears_each_answer_once() -> None:
    assert lanes_of(Kind.BATCH) == (Lane.RELEASE,)
    assert lanes_of(Kind.MODELS) == (Lane.PREVIEW, Lane.RELEASE)  # each its own instances
    assert all(lanes_of(k) == (Lane.PREVIEW,) for k in Kind if k not in (Kind.BATCH,
                                                                           Kind.MODELS))
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
