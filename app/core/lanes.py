"""Which engine lane runs which request, and whose answers the view-state hears.

Two lanes, each a worker thread with its own session (its own model instances, mechanisms
and caches): the preview lane answers everything the window shows, the release lane runs
folder releases, so a release of many minutes never holds the previews back. Both load every
model pair the user chooses; only the preview lane's answer to a load is the state's (the
release lane's own load fails or succeeds with the same files, and a release it cannot run
says why in its own answer).
"""

from __future__ import annotations

from enum import Enum

from app.core.messages import Kind


class Lane(Enum):
    PREVIEW = "preview"
    RELEASE = "release"
    PACS = "pacs"  # the PACS window's network waits: nodes, echo, find, a look


RELEASE_KINDS = frozenset({Kind.BATCH, Kind.PACS_RELEASE})
PACS_KINDS = frozenset({Kind.PACS_NODES, Kind.PACS_ECHO, Kind.PACS_FIND, Kind.PACS_LOOK})


def lanes_of(kind: Kind) -> tuple[Lane, ...]:
    """The lanes a request of `kind` goes to."""
    if kind is Kind.MODELS:
        return (Lane.PREVIEW, Lane.RELEASE)
    if kind in PACS_KINDS:
        return (Lane.PACS,)
    return (Lane.RELEASE,) if kind in RELEASE_KINDS else (Lane.PREVIEW,)


def heard_from(lane: Lane, kind: Kind) -> bool:
    """Whether the state takes `lane`'s answer of `kind`."""
    return lane is lanes_of(kind)[0]
