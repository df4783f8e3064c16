"""glow_engine.atomic: whole files or none, and no file replaced unless asked."""

from __future__ import annotations

from pathlib import Path

import pytest

from glow_engine.atomic import write_atomic, write_bytes_atomic, write_text_atomic


def test_write_bytes_atomic(tmp_path: Path) -> None:
    path = tmp_path / "blob.dcm"
    write_bytes_atomic(path, b"one")
    with pytest.raises(FileExistsError):
        write_bytes_atomic(path, b"two")
    write_bytes_atomic(str(path), b"three", overwrite=True)
    assert path.read_bytes() == b"three"
    with pytest.raises(FileNotFoundError):
        write_bytes_atomic(tmp_path / "missing" / "x.bin", b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blob.dcm"]


def test_atomic_write_never_clobbers_a_file_that_appears_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "late.png"
    path.write_bytes(b"someone else's file")
    monkeypatch.setattr(Path, "exists", lambda self: False)  # the early check sees nothing
    with pytest.raises(FileExistsError):
        write_bytes_atomic(path, b"ours")
    monkeypatch.undo()
    assert path.read_bytes() == b"someone else's file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["late.png"]


def test_a_failing_writer_leaves_nothing_and_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"old")

    def half_then_crash(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, half_then_crash, overwrite=True)
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_writer_gets_a_temporary_file_in_the_destination_folder(tmp_path: Path) -> None:
    seen: list[Path] = []
    write_atomic(tmp_path / "w.bin", lambda tmp: (seen.append(tmp), tmp.write_bytes(b"w")))
    assert seen[0].parent == tmp_path and seen[0].name != "w.bin"
    assert (tmp_path / "w.bin").read_bytes() == b"w"


def test_write_text_atomic_is_utf8(tmp_path: Path) -> None:
    write_text_atomic(tmp_path / "t.json", "\u00b5 {}\n")
    assert (tmp_path / "t.json").read_bytes() == "\u00b5 {}\n".encode()
