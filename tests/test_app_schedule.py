"""The engine thread's scheduling (app.core.schedule), with a fake clock and no thread."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.messages import Kind, LoadModelsRequest, OpenRequest, SampleRequest, ThumbRequest
from app.core.schedule import Schedule
from app.engine.session import Session


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def schedule(clock: Clock) -> Schedule:
    return Schedule(clock, idle_after_s=0.25)


def thumbs(request_id: int, *names: str) -> ThumbRequest:
    return ThumbRequest(request_id, tuple(Path(n) for n in names))


def test_nothing_pending_waits_for_a_request(schedule: Schedule) -> None:
    assert not schedule and schedule.wait_before_next() is None and schedule.label == ""


def test_the_newest_request_of_a_kind_replaces_the_pending_one(schedule: Schedule) -> None:
    schedule.put(OpenRequest(1, Path("a.png")))
    schedule.put(SampleRequest(2, seed=7))  # an open and a sample share one slot
    schedule.put(OpenRequest(3, Path("b.png")))
    assert schedule.dropped[Kind.OPEN] == 2
    newest = schedule.pop()
    assert newest.id == 3 and not schedule


def test_kinds_are_served_by_priority(schedule: Schedule) -> None:
    schedule.put(thumbs(1, "x.png"))
    schedule.put(OpenRequest(2, Path("a.png")))
    schedule.put(LoadModelsRequest(3, Path("m"), None))
    assert schedule.label == Kind.MODELS.label
    assert [schedule.pop().kind for _ in range(2)] == [Kind.MODELS, Kind.OPEN]


def test_idle_kinds_wait_until_the_user_pauses(schedule: Schedule, clock: Clock) -> None:
    schedule.put(thumbs(1, "x.png"))
    assert schedule.wait_before_next() == 0.0  # nothing else happened: it runs at once
    schedule.put(OpenRequest(2, Path("a.png")))  # the user is busy: activity now
    assert schedule.pop().kind is Kind.OPEN
    clock.now += 0.1
    assert schedule.wait_before_next() == pytest.approx(0.15)  # 0.25 s of quiet needed
    schedule.finished(OpenRequest(2, Path("a.png")))  # finishing counts as activity too
    clock.now += 0.2
    assert schedule.wait_before_next() == pytest.approx(0.05)
    clock.now += 0.05
    assert schedule.wait_before_next() == 0.0 and schedule.pop().kind is Kind.THUMBS


def test_a_folder_is_scored_one_image_per_turn(schedule: Schedule) -> None:
    first = thumbs(1, "a.png", "b.png", "c.png")
    schedule.put(first)
    schedule.finished(schedule.pop())
    rest = schedule.pop()
    assert rest.id == 1 and [p.name for p in rest.paths] == ["b.png", "c.png"]
    schedule.put(thumbs(2, "new.png"))  # a newer folder replaces the rest of the old one
    schedule.finished(rest)
    assert schedule.pop().id == 2 and not schedule
    schedule.finished(thumbs(3, "last.png"))  # nothing left of a one-image request
    assert not schedule


def test_clear_drops_everything(schedule: Schedule) -> None:
    schedule.put(OpenRequest(1, Path("a.png")))
    schedule.put(thumbs(2, "x.png"))
    schedule.clear()
    assert not schedule and schedule.wait_before_next() is None


def test_every_request_class_has_a_handler() -> None:
    """Adding a request type means a class in app.core.messages and its handler in the session."""
    import app.core.messages as messages

    requests = [c for c in vars(messages).values() if isinstance(c, type)
                and issubclass(c, messages.Request) and hasattr(c, "kind")]
    dispatcher = vars(Session)["answer"].dispatcher
    assert len(requests) >= 8
    for cls in requests:
        assert dispatcher.dispatch(cls) is not dispatcher.registry[object], cls.__name__
