"""The engine side of the viewer: one Session answers the view-state's requests. Qt-free.

One :class:`Session` lives on each engine lane's worker thread. It owns the loaded model pair
and dispatches each request class to its job, each in its own module: rendering with its
caches (``app.engine.rendering``, on ``app.engine.inputs``), release of the open image or a
folder (``app.engine.release``), the ledger (``app.engine.ledger``), files and folders
(``app.engine.files``). Every answer is a plain value object from ``app.core.messages``; a
failure is a ``Failed`` answer with a message for the user, and the session keeps whatever it
had before.
"""

from __future__ import annotations

from functools import singledispatchmethod

import torch

from app.core.jobs import JobControl
from app.core.messages import (
    Answer,
    BatchDone,
    BatchRequest,
    Exported,
    ExportRequest,
    Failed,
    FolderListing,
    FolderRequest,
    LedgerRequest,
    LedgerSpent,
    LedgerTable,
    LedgerTableRequest,
    LoadModelsRequest,
    ModelsInfo,
    OpenRequest,
    PacsAnswer,
    PacsBatchRequest,
    PacsEchoRequest,
    PacsFindRequest,
    PacsLookRequest,
    PacsNodesRequest,
    PatientPreview,
    PatientsRequest,
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
from app.engine import files, ledger, patients
from app.engine.inputs import Inputs
from app.engine.pacs import Pacs
from app.engine.release import Releases
from app.engine.rendering import Rendering
from glow_engine.device import describe, pick_device
from glow_engine.errors import UserError
from glow_engine.model_pair import ModelPair
from glow_engine.modelfile import LoadedModel, load_model


class Session:
    """Owns the models and the jobs; every answer is a state value object."""

    def __init__(self, device: str = "auto", control: JobControl | None = None) -> None:
        self._device_pref = device
        self.device: torch.device | None = None
        self.pair: ModelPair | None = None
        self.inputs = Inputs(self._model)
        self.rendering = Rendering(self.inputs, self._pair,
                                   lambda: None if self.pair is None else self.pair.scorer)
        control = control or JobControl()
        self.releases = Releases(self.inputs, control)
        self.pacs = Pacs(self.inputs, control)

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

    @answer.register
    def _open(self, request: OpenRequest) -> Source:
        return files.open_image(request)

    @answer.register
    def _sample(self, request: SampleRequest) -> Source:
        return self.rendering.sample(request)

    @answer.register
    def _render(self, request: RenderRequest) -> Rendered:
        return self.rendering.render(request)

    @answer.register
    def _score(self, request: ScoreRequest) -> Scores:
        return self.rendering.score(request)

    @answer.register
    def _thumb(self, request: ThumbRequest) -> Thumb:
        return files.thumb(request, None if self.pair is None else self.pair.scorer)

    @answer.register
    def _list_folder(self, request: FolderRequest) -> FolderListing:
        return files.list_folder(request)

    @answer.register
    def _ledger_spent(self, request: LedgerRequest) -> LedgerSpent:
        return ledger.spent(request)

    @answer.register
    def _ledger_table(self, request: LedgerTableRequest) -> LedgerTable:
        return ledger.table(request)

    @answer.register
    def _patients(self, request: PatientsRequest) -> PatientPreview:
        return patients.preview(request)

    @answer.register
    def _table(self, request: TableRequest) -> TableWritten:
        return ledger.write_csv(request)

    @answer.register
    def _export(self, request: ExportRequest) -> Exported:
        return self.releases.export(request)

    @answer.register
    def _batch(self, request: BatchRequest) -> BatchDone:
        return self.releases.folder(request)

    @answer.register
    def _pacs(self, request: PacsNodesRequest | PacsEchoRequest | PacsFindRequest
              | PacsLookRequest | PacsBatchRequest) -> PacsAnswer:
        return self.pacs.answer(request)

    # ----------------------------------------------------------------- models

    @answer.register
    def load_models(self, request: LoadModelsRequest) -> ModelsInfo:
        """Load and validate both models; on any failure the previous pair stays."""
        device = self.device or pick_device(self._device_pref)
        mixture = load_model(request.mixture, device)
        if mixture.calibration is None:
            raise UserError(f"Model {request.mixture.name} has no latent calibration, so "
                            "DP-GLOW cannot privatise with it (run `dpglow calibrate` on it).")
        pair = ModelPair(mixture, None if request.normal is None
                         else load_model(request.normal, device))
        self.device, self.pair = device, pair
        self.inputs.clear()
        self.rendering.clear()
        normal = pair.normal
        return ModelsInfo(
            request_id=request.id, mixture_path=request.mixture, mixture_sha=mixture.sha256,
            resolution=mixture.resolution, device=describe(device),
            normal_path=request.normal, mixture_meta=dict(mixture.meta),
            normal_meta={} if normal is None else dict(normal.meta),
            normal_sha=None if normal is None else normal.sha256,
            reference=pair.validation_scores, risk_card=pair.risk_card,
            histogram_bins=pair.histogram_bins, fitted_box=mixture.fitted_box)

    def _pair(self) -> ModelPair:
        if self.pair is None:
            raise UserError("No model is loaded.")
        return self.pair

    def _model(self) -> LoadedModel:
        return self._pair().mixture
