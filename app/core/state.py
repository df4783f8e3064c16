"""The viewer's Qt-free view-state: what is shown, with which overlays, at which epsilon.

Widgets never talk to the engine. They change this state; the state emits ``changed`` (the
set of aspects that changed) for the views and ``requested`` (a request object) for the
worker. Every request carries an id; a result is accepted only if it answers the newest
request of its kind, so a slow answer to an old slider position can never overwrite a newer
picture. Tests drive this class directly, without Qt.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace
from enum import Enum, auto
from functools import singledispatchmethod
from pathlib import Path
from typing import Any

import numpy as np

from app.core.dpglow_words import FELL_BACK, PUBLISHED_MODE
from app.core.events import Event
from app.core.messages import (
    Answer,
    BatchDone,
    BatchRequest,
    BudgetChange,
    Exported,
    ExportRequest,
    Failed,
    FolderListing,
    FolderRelease,
    FolderRequest,
    Kind,
    LedgerRequest,
    LedgerSpent,
    LedgerTable,
    LedgerTableRequest,
    LoadModelsRequest,
    ModelsInfo,
    OpenRequest,
    PatientPreview,
    PatientsRequest,
    PrivacyParams,
    Rendered,
    RenderRequest,
    Request,
    SampleRequest,
    ScoreRequest,
    Scores,
    Source,
    StripRequest,
    TableRequest,
    TableWritten,
    Thumb,
    ThumbRequest,
)
from app.core.pane_keys import ORIGINAL, STRIP_BUDGETS, PaneKey
from glow_engine.budget import E_PX_MAX, E_PX_MIN, total_epsilon
from glow_engine.choices import DPGLOW_ESTIMATES, DPGLOW_MODES
from glow_engine.fitted_box import FittedBoxes
from glow_engine.overlays import BlockMarker, apply_overlays


@dataclass(frozen=True)
class Display:
    invert: bool = False
    difference: bool = False  # privatised minus original instead of the privatised image
    strip: bool = False  # the fixed-budget strip (e_px 1000 / 100 / 10)
    outlines: bool = True  # marker outlines on every pane
    levels: tuple[float, float] = (0.0, 1.0)  # window (min, max) shared by all panes


class Aspect(Enum):
    """What changed: ``ViewState.changed`` emits a frozenset of these, and each view redraws
    the parts that depend on them."""

    MODELS = auto()
    SOURCE = auto()
    OVERLAYS = auto()  # block markers and the flip
    PARAMS = auto()
    DISPLAY = auto()
    RENDERED = auto()
    STRIP = auto()
    SCORES = auto()
    ERROR = auto()
    EXPORTED = auto()
    THUMBS = auto()
    SELECTION = auto()  # which block marker is being edited
    LEDGER_TABLE = auto()  # the ledger window's rows
    BATCH = auto()  # a batch release finished
    BATCH_PROGRESS = auto()  # a batch release finished one more image
    TABLE = auto()  # a CSV was written
    FOLDER = auto()
    LEDGER = auto()
    PATIENTS = auto()  # the batch window's preview of patient IDs
    NOTICE = auto()  # a note for the status bar (a choice the window changed, and why)


# --------------------------------------------------------------------------- the state


class ViewState:
    """Everything the window shows; ``changed`` emits the frozenset of Aspects that changed."""

    def __init__(self) -> None:
        self.changed = Event()
        self.requested = Event()
        self.models: ModelsInfo | None = None
        self.source: Source | None = None
        self.markers: tuple[BlockMarker, ...] = ()
        self.selected: int | None = None  # index of the marker being edited, if any
        self.flip = False
        self.params = PrivacyParams()
        self.display = Display()
        self.rendered: Rendered | None = None
        self.strip: Rendered | None = None
        self.scores: dict[PaneKey, Any] = {}
        self.message = ""  # the last error, for the window to show
        self.notice = ""  # the last note for the status bar
        self.last_export: Exported | None = None
        self.thumbs: dict[Path, Thumb] = {}
        self.folder: FolderListing | None = None  # the open folder's images
        self.ledger: LedgerSpent | None = None  # what the ledger holds for the open image
        self.ledger_table: LedgerTable | None = None  # the ledger window's
        self.batch_done: BatchDone | None = None  # the last batch release's summary
        self.batch_progress: tuple[int, int] | None = None  # images (done, total) so far
        self.cancelling = Event()  # a request id: cancel that folder release
        # The New-sample seeds' own generator (OS entropy): no other draw shares it.
        self._sample_seeds = np.random.default_rng()
        self.table_written: TableWritten | None = None
        self.patients: PatientPreview | None = None  # the batch window's last preview
        self._ids = itertools.count(1)  # request ids; an open's id becomes the Source's key
        self._latest: dict[Kind, int] = {}  # kind -> newest request id
        self._answered: dict[Kind, int] = {}  # kind -> id of the newest request answered
        self._overlaid: np.ndarray | None = None

    # ----------------------------------------------------------------- derived values

    @property
    def resolution(self) -> int | None:
        return None if self.models is None else self.models.resolution

    @property
    def fitted_box(self) -> FittedBoxes | None:
        """DP-GLOW's fitted clip boxes of the loaded model (None: none, or no model)."""
        return None if self.models is None else self.models.fitted_box

    @property
    def total_epsilon(self) -> float | None:
        """The whole model frame's budget (glow_engine.budget.total_epsilon)."""
        r = self.resolution
        return None if r is None else total_epsilon(self.params.e_px, r)

    @property
    def original(self) -> np.ndarray | None:
        """The source with markers and flip applied: what every mechanism privatises."""
        if self.source is None:
            return None
        if self._overlaid is None:
            self._overlaid = apply_overlays(self.source.pixels, list(self.markers), self.flip)
        return self._overlaid

    # ----------------------------------------------------------------- user actions

    def load_models(self, mixture: Path, normal: Path | None) -> None:
        self._request(LoadModelsRequest, mixture=Path(mixture),
                      normal=None if normal is None else Path(normal))

    def open(self, path: Path) -> None:
        self._request(OpenRequest, path=Path(path))

    def new_sample(self) -> None:
        if self.models is None:
            self._fail("No model is loaded, so there is nothing to sample from.")
            return
        self._request(SampleRequest, seed=int(self._sample_seeds.integers(2**32)))

    def add_marker(self, marker: BlockMarker) -> None:
        self.selected = len(self.markers)  # a new marker is the one being edited
        self._set_overlays((*self.markers, marker), self.flip)

    def replace_marker(self, index: int, marker: BlockMarker) -> None:
        """A marker moved, resized or re-shaded; it stays the one being edited."""
        markers = list(self.markers)
        markers[index] = marker
        self.selected = index
        self._set_overlays(tuple(markers), self.flip)

    def remove_marker(self, index: int) -> None:
        markers = list(self.markers)
        del markers[index]
        self.selected = None
        self._set_overlays(tuple(markers), self.flip)

    def clear_markers(self) -> None:
        self.selected = None
        self._set_overlays((), self.flip)

    def select_marker(self, index: int | None) -> None:
        """Choose the marker to edit (None: none; an index out of range counts as none)."""
        index = index if index is not None and 0 <= index < len(self.markers) else None
        if index != self.selected:
            self.selected = index
            self._emit(Aspect.SELECTION)

    def set_flip(self, flip: bool) -> None:
        self._set_overlays(self.markers, bool(flip))

    def set_e_px(self, e_px: float) -> None:
        if math.isinf(e_px):
            self._set_params(e_px=math.inf)
            return
        # Leaving infinity restores the clip: without it a finite budget would protect nothing.
        self._set_params(e_px=min(max(float(e_px), E_PX_MIN), E_PX_MAX), clip=True)

    def set_alpha(self, alpha: float) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        self._set_params(alpha=float(alpha))

    def set_mode(self, mode: str) -> None:
        if mode not in DPGLOW_MODES:
            raise ValueError(f"mode must be one of {DPGLOW_MODES}, got {mode!r}")
        if mode == "fitted" and self.models is not None and self.fitted_box is None:
            raise ValueError("the loaded model has no fitted clip box")
        self._set_params(mode=mode)

    def set_estimate(self, estimate: str) -> None:
        """What DP-GLOW decodes (post-processing: the budget charged is unchanged)."""
        if estimate not in DPGLOW_ESTIMATES:
            raise ValueError(f"estimate must be one of {DPGLOW_ESTIMATES}, got {estimate!r}")
        self._set_params(estimate=estimate)

    def set_block(self, block: int) -> None:
        """DP-Pix's block side: it must divide the model's resolution."""
        r = self.resolution
        if block < 1 or (r is not None and r % block):
            raise ValueError(f"the DP-Pix block must divide the resolution {r}, got {block}")
        self._set_params(block=int(block))

    def set_clip(self, clip: bool) -> None:
        """Skipping the clip is only offered at e_px = inf (the paper's plain reconstruction)."""
        if clip or math.isinf(self.params.e_px):
            self._set_params(clip=bool(clip))

    def new_noise(self) -> None:
        self._set_params(noise_seed=self.params.noise_seed + 1)

    def set_display(self, **changes: Any) -> None:
        old = self.display
        self.display = replace(old, **changes)
        if self.display == old:
            return
        self._emit(Aspect.DISPLAY)
        if self.display.strip and not old.strip:
            self._request_render(strip=True)

    def export(self, mechanism: str, out_dir: Path, fmt: str, ledger_path: Path, *,
               allow_burned_in: bool = False, force_budget: bool = False,
               keep_aspect: bool = False, patient_id: str | None = None,
               one_patient_per_image: bool = False) -> None:
        if self.source is None or self.models is None:
            self._fail("Open an image and load a model before exporting.")
            return
        self._request(ExportRequest, source=self.source, markers=self.markers,
                      flip=self.flip, params=self.params, mechanism=mechanism,
                      out_dir=Path(out_dir), fmt=fmt, ledger_path=Path(ledger_path),
                      allow_burned_in=allow_burned_in, force_budget=force_budget,
                      keep_aspect=keep_aspect, patient_id=patient_id,
                      one_patient_per_image=one_patient_per_image)

    def score_folder(self, paths: list[Path]) -> None:
        self.thumbs = {}
        self._emit(Aspect.THUMBS)
        if paths:
            self._request(ThumbRequest, paths=tuple(paths))

    def open_folder(self, folder: Path) -> None:
        """List the folder's images; then score them all in the background."""
        self._request(FolderRequest, folder=Path(folder))

    def read_ledger(self, ledger_path: Path) -> None:
        """Ask what the ledger already holds for the open image (nothing for a sample)."""
        self.ledger = None
        self._emit(Aspect.LEDGER)
        image = self.source.image if self.source is not None else None
        if image is not None:
            self._request(LedgerRequest, ledger_path=Path(ledger_path),
                          content_sha256=image.content_sha256, patient_id=image.patient_id)

    def preview_patients(self, inputs: tuple[Path, ...], out_dir: Path,
                         pattern: str | None) -> None:
        """Ask which patient ID each input of a folder release gets (the batch window)."""
        self._request(PatientsRequest, inputs=tuple(inputs), out_dir=Path(out_dir),
                      pattern=pattern)

    def list_ledger(self, ledger_path: Path, budget: BudgetChange | None = None) -> None:
        """List the ledger's releases and totals; with `budget`, store it first."""
        self._request(LedgerTableRequest, ledger_path=Path(ledger_path), budget=budget)

    def write_table(self, path: Path, header: tuple[str, ...],
                    rows: tuple[tuple[str, ...], ...]) -> None:
        self._request(TableRequest, path=Path(path), header=header, rows=rows)

    def new_id(self) -> int:
        """A request id no other request of this state has (the PACS window's state draws
        its ids here: the release lane cancels by id)."""
        return next(self._ids)

    def release_folder(self, release: FolderRelease) -> BatchRequest | None:
        """Start a folder release on the release lane; returns its request (None without a
        model). The previews keep answering meanwhile."""
        if self.models is None:
            self._fail("Load a model before releasing a folder.")
            return None
        self.batch_progress = None
        return self._request(BatchRequest, release=release)

    def cancel_release(self, request_id: int) -> None:
        """Stop the folder release `request_id` before its next image (`cancelling` tells
        the lane that runs it at once, not behind the queue)."""
        self.cancelling.emit(request_id)

    def release_progressed(self, request_id: int, done: int, total: int) -> None:
        """The release lane finished `done` of `total` images of the newest release."""
        if self.is_current(Kind.BATCH, request_id):
            self.batch_progress = (done, total)
            self._emit(Aspect.BATCH_PROGRESS)

    # ----------------------------------------------------------------- worker answers

    @property
    def settled(self) -> bool:
        """Every request made so far has its answer (folder thumbnails aside)."""
        return all(self._answered.get(kind) == rid for kind, rid in self._latest.items()
                   if kind is not Kind.THUMBS)

    def accept(self, answer: Answer) -> bool:
        """Take a worker answer; False (and no change) if it answers an outdated request.
        An export's answer is always taken: a file was written, or why not must be said."""
        current = self.is_current(answer.kind, answer.request_id)
        if not current and answer.kind is not Kind.EXPORT:
            return False
        if current:
            self._answered[answer.kind] = answer.request_id
        self._take(answer)
        return True

    def waiting(self, kind: Kind) -> bool:
        """A request of this kind has not had its answer yet (models loading, say)."""
        return kind in self._latest and self._answered.get(kind) != self._latest[kind]

    def is_current(self, kind: Kind, request_id: int) -> bool:
        return self._latest.get(kind) == request_id

    @singledispatchmethod
    def _take(self, answer: Answer) -> None:
        raise TypeError(f"not an answer: {type(answer).__name__}")

    @_take.register
    def _accept_models(self, info: ModelsInfo) -> None:
        self.models = info
        self.rendered, self.strip, self.scores = None, None, {}
        aspects = [Aspect.MODELS, Aspect.RENDERED, Aspect.STRIP, Aspect.SCORES]
        if self.params.mode == "fitted" and info.fitted_box is None:
            # before any render asks for a box the model does not have
            self.params = replace(self.params, mode=PUBLISHED_MODE)
            self.notice = FELL_BACK
            aspects += [Aspect.PARAMS, Aspect.NOTICE]
        self._emit(*aspects)
        self._request_all_renders()

    @_take.register
    def _accept_source(self, source: Source) -> None:
        self.source, self.markers, self.flip, self.selected = source, (), False, None
        self._overlaid = None
        self.rendered, self.strip, self.scores = None, None, {}
        self._emit(Aspect.SOURCE, Aspect.OVERLAYS, Aspect.RENDERED, Aspect.STRIP, Aspect.SCORES)
        self._request_all_renders()

    @_take.register
    def _accept_rendered(self, result: Rendered) -> None:
        if result.strip:
            self.strip = result
        else:
            self.rendered = result
        self._emit(Aspect.STRIP if result.strip else Aspect.RENDERED)
        self._request_scores()

    @_take.register
    def _accept_scores(self, result: Scores) -> None:
        self.scores = dict(result.scores)
        self._emit(Aspect.SCORES)

    @_take.register
    def _accept_exported(self, result: Exported) -> None:
        self.last_export = result
        self._emit(Aspect.EXPORTED)

    @_take.register
    def _accept_thumb(self, thumb: Thumb) -> None:
        self.thumbs[thumb.path] = thumb
        self._emit(Aspect.THUMBS)

    @_take.register
    def _accept_folder(self, listing: FolderListing) -> None:
        if not listing.paths:
            self._fail(f"No images found in {listing.folder}.")
            return
        self.folder = listing
        self.score_folder(list(listing.paths))  # first: the new table starts with no thumbs
        self._emit(Aspect.FOLDER)

    @_take.register
    def _accept_ledger(self, spent: LedgerSpent) -> None:
        self.ledger = spent
        self._emit(Aspect.LEDGER)

    @_take.register
    def _accept_ledger_table(self, table: LedgerTable) -> None:
        self.ledger_table = table
        self._emit(Aspect.LEDGER_TABLE)

    @_take.register
    def _accept_batch(self, done: BatchDone) -> None:
        self.batch_done = done
        self._emit(Aspect.BATCH)

    @_take.register
    def _accept_patients(self, preview: PatientPreview) -> None:
        self.patients = preview
        self._emit(Aspect.PATIENTS)

    @_take.register
    def _accept_table(self, written: TableWritten) -> None:
        self.table_written = written
        self._emit(Aspect.TABLE)

    @_take.register
    def _accept_failed(self, failed: Failed) -> None:
        self._fail(failed.message)

    # ----------------------------------------------------------------- internals

    def _set_overlays(self, markers: tuple[BlockMarker, ...], flip: bool) -> None:
        if (markers, flip) == (self.markers, self.flip):
            return
        self.markers, self.flip = markers, flip
        self._overlaid = None
        self._emit(Aspect.OVERLAYS)
        self._request_all_renders()

    def _set_params(self, **changes: Any) -> None:
        old = self.params
        self.params = replace(old, **changes)
        if self.params == old:
            return
        self._emit(Aspect.PARAMS)
        self._request_render(strip=False)
        # The strip's budgets are fixed: only a new draw or a mechanism's parameter changes it.
        if replace(old, e_px=self.params.e_px, clip=self.params.clip) != self.params:
            self._request_render(strip=True)

    def _request_all_renders(self) -> None:
        self._request_render(strip=False)
        self._request_render(strip=True)

    def _request_render(self, strip: bool) -> None:
        if self.source is None or self.models is None:
            return
        if strip and not self.display.strip:
            return
        budgets = STRIP_BUDGETS if strip else (self.params.e_px,)
        self._request(StripRequest if strip else RenderRequest, source=self.source,
                      markers=self.markers, flip=self.flip, params=self.params,
                      budgets=budgets)

    def _request_scores(self) -> None:
        if self.rendered is None:
            return
        frames = {ORIGINAL: self.rendered.original_frame}
        for result in (self.rendered, self.strip if self.display.strip else None):
            if result is not None:
                frames.update({k: p.frame for k, p in result.panes.items()})
        image = self.source.image if self.source is not None else None
        colour = frozenset({ORIGINAL}) if image is not None and image.colour else frozenset()
        self._request(ScoreRequest, frames=frames, colour=colour)

    def _request(self, cls: type[Request], **fields: Any) -> Request:
        request_id = next(self._ids)
        self._latest[cls.kind] = request_id
        request = cls(id=request_id, **fields)
        self.requested.emit(request)
        return request

    def _emit(self, *aspects: Aspect) -> None:
        self.changed.emit(frozenset(aspects))

    def _fail(self, message: str) -> None:
        self.message = message
        self._emit(Aspect.ERROR)
