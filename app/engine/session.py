"""The engine side of the viewer: models, encodings and results. Qt-free.

One :class:`Session` lives on the worker thread and answers the view-state's requests. It
keeps the expensive, deterministic part of privatising (the encoding) per input image, so a
slider move costs one decode and a cheap noise rescale. Every answer is a plain value object
from ``app.core.state``; a failure is a ``Failed`` answer with a message for the user, and the
session keeps whatever it had before.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import singledispatchmethod
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.core.messages import (
    Answer,
    BatchDone,
    BatchRequest,
    Exported,
    ExportRequest,
    Failed,
    FolderListing,
    FolderRequest,
    Kind,
    LedgerRequest,
    LedgerSpent,
    LedgerTable,
    LedgerTableRequest,
    LoadModelsRequest,
    ModelsInfo,
    OpenRequest,
    PaneContent,
    PrivacyParams,
    Rendered,
    RenderRequest,
    Request,
    SampleRequest,
    ScoreRequest,
    Scores,
    Source,
    TableRequest,
    TableWritten,
    Thumb,
    ThumbRequest,
)
from app.core.state import MECHANISMS
from app.engine.lru import LRU
from glow_engine.anomaly import AnomalyScorer
from glow_engine.atomic import write_text_atomic
from glow_engine.device import describe, pick_device
from glow_engine.errors import UserError
from glow_engine.flow.glow import model_to_pixels
from glow_engine.imaging import load_image
from glow_engine.imaging.discovery import find_images
from glow_engine.imaging.frame import Placement, from_square, to_square
from glow_engine.mechanism_specs import spec_of
from glow_engine.mechanisms import Encoded, Mechanism, create_mechanism, preview_noise
from glow_engine.modelfile import LoadedModel, load_model
from glow_engine.overlays import (
    BlockMarker,
    apply_overlays,
    contrast_kept,
    similarity,
)
from glow_engine.privacy_statement import scientific
from glow_engine.release.batch import (
    ReleaseInput,
    ReleaseOptions,
    Summary,
    release_folder,
    release_one,
)
from glow_engine.release.deid import kept_values
from glow_engine.release.ledger import Ledger
from glow_engine.release.records import manifest_path, record_path
from glow_engine.release.report import report_run
from glow_engine.resources import VALIDATION_SCORES_NAME, resource_path
from glow_engine.risk_card import RISK_CARD_NAME, load_risk_card
from glow_engine.validation_scores import load_validation_scores

THUMB_SIZE = 96
# Above GLOW's usual 0.7 for the 256x256 pair: every t = 0.7 or 0.8 draw is flagged by the
# out-of-distribution check as far simpler than any real chest X-ray, 12 of 60 at t = 0.9
# (mostly "looks turned": the model's own flaws), while t = 1 gave 1 broken draw in 60
# (bits/dim ~1e13 on re-encoding). They look alike at 0.7-1.
SAMPLE_TEMPERATURE = 0.9

# How many of each are kept (least recently used evicted first).
_CACHE_INPUTS = 2  # the current input and the one before (undo a marker)
_CACHE_ENCODINGS = len(MECHANISMS) * _CACHE_INPUTS  # every mechanism's of each
_CACHE_MECHANISMS = 4 * len(MECHANISMS)
_CACHE_NOISE = 2  # the current preview draw and the one before
_CACHE_SCORES = 64
_CACHE_PREVIEWS = 128  # 256 KB each at 256x256 (float32): 32 MB


@dataclass(frozen=True, eq=False)
class Prepared:
    """One input as every mechanism sees it."""

    key: tuple  # (source key, markers, flip): what the frame depends on
    frame: np.ndarray  # (R, R) overlaid input in the model frame
    placement: Placement
    crop: np.ndarray  # the frame cropped back to the image's aspect (for metrics)
    markers: tuple[BlockMarker, ...]  # fractions of the image: valid on `crop` as well


class Session:
    """Owns the models and mechanisms; every public method returns a state value object."""

    def __init__(self, device: str = "auto") -> None:
        self._device_pref = device
        self.device: torch.device | None = None
        self.mixture: LoadedModel | None = None
        self.normal: LoadedModel | None = None
        self.scorer: AnomalyScorer | None = None
        # Each keyed by what its values depend on, besides the models (a load clears them).
        self._mechanisms: LRU[tuple, Mechanism] = LRU(_CACHE_MECHANISMS)  # _mechanism_key
        self._inputs: LRU[tuple, Prepared] = LRU(_CACHE_INPUTS)  # Prepared.key
        self._encodings: LRU[tuple, Encoded] = LRU(_CACHE_ENCODINGS)  # input, encode group
        self._noise: LRU[tuple[int, int], torch.Tensor] = LRU(_CACHE_NOISE)  # seed, size
        self._scores: LRU[str, Any] = LRU(_CACHE_SCORES)  # frame digest -> Score
        # input, mechanism, budget, draw, clip -> preview frame
        self._previews: LRU[tuple, np.ndarray] = LRU(_CACHE_PREVIEWS)
        # Random per session: no one else can regenerate a preview (the state's noise_seed
        # only numbers the draws within the session).
        self._preview_seed = secrets.randbits(62)

    # ----------------------------------------------------------------- dispatch

    def handle(self, request: Request) -> Answer:
        """Answer one request; a UserError (or any bug) becomes a Failed answer."""
        try:
            return self.answer(request)
        except UserError as exc:
            return Failed(request.id, request.kind, str(exc))
        except Exception as exc:  # the worker must survive engine bugs; say what happened
            return Failed(request.id, request.kind,
                          f"Unexpected error ({type(exc).__name__}: {exc})")

    @singledispatchmethod
    def answer(self, request: Request) -> Answer:
        """The handler registered for the request's class (``@answer.register``)."""
        raise TypeError(f"no handler for {type(request).__name__}")

    # ----------------------------------------------------------------- models

    @answer.register
    def load_models(self, request: LoadModelsRequest) -> ModelsInfo:
        """Load and validate both models; on any failure the previous pair stays."""
        device = self.device or pick_device(self._device_pref)
        mixture = load_model(request.mixture, device)
        if mixture.calibration is None:
            raise UserError(f"Model {request.mixture.name} has no latent calibration, so "
                            "DP-GLOW cannot privatise with it (run `dpglow calibrate` on it).")
        normal = scorer = None
        if request.normal is not None:
            normal = load_model(request.normal, device)
            scorer = AnomalyScorer(normal, mixture)
        self.device, self.mixture, self.normal, self.scorer = device, mixture, normal, scorer
        for cache in (self._mechanisms, self._inputs, self._encodings, self._noise,
                      self._scores, self._previews):
            cache.clear()
        return ModelsInfo(
            request_id=request.id, mixture_path=request.mixture, mixture_sha=mixture.sha256,
            resolution=mixture.resolution, device=describe(device),
            normal_path=request.normal, mixture_meta=dict(mixture.meta),
            normal_meta={} if normal is None else dict(normal.meta),
            normal_sha=None if normal is None else normal.sha256,
            reference=None if normal is None else _beside_models(
                request.mixture, VALIDATION_SCORES_NAME,
                lambda path: load_validation_scores(path, mixture.sha256, normal.sha256)),
            risk_card=None if normal is None else _beside_models(
                request.mixture, RISK_CARD_NAME,
                lambda path: load_risk_card(path, mixture.sha256, normal.sha256)),
        )

    def _model(self) -> LoadedModel:
        if self.mixture is None:
            raise UserError("No model is loaded.")
        return self.mixture

    def _mechanism(self, name: str, p: PrivacyParams) -> Mechanism:
        return self._mechanisms.get(
            _mechanism_key(name, p),
            lambda: create_mechanism(name, self._model(), **p.options_of(name)))

    # ----------------------------------------------------------------- inputs

    @answer.register
    def open(self, request: OpenRequest) -> Source:
        image = load_image(request.path)  # reading a file never needs the model
        return Source(image.pixels, image.path.name, request.id, image,
                      kept_header=kept_values(image.dataset))

    @answer.register
    @torch.inference_mode()
    def sample(self, request: SampleRequest) -> Source:
        flow = self._model().flow
        generator = torch.Generator().manual_seed(request.seed)
        x = flow.sample(1, temperature=SAMPLE_TEMPERATURE, generator=generator)
        pixels = model_to_pixels(x)[0, 0].float().cpu().numpy()
        return Source(pixels, "Synthetic sample", request.id,
                      note="drawn from the model: no patient data")

    def _prepare(self, source: Source, markers: tuple[BlockMarker, ...],
                 flip: bool) -> Prepared:
        r = self._model().resolution
        key = (source.key, markers, flip)

        def build() -> Prepared:
            # Overlays go on at full resolution, exactly as the original pane shows them.
            frame, placement = to_square(apply_overlays(source.pixels, markers, flip), r)
            return Prepared(key, frame, placement, from_square(frame, placement), markers)

        return self._inputs.get(key, build)

    def _encoding(self, prep: Prepared, name: str, p: PrivacyParams) -> Encoded:
        """The noise-free part, once per input and clip box: the box depends on alpha, not
        on the sensitivity mode, so switching paper <-> tight only rescales the noise."""
        return self._encodings.get(
            (prep.key, spec_of(name).encoding_key(p.options_of(name))),
            lambda: self._mechanism(name, p).encode(prep.frame))

    def _unit_noise(self, seed: int) -> torch.Tensor:
        """The preview draw of one image: drawn once, rescaled by every slider position."""
        n = self._model().resolution ** 2
        return self._noise.get((seed, n),
                               lambda: preview_noise(1, n, self._preview_seed + seed))

    # ----------------------------------------------------------------- rendering

    @answer.register
    @torch.inference_mode()
    def render(self, request: RenderRequest) -> Rendered:
        """The main panes (RenderRequest) or the strip (its subclass StripRequest)."""
        p, strip = request.params, request.kind is Kind.STRIP
        prep = self._prepare(request.source, request.markers, request.flip)
        panes: dict[str, PaneContent] = {}
        for name in MECHANISMS:
            mech = self._mechanism(name, p)
            for e_px in request.budgets:
                key = f"{name}@{e_px:g}" if strip else name
                frame = self._preview(prep, name, e_px, p)
                # a strip pane's group in the window names the mechanism
                title = f"ε/px {e_px:g}" if strip else _title(mech.label, e_px)
                panes[key] = PaneContent(key, title, from_square(frame, prep.placement),
                                         frame, mech.describe(e_px, p.clip), e_px)
        e_px = request.budgets[0]
        return Rendered(
            request.id, request.kind, panes, prep.frame, prep.crop, _metrics(prep, panes),
            {n: self._mechanism(n, p).noise_scale(e_px) for n in MECHANISMS},
        )

    def _preview(self, prep: Prepared, name: str, e_px: float, p: PrivacyParams) -> np.ndarray:
        """One preview frame. Kept per input, budget and draw: going back to a recent slider
        position (or to a strip budget) costs nothing instead of a full decode."""
        def draw() -> np.ndarray:
            mech = self._mechanism(name, p)
            frame = mech.preview(self._encoding(prep, name, p), e_px,
                                 self._unit_noise(p.noise_seed), clip=p.clip)
            return np.asarray(frame, dtype=np.float32).reshape(prep.frame.shape)

        key = (prep.key, _mechanism_key(name, p), e_px, p.noise_seed, p.clip)
        return self._previews.get(key, draw)

    # ----------------------------------------------------------------- scores

    @answer.register
    def score(self, request: ScoreRequest) -> Scores:
        """Scores of every frame; frames scored before (the original, the strip) are reused."""
        if self.scorer is None:
            return Scores(request.id, {})
        digests = {k: (hashlib.sha1(f.tobytes()).hexdigest(), k in request.colour)
                   for k, f in request.frames.items()}
        known = {k: self._scores[d] for k, d in digests.items() if d in self._scores}
        todo = [k for k in digests if k not in known]
        if todo:  # one batch for all new frames
            fresh = self.scorer.score(np.stack([request.frames[k] for k in todo]),
                                      np.array([k in request.colour for k in todo]))
            for key, score in zip(todo, fresh, strict=True):
                self._scores.put(digests[key], score)
                known[key] = score
        return Scores(request.id, {k: known[k] for k in digests})

    @answer.register
    def thumb(self, request: ThumbRequest) -> Thumb:
        """One folder entry (the first of the request's paths): thumbnail and score."""
        path = request.paths[0]
        try:
            image = load_image(path)
        except UserError as exc:
            return Thumb(request.id, path, None, None, str(exc))
        pixels, score = image.pixels, None
        if self.scorer is not None:
            frame = to_square(pixels, self.scorer.resolution)[0]
            score = self.scorer.score(frame, np.array([image.colour]))[0]
        return Thumb(request.id, path, to_square(pixels, THUMB_SIZE)[0], score)

    @answer.register
    def list_folder(self, request: FolderRequest) -> FolderListing:
        return FolderListing(request.id, request.folder, tuple(find_images(request.folder)))

    @answer.register
    def ledger_spent(self, request: LedgerRequest) -> LedgerSpent:
        """Read only if the ledger exists: opening a new one would create it, and nothing is
        written before an export."""
        path, sha = request.ledger_path, request.content_sha256
        if not path.is_file():
            return LedgerSpent(request.id, path)
        try:
            with Ledger(path) as ledger:
                return LedgerSpent(request.id, path, ledger.spent_on_image(sha),
                                   ledger.spent_on_patient(request.patient_id, sha),
                                   ledger.patient_budget, exists=True)
        except UserError as exc:
            return LedgerSpent(request.id, path, error=str(exc))


    @answer.register
    def ledger_table(self, request: LedgerTableRequest) -> LedgerTable:
        """Read only if the ledger exists: opening a new one would create it."""
        path = request.ledger_path
        if not path.is_file():
            return LedgerTable(request.id, path, error=f"There is no ledger at {path}.")
        try:
            with Ledger(path) as ledger:
                return LedgerTable(request.id, path, tuple(ledger.releases()),
                                   tuple(ledger.patient_totals()), tuple(ledger.image_totals()),
                                   ledger.patient_budget)
        except UserError as exc:
            return LedgerTable(request.id, path, error=str(exc))

    @answer.register
    def table(self, request: TableRequest) -> TableWritten:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(request.header)
        writer.writerows(request.rows)
        write_text_atomic(request.path, out.getvalue())
        return TableWritten(request.id, request.path)

    @answer.register
    def batch(self, request: BatchRequest) -> BatchDone:
        """The batch window's release: `dpglow privatize`'s path and its release report."""
        p = request.params
        mech = self._mechanism(request.mechanism, p)
        opts = ReleaseOptions(e_px=p.e_px, out_dir=request.out_dir, fmt=request.fmt,
                              keep_aspect=request.keep_aspect,
                              force_budget=request.force_budget,
                              allow_burned_in=request.allow_burned_in)
        with Ledger(request.ledger_path) as ledger:
            summary = release_folder(list(request.inputs), mech, ledger, opts,
                                     on_progress=request.progress,
                                     should_stop=request.cancel.is_set)
            report = report_run(mech, p.e_px, summary, ledger)
        problems = tuple(f"{Path(o.source).name}: {o.status} — {o.message}"
                         for o in summary.outcomes if o.status not in ("written",))
        return BatchDone(request.id, dict(Counter(o.status for o in summary.outcomes)),
                         problems, summary.manifest, summary.record, report,
                         summary.error or "")

    # ----------------------------------------------------------------- export

    @answer.register
    @torch.inference_mode()
    def export(self, request: ExportRequest) -> Exported:
        """Release the current input through the release path shared with `dpglow privatize`
        (glow_engine.release.batch.release_one): fresh noise from the OS CSPRNG (never the
        preview's draw), reserved in the ledger before it is drawn, a random file name in
        the release folder and a row in its manifest and in the operator's record."""
        p, src = request.params, request.source
        prep = self._prepare(src, request.markers, request.flip)
        mech = self._mechanism(request.mechanism, p)
        image = src.image
        sha = image.content_sha256 if image else hashlib.sha256(src.pixels.tobytes()).hexdigest()
        item = ReleaseInput(
            str(image.path) if image else "synthetic sample", sha, prep.frame, prep.placement,
            image.dataset if image else None, image.patient_id if image else None,
            image.burned_in_annotation if image else None,
            self._encoding(prep, mech.name, p))
        notes = ["exported from the DP-GLOW viewer"]
        if request.markers or request.flip:
            notes.append("input altered by the user before privatisation (block markers or "
                         "left-right flip)")
        opts = ReleaseOptions(e_px=p.e_px, out_dir=request.out_dir, fmt=request.fmt,
                              keep_aspect=request.keep_aspect,
                              force_budget=request.force_budget,
                              allow_burned_in=request.allow_burned_in, note="; ".join(notes))
        with Ledger(request.ledger_path) as ledger:
            outcome = release_one(item, mech, ledger, opts)
            if outcome.status != "written" or outcome.file is None:
                raise UserError(outcome.message)
            on_image = ledger.spent_on_image(sha)
            on_patient = ledger.spent_on_patient(item.patient_id, sha)
            done = Summary([outcome], manifest_path(request.out_dir),
                           record_path(request.ledger_path))
            report = report_run(mech, p.e_px, done, ledger)
        who = "patient" if item.patient_id else "image"
        place, (h, w) = prep.placement, src.pixels.shape
        size = (f"{place.width} × {place.height}" if request.keep_aspect
                else f"{mech.resolution} × {mech.resolution}")
        drawn = ("no noise (ε = ∞): no privacy" if math.isinf(p.e_px)
                 else "a new draw with fresh secure noise")
        return Exported(request.id, outcome.file,
                        f"Exported {outcome.file.name}, {size} pixels from a {w} × {h} source: "
                        f"{drawn} ({mech.describe(p.e_px)}). Ledger: total ε spent on this "
                        f"image {scientific(on_image)}; on this {who} {scientific(on_patient)}.",
                        report)


def _beside_models(mixture_path: Path, name: str, load: Callable[[Path], Any]) -> Any:
    """A file `dpglow evaluate --write-reference` made for the loaded pair (the validation
    scores, the risk card): beside the mixture model's folder, else the shipped one beside
    the default models. `load` returns None for a file made with other models (each loader
    checks both models' hashes)."""
    candidates = [Path(mixture_path).parent / name, resource_path("models", name)]
    for path in dict.fromkeys(p.resolve() for p in candidates):
        found = load(path)
        if found is not None:
            return found
    return None


def _mechanism_key(name: str, p: PrivacyParams) -> tuple:
    """What a mechanism depends on besides the model: the options it is built with."""
    return (name, *sorted(p.options_of(name).items()))


def _title(label: str, e_px: float) -> str:
    """"DP-GLOW (paper, α=0.4)   ε/px = 100": which mechanism and variant, at which budget."""
    budget = "∞" if math.isinf(e_px) else f"{e_px:g}"
    return f"{label}   ε/px = {budget}"


def _metrics(prep: Prepared, panes: dict[str, PaneContent]) -> dict[str, dict[str, float]]:
    """Re-identification evidence per pane: similarity to the original, marker contrast kept.

    Computed on the cropped model-resolution images, where the markers' fractions still hold.
    """
    out: dict[str, dict[str, float]] = {}
    for key, pane in panes.items():
        row = {"similarity": similarity(prep.crop, pane.pixels)}
        for i, marker in enumerate(prep.markers):
            row[f"marker{i + 1}"] = contrast_kept(prep.crop, pane.pixels, marker)
        out[key] = row
    return out
