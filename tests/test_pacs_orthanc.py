"""`dpglow pacs` against two real Orthanc servers (tests/orthanc/harness.py): A, the hospital
PACS, and B, the research PACS. They skip with a reason where Orthanc is not installed, and
fail in CI (CI=true), where .ci/run installs and starts them."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import tempfile
import uuid
from pathlib import Path

import pydicom
import pytest
import requests
from orthanc import harness  # tests/orthanc/harness.py
from pacs_helpers import chest_dicom, to_bytes, write_nodes

from glow_engine import cli
from glow_engine.release.ledger import Ledger
from glow_engine.release.records import read_rows

pytestmark = pytest.mark.slow
AUTH = (harness.USER, harness.PASSWORD)


@pytest.fixture(scope="module")
def orthanc():
    if env := os.environ.get("DPGLOW_ORTHANC"):
        yield harness.load(Path(env))
        return
    if not harness.installed():
        if os.environ.get("CI") == "true":
            pytest.fail("Orthanc is not installed in CI: .ci/run must install orthanc and "
                        "orthanc-dicomweb and start the servers (DPGLOW_ORTHANC)")
        pytest.skip("Orthanc is not installed (apt-get install orthanc orthanc-dicomweb)")
    folder = Path(tempfile.mkdtemp(prefix="dpglow-orthanc-"))  # reachable by the orthanc user
    servers = harness.start(folder)
    yield servers
    harness.stop(folder)
    shutil.rmtree(folder, ignore_errors=True)


def nodes_text(s: harness.Servers, *, ours: str | None = None, port: int | None = None,
               a_aet: str | None = None, a_port: int | None = None,
               password: str = harness.PASSWORD) -> str:
    return f"""
[local]
ae_title = "{ours or s.our_aet}"
port = {port or s.our_port}

[nodes.hospital]
kind = "dimse"
ae_title = "{a_aet or s.a_aet}"
host = "127.0.0.1"
port = {a_port or s.a_dicom}
timeout = 10

[nodes.hospital-move]
kind = "dimse"
ae_title = "{a_aet or s.a_aet}"
host = "127.0.0.1"
port = {a_port or s.a_dicom}
retrieve = "move"
timeout = 10

[nodes.research]
kind = "dimse"
ae_title = "{s.b_aet}"
host = "127.0.0.1"
port = {s.b_dicom}

[nodes.research-move]
kind = "dimse"
ae_title = "{s.b_aet}"
host = "127.0.0.1"
port = {s.b_dicom}
retrieve = "move"
timeout = 10

[nodes.research-web]
kind = "dicomweb"
url = "http://127.0.0.1:{s.b_http}/dicom-web"
username = "{harness.USER}"
password = "{password}"
"""


@pytest.fixture
def nodes(orthanc, tmp_path) -> Path:
    return write_nodes(tmp_path / "nodes.toml", nodes_text(orthanc))


def upload(port: int, *datasets: pydicom.Dataset) -> None:
    for ds in datasets:
        r = requests.post(f"http://127.0.0.1:{port}/instances", data=to_bytes(ds), auth=AUTH,
                          timeout=10)
        r.raise_for_status()


def patient(orthanc: harness.Servers, *modalities: str, body_part: str = "CHEST"
            ) -> tuple[str, str]:
    """A new patient on A: one study, one instance per modality. (patient ID, accession)"""
    pid, accession = f"MRN-{uuid.uuid4().hex[:10]}", f"ACC{uuid.uuid4().hex[:8]}"
    study = pydicom.uid.generate_uid()
    upload(orthanc.a_http, *(chest_dicom(pid, modality=m, body_part=body_part, study_uid=study,
                                         accession=accession, seed=i)
                             for i, m in enumerate(modalities)))
    return pid, accession


def at_b(orthanc: harness.Servers) -> list[pydicom.Dataset]:
    """Every instance on the research PACS."""
    base = f"http://127.0.0.1:{orthanc.b_http}"
    ids = requests.get(f"{base}/instances", auth=AUTH, timeout=10).json()
    return [pydicom.dcmread(io.BytesIO(
        requests.get(f"{base}/instances/{i}/file", auth=AUTH, timeout=10).content))
        for i in ids]


def dpglow(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["pacs", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def release(capsys, nodes: Path, tmp_path: Path, *argv: str) -> tuple[int, str, str]:
    return dpglow(capsys, "release", "--nodes", str(nodes), *argv, "--e-px", "100",
                  "--ledger", str(tmp_path / "led" / "ledger.sqlite"), "--no-progress")


def no_staging_left(tmp_path: Path) -> bool:
    return not list(tmp_path.rglob(".dpglow-retrieved-*"))


# --------------------------------------------------------------------------- echo, find


def test_echo_both_kinds_of_node(capsys, nodes) -> None:
    for node in ("hospital", "research-web"):
        code, out, err = dpglow(capsys, "echo", node, "--nodes", str(nodes))
        assert code == 0 and "answers" in out, err


def test_find_lists_studies_as_text_and_json(capsys, orthanc, nodes) -> None:
    pid, accession = patient(orthanc, "CR", "DX")
    code, out, _ = dpglow(capsys, "find", "hospital", "--nodes", str(nodes), "--accession",
                          accession, "--json")
    (study,) = json.loads(out)
    assert code == 0 and study["patient_id"] == pid and study["accession"] == accession
    assert set(study["modalities"]) == {"CR", "DX"} and study["images"] == 2
    assert study["date"] == "20240607" and study["study_uid"]
    code, out, _ = dpglow(capsys, "find", "hospital", "--nodes", str(nodes), "--patient-id",
                          pid, "--study-date", "20240101-20241231", "--modality", "CR")
    assert code == 0 and accession in out and "2 image(s)" in out


# --------------------------------------------------------------------------- releases


def test_release_by_cget_to_a_dimse_node_then_resume(capsys, orthanc, nodes, tmp_path) -> None:
    pid, accession = patient(orthanc, "CR", "DX", "CT")
    code, out, err = release(capsys, nodes, tmp_path, "hospital", "--accession", accession,
                             "--to", "research", "--linkage", "patient")
    assert code == 0, err
    assert "written 2" in out and "sent to research: 2, already there: 0" in out
    assert "modality CT" in err and "retrieved originals deleted" in out
    assert no_staging_left(tmp_path)
    released = [ds for ds in at_b(orthanc) if ds.PatientID.startswith("ANON-")
                and ds.SOPInstanceUID in _outbox_uids(tmp_path)]
    assert len(released) == 2
    assert len({(ds.PatientID, ds.StudyInstanceUID) for ds in released}) == 1  # linked
    for ds in released:
        raw = to_bytes(ds)
        assert pid.encode() not in raw and accession.encode() not in raw
        assert b"Zyxwerth" not in raw and ds.PatientSex == ""
    with Ledger(tmp_path / "led" / "ledger.sqlite") as ledger:
        spent = ledger.spent_on_patient(pid, "")
        assert len(ledger.releases()) == 2
    # a second run spends nothing and sends nothing twice
    code, out, err = release(capsys, nodes, tmp_path, "hospital", "--accession", accession,
                             "--to", "research", "--linkage", "patient")
    assert code == 0, err
    assert "written 0, done earlier 2" in out and "sent to research: 0, already there: 2" in out
    with Ledger(tmp_path / "led" / "ledger.sqlite") as ledger:
        assert ledger.spent_on_patient(pid, "") == spent and len(ledger.releases()) == 2
    manifest = read_rows(next((tmp_path / "led").glob("*.outbox-research")) / "manifest.csv")
    assert {row["linkage"] for row in manifest} == {"patient"}


def test_release_by_cmove_to_a_dicomweb_node(capsys, orthanc, nodes, tmp_path) -> None:
    pid, _ = patient(orthanc, "DX")
    code, out, err = release(capsys, nodes, tmp_path, "hospital-move", "--patient-id", pid,
                             "--to", "research-web")
    assert code == 0, err
    assert "written 1" in out and "sent to research-web: 1" in out and "linkage:" in out
    assert no_staging_left(tmp_path)
    uids = _outbox_uids(tmp_path)
    (released,) = [ds for ds in at_b(orthanc) if ds.SOPInstanceUID in uids]
    code, out, _ = dpglow(capsys, "find", "research-web", "--nodes", str(nodes),
                          "--patient-id", released.PatientID, "--json")  # QIDO-RS
    (study,) = json.loads(out)
    assert code == 0 and study["study_uid"] == released.StudyInstanceUID
    assert study["modalities"] == ["DX"] and study["images"] == 1


def test_release_to_a_folder_keeping_the_retrieved(capsys, orthanc, nodes, tmp_path) -> None:
    _, accession = patient(orthanc, "CR")
    out_dir, kept = tmp_path / "out", tmp_path / "kept"
    code, out, err = release(capsys, nodes, tmp_path, "hospital", "--accession", accession,
                             "--out", str(out_dir), "--keep-retrieved", str(kept))
    assert code == 0, err
    assert len(list(out_dir.glob("*.dcm"))) == 1 and (out_dir / "manifest.csv").exists()
    assert len(list(kept.rglob("*.dcm"))) == 1 and f"kept in {kept}" in out
    assert (kept.stat().st_mode & 0o777) == 0o700 and no_staging_left(tmp_path)


def _outbox_uids(tmp_path: Path) -> set[str]:
    return {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID
            for p in (tmp_path / "led").glob("*.outbox-*/*.dcm")}


# --------------------------------------------------------------------------- errors


def failed(capsys, tmp_path: Path, *argv: str, nodes: Path) -> str:
    code, _, err = release(capsys, nodes, tmp_path, *argv)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert no_staging_left(tmp_path)
    return err


def test_unknown_calling_ae_is_named(capsys, orthanc, tmp_path) -> None:
    nodes = write_nodes(tmp_path / "n.toml", nodes_text(orthanc, ours="STRANGER"))
    code, _, err = dpglow(capsys, "echo", "hospital", "--nodes", str(nodes))
    assert code == 2 and "rejected the association" in err and "STRANGER" in err


def test_wrong_called_ae_is_named(capsys, orthanc, tmp_path) -> None:
    nodes = write_nodes(tmp_path / "n.toml", nodes_text(orthanc, a_aet="NOT_A"))
    code, _, err = dpglow(capsys, "echo", "hospital", "--nodes", str(nodes))
    assert code == 2 and "not called NOT_A" in err and "ae_title of node hospital" in err


def test_connection_refused_is_named(capsys, orthanc, tmp_path) -> None:
    nodes = write_nodes(tmp_path / "n.toml", nodes_text(orthanc, a_port=orthanc.free_port))
    code, _, err = dpglow(capsys, "find", "hospital", "--nodes", str(nodes), "--patient-id",
                          "X")
    assert code == 2 and "connection refused" in err and str(orthanc.free_port) in err


def test_cmove_to_a_storage_scp_that_is_not_listening(capsys, orthanc, tmp_path) -> None:
    """A sends to the port it registered for DPGLOW_DEAF; we listen on another one."""
    _, accession = patient(orthanc, "CR")
    nodes = write_nodes(tmp_path / "n.toml", nodes_text(orthanc, ours=orthanc.deaf_aet,
                                                        port=orthanc.free_port))
    err = failed(capsys, tmp_path, "hospital-move", "--accession", accession, "--out",
                 str(tmp_path / "out"), nodes=nodes)
    assert "refused the C-MOVE (0xC000" in err and "not registered" in err
    assert "could not reach our storage SCP" in err


def test_cmove_to_an_unregistered_ae(capsys, orthanc, tmp_path) -> None:
    """B lets anyone query it but knows no move destination."""
    pid = f"MRN-{uuid.uuid4().hex[:10]}"
    upload(orthanc.b_http, chest_dicom(pid))
    nodes = write_nodes(tmp_path / "n.toml", nodes_text(orthanc, ours="STRANGER"))
    err = failed(capsys, tmp_path, "research-move", "--patient-id", pid, "--out",
                 str(tmp_path / "out"), nodes=nodes)
    assert "refused the C-MOVE" in err and "STRANGER is not registered" in err


def test_storage_port_in_use(capsys, orthanc, nodes, tmp_path) -> None:
    _, accession = patient(orthanc, "CR")
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past an earlier TIME_WAIT
        busy.bind(("", orthanc.our_port))
        busy.listen()
        err = failed(capsys, tmp_path, "hospital-move", "--accession", accession, "--out",
                     str(tmp_path / "out"), nodes=nodes)
    assert f"storage port {orthanc.our_port}" in err and "[local] port" in err


def test_a_study_without_a_chest_radiograph(capsys, orthanc, nodes, tmp_path) -> None:
    _, ct = patient(orthanc, "CT")
    err = failed(capsys, tmp_path, "hospital", "--accession", ct, "--to", "research",
                 nodes=nodes)
    assert "no chest radiograph" in err and "nothing was retrieved or spent" in err
    _, skull = patient(orthanc, "CR", body_part="SKULL")
    err = failed(capsys, tmp_path, "hospital", "--accession", skull, "--to", "research",
                 nodes=nodes)
    assert "no chest radiograph among the 1 retrieved" in err
    with Ledger(tmp_path / "led" / "ledger.sqlite") as ledger:
        assert ledger.releases() == []


def test_dicomweb_401_is_named(capsys, orthanc, tmp_path) -> None:
    nodes = write_nodes(tmp_path / "n.toml", nodes_text(orthanc, password="wrong"))
    _, accession = patient(orthanc, "CR")
    err = failed(capsys, tmp_path, "hospital", "--accession", accession, "--to",
                 "research-web", nodes=nodes)
    assert "HTTP 401" in err and "password_env" in err
    assert not (tmp_path / "led" / "ledger.sqlite").exists() or \
        not Ledger(tmp_path / "led" / "ledger.sqlite").releases()


@pytest.mark.parametrize("node", ["hospital", "hospital-move"])
def test_a_stop_cancels_the_retrieval_between_images(orthanc, nodes, tmp_path, node) -> None:
    from glow_engine.pacs.client import open_client
    from glow_engine.pacs.nodes import load_nodes
    from glow_engine.pacs.query import StudyQuery

    pid, accession = f"MRN-{uuid.uuid4().hex[:10]}", f"ACC{uuid.uuid4().hex[:8]}"
    first = chest_dicom(pid, accession=accession)
    others = [chest_dicom(pid, accession=accession, study_uid=first.StudyInstanceUID, seed=i)
              for i in (1, 2, 3)]
    for ds in others:
        ds.SeriesInstanceUID = first.SeriesInstanceUID
    upload(orthanc.a_http, first, *others)
    loaded = load_nodes(nodes)
    client = open_client(loaded.get(node), loaded.local)
    (study,) = client.find_studies(StudyQuery(accessions=(accession,)))
    (series,) = client.find_series(study.study_uid)
    received: list[Path] = []
    client.retrieve(series, tmp_path, received.append, lambda: True)
    assert 1 <= len(received) < 4 and len(list(tmp_path.rglob("*.dcm"))) == len(received)
