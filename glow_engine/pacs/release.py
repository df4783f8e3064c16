"""From a PACS to a research PACS (or a folder): query, retrieve, privatise, send.

The one entry point for the command line and the window (which calls it on its engine
thread)::

    request = PacsReleaseRequest(source="hospital", query=StudyQuery(accessions=("A1",)),
                                 e_px=100, to_node="research", linkage="patient")
    summary = release_from_pacs(request, load_nodes(path), lambda: mech, ledger,
                                on_progress=lambda p: ..., should_stop=lambda: False)

The mechanism is asked for (`mechanism()`, once) only when there are images to privatise, so
a wrong node or an empty query fails before a model is loaded.

`on_progress(PacsProgress(phase, done, total))` comes once per image while retrieving and
sending and once per batch while privatising (`batch_size=1`: per image); while retrieving it
is called on pynetdicom's network thread, so a window should only emit a signal from it.
`should_stop()` is asked after each retrieved image (the rest of the C-GET/C-MOVE is
cancelled), before each batch, and before each file sent; a stopped run still deletes the
staging folder and reports what was not started or not sent.

Steps: check the destination answers (nothing is retrieved or spent if it does not) -> C-FIND
/ QIDO-RS the studies -> their CR/DX series -> retrieve them into a private staging folder ->
drop what is not a chest radiograph (our own check of every header) ->
`release.batch.release_folder` (the same path as `dpglow privatize`: ledger, per-patient
budget from the real PatientID, manifest, record, de-identified DICOM) -> send what the
destination does not already hold (C-STORE / STOW-RS), or leave it in the output folder.
The staging folder is deleted at the end, whatever happened.

Resuming: releases to a node go through its outbox, a folder kept beside the ledger
(`outbox_for`), so a re-run finds what it released before (`done-earlier`, nothing spent) and
sends only the instances the destination lacks.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from glow_engine.mechanisms import Mechanism
from glow_engine.pacs.client import PacsClient, open_client
from glow_engine.pacs.errors import PacsError
from glow_engine.pacs.nodes import Nodes
from glow_engine.pacs.query import Series, StudyQuery, chest_problem, select_series
from glow_engine.pacs.staging import check_outside, finish_staging, make_staging
from glow_engine.release.batch import ReleaseOptions, Summary, release_folder
from glow_engine.release.deid import DEFAULT_LINKAGE
from glow_engine.release.ledger import Ledger

PHASES = ("retrieving", "privatising", "sending")


@dataclass(frozen=True)
class PacsProgress:
    phase: str  # one of PHASES
    done: int
    total: int | None  # None when the PACS did not say how many images a series holds


@dataclass(frozen=True)
class PacsReleaseRequest:
    """Everything one release needs, as plain values (the window builds one from its form)."""

    source: str  # a node of the nodes file
    query: StudyQuery  # which studies: patient_id, accessions or study_uids
    e_px: float
    to_node: str | None = None  # a destination node...
    out_dir: Path | None = None  # ...or a folder
    outbox: Path | None = None  # a node's outbox (default: outbox_for(ledger, node))
    staging: Path | None = None  # where the staging folder is made (default: the ledger's)
    keep_retrieved: Path | None = None  # keep the retrieved originals here
    linkage: str = DEFAULT_LINKAGE
    timeout: float | None = None  # overrides the nodes' timeouts (seconds)
    size: int | None = None
    keep_aspect: bool = False
    force_budget: bool = False
    patient_budget: float | None = None
    allow_burned_in: bool = False
    allow_unknown_burned_in: bool = False
    batch_size: int = 8  # 1: progress and Cancel between single images


@dataclass
class PacsSummary:
    release: Summary | None = None  # the batch release's summary (None: never started)
    studies: int = 0
    retrieved: int = 0
    skipped: list[str] = field(default_factory=list)  # what was not a chest radiograph
    sent: int = 0
    already_there: int = 0
    not_sent: int = 0  # released but not sent (stopped)
    destination: str = ""
    staging: str = ""  # what happened to the staging folder

    @property
    def complete(self) -> bool:
        return (self.release is not None and self.release.complete and self.not_sent == 0)


ProgressCall = Callable[[PacsProgress], None]
StopCheck = Callable[[], bool]


def outbox_for(ledger_path: Path, node: str) -> Path:
    """Where releases to `node` are kept (beside the ledger: ledger.outbox-<node>)."""
    return ledger_path.with_name(f"{ledger_path.stem}.outbox-{node}")


def release_from_pacs(request: PacsReleaseRequest, nodes: Nodes,
                      mechanism: Callable[[], Mechanism], ledger: Ledger, *,
                      on_progress: ProgressCall | None = None,
                      should_stop: StopCheck | None = None) -> PacsSummary:
    """Run one release (see the module docstring). PacsError/UserError before anything is
    retrieved for an unusable request, node or destination."""
    progress = on_progress or (lambda p: None)
    stop = should_stop or (lambda: False)
    if request.query.empty:
        raise PacsError("say which studies to release: a patient ID, accession numbers or "
                        "study UIDs")
    if (request.to_node is None) == (request.out_dir is None):
        raise PacsError("give one destination: a node (--to) or a folder (--out)")
    source = open_client(nodes.get(request.source), nodes.local, request.timeout)
    destination = None
    if request.to_node is not None:
        destination = open_client(nodes.get(request.to_node), nodes.local, request.timeout)
        destination.echo()  # before anything is retrieved or spent
    out = request.out_dir or request.outbox or outbox_for(ledger.path, request.to_node or "")
    summary = PacsSummary(destination=request.to_node or str(out))
    series = _chest_series(source, request.query, summary)
    if request.keep_retrieved is not None:
        check_outside(request.keep_retrieved, out, "folder for the retrieved originals")
    staging = make_staging(request.staging or ledger.path.parent, out)
    try:
        _retrieve(source, series, staging, summary, progress, stop)
        _drop_non_chest(staging, summary)
        summary.release = release_folder(
            [staging], mechanism(), ledger, _options(request, out),
            on_progress=lambda done, total: progress(PacsProgress("privatising", done, total)),
            should_stop=stop)
        if destination is not None:
            _send(destination, summary, progress, stop)
    finally:
        summary.staging = finish_staging(staging, request.keep_retrieved)
    return summary


def stage_study(nodes: Nodes, source: str, study_uid: str,
                parent: Path) -> tuple[Path, PacsSummary]:
    """Retrieve one study's chest radiographs into a new staging folder in `parent` for a
    look in the viewer: nothing is privatised, spent or sent. The caller deletes the folder
    (`finish_staging`); it is deleted here if the retrieval fails."""
    client = open_client(nodes.get(source), nodes.local)
    summary = PacsSummary()
    series = _chest_series(client, StudyQuery(study_uids=(study_uid,)), summary)
    staging = make_staging(parent)
    try:
        _retrieve(client, series, staging, summary, lambda p: None, lambda: False)
        _drop_non_chest(staging, summary)
    except BaseException:
        finish_staging(staging, None)
        raise
    return staging, summary


def _options(request: PacsReleaseRequest, out: Path) -> ReleaseOptions:
    return ReleaseOptions(
        e_px=request.e_px, out_dir=out, fmt="dicom", size=request.size,
        keep_aspect=request.keep_aspect, force_budget=request.force_budget,
        patient_budget=request.patient_budget, allow_burned_in=request.allow_burned_in,
        allow_unknown_burned_in=request.allow_unknown_burned_in,
        batch_size=request.batch_size, linkage=request.linkage)


def _chest_series(source: PacsClient, query: StudyQuery, summary: PacsSummary
                  ) -> list[Series]:
    studies = source.find_studies(query)
    if not studies:
        raise PacsError("no study on the source node matches the query (check the patient "
                        "ID, accession numbers or study UIDs with 'dpglow pacs find')")
    summary.studies = len(studies)
    selection = select_series(studies, [s for study in studies
                                        for s in source.find_series(study.study_uid)])
    summary.skipped += selection.skipped
    if not selection.series:
        raise PacsError(f"no chest radiograph (CR or DX series) in the {len(studies)} "
                        "matching stud(y/ies): nothing was retrieved or spent")
    return selection.series


def _retrieve(source: PacsClient, series: list[Series], staging: Path, summary: PacsSummary,
              progress: ProgressCall, stop: StopCheck) -> None:
    sizes = [s.images for s in series]
    total = None if None in sizes else sum(s or 0 for s in sizes)

    def received(_: Path) -> None:
        summary.retrieved += 1
        progress(PacsProgress("retrieving", summary.retrieved, total))

    for s in series:
        if stop():
            return
        source.retrieve(s, staging, received, stop)


def _drop_non_chest(staging: Path, summary: PacsSummary) -> None:
    """Our own filter on every retrieved header; the rest is deleted and listed as skipped."""
    kept = 0
    for path in sorted(staging.rglob("*.dcm")):
        try:
            ds = dcmread(path, stop_before_pixels=True)
            problem = chest_problem(str(ds.get("Modality", "")).upper(),
                                    str(ds.get("BodyPartExamined", "") or ""))
        except (InvalidDicomError, OSError, ValueError) as e:
            problem = f"not readable as DICOM ({e})"
        if problem:
            summary.skipped.append(f"a retrieved instance: {problem}")
            path.unlink()
        else:
            kept += 1
    if not kept:
        raise PacsError(f"no chest radiograph among the {summary.retrieved} retrieved "
                        "image(s): nothing was spent")


def _send(destination: PacsClient, summary: PacsSummary, progress: ProgressCall,
          stop: StopCheck) -> None:
    """Send the released files the destination does not hold yet, series by series."""
    assert summary.release is not None
    files = [o.file for o in summary.release.outcomes
             if o.status in ("written", "done-earlier") and o.file is not None]
    by_series: dict[tuple[str, str], list[tuple[str, Path]]] = defaultdict(list)
    for path in files:
        ds = dcmread(path, stop_before_pixels=True)
        by_series[(ds.StudyInstanceUID, ds.SeriesInstanceUID)].append(
            (ds.SOPInstanceUID, path))
    missing: list[Path] = []
    for (study, series), instances in by_series.items():
        there = destination.present(study, series)
        summary.already_there += sum(uid in there for uid, _ in instances)
        missing += [path for uid, path in instances if uid not in there]

    def sent(_: Path) -> None:
        summary.sent += 1
        progress(PacsProgress("sending", summary.sent, len(missing)))

    destination.store(missing, sent, stop)
    summary.not_sent = len(missing) - summary.sent
