"""The nodes file: what it may say, and a one-line error naming the key and its line."""

from __future__ import annotations

from pathlib import Path

import pytest
from pacs_helpers import write_nodes

from glow_engine import cli
from glow_engine.pacs.errors import PacsError
from glow_engine.pacs.nodes import (
    DimseNode,
    WebNode,
    default_nodes_path,
    load_nodes,
    read_nodes_text,
)

GOOD = """
[local]
ae_title = "DPGLOW"
port = 11112

[nodes.hospital]
kind = "dimse"
ae_title = "PACS"
host = "pacs.example.org"
port = 104
retrieve = "move"
timeout = 60

[nodes.research]
kind = "dicomweb"
url = "https://research.example.org/dicom-web/"
username = "officer"
password_env = "RESEARCH_PASSWORD"
"""


def test_a_good_file(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("RESEARCH_PASSWORD", "pw")
    nodes = load_nodes(write_nodes(tmp_path / "n.toml", GOOD))
    assert nodes.local.ae_title == "DPGLOW" and nodes.local.port == 11112
    hospital, research = nodes.get("hospital"), nodes.get("research")
    assert isinstance(hospital, DimseNode) and hospital.retrieve == "move"
    assert hospital.timeout == 60 and hospital.address == "PACS@pacs.example.org:104"
    assert isinstance(research, WebNode) and research.url.endswith("/dicom-web")
    assert research.secrets() == ("pw", "") and research.username == "officer"


def test_tls_files_are_relative_to_the_nodes_file(tmp_path) -> None:
    (tmp_path / "ca.pem").write_text("x")
    text = GOOD.replace("timeout = 60", 'timeout = 60\ntls = { ca_file = "ca.pem" }')
    nodes = read_nodes_text(tmp_path / "n.toml", text)
    assert nodes.get("hospital").tls.ca_file == tmp_path / "ca.pem"
    with pytest.raises(PacsError, match=r"tls\.ca_file names .*missing\.pem, which is not a file"):
        read_nodes_text(tmp_path / "n.toml", text.replace("ca.pem", "missing.pem"))


@pytest.mark.parametrize(("change", "expected"), [
    (('retrieve = "move"', 'retrieve = "copy"'), 'line 10): nodes.hospital.retrieve must be'),
    (("port = 104", "port = 70000"), "line 9): nodes.hospital.port must be a port number"),
    (('kind = "dimse"', 'kind = "dimsee"'), 'line 6): nodes.hospital.kind must be "dimse" or'),
    (('ae_title = "PACS"', 'ae_title = "A_TITLE_OF_MORE_THAN_16"'),
     "line 7): nodes.hospital.ae_title must be an AE title"),
    (("timeout = 60", "timeout = -1"), "line 11): nodes.hospital.timeout must be a number"),
    (("timeout = 60", "colour = 1"), "line 11): nodes.hospital.colour is not a known key"),
    (('host = "pacs.example.org"\n', ""), "line 5): nodes.hospital.host is missing"),
    (('url = "https://', 'url = "ftp://'), "line 15): nodes.research.url must be an http"),
    (("port = 11112", "port = 11112 11"), "not valid TOML"),
    (('password_env = "RESEARCH_PASSWORD"', "password_env = 3"),
     "line 17): nodes.research.password_env must be a non-empty string"),
])
def test_each_mistake_names_key_and_line(tmp_path, monkeypatch, change, expected) -> None:
    monkeypatch.setenv("RESEARCH_PASSWORD", "pw")
    path = write_nodes(tmp_path / "n.toml", GOOD.replace(*change))
    with pytest.raises(PacsError) as e:
        load_nodes(path)
    assert expected in str(e.value) and str(path) in str(e.value) and "\n" not in str(e.value)


def test_missing_file_unknown_node_and_default_location(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.delenv("DPGLOW_NODES", raising=False)
    assert default_nodes_path() == tmp_path / "cfg" / "dp-glow" / "nodes.toml"
    assert cli.main(["pacs", "echo", "hospital"]) == 2
    assert "no nodes file at" in capsys.readouterr().err
    monkeypatch.setenv("RESEARCH_PASSWORD", "pw")
    path = write_nodes(tmp_path / "n.toml", GOOD)
    assert cli.main(["pacs", "echo", "elsewhere", "--nodes", str(path)]) == 2
    err = capsys.readouterr().err
    assert "no node named 'elsewhere'" in err and "hospital, research" in err
    monkeypatch.delenv("RESEARCH_PASSWORD")
    assert cli.main(["pacs", "echo", "research", "--nodes", str(path)]) == 2
    assert "$RESEARCH_PASSWORD (named by its password_env" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["find", "hospital", "--study-date", "20241301"],
    ["find", "hospital", "--study-date", "20240102-20240101"],
    ["find", "hospital", "--modality", "CR;DX"],
    ["find", "hospital", "--patient-id", "A*"],
    ["echo", "hospital", "--timeout", "nan"],
])
def test_bad_query_values_are_one_line_errors(tmp_path, monkeypatch, capsys, argv) -> None:
    monkeypatch.setenv("RESEARCH_PASSWORD", "pw")
    path = write_nodes(tmp_path / "n.toml", GOOD)
    assert cli.main(["pacs", *argv, "--nodes", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1, err


def test_release_needs_a_selection_and_one_destination(tmp_path, capsys) -> None:
    path = Path(tmp_path / "n.toml")
    for argv in (["--to", "x"], ["--accession", "A", "--to", "x", "--out", "d"],
                 ["--accession", "A", "--patient-id", "P", "--to", "x"]):
        assert cli.main(["pacs", "release", "h", "--nodes", str(path), "--e-px", "1",
                         *argv]) == 2
        assert capsys.readouterr().err.count("\n") == 1
