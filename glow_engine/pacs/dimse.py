"""A DIMSE node through pynetdicom: C-ECHO, C-FIND, C-GET, C-MOVE into our own storage SCP,
C-STORE. Each call opens one association and closes it; every failure a user can meet is one
`PacsError` naming the cause and the fix (`_associate`, `_final`).

Timeouts (the node's `timeout`): the TCP connection, the association, and each DIMSE message
(a C-GET of a large study sends one message per image, so the limit is per image, not per
study)."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import AllTransferSyntaxes, ExplicitVRLittleEndian
from pynetdicom import AE, Association, build_role, evt
from pynetdicom.sop_class import (
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    SecondaryCaptureImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from glow_engine.atomic import write_bytes_atomic
from glow_engine.pacs.errors import PacsError
from glow_engine.pacs.nodes import DimseNode, Local
from glow_engine.pacs.query import Series, Study, StudyQuery
from glow_engine.pacs.staging import staged_path

# What a chest radiograph series holds; C-GET can only bring back classes it proposed.
RETRIEVED_CLASSES = (ComputedRadiographyImageStorage, DigitalXRayImageStorageForPresentation,
                     DigitalXRayImageStorageForProcessing)
# Association rejections (PS3.8 9.3.4): (source, reason) -> what to fix.
_REJECTIONS = {
    (1, 3): "it does not accept our calling AE title {ours}: register {ours} with the PACS "
            "(Orthanc: DicomModalities) or fix [local] ae_title in the nodes file",
    (1, 7): "it is not called {theirs}: fix ae_title of node {name} in the nodes file",
    (1, 2): "it does not support the DICOM application context",
}
Received = Callable[[Path], None]
StopCheck = Callable[[], bool]
_MSG_ID = 1  # our C-GET/C-MOVE's message id, which a C-CANCEL names


class DimseClient:
    def __init__(self, node: DimseNode, local: Local) -> None:
        self.node, self.local = node, local

    # ------------------------------------------------------------------ services

    def echo(self) -> None:
        with self._associate([Verification]) as assoc:
            self._final(assoc.send_c_echo(), "C-ECHO")

    def find_studies(self, query: StudyQuery) -> list[Study]:
        found: dict[str, Study] = {}
        with self._associate([StudyRootQueryRetrieveInformationModelFind]) as assoc:
            for accession in query.accessions or ("",):  # C-FIND has no list matching here
                for ds in self._find(assoc, _study_identifier(query, accession)):
                    study = _study(ds)
                    if study.study_uid:
                        found.setdefault(study.study_uid, study)
        return list(found.values())

    def find_series(self, study_uid: str) -> list[Series]:
        ident = Dataset()
        ident.QueryRetrieveLevel = "SERIES"
        ident.StudyInstanceUID, ident.SeriesInstanceUID = study_uid, ""
        ident.Modality, ident.NumberOfSeriesRelatedInstances = "", ""
        with self._associate([StudyRootQueryRetrieveInformationModelFind]) as assoc:
            return [Series(study_uid, str(ds.SeriesInstanceUID), str(ds.get("Modality", "")),
                           _int(ds.get("NumberOfSeriesRelatedInstances")))
                    for ds in self._find(assoc, ident) if ds.get("SeriesInstanceUID")]

    def present(self, study_uid: str, series_uid: str) -> set[str]:
        """The SOP Instance UIDs the node holds in this series (C-FIND at IMAGE level); none
        if the node cannot be queried (a plain storage SCP: then everything is sent)."""
        ident = Dataset()
        ident.QueryRetrieveLevel = "IMAGE"
        ident.StudyInstanceUID, ident.SeriesInstanceUID = study_uid, series_uid
        ident.SOPInstanceUID = ""
        with self._associate([StudyRootQueryRetrieveInformationModelFind]) as assoc:
            if not any(cx.abstract_syntax == StudyRootQueryRetrieveInformationModelFind
                       for cx in assoc.accepted_contexts):
                return set()
            return {str(ds.SOPInstanceUID) for ds in self._find(assoc, ident)
                    if ds.get("SOPInstanceUID")}

    def retrieve(self, series: Series, folder: Path, on_received: Received,
                 should_stop: StopCheck) -> None:
        """The series' chest radiographs into `folder` (C-GET or C-MOVE, as the node says);
        `should_stop()` is asked after each image and cancels the rest (C-CANCEL)."""
        ident = _series_identifier(series)
        handler = _Storing(folder, on_received, should_stop)
        if self.node.retrieve == "get":
            roles = [build_role(uid, scp_role=True) for uid in RETRIEVED_CLASSES]
            with self._associate([StudyRootQueryRetrieveInformationModelGet],
                                 storage=RETRIEVED_CLASSES, ext_neg=roles,
                                 handlers=[(evt.EVT_C_STORE, handler)]) as assoc:
                handler.cancel_on(assoc, StudyRootQueryRetrieveInformationModelGet)
                status = _last(assoc.send_c_get(
                    ident, StudyRootQueryRetrieveInformationModelGet, msg_id=_MSG_ID))
            handler.check()
            self._final(status, "C-GET")
            return
        with self._storage_scp(handler), \
                self._associate([StudyRootQueryRetrieveInformationModelMove]) as assoc:
            handler.cancel_on(assoc, StudyRootQueryRetrieveInformationModelMove)
            status = _last(assoc.send_c_move(ident, self.local.ae_title,
                                             StudyRootQueryRetrieveInformationModelMove,
                                             msg_id=_MSG_ID))
        handler.check()
        self._final(status, "C-MOVE")

    def store(self, paths: list[Path], on_sent: Received, should_stop: StopCheck) -> None:
        """C-STORE each file (our Secondary Capture outputs), stopping between files."""
        from pydicom import dcmread

        with self._associate([SecondaryCaptureImageStorage]) as assoc:
            for path in paths:
                if should_stop():
                    return
                self._final(assoc.send_c_store(dcmread(path)), "C-STORE")
                on_sent(path)

    # ------------------------------------------------------------------ associations

    def _ae(self) -> AE:
        ae = AE(ae_title=self.local.ae_title)
        t = self.node.timeout
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = t
        return ae

    @contextmanager
    def _associate(self, contexts: list[str], *, storage: tuple[str, ...] = (),
                   ext_neg: list | None = None, handlers: list | None = None
                   ) -> Iterator[Association]:
        ae = self._ae()
        for uid in contexts:
            ae.add_requested_context(uid, [ExplicitVRLittleEndian, "1.2.840.10008.1.2"])
        for uid in storage:
            ae.add_requested_context(uid, list(AllTransferSyntaxes))
        node = self.node
        assoc = ae.associate(node.host, node.port, ae_title=node.ae_title,
                             ext_neg=ext_neg, evt_handlers=handlers, tls_args=self._tls())
        if not assoc.is_established:
            raise PacsError(self._why_not_associated(assoc))
        try:
            yield assoc
        finally:
            if assoc.is_established:
                assoc.release()
            ae.shutdown()

    def _tls(self) -> tuple[ssl.SSLContext, str] | None:
        tls = self.node.tls
        if tls is None:
            return None
        try:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=tls.ca_file)
            if tls.cert_file:
                context.load_cert_chain(tls.cert_file, tls.key_file)
        except (OSError, ssl.SSLError) as e:
            raise PacsError(f"node {self.node.name}: cannot use its TLS files: {e}") from None
        return context, self.node.host

    def _why_not_associated(self, assoc: Association) -> str:
        node, where = self.node, f"node {self.node.name} ({self.node.address})"
        if assoc.is_rejected:
            rj = assoc.acceptor.primitive
            fix = _REJECTIONS.get((rj.result_source, rj.diagnostic),
                                  "check both AE titles and the PACS's list of known nodes")
            return (f"{where} rejected the association: "
                    + fix.format(ours=self.local.ae_title, theirs=node.ae_title, name=node.name))
        if assoc.rejected_contexts and not assoc.accepted_contexts:
            names = ", ".join(sorted({str(cx.abstract_syntax.name)
                                      for cx in assoc.rejected_contexts}))
            return (f"{where} accepted the association but none of what we asked for "
                    f"({names}): allow it on that node, or choose another node")
        connected = _tcp_problem(node.host, node.port, node.timeout)
        if connected:
            return f"cannot connect to {where}: {connected}"
        return (f"{where} accepted the connection but did not answer the association request "
                f"within {node.timeout:g} s: is it a DICOM service (port, TLS)? raise "
                f"timeout in the nodes file if it is slow")

    def _find(self, assoc: Association, ident: Dataset) -> Iterator[Dataset]:
        for status, found in assoc.send_c_find(ident, StudyRootQueryRetrieveInformationModelFind):
            if status and status.Status in (0xFF00, 0xFF01):
                if found is not None:
                    yield found
            else:
                self._final(status, "C-FIND", assoc)

    def _final(self, status: Dataset | None, what: str, assoc: Association | None = None
               ) -> None:
        """Raise PacsError unless `status` is success or a warning."""
        where = f"node {self.node.name} ({self.node.address})"
        if not status:  # no answer: pynetdicom aborted on the DIMSE timeout
            raise PacsError(f"{where} did not answer the {what} within {self.node.timeout:g} "
                            "s (DIMSE timeout) or dropped the connection: raise timeout for "
                            "this node in the nodes file or --timeout (a large study can take "
                            "long)")
        code = int(status.Status)
        if code in (0x0000, 0xFE00) or 0xB000 <= code <= 0xBFFF or code in (0x0001, 0x0107,
                                                                            0x0116):
            return
        if what == "C-MOVE" and code in (0xA801, 0xC000):
            raise PacsError(self._move_refused(code))
        comment = str(status.get("ErrorComment", "") or "")
        raise PacsError(f"{where} refused the {what} (status 0x{code:04X}"
                        + (f": {comment}" if comment else "") + ")")

    def _move_refused(self, code: int) -> str:
        ours, port = self.local.ae_title, self.local.port
        why = ("0xA801, move destination unknown" if code == 0xA801
               else "0xC000, unable to process")
        return (f"node {self.node.name} refused the C-MOVE ({why}): either our AE title "
                f"{ours} is not registered with it as a destination (Orthanc: "
                f"DicomModalities, with this machine's address and port {port}), or it could "
                f"not reach our storage SCP on port {port} (a firewall, or the registration "
                "names another host or port); or set retrieve = \"get\" for this node")

    @contextmanager
    def _storage_scp(self, handler: Callable) -> Iterator[None]:
        ae = AE(ae_title=self.local.ae_title)
        ae.network_timeout = ae.dimse_timeout = ae.acse_timeout = self.node.timeout
        for uid in RETRIEVED_CLASSES:
            ae.add_supported_context(uid, list(AllTransferSyntaxes))
        try:
            server = ae.start_server(("", self.local.port), block=False,
                                     evt_handlers=[(evt.EVT_C_STORE, handler)])
        except OSError as e:
            raise PacsError(f"our storage port {self.local.port} (for C-MOVE) is not free: "
                            f"{e.strerror or e}; stop the program using it, or change [local] "
                            "port in the nodes file and in the PACS's registration of our "
                            "AE") from None
        try:
            yield
        finally:
            server.shutdown()


# --------------------------------------------------------------------------- helpers


class _Storing:
    """The C-STORE handler (on pynetdicom's thread): each instance into
    folder/<study>/<instance>.dcm, atomically. A failure is answered to the PACS (out of
    resources) and raised on our side once the retrieval is over (`check`). When
    `should_stop()` says so after an image, the C-GET/C-MOVE is cancelled (C-CANCEL on the
    association that asked for it, `cancel_on`)."""

    def __init__(self, folder: Path, on_received: Received, should_stop: StopCheck) -> None:
        self.folder, self.on_received, self.should_stop = folder, on_received, should_stop
        self.error: Exception | None = None
        self.request: tuple[Association, int] | None = None  # (association, context id)
        self.cancelled = False

    def cancel_on(self, assoc: Association, model: str) -> None:
        self.request = assoc, next(cx.context_id for cx in assoc.accepted_contexts
                                   if cx.abstract_syntax == model)

    def __call__(self, event: evt.Event) -> int:
        if self.cancelled:
            return 0xA700  # sent before the PACS saw the cancel: not kept
        try:
            path = staged_path(self.folder, str(event.dataset.get("StudyInstanceUID", "")),
                               str(event.request.AffectedSOPInstanceUID))
            write_bytes_atomic(path, event.encoded_dataset(), overwrite=True)
            self.on_received(path)
            if self.should_stop() and self.request is not None:
                self.cancelled = True
                self.request[0].send_c_cancel(_MSG_ID, self.request[1])
        except Exception as e:
            self.error = self.error or e
            return 0xA700
        return 0x0000

    def check(self) -> None:
        if isinstance(self.error, OSError):
            raise PacsError(f"cannot store a retrieved image in the staging folder "
                            f"{self.folder}: {self.error.strerror or self.error}") from None
        if self.error is not None:
            raise self.error


def _tcp_problem(host: str, port: int, timeout: float) -> str | None:
    """Why a TCP connection fails (None if it does not): for the one-line error."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except socket.gaierror:
        return f"unknown host {host!r}: check host in the nodes file"
    except ConnectionRefusedError:
        return (f"connection refused on {host}:{port}: is the PACS running, and is port "
                f"{port} right?")
    except TimeoutError:
        return (f"no answer from {host}:{port} within {timeout:g} s: check host and port, "
                "and that no firewall drops the connection")
    except OSError as e:
        return f"{e.strerror or e} ({host}:{port}): check host, port and the network"


def _study_identifier(query: StudyQuery, accession: str) -> Dataset:
    ident = Dataset()
    ident.QueryRetrieveLevel = "STUDY"
    ident.StudyInstanceUID = list(query.study_uids) or ""
    ident.PatientID = query.patient_id
    ident.AccessionNumber = accession
    ident.StudyDate = query.study_date
    ident.ModalitiesInStudy = list(query.modalities) or ""
    ident.NumberOfStudyRelatedInstances = ""
    return ident


def _series_identifier(series: Series) -> Dataset:
    ident = Dataset()
    ident.QueryRetrieveLevel = "SERIES"
    ident.StudyInstanceUID, ident.SeriesInstanceUID = series.study_uid, series.series_uid
    return ident


def _study(ds: Dataset) -> Study:
    modalities = ds.get("ModalitiesInStudy", "")
    modalities = (modalities,) if isinstance(modalities, str) else tuple(modalities)
    return Study(str(ds.get("StudyInstanceUID", "")), str(ds.get("PatientID", "")),
                 str(ds.get("StudyDate", "")), str(ds.get("AccessionNumber", "")),
                 tuple(m for m in map(str, modalities) if m),
                 _int(ds.get("NumberOfStudyRelatedInstances")))


def _int(value: object) -> int | None:
    with suppress(TypeError, ValueError):
        return int(str(value))
    return None


def _last(responses: Iterator[tuple[Dataset, Dataset | None]]) -> Dataset | None:
    """The final status of a C-GET or C-MOVE (pending ones are progress only)."""
    status = None
    for status, _ in responses:
        if not status:
            break
    return status
