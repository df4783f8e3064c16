"""release_from_pacs with a PACS in memory (no network, ID-LDP at 32x32: no model): the
staging folder, our chest filter, resumption, progress and stop, nothing left behind."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from pacs_helpers import chest_dicom, to_bytes

from glow_engine.mechanisms import create_mechanism
from glow_engine.pacs.errors import PacsError
from glow_engine.pacs.nodes import DimseNode, Local, Nodes, WebNode
from glow_engine.pacs.query import Series, Study, StudyQuery
from glow_engine.pacs.release import PacsReleaseRequest, release_from_pacs
from glow_engine.pacs.staging import staged_path
from glow_engine.pacs.web import WebClient
from glow_engine.release.ledger import Ledger


class MemoryPacs:
    """The source and the destination at once (the client protocol of glow_engine.pacs)."""

    def __init__(self, *datasets: pydicom.Dataset) -> None:
        self.datasets = list(datasets)
        self.stored: dict[str, Path] = {}
        self.staging_modes: list[int] = []
        self.fail_store = False

    def echo(self) -> None: ...

    def find_studies(self, query: StudyQuery) -> list[Study]:
        return [Study(uid) for uid in {ds.StudyInstanceUID for ds in self.datasets
                                       if ds.AccessionNumber in query.accessions
                                       or ds.StudyInstanceUID in query.study_uids}]

    def find_series(self, study_uid: str) -> list[Series]:
        return [Series(study_uid, ds.SeriesInstanceUID, ds.Modality, 1) for ds in self.datasets
                if ds.StudyInstanceUID == study_uid]

    def retrieve(self, series: Series, folder: Path, on_received: Callable,
                 should_stop: Callable) -> None:
        self.staging_modes.append(folder.stat().st_mode & 0o777)
        for ds in self.datasets:
            if ds.SeriesInstanceUID == series.series_uid:
                path = staged_path(folder, ds.StudyInstanceUID, ds.SOPInstanceUID)
                path.write_bytes(to_bytes(ds))
                on_received(path)

    def present(self, study_uid: str, series_uid: str) -> set[str]:
        return set(self.stored)

    def store(self, paths: list[Path], on_sent: Callable, should_stop: Callable) -> None:
        for path in paths:
            if should_stop():
                return
            if self.fail_store:
                raise PacsError("the destination refused the C-STORE")
            self.stored[pydicom.dcmread(path).SOPInstanceUID] = path
            on_sent(path)


@pytest.fixture
def pacs(monkeypatch) -> MemoryPacs:
    memory = MemoryPacs(*(chest_dicom(f"P{i % 2}", modality=m, accession="A1", seed=i,
                                      sex="FM"[i % 2])
                          for i, m in enumerate(("CR", "DX", "CR", "CT"))),
                        chest_dicom("P0", body_part="SKULL", accession="A1"))
    monkeypatch.setattr("glow_engine.pacs.release.open_client", lambda *a: memory)
    return memory


NODES = Nodes(Local(), {"src": DimseNode("src", "SRC", "127.0.0.1", 104),
                        "dst": DimseNode("dst", "DST", "127.0.0.1", 105)}, Path("n.toml"))


def run(tmp_path: Path, *, stop: Callable[[], bool] = lambda: False, **kw: object):
    progress: list = []
    request = PacsReleaseRequest(source="src", query=StudyQuery(accessions=("A1",)), e_px=100,
                                 to_node="dst", batch_size=1, **kw)
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        summary = release_from_pacs(
            request, NODES, lambda: create_mechanism("idldp", None, resolution=32), ledger,
            on_progress=progress.append, should_stop=stop)
    return summary, progress


def staging_folders(tmp_path: Path) -> list[Path]:
    return list(tmp_path.glob(".dpglow-retrieved-*"))


def test_release_filters_stages_privately_and_resumes(pacs, tmp_path) -> None:
    summary, progress = run(tmp_path, linkage="patient")
    assert summary.complete and summary.release.count("written") == 3
    assert pacs.staging_modes and set(pacs.staging_modes) == {0o700}
    assert staging_folders(tmp_path) == [] and "deleted" in summary.staging
    assert any("modality CT" in s for s in summary.skipped)
    assert any("body part SKULL" in s for s in summary.skipped)
    assert summary.sent == 3 and len(pacs.stored) == 3
    assert {p.phase for p in progress} == {"retrieving", "privatising", "sending"}
    released = [pydicom.dcmread(p) for p in pacs.stored.values()]
    assert len({ds.PatientID for ds in released}) == 2  # two patients, linked within
    again, _ = run(tmp_path, linkage="patient")
    assert again.release.count("done-earlier") == 3 and again.release.count("written") == 0
    assert again.sent == 0 and again.already_there == 3


def test_stop_between_images_and_nothing_staged_after_a_failure(pacs, tmp_path) -> None:
    calls = []
    summary, _ = run(tmp_path, stop=lambda: calls.append(1) or len(calls) > 2)
    assert not summary.complete and summary.release.count("not-started") >= 1
    assert staging_folders(tmp_path) == []
    pacs.fail_store = True
    with pytest.raises(PacsError, match="refused the C-STORE"):
        run(tmp_path)
    assert staging_folders(tmp_path) == []


def test_a_request_without_studies_or_destination(pacs, tmp_path) -> None:
    with Ledger(tmp_path / "l.sqlite") as ledger:
        for request, message in (
                (PacsReleaseRequest("src", StudyQuery(), 1, to_node="dst"), "say which"),
                (PacsReleaseRequest("src", StudyQuery(accessions=("A1",)), 1), "one destination"),
                (PacsReleaseRequest("src", StudyQuery(accessions=("NONE",)), 1, to_node="dst"),
                 "no study")):
            with pytest.raises(PacsError, match=message):
                release_from_pacs(request, NODES, lambda: None, ledger)
    assert staging_folders(tmp_path) == []


class _Refusing(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(int(self.path[1:4]))  # the node's url ends in the status
        self.end_headers()

    def log_message(self, *args: object) -> None: ...


@pytest.mark.parametrize(("root", "words"), [("/403", "HTTP 403, not allowed"),
                                             ("/401", "HTTP 401, not authenticated")])
def test_dicomweb_refusals_are_named(root, words) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        node = WebNode("web", f"http://127.0.0.1:{server.server_address[1]}{root}", timeout=5)
        with pytest.raises(PacsError, match=words):
            WebClient(node).echo()
    finally:
        server.shutdown()


def test_a_dicomweb_node_that_is_down_is_reported_quickly() -> None:
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(PacsError, match="connection refused"):
        WebClient(WebNode("web", f"http://127.0.0.1:{port}/dicom-web", timeout=2)).echo()
    assert time.monotonic() - start < 5  # not the library's 30 s of retries


def test_retrieved_originals_are_never_put_inside_the_output(pacs, tmp_path) -> None:
    out = tmp_path / "out"
    for where in ({"keep_retrieved": out / "originals"}, {"staging": out}):
        with pytest.raises(PacsError, match="inside the output folder"):
            run(tmp_path, outbox=out, **where)
    assert not list(out.rglob("*.dcm"))


def test_unlinked_by_default(pacs, tmp_path) -> None:
    from glow_engine.release.records import read_rows

    summary, _ = run(tmp_path)
    released = [pydicom.dcmread(p) for p in pacs.stored.values()]
    assert len(released) == 3 and len({ds.PatientID for ds in released}) == 3
    assert len({ds.StudyInstanceUID for ds in released}) == 3
    assert {row["linkage"] for row in read_rows(summary.release.manifest)} == {"none"}


def test_a_study_retrieved_for_a_look_is_private_and_removable(pacs, tmp_path) -> None:
    from glow_engine.pacs.release import stage_study
    from glow_engine.pacs.staging import finish_staging

    study = pacs.datasets[0].StudyInstanceUID
    folder, _ = stage_study(NODES, "src", study, tmp_path)
    files = sorted(folder.rglob("*.dcm"))
    assert (folder.stat().st_mode & 0o777) == 0o700
    assert len(files) == 1 and pydicom.dcmread(files[0]).Modality == "CR"  # CT, SKULL: out
    assert "deleted" in finish_staging(folder, None) and staging_folders(tmp_path) == []
