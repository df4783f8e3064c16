"""The PACS window's Qt-free state: the nodes file, the studies a query found and which are
checked, the look at a staged study, and a release from the PACS with its progress.

Like ``ViewState`` it emits ``requested`` (requests for the engine lanes) and ``changed`` (a
frozenset of ``PacsAspect``) and takes an answer only if it answers the newest request of its
kind. Its ids come from the viewer's state (``new_id``), so the release lane, which cancels
by id, never confuses a PACS release with a folder release. Every error is one line in the
window's own words (app.core.pacs_words); the user's entries are never reset by one.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum, auto
from pathlib import Path
from typing import Any

from app.core.events import Event
from app.core.messages import (
    Failed,
    Kind,
    PacsBatchRequest,
    PacsEchoed,
    PacsEchoRequest,
    PacsFindRequest,
    PacsLooked,
    PacsLookRequest,
    PacsNodesInfo,
    PacsNodesRequest,
    PacsRelease,
    PacsReleased,
    PacsStudies,
    Request,
)
from app.core.pacs_words import window_words
from glow_engine.errors import UserError
from glow_engine.pacs.query import Study, StudyQuery, parse_modalities

PHASE_WORDS = ("Retrieving", "Privatising", "Sending")  # glow_engine.pacs.release.PHASES


class PacsAspect(Enum):
    NODES = auto()
    ECHO = auto()
    STUDIES = auto()
    CHECKED = auto()
    LOOK = auto()
    RELEASE = auto()
    PROGRESS = auto()
    ERROR = auto()


class PacsState:
    def __init__(self, new_id: Callable[[], int]) -> None:
        self._new_id = new_id
        self.changed = Event()
        self.requested = Event()
        self.nodes: PacsNodesInfo | None = None
        self.echoed: PacsEchoed | None = None
        self.found: PacsStudies | None = None
        self.checked: set[str] = set()  # study UIDs ticked in the result list
        self.look: PacsLooked | None = None
        self.released: PacsReleased | None = None
        self.releasing: PacsBatchRequest | None = None
        self.progress: tuple[str, int, int] | None = None  # phase words, done, total (0: ?)
        self.message = ""  # the last error, in the window's words
        self.failed: Kind | None = None  # the kind of request it answered
        self._latest: dict[Kind, int] = {}

    @property
    def studies(self) -> tuple[Study, ...]:
        return self.found.studies if self.found is not None else ()

    # ----------------------------------------------------------------- the user's asks

    def read_nodes(self, path: Path) -> None:
        self._request(PacsNodesRequest, nodes_path=path)

    def save_node(self, path: Path, name: str, values: dict[str, Any],
                  old_name: str | None, local: dict[str, Any]) -> None:
        self._request(PacsNodesRequest, nodes_path=path, name=name, values=values,
                      old_name=old_name, local=local)

    def echo(self, path: Path, node: str) -> None:
        self.echoed = None
        self._request(PacsEchoRequest, nodes_path=path, node=node)

    def find(self, path: Path, node: str, *, patient_id: str, accessions: str,
             date_from: str, date_to: str, modalities: str) -> None:
        """Query `node`; a malformed field is said here, naming it, and nothing is sent."""
        try:
            query = StudyQuery(patient_id=patient_id.strip(),
                               accessions=tuple(accessions.replace(",", " ").split()),
                               study_date=_date_range(date_from.strip(), date_to.strip()),
                               modalities=parse_modalities(modalities))
        except UserError as e:
            self._fail(Kind.PACS_FIND, f"Query: {e}")
            return
        if query.empty:
            self._fail(Kind.PACS_FIND, "Query: give a 'Patient ID', 'Accession numbers' or a "
                                       "'Study date' range")
            return
        self._request(PacsFindRequest, nodes_path=path, node=node, query=query)

    def set_checked(self, study_uid: str, on: bool) -> None:
        (self.checked.add if on else self.checked.discard)(study_uid)
        self._emit(PacsAspect.CHECKED)

    def look_at(self, path: Path, node: str, study_uid: str, ledger: Path | None) -> None:
        self._request(PacsLookRequest, nodes_path=path, node=node, study_uid=study_uid,
                      ledger_path=ledger)

    def close_look(self, path: Path) -> None:
        """Delete the staged copy (the engine does it on the PACS lane)."""
        staged = self.look is not None and self.look.folder is not None
        if staged or self.waiting(Kind.PACS_LOOK):
            self._request(PacsLookRequest, nodes_path=path)

    def release(self, release: PacsRelease) -> PacsBatchRequest:
        self.progress, self.released = None, None
        phases = (self._new_id(), self._new_id(), self._new_id())
        self.releasing = self._request(PacsBatchRequest, release=release, phase_ids=phases)
        return self.releasing

    def release_progressed(self, request_id: int, done: int, total: int) -> None:
        """Progress the release lane reports under one of the running release's phase ids."""
        if self.releasing is not None and request_id in self.releasing.phase_ids:
            phase = PHASE_WORDS[self.releasing.phase_ids.index(request_id)]
            self.progress = (phase, done, total)
            self._emit(PacsAspect.PROGRESS)

    # ----------------------------------------------------------------- answers

    def waiting(self, kind: Kind) -> bool:
        return kind in self._latest and self._latest[kind] != -1

    def accept(self, answer: Any) -> bool:
        """Take an answer to this state's newest request of its kind; False for any other."""
        kind, rid = answer.kind, answer.request_id
        if self._latest.get(kind) != rid:
            return False
        self._latest[kind] = -1  # answered
        if isinstance(answer, Failed):
            if kind is Kind.PACS_RELEASE:
                self.releasing = None
            self._fail(kind, window_words(answer.message))
            return True
        self.message, self.failed = "", None
        self._take(answer)
        return True

    def _take(self, answer: Any) -> None:
        if isinstance(answer, PacsNodesInfo):
            self.nodes = answer
            self._emit(PacsAspect.NODES)
        elif isinstance(answer, PacsEchoed):
            self.echoed = answer
            self._emit(PacsAspect.ECHO)
        elif isinstance(answer, PacsStudies):
            self.found = answer
            self.checked = set()
            self._emit(PacsAspect.STUDIES, PacsAspect.CHECKED)
        elif isinstance(answer, PacsLooked):
            self.look = answer
            self._emit(PacsAspect.LOOK)
        elif isinstance(answer, PacsReleased):
            self.released, self.releasing = answer, None
            self._emit(PacsAspect.RELEASE)

    # ----------------------------------------------------------------- internals

    def _request(self, cls: type[Request], **fields: Any) -> Any:
        request = cls(id=self._new_id(), **fields)
        self._latest[cls.kind] = request.id
        self.requested.emit(request)
        return request

    def _fail(self, kind: Kind, message: str) -> None:
        self.message, self.failed = message, kind
        self._emit(PacsAspect.ERROR)

    def _emit(self, *aspects: PacsAspect) -> None:
        self.changed.emit(frozenset(aspects))


def _date_range(start: str, end: str) -> str:
    """The query's 'Study date' fields as a DICOM range ('' when both are empty)."""
    if not (start or end):
        return ""
    return start if start == end else f"{start}-{end}"
