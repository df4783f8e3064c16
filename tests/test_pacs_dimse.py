"""The DIMSE client against an in-process pynetdicom SCP: the services, and each failure as
one line naming the cause and the fix (no Orthanc needed)."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pydicom
import pytest
from pacs_helpers import CLASSES, chest_dicom
from pynetdicom import AE, evt
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from glow_engine.pacs.dimse import DimseClient
from glow_engine.pacs.errors import PacsError
from glow_engine.pacs.nodes import DimseNode, Local, Tls
from glow_engine.pacs.query import Series, StudyQuery

PID = "MRN-0042"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakePacs:
    """A small PACS: one CR study; C-FIND at STUDY/SERIES level, C-GET, C-MOVE (refused)."""

    def __init__(self, *, calling: list[str] | None = None, find_delay: float = 0) -> None:
        self.ds = chest_dicom(PID, accession="ACC1")
        self.series = [self.ds]
        self.find_delay = find_delay
        self.ae = AE(ae_title="FAKEPACS")
        for uid in (Verification, StudyRootQueryRetrieveInformationModelFind,
                    StudyRootQueryRetrieveInformationModelGet,
                    StudyRootQueryRetrieveInformationModelMove):
            self.ae.add_supported_context(uid)
        for uid in CLASSES.values():
            self.ae.add_supported_context(uid, scu_role=True, scp_role=True)
        self.ae.require_calling_aet = calling or []
        self.port = free_port()
        self.server = self.ae.start_server(
            ("127.0.0.1", self.port), block=False,
            evt_handlers=[(evt.EVT_C_FIND, self.find), (evt.EVT_C_GET, self.get),
                          (evt.EVT_C_MOVE, self.move)])

    def find(self, event: evt.Event) -> Iterator:
        time.sleep(self.find_delay)
        level = event.identifier.QueryRetrieveLevel
        answer = pydicom.Dataset()
        answer.QueryRetrieveLevel = level
        answer.StudyInstanceUID = self.ds.StudyInstanceUID
        if level == "STUDY":
            answer.PatientID, answer.AccessionNumber = PID, "ACC1"
            answer.StudyDate, answer.ModalitiesInStudy = "20240607", "CR"
            answer.NumberOfStudyRelatedInstances = 1
        else:
            answer.SeriesInstanceUID, answer.Modality = self.ds.SeriesInstanceUID, "CR"
            answer.NumberOfSeriesRelatedInstances = 1
        yield 0xFF00, answer

    def get(self, event: evt.Event) -> Iterator:
        yield len(self.series)
        for ds in self.series:
            if event.is_cancelled:
                yield 0xFE00, None
                return
            yield 0xFF00, ds
            time.sleep(0.2)  # time for a C-CANCEL to arrive, as from a real PACS

    def move(self, event: evt.Event) -> Iterator:
        yield None, None  # the destination AE is unknown: pynetdicom answers 0xA801

    def node(self, **kw: object) -> DimseNode:
        return DimseNode("fake", str(kw.pop("ae_title", "FAKEPACS")), "127.0.0.1",
                         int(kw.pop("port", self.port)), **kw)


@pytest.fixture
def pacs() -> Iterator[FakePacs]:
    fake = FakePacs()
    yield fake
    fake.server.shutdown()


def test_echo_find_and_cget_into_a_folder(pacs, tmp_path: Path) -> None:
    client = DimseClient(pacs.node(), Local("DPGLOW", free_port()))
    client.echo()
    (study,) = client.find_studies(StudyQuery(accessions=("ACC1",)))
    assert (study.patient_id, study.accession, study.modalities, study.images) == (
        PID, "ACC1", ("CR",), 1)
    (series,) = client.find_series(study.study_uid)
    assert series.modality == "CR" and series.images == 1
    received: list[Path] = []
    client.retrieve(series, tmp_path, received.append, lambda: False)
    (path,) = received
    assert path.parent.parent == tmp_path and path.name == f"{pacs.ds.SOPInstanceUID}.dcm"
    assert pydicom.dcmread(path).PatientID == PID


def test_unknown_calling_ae(tmp_path) -> None:
    fake = FakePacs(calling=["SOMEONE_ELSE"])
    try:
        with pytest.raises(PacsError, match="does not accept our calling AE title DPGLOW"):
            DimseClient(fake.node(), Local("DPGLOW", 1)).echo()
    finally:
        fake.server.shutdown()


def test_dimse_timeout_is_named_and_does_not_hang(tmp_path) -> None:
    fake = FakePacs(find_delay=3)
    try:
        start = time.monotonic()
        with pytest.raises(PacsError, match=r"within 0.5 s \(DIMSE timeout\).*timeout"):
            DimseClient(fake.node(timeout=0.5), Local("DPGLOW", 1)).find_studies(
                StudyQuery(patient_id=PID))
        assert time.monotonic() - start < 3
    finally:
        fake.server.shutdown()


def test_a_port_that_accepts_but_never_answers(tmp_path) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        node = DimseNode("silent", "X", "127.0.0.1", silent.getsockname()[1], timeout=0.5)
        with pytest.raises(PacsError, match="did not answer the association request within"):
            DimseClient(node, Local("DPGLOW", 1)).echo()


def test_connection_refused(pacs) -> None:
    with pytest.raises(PacsError, match=r"connection refused on 127\.0\.0\.1"):
        DimseClient(pacs.node(port=free_port()), Local("DPGLOW", 1)).echo()


def test_cmove_refused_names_both_causes(pacs, tmp_path) -> None:
    client = DimseClient(pacs.node(retrieve="move"), Local("DPGLOW", free_port()))
    series = Series(pacs.ds.StudyInstanceUID, pacs.ds.SeriesInstanceUID, "CR")
    with pytest.raises(PacsError) as e:
        client.retrieve(series, tmp_path, lambda p: None, lambda: False)
    message = str(e.value)
    assert "0xA801, move destination unknown" in message and "not registered" in message
    assert "could not reach our storage SCP" in message and "retrieve = \"get\"" in message


def test_storage_port_in_use(pacs, tmp_path) -> None:
    with socket.socket() as busy:
        busy.bind(("", 0))
        busy.listen()
        client = DimseClient(pacs.node(retrieve="move"), Local("DPGLOW", busy.getsockname()[1]))
        series = Series(pacs.ds.StudyInstanceUID, pacs.ds.SeriesInstanceUID, "CR")
        with pytest.raises(PacsError, match=r"our storage port \d+ \(for C-MOVE\) is not free"):
            client.retrieve(series, tmp_path, lambda p: None, lambda: False)


def test_a_destination_that_refuses_secondary_capture(pacs, tmp_path) -> None:
    with pytest.raises(PacsError, match=r"none of what we asked for \(Secondary Capture Image "
                                         r"Storage\): allow it"):
        DimseClient(pacs.node(), Local("DPGLOW", 1)).store([tmp_path / "x.dcm"],
                                                           lambda p: None, lambda: False)


def test_a_stop_after_an_image_cancels_the_rest(pacs, tmp_path) -> None:
    for i in (1, 2):
        ds = chest_dicom(PID, study_uid=pacs.ds.StudyInstanceUID, seed=i)
        ds.SeriesInstanceUID = pacs.ds.SeriesInstanceUID
        pacs.series.append(ds)
    client = DimseClient(pacs.node(), Local("DPGLOW", 1))
    series = Series(pacs.ds.StudyInstanceUID, pacs.ds.SeriesInstanceUID, "CR")
    received: list[Path] = []
    client.retrieve(series, tmp_path, received.append, lambda: True)  # C-CANCEL, no error
    assert len(received) == 1 and len(list(tmp_path.rglob("*.dcm"))) == 1


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_echo_over_tls(tmp_path) -> None:
    """The node's tls table (CA file) reaches pynetdicom's tls_args; the server checks it."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    ae = AE(ae_title="TLSPACS")
    ae.add_supported_context(Verification)
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False, ssl_context=server_context)
    try:
        node = DimseNode("tls", "TLSPACS", "127.0.0.1", port, timeout=5, tls=Tls(ca_file=cert))
        DimseClient(node, Local("DPGLOW", 1)).echo()
        with pytest.raises(PacsError, match="cannot use its TLS files"):
            DimseClient(replace(node, tls=Tls(ca_file=key)), Local("DPGLOW", 1)).echo()
    finally:
        server.shutdown()
