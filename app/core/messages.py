"""The vocabulary between the view-state and the engine thread. Qt-free and torch-free.

Every request the state makes and every answer the session gives is a class here, and each
belongs to one :class:`Kind`: the worker keeps one pending request per kind (newest wins),
serves kinds in the order they are listed, and holds idle kinds back until the user pauses;
the state accepts an answer only if it answers the newest request of its kind.

Adding a request type: its class here (with its ``kind``, a new :class:`Kind` if it needs its
own slot), and its handler in ``app.engine.session`` (``@Session.answer.register``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from app.core.pane_keys import PaneKey
from glow_engine.choices import DEFAULT_BLOCK
from glow_engine.imaging import LoadedImage
from glow_engine.mechanism_specs import spec_of
from glow_engine.overlays import BlockMarker
from glow_engine.pacs.query import Study, StudyQuery

if TYPE_CHECKING:
    from glow_engine.fitted_box import FittedBoxes
    from glow_engine.risk_card import RiskCard
    from glow_engine.validation_scores import ValidationScores


class Kind(Enum):
    """What the engine is asked to do, highest priority first: a model load or an open is
    never stuck behind a folder of thumbnails. Each is (status-bar label, idle): an idle kind
    waits until the user has paused, since an anomaly score started during a slider drag
    would hold the next frame back for a whole scoring pass."""

    MODELS = ("loading models", False)
    OPEN = ("opening image", False)
    FOLDER = ("listing folder", False)
    EXPORT = ("exporting", False)
    LEDGER = ("reading the ledger", False)
    LEDGER_TABLE = ("listing the ledger", False)  # the ledger window
    TABLE = ("writing a table", False)  # a CSV the ledger window exports
    PATIENTS = ("reading patient IDs", False)  # the batch window's preview of whose is whose
    BATCH = ("releasing a folder", False)  # the batch window: on the release lane
    PACS_RELEASE = ("releasing from a PACS", False)  # the PACS window: on the release lane
    PACS_NODES = ("reading the PACS nodes", False)  # the PACS window: on the PACS lane
    PACS_ECHO = ("asking a PACS node", False)
    PACS_FIND = ("querying a PACS", False)
    PACS_LOOK = ("retrieving a study to look at", False)
    RENDER = ("privatising", False)
    STRIP = ("privatising strip", False)
    SCORES = ("scoring", True)
    THUMBS = ("scoring folder", True)  # one image per turn: it never delays a frame

    def __init__(self, label: str, idle: bool) -> None:
        self.label = label
        self.idle = idle


def _dpglow_default(option: str) -> Callable[[], Any]:
    """DP-GLOW's default for `option` as its description gives it (the CLI's too), read
    when the parameters are made: the viewer keeps no copy of it."""
    return lambda: spec_of("dpglow").resolve({})[option]


@dataclass(frozen=True)
class PrivacyParams:
    e_px: float = 100.0  # per-pixel budget (glow_engine.budget); may be math.inf
    alpha: float = field(default_factory=_dpglow_default("alpha"))
    # the noise rule (glow_engine.choices.DPGLOW_MODES)
    mode: str = field(default_factory=_dpglow_default("mode"))
    # what DP-GLOW decodes (post-processing, no privacy cost)
    estimate: str = field(default_factory=_dpglow_default("estimate"))
    block: int = DEFAULT_BLOCK  # DP-Pix's block side in pixels
    clip: bool = True  # False only matters at e_px = inf: the plain reconstruction
    noise_seed: int = 0  # the preview draw; "new noise draw" bumps it

    def options_of(self, mechanism: str) -> dict[str, Any]:
        """What `mechanism` is built with (glow_engine.mechanisms.create_mechanism): the
        options its description (glow_engine.mechanism_specs) lists, from these fields."""
        return spec_of(mechanism).chosen(self)

    def mode_of(self, mechanism: str) -> str:
        """The variant a release of `mechanism` records (Mechanism.mode: the ledger's and
        the risk card's)."""
        return spec_of(mechanism).mode(self.options_of(mechanism))

    def label_of(self, mechanism: str) -> str:
        """The mechanism with these options, as its panes and releases name it."""
        return spec_of(mechanism).label(self.options_of(mechanism))


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True, eq=False)
class Request:
    id: int
    kind: ClassVar[Kind]

    def rest(self) -> Request | None:
        """What is left after one turn on the engine (None: the request is done)."""
        return None


@dataclass(frozen=True, eq=False)
class LoadModelsRequest(Request):
    kind = Kind.MODELS
    mixture: Path
    normal: Path | None


@dataclass(frozen=True, eq=False)
class OpenRequest(Request):
    kind = Kind.OPEN
    path: Path


@dataclass(frozen=True, eq=False)
class SampleRequest(Request):
    """Draw a synthetic image from the model: it replaces a pending open, and vice versa."""

    kind = Kind.OPEN
    seed: int


@dataclass(frozen=True, eq=False)
class InputRequest(Request):
    """A request about the current input as the user prepared it (overlays, privacy)."""

    source: Source
    markers: tuple[BlockMarker, ...]
    flip: bool
    params: PrivacyParams


@dataclass(frozen=True, eq=False)
class RenderRequest(InputRequest):
    """Privatise the current input with every mechanism at each budget (the main panes)."""

    kind = Kind.RENDER
    budgets: tuple[float, ...]


@dataclass(frozen=True, eq=False)
class StripRequest(RenderRequest):
    """The same at the strip's fixed budgets: its own slot, so the slider never drops it."""

    kind = Kind.STRIP


@dataclass(frozen=True, eq=False)
class ScoreRequest(Request):
    kind = Kind.SCORES
    frames: dict[PaneKey, np.ndarray]  # the model-resolution square frame of each pane
    colour: frozenset[PaneKey] = frozenset()  # the panes whose source held colour (the OOD check)


@dataclass(frozen=True, eq=False)
class ExportRequest(InputRequest):
    kind = Kind.EXPORT
    mechanism: str
    out_dir: Path  # the release folder: the file gets a random name there
    fmt: str  # "png" | "dicom"
    ledger_path: Path
    allow_burned_in: bool = False  # the user confirmed the pixels hold no identifying text
    force_budget: bool = False  # release past the ledger's per-patient budget (recorded)
    keep_aspect: bool = False  # crop the padding: publishes the aspect ratio unprotected
    patient_id: str | None = None  # typed by the officer for a source without one
    one_patient_per_image: bool = False  # no patient id: confirmed as a patient of its own


@dataclass(frozen=True, eq=False)
class PatientsRequest(Request):
    """Whose image is whose before a folder release: the patient ID each input gets from a
    CSV list or the officer's file-name pattern (glow_engine.release.inputs)."""

    kind = Kind.PATIENTS
    inputs: tuple[Path, ...]
    out_dir: Path  # its files are never inputs
    pattern: str | None = None


@dataclass(frozen=True, eq=False)
class FolderRequest(Request):
    """List a folder's images, DICOM studies included (a tree walk may take long)."""

    kind = Kind.FOLDER
    folder: Path


@dataclass(frozen=True, eq=False)
class LedgerRequest(Request):
    """What a ledger already holds for one image (opening it may wait for a lock)."""

    kind = Kind.LEDGER
    ledger_path: Path
    content_sha256: str
    patient_id: str | None


@dataclass(frozen=True, eq=False)
class LedgerTableRequest(Request):
    """Every release in a ledger and its totals per patient and per image; first, where
    `budget` says so, a new per-patient budget stored in it (the ledger window)."""

    kind = Kind.LEDGER_TABLE
    ledger_path: Path
    budget: BudgetChange | None = None


@dataclass(frozen=True)
class BudgetChange:
    """A per-patient budget for the ledger (glow_engine.release.ledger.set_patient_budget):
    lowering it is always allowed, raising or clearing it only as an explicit override, kept
    with its note in the ledger's budget history."""

    total_epsilon: float | None  # None: no limit
    override: bool = False
    note: str = ""


@dataclass(frozen=True, eq=False)
class TableRequest(Request):
    """Write rows as a CSV file (atomically, never over an existing file)."""

    kind = Kind.TABLE
    path: Path
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class FolderRelease:
    """What the batch window releases, and how: `dpglow privatize`'s choices."""

    inputs: tuple[Path, ...]
    mechanism: str
    params: PrivacyParams  # e_px, and the mechanism's options
    out_dir: Path
    fmt: str  # "png" | "dicom"
    ledger_path: Path
    keep_aspect: bool = False
    force_budget: bool = False
    allow_burned_in: bool = False
    patient_id_pattern: str | None = None  # regex, its first group the patient ID
    one_patient_per_image: bool = False  # images without a patient ID: confirmed, one each


@dataclass(frozen=True, eq=False)
class BatchRequest(Request):
    """Release files and folders through the release path of `dpglow privatize`
    (glow_engine.release.batch.release_folder), then write its release report. Runs on the
    release lane; its progress and Cancel go through that lane (app.core.jobs)."""

    kind = Kind.BATCH
    release: FolderRelease


@dataclass(frozen=True, eq=False)
class ThumbRequest(Request):
    kind = Kind.THUMBS
    paths: tuple[Path, ...]

    def rest(self) -> ThumbRequest | None:
        """A folder is scored one image per turn, so a newer request can replace the rest."""
        return replace(self, paths=self.paths[1:]) if len(self.paths) > 1 else None


# --------------------------------------------------------------------------- answers


@dataclass(frozen=True, eq=False)
class Source:
    """The image being privatised: a file, or a sample drawn from the model. It answers an
    OpenRequest or a SampleRequest, whose id becomes its key."""

    kind: ClassVar[Kind] = Kind.OPEN
    pixels: np.ndarray  # float32 (H, W) in [0, 1], as loaded (no overlays)
    name: str
    key: int  # unique per opened source: the session caches encodings by it
    image: LoadedImage | None = None  # None for a synthetic sample
    note: str = ""  # e.g. "synthetic: no patient data"
    # The header values a DICOM release publishes from it (glow_engine.release.deid's
    # defined terms: Modality, ViewPosition...), for the export dialog to show.
    kept_header: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> Path | None:
        return None if self.image is None else self.image.path

    @property
    def request_id(self) -> int:
        return self.key


@dataclass(frozen=True)
class ModelsInfo:
    kind: ClassVar[Kind] = Kind.MODELS
    request_id: int
    mixture_path: Path
    mixture_sha: str
    resolution: int
    device: str
    histogram_bins: int  # of the validation scores' histograms (ModelPair.histogram_bins)
    normal_path: Path | None = None  # without it there is no anomaly ratio, only bits/dim
    mixture_meta: dict = field(default_factory=dict)
    normal_meta: dict = field(default_factory=dict)
    normal_sha: str | None = None
    # The validation normals' and abnormals' scores made with exactly these two models
    # (glow_engine.validation_scores), or None: no such file, or one made with other models.
    reference: ValidationScores | None = None
    # The re-identification and utility measured with this mixture model (the risk card,
    # glow_engine.risk_card, found by glow_engine.model_pair's rule), or None: what the
    # privacy statement quotes.
    risk_card: RiskCard | None = None
    # DP-GLOW's clip boxes fitted per budget, stored in the mixture model's file (None: it
    # has none, and the fitted noise rule is not offered).
    fitted_box: FittedBoxes | None = None


@dataclass(frozen=True, eq=False)
class PaneContent:
    """One privatised image as a pane shows it."""

    key: PaneKey
    title: str
    pixels: np.ndarray  # cropped back to the source's aspect, at model resolution
    frame: np.ndarray  # the square model frame (what is scored)
    caption: str  # the mechanism's own description of what produced it
    e_px: float  # the per-pixel budget it was privatised at


@dataclass(frozen=True, eq=False)
class Rendered:
    request_id: int
    kind: Kind  # RENDER (the main panes) or STRIP
    panes: dict[PaneKey, PaneContent]
    original_frame: np.ndarray  # the overlaid input as the model saw it (square)
    original: np.ndarray  # the same cropped to the image's aspect, like PaneContent.pixels
    metrics: dict[PaneKey, dict[str, float]]  # {"similarity", "marker1", ...} of each pane
    noise_scale: dict[str, float]  # mechanism -> mean Laplace scale at the request's e_px

    @property
    def strip(self) -> bool:
        return self.kind is Kind.STRIP


@dataclass(frozen=True, eq=False)
class Scores:
    kind: ClassVar[Kind] = Kind.SCORES
    request_id: int
    scores: dict[PaneKey, Any]  # glow_engine.scores.Score of each pane


@dataclass(frozen=True, eq=False)
class Exported:
    kind: ClassVar[Kind] = Kind.EXPORT
    request_id: int
    path: Path
    summary: str
    report: Path | None = None  # the release report (HTML, beside the operator's record)


@dataclass(frozen=True, eq=False)
class PatientPreview:
    """What a PatientsRequest found: the first inputs with their patient ID ("" for none; a
    DICOM file's own PatientID is read only when it is released), how many images there are
    and how many have no patient ID."""

    kind: ClassVar[Kind] = Kind.PATIENTS
    request_id: int
    rows: tuple[tuple[str, str], ...] = ()  # (file name, patient ID or "")
    images: int = 0
    without: int = 0  # images with no patient ID (never a DICOM file: its header may have one)
    error: str = ""  # the inputs or the pattern cannot be used: why


@dataclass(frozen=True, eq=False)
class Thumb:
    kind: ClassVar[Kind] = Kind.THUMBS
    request_id: int
    path: Path
    pixels: np.ndarray | None  # small preview; None when the file cannot be read
    score: Any  # Score or None
    error: str = ""


@dataclass(frozen=True, eq=False)
class FolderListing:
    kind: ClassVar[Kind] = Kind.FOLDER
    request_id: int
    folder: Path
    paths: tuple[Path, ...]  # every image under it, sorted


@dataclass(frozen=True, eq=False)
class LedgerSpent:
    """Total epsilon already spent on an image and its patient; all zero where there is no
    ledger yet (none is created before an export)."""

    kind: ClassVar[Kind] = Kind.LEDGER
    request_id: int
    ledger_path: Path
    on_image: float = 0.0
    on_patient: float = 0.0
    patient_budget: float | None = None
    exists: bool = False
    error: str = ""  # the ledger could not be read: why


@dataclass(frozen=True, eq=False)
class LedgerTable:
    """A ledger's rows as glow_engine.release.ledger lists them: keys are pseudonymous (an
    image's content hash, a keyed hash of the patient id), never a plain identifier."""

    kind: ClassVar[Kind] = Kind.LEDGER_TABLE
    request_id: int
    ledger_path: Path
    releases: tuple[dict, ...] = ()
    patients: tuple[dict, ...] = ()
    images: tuple[dict, ...] = ()
    patient_budget: float | None = None
    error: str = ""  # no such ledger, or it could not be read: why
    budget_refused: str = ""  # why a new per-patient budget was not stored (BudgetChange)


@dataclass(frozen=True, eq=False)
class TableWritten:
    kind: ClassVar[Kind] = Kind.TABLE
    request_id: int
    path: Path


@dataclass(frozen=True, eq=False)
class BatchDone:
    """What a batch release did: how many inputs ended in each status, and where its
    published manifest, the operator's record and the release report are."""

    kind: ClassVar[Kind] = Kind.BATCH
    request_id: int
    counts: dict[str, int]  # Outcome status -> inputs ("written", "refused", ...)
    problems: tuple[str, ...]  # one line per input that was not written, and why
    manifest: Path | None
    record: Path | None
    report: Path | None
    error: str = ""  # why the run stopped early, if it did


# --------------------------------------------------------------------------- the PACS window
# Nodes, echo, find and a look run on the PACS lane (a node that does not answer never holds
# a preview or a release back); a release from a PACS runs on the release lane.


@dataclass(frozen=True, eq=False)
class PacsNodesRequest(Request):
    """Read the nodes file; with a `name`, first set that node's TOML keys (None removes a
    key; `old_name`: the node renamed) and [local]'s (glow_engine.pacs.nodes_edit)."""

    kind = Kind.PACS_NODES
    nodes_path: Path
    name: str = ""
    values: dict[str, Any] = field(default_factory=dict)
    old_name: str | None = None
    local: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class PacsEchoRequest(Request):
    kind = Kind.PACS_ECHO
    nodes_path: Path
    node: str


@dataclass(frozen=True, eq=False)
class PacsFindRequest(Request):
    kind = Kind.PACS_FIND
    nodes_path: Path
    node: str
    query: StudyQuery


@dataclass(frozen=True, eq=False)
class PacsLookRequest(Request):
    """Retrieve one study's chest radiographs into a private staging folder (mode 0700,
    beside the ledger) for the viewer, deleting the previous look's first; an empty
    `study_uid` only deletes it."""

    kind = Kind.PACS_LOOK
    nodes_path: Path
    node: str = ""
    study_uid: str = ""
    ledger_path: Path | None = None  # None: the default ledger's folder


@dataclass(frozen=True)
class PacsRelease:
    """What the PACS window releases: studies of a source node, privatised with the batch
    window's choices, sent to a destination node."""

    nodes_path: Path
    source: str
    study_uids: tuple[str, ...]
    to_node: str
    mechanism: str
    params: PrivacyParams
    ledger_path: Path
    linkage: str
    keep_aspect: bool = False
    force_budget: bool = False
    allow_burned_in: bool = False


@dataclass(frozen=True, eq=False)
class PacsBatchRequest(Request):
    """glow_engine.pacs.release.release_from_pacs on the release lane, one image per batch;
    Cancel through the lane under `id`, progress under one id per phase (`phase_ids`:
    retrieving, privatising, sending), so the window can say which."""

    kind = Kind.PACS_RELEASE
    release: PacsRelease
    phase_ids: tuple[int, int, int]


@dataclass(frozen=True, eq=False)
class PacsNodesInfo:
    kind: ClassVar[Kind] = Kind.PACS_NODES
    request_id: int
    nodes_path: Path
    exists: bool
    local: dict[str, Any] = field(default_factory=dict)  # [local]'s keys
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> keys, no secrets
    saved: str = ""  # the node the request saved


@dataclass(frozen=True, eq=False)
class PacsEchoed:
    kind: ClassVar[Kind] = Kind.PACS_ECHO
    request_id: int
    node: str
    address: str


@dataclass(frozen=True, eq=False)
class PacsStudies:
    kind: ClassVar[Kind] = Kind.PACS_FIND
    request_id: int
    node: str
    studies: tuple[Study, ...]


@dataclass(frozen=True, eq=False)
class PacsLooked:
    kind: ClassVar[Kind] = Kind.PACS_LOOK
    request_id: int
    folder: Path | None  # the staged copy (None: the look was closed)
    images: int = 0
    skipped: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class PacsReleased:
    """What a release from a PACS did: the batch release's own summary, then what was
    retrieved, skipped, sent, and what became of the staging folder."""

    kind: ClassVar[Kind] = Kind.PACS_RELEASE
    request_id: int
    batch: BatchDone | None  # None: stopped before anything was privatised
    studies: int
    retrieved: int
    skipped: tuple[str, ...]
    destination: str
    sent: int
    already_there: int
    not_sent: int
    staging: str


PacsAnswer = PacsNodesInfo | PacsEchoed | PacsStudies | PacsLooked | PacsReleased


@dataclass(frozen=True, eq=False)
class Failed:
    request_id: int
    kind: Kind
    message: str


Answer = (ModelsInfo | Source | FolderListing | Rendered | Scores | Exported | LedgerSpent
          | LedgerTable | TableWritten | BatchDone | PatientPreview | Thumb | Failed
          | PacsAnswer)
