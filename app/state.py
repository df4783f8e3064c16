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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from app.events import Event
from glow_engine.imaging import LoadedImage
from glow_engine.overlays import BlockMarker, apply_overlays

if TYPE_CHECKING:
    from glow_engine.reference import Reference

E_PX_MIN = 1.0
E_PX_MAX = 1e4
STRIP_BUDGETS = (1000.0, 100.0, 10.0)  # the paper's figures
MODES = ("paper", "tight")
MECHANISMS = ("dpglow", "idldp")
MECHANISM_TITLES = {"dpglow": "DP-GLOW", "idldp": "ID-LDP"}


@dataclass(frozen=True)
class PrivacyParams:
    e_px: float = 100.0  # per-pixel budget; total epsilon = e_px * R * R; may be math.inf
    alpha: float = 0.4
    mode: str = "paper"
    clip: bool = True  # False only matters at e_px = inf: the plain reconstruction
    noise_seed: int = 0  # the preview draw; "new noise draw" bumps it


@dataclass(frozen=True, eq=False)
class Source:
    """The image being privatised: a file, or a sample drawn from the model."""

    pixels: np.ndarray  # float32 (H, W) in [0, 1], as loaded (no overlays)
    name: str
    key: int  # unique per opened source: the session caches encodings by it
    image: LoadedImage | None = None  # None for a synthetic sample
    note: str = ""  # e.g. "synthetic: no patient data"

    @property
    def path(self) -> Path | None:
        return None if self.image is None else self.image.path


@dataclass(frozen=True)
class ModelsInfo:
    request_id: int
    mixture_path: Path
    mixture_sha: str
    resolution: int
    device: str
    normal_path: Path | None = None  # without it there is no anomaly ratio, only bits/dim
    mixture_meta: dict = field(default_factory=dict)
    normal_meta: dict = field(default_factory=dict)
    normal_sha: str | None = None
    # The validation normals' and abnormals' scores made with exactly these two models
    # (glow_engine.reference), or None: no such file, or one made with other models.
    reference: Reference | None = None


@dataclass(frozen=True)
class Display:
    invert: bool = False
    difference: bool = False  # privatised minus original instead of the privatised image
    strip: bool = False  # the fixed-budget strip (e_px 1000 / 100 / 10)
    outlines: bool = True  # marker outlines on every pane
    levels: tuple[float, float] = (0.0, 1.0)  # window (min, max) shared by all panes


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True, eq=False)
class Request:
    id: int


@dataclass(frozen=True, eq=False)
class LoadModelsRequest(Request):
    mixture: Path
    normal: Path | None


@dataclass(frozen=True, eq=False)
class OpenRequest(Request):
    path: Path


@dataclass(frozen=True, eq=False)
class SampleRequest(Request):
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
    """Privatise the current input with both mechanisms at each budget."""

    budgets: tuple[float, ...]
    strip: bool  # True: the fixed-budget strip, False: the main panes


@dataclass(frozen=True, eq=False)
class ScoreRequest(Request):
    frames: dict[str, np.ndarray]  # pane key -> model-resolution square frame


@dataclass(frozen=True, eq=False)
class ExportRequest(InputRequest):
    mechanism: str
    out_path: Path
    fmt: str  # "png" | "dicom"
    ledger_path: Path
    allow_burned_in: bool = False  # the user confirmed the pixels hold no identifying text
    force_budget: bool = False  # release past the ledger's per-patient budget (recorded)


@dataclass(frozen=True, eq=False)
class ThumbRequest(Request):
    paths: tuple[Path, ...]


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, eq=False)
class Pane:
    key: str  # "dpglow", "idldp", "dpglow@100", ...
    title: str
    pixels: np.ndarray  # cropped back to the source's aspect, at model resolution
    frame: np.ndarray  # the square model frame (what is scored)
    caption: str  # the mechanism's own description of what produced it


@dataclass(frozen=True, eq=False)
class Rendered:
    request_id: int
    panes: dict[str, Pane]
    original_frame: np.ndarray  # the overlaid input as the model saw it (square)
    original: np.ndarray  # the same cropped to the image's aspect, like Pane.pixels
    metrics: dict[str, dict[str, float]]  # pane key -> {"similarity", "marker_kept", ...}
    noise_scale: dict[str, float]  # mechanism -> mean Laplace scale at the request's e_px
    strip: bool = False


@dataclass(frozen=True, eq=False)
class Scores:
    request_id: int
    scores: dict[str, Any]  # pane key -> glow_engine.scores.Score


@dataclass(frozen=True, eq=False)
class Exported:
    request_id: int
    path: Path
    summary: str


@dataclass(frozen=True, eq=False)
class Thumb:
    request_id: int
    path: Path
    pixels: np.ndarray | None  # small preview; None when the file cannot be read
    score: Any  # Score or None
    error: str = ""


@dataclass(frozen=True, eq=False)
class Failed:
    request_id: int
    kind: str
    message: str


# --------------------------------------------------------------------------- the state


class ViewState:
    """Everything the window shows. ``changed`` emits a frozenset of aspect names:
    models, source, overlays, params, display, rendered, strip, scores, error, exported,
    thumbs."""

    def __init__(self) -> None:
        self.changed = Event()
        self.requested = Event()
        self.models: ModelsInfo | None = None
        self.source: Source | None = None
        self.markers: tuple[BlockMarker, ...] = ()
        self.flip = False
        self.params = PrivacyParams()
        self.display = Display()
        self.rendered: Rendered | None = None
        self.strip: Rendered | None = None
        self.scores: dict[str, Any] = {}
        self.message = ""  # the last error, for the window to show
        self.last_export: Exported | None = None
        self.thumbs: dict[Path, Thumb] = {}
        self._ids = itertools.count(1)
        self._latest: dict[str, int] = {}  # kind -> newest request id
        self._answered: dict[str, int] = {}  # kind -> id of the newest request answered
        self._source_keys = itertools.count(1)
        self._overlaid: np.ndarray | None = None

    # ----------------------------------------------------------------- derived values

    @property
    def resolution(self) -> int | None:
        return None if self.models is None else self.models.resolution

    @property
    def total_epsilon(self) -> float | None:
        """epsilon = e_px * H * W of the model frame (METHOD.md section 4)."""
        r = self.resolution
        return None if r is None else self.params.e_px * r * r

    @property
    def original(self) -> np.ndarray | None:
        """The source with markers and flip applied: what both mechanisms privatise."""
        if self.source is None:
            return None
        if self._overlaid is None:
            self._overlaid = apply_overlays(self.source.pixels, list(self.markers), self.flip)
        return self._overlaid

    # ----------------------------------------------------------------- user actions

    def load_models(self, mixture: Path, normal: Path | None) -> None:
        self._request(LoadModelsRequest, "models", mixture=Path(mixture),
                      normal=None if normal is None else Path(normal))

    def open(self, path: Path) -> None:
        self._request(OpenRequest, "open", path=Path(path))

    def new_sample(self) -> None:
        if self.models is None:
            self._fail("sample", "No model is loaded, so there is nothing to sample from.")
            return
        self._request(SampleRequest, "open", seed=int.from_bytes(np.random.bytes(4), "little"))

    def add_marker(self, marker: BlockMarker) -> None:
        self._set_overlays((*self.markers, marker), self.flip)

    def remove_marker(self, index: int) -> None:
        markers = list(self.markers)
        del markers[index]
        self._set_overlays(tuple(markers), self.flip)

    def clear_markers(self) -> None:
        self._set_overlays((), self.flip)

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
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self._set_params(mode=mode)

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
        self.changed.emit(frozenset({"display"}))
        if self.display.strip and not old.strip:
            self._request_render(strip=True)

    def export(self, mechanism: str, out_path: Path, fmt: str, ledger_path: Path, *,
               allow_burned_in: bool = False, force_budget: bool = False) -> None:
        if self.source is None or self.models is None:
            self._fail("export", "Open an image and load a model before exporting.")
            return
        self._request(ExportRequest, "export", source=self.source, markers=self.markers,
                      flip=self.flip, params=self.params, mechanism=mechanism,
                      out_path=Path(out_path), fmt=fmt, ledger_path=Path(ledger_path),
                      allow_burned_in=allow_burned_in, force_budget=force_budget)

    def score_folder(self, paths: list[Path]) -> None:
        self.thumbs = {}
        self.changed.emit(frozenset({"thumbs"}))
        if paths:
            self._request(ThumbRequest, "thumbs", paths=tuple(paths))

    # ----------------------------------------------------------------- worker answers

    @property
    def settled(self) -> bool:
        """Every request made so far has its answer (folder thumbnails aside)."""
        return all(self._answered.get(kind) == rid for kind, rid in self._latest.items()
                   if kind != "thumbs")

    def accept(self, result: object) -> bool:
        """Take a worker result; False (and no change) if it answers an outdated request."""
        kind = _answer_kind(result)
        if self._latest.get(kind) == _request_id(result):
            self._answered[kind] = _request_id(result)
        handler = {
            ModelsInfo: self._accept_models,
            Source: self._accept_source,
            Rendered: self._accept_rendered,
            Scores: self._accept_scores,
            Exported: self._accept_exported,
            Thumb: self._accept_thumb,
            Failed: self._accept_failed,
        }[type(result)]
        return handler(result)

    def is_current(self, kind: str, request_id: int) -> bool:
        return self._latest.get(kind) == request_id

    def _accept_models(self, info: ModelsInfo) -> bool:
        if not self.is_current("models", info.request_id):
            return False
        self.models = info
        self.rendered, self.strip, self.scores = None, None, {}
        self._emit("models", "rendered", "strip", "scores")
        self._request_all_renders()
        return True

    def _accept_source(self, source: Source) -> bool:
        # A Source answers an "open" request; its key doubles as the request id.
        if not self.is_current("open", source.key):
            return False
        self.source, self.markers, self.flip = source, (), False
        self._overlaid = None
        self.rendered, self.strip, self.scores = None, None, {}
        self._emit("source", "overlays", "rendered", "strip", "scores")
        self._request_all_renders()
        return True

    def _accept_rendered(self, result: Rendered) -> bool:
        if not self.is_current("strip" if result.strip else "render", result.request_id):
            return False
        if result.strip:
            self.strip = result
        else:
            self.rendered = result
        self._emit("strip" if result.strip else "rendered")
        self._request_scores()
        return True

    def _accept_scores(self, result: Scores) -> bool:
        if not self.is_current("scores", result.request_id):
            return False
        self.scores = dict(result.scores)
        self.changed.emit(frozenset({"scores"}))
        return True

    def _accept_exported(self, result: Exported) -> bool:
        self.last_export = result
        self._emit("exported")
        return True

    def _accept_thumb(self, thumb: Thumb) -> bool:
        if not self.is_current("thumbs", thumb.request_id):
            return False
        self.thumbs[thumb.path] = thumb
        self.changed.emit(frozenset({"thumbs"}))
        return True

    def _accept_failed(self, failed: Failed) -> bool:
        if failed.kind in self._latest and not self.is_current(failed.kind, failed.request_id):
            return False
        self._fail(failed.kind, failed.message)
        return True

    # ----------------------------------------------------------------- internals

    def _set_overlays(self, markers: tuple[BlockMarker, ...], flip: bool) -> None:
        if (markers, flip) == (self.markers, self.flip):
            return
        self.markers, self.flip = markers, flip
        self._overlaid = None
        self.changed.emit(frozenset({"overlays"}))
        self._request_all_renders()

    def _set_params(self, **changes: Any) -> None:
        old = self.params
        self.params = replace(old, **changes)
        if self.params == old:
            return
        self.changed.emit(frozenset({"params"}))
        self._request_render(strip=False)
        # The strip's budgets are fixed: only a new draw, alpha or mode changes it.
        if (old.alpha, old.mode, old.noise_seed) != (
            self.params.alpha, self.params.mode, self.params.noise_seed
        ):
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
        self._request(RenderRequest, "strip" if strip else "render", source=self.source,
                      markers=self.markers, flip=self.flip, params=self.params,
                      budgets=budgets, strip=strip)

    def _request_scores(self) -> None:
        if self.rendered is None:
            return
        frames = {"original": self.rendered.original_frame}
        for result in (self.rendered, self.strip if self.display.strip else None):
            if result is not None:
                frames.update({k: p.frame for k, p in result.panes.items()})
        self._request(ScoreRequest, "scores", frames=frames)

    def _request(self, cls: type[Request], kind: str, **fields: Any) -> None:
        request_id = next(self._source_keys) if kind == "open" else next(self._ids)
        self._latest[kind] = request_id
        self.requested.emit(cls(id=request_id, **fields))

    def _emit(self, *aspects: str) -> None:
        self.changed.emit(frozenset(aspects))

    def _fail(self, kind: str, message: str) -> None:
        self.message = message
        self._emit("error")


def _answer_kind(result: object) -> str:
    if isinstance(result, Failed):
        return result.kind
    if isinstance(result, Rendered):
        return "strip" if result.strip else "render"
    return {ModelsInfo: "models", Source: "open", Scores: "scores", Exported: "export",
            Thumb: "thumbs"}[type(result)]


def _request_id(result: object) -> int:
    return result.key if isinstance(result, Source) else result.request_id
