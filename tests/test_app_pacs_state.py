"""The PACS window's Qt-free parts, without a server: its words for the engine's messages,
its state (requests, stale answers, progress by phase, a bad query field) and the nodes-file
edit behind 'Add node…' / 'Edit node…'."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pacs_helpers import write_nodes

from app.core.messages import (
    Failed,
    Kind,
    PacsEchoed,
    PacsEchoRequest,
    PacsFindRequest,
    PacsRelease,
    PrivacyParams,
)
from app.core.pacs_state import PacsState
from app.core.pacs_words import window_words
from glow_engine.pacs.errors import PacsError
from glow_engine.pacs.nodes import load_nodes
from glow_engine.pacs.nodes_edit import save_node

# Messages glow_engine.pacs gives, as a user meets them (dimse.py, web.py, nodes.py...).
ENGINE_MESSAGES = {
    "node hospital (PACS@h:104) rejected the association: it is not called PACS: fix "
    "ae_title of node hospital in the nodes file": "'AE title' of node hospital (Edit node)",
    "it does not accept our calling AE title DPGLOW: register DPGLOW with the PACS (Orthanc: "
    "DicomModalities) or fix [local] ae_title in the nodes file": "'Our AE title' (Edit node)",
    "our storage port 11112 (for C-MOVE) is not free: in use; stop the program using it, or "
    "change [local] port in the nodes file and in the PACS's registration of our AE":
        "'Our storage port' (Edit node)",
    "node hospital did not answer the C-FIND within 30 s (DIMSE timeout): raise timeout for "
    "this node in the nodes file or --timeout (a large study can take long)":
        "the node's 'Timeout (s)' (Edit node)",
    "research refused the STOW-RS: HTTP 401, not authenticated: check username and "
    "password_env (or token_env) for this node in the nodes file":
        "'User' and 'Password variable' (Edit node)",
    "connection refused on h:104: is the PACS running, and is port 104 right?":
        "the node's 'Port' (104)",
    "no nodes file at /x/nodes.toml: write one (README: 'PACS') or give --nodes FILE":
        "'Add node'",
    "no node named 'b' in /x/n.toml (known: a); add a [nodes.b] table": "'Add node'",
    "the staging folder for retrieved originals would be inside the output folder /o: keep "
    "the ledger (or --staging) outside it": "'Privacy ledger'",
    "/x/n.toml (line 3): nodes.hospital.port must be a port number 1..65535, not 0":
        "'Port' of node hospital",
}


@pytest.mark.parametrize("message", ENGINE_MESSAGES)
def test_the_window_names_its_own_controls(message: str) -> None:
    said = window_words(message)
    assert ENGINE_MESSAGES[message] in said
    # no flag, no key to edit by hand in the file: the window's field that does it
    assert not re.search(r"--\w|in the nodes file|\[local\]|ae_title|password_env|\[nodes",
                         said)
    assert "\n" not in said


def test_state_requests_and_takes_only_its_newest_answers() -> None:
    ids = iter(range(1, 100))
    state, sent = PacsState(lambda: next(ids)), []
    state.requested.connect(sent.append)
    state.echo(Path("n.toml"), "a")
    state.echo(Path("n.toml"), "b")
    old, new = sent
    assert isinstance(new, PacsEchoRequest) and state.waiting(Kind.PACS_ECHO)
    assert not state.accept(PacsEchoed(old.id, "a", "x"))  # outdated
    assert state.accept(Failed(new.id, Kind.PACS_ECHO, "fix ae_title of node b in the nodes "
                                                        "file"))
    assert state.message == "fix the 'AE title' of node b (Edit node)"
    assert not state.waiting(Kind.PACS_ECHO) and state.failed is Kind.PACS_ECHO


def test_a_bad_query_field_is_named_and_nothing_is_sent() -> None:
    ids = iter(range(1, 100))
    state, sent = PacsState(lambda: next(ids)), []
    state.requested.connect(sent.append)
    for fields, named in (({"date_from": "2024-01-01"}, "study date"),
                          ({"date_from": "20240301", "date_to": "20240101"}, "ends before"),
                          ({"modalities": "C R"}, "modality"),
                          ({}, "'Patient ID', 'Accession numbers'")):
        query = {"patient_id": "", "accessions": "", "date_from": "", "date_to": "",
                 "modalities": "CR,DX"} | fields
        if fields:
            query["patient_id"] = "MRN-1"
        state.find(Path("n.toml"), "a", **query)
        assert named in state.message and not sent, (fields, state.message)
    state.find(Path("n.toml"), "a", patient_id="MRN-1", accessions="A1, A2", date_from="",
               date_to="20241231", modalities="cr,dx")
    (request,) = sent
    assert isinstance(request, PacsFindRequest)
    q = request.query
    assert q.accessions == ("A1", "A2") and q.study_date == "-20241231"
    assert q.modalities == ("CR", "DX")


def test_release_progress_is_told_by_phase() -> None:
    ids = iter(range(1, 100))
    state = PacsState(lambda: next(ids))
    request = state.release(PacsRelease(Path("n.toml"), "a", ("1.2",), "b", "dpglow",
                                        PrivacyParams(), Path("l.sqlite"), "none"))
    retrieving, privatising, sending = request.phase_ids
    assert len({request.id, *request.phase_ids}) == 4
    state.release_progressed(privatising, 2, 5)
    assert state.progress == ("Privatising", 2, 5)
    state.release_progressed(sending, 1, 2)
    assert state.progress == ("Sending", 1, 2)
    state.release_progressed(request.id + 100, 9, 9)  # another job's
    assert state.progress == ("Sending", 1, 2)
    assert retrieving != privatising


NODES = """# our hospital's nodes: kept by the window
[local]
ae_title = "DPGLOW"
port = 11112

[nodes.hospital]
kind = "dimse"
ae_title = "PACS"
host = "pacs.example"
port = 104
tls = { ca_file = "ca.pem" }   # kept: the window does not show it
"""


def test_a_node_is_saved_renamed_and_a_bad_one_refused(tmp_path) -> None:
    (tmp_path / "ca.pem").write_text("x")
    path = write_nodes(tmp_path / "nodes.toml", NODES)
    save_node(path, "research", {"kind": "dicomweb", "url": "https://r.example/dicom-web",
                                 "password_env": None, "timeout": 12.0})
    save_node(path, "main-pacs", {"port": 4242}, old_name="hospital",
              local={"ae_title": "OFFICER"})
    text = path.read_text()
    assert text.startswith("# our hospital's nodes") and "# kept" in text
    nodes = load_nodes(path)
    assert set(nodes.nodes) == {"main-pacs", "research"}
    assert nodes.get("main-pacs").port == 4242 and nodes.get("main-pacs").tls is not None
    assert nodes.local.ae_title == "OFFICER" and nodes.get("research").timeout == 12.0
    with pytest.raises(PacsError, match=r"nodes\.research\.ae_title"):
        save_node(path, "research", {"kind": "dimse", "ae_title": "A\\B", "host": "h",
                                     "port": 104, "url": None}, old_name="research")
    with pytest.raises(PacsError, match="already"):
        save_node(path, "research", {"kind": "dimse"}, old_name="main-pacs")
    assert path.read_text() == text  # a refused edit leaves the file as it was
