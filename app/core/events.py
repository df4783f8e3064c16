"""A tiny Qt-free observer: the view-state announces changes without depending on Qt."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Event:
    """Callbacks run synchronously, in connection order, on the emitting thread."""

    def __init__(self) -> None:
        self._slots: list[Callable[..., Any]] = []

    def connect(self, slot: Callable[..., Any]) -> None:
        self._slots.append(slot)

    def disconnect(self, slot: Callable[..., Any]) -> None:
        self._slots.remove(slot)

    def emit(self, *args: Any) -> None:
        for slot in list(self._slots):  # a copy: a slot may connect another
            slot(*args)
