"""dpglow-viewer's start-up checks: a clear message instead of Qt's when xcb libraries are
missing or there is no display."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import app.__main__ as viewer_main

LDD_OUTPUT = """\
\tlinux-vdso.so.1 (0x00007ffd)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-keysyms.so.1 => not found
\tlibxcb.so.1 => /lib/x86_64-linux-gnu/libxcb.so.1 (0x00007f)
"""


def test_ldd_output_and_runtime_loaded_libraries(monkeypatch, tmp_path: Path) -> None:
    (tmp_path / "libqxcb.so").write_bytes(b"")
    monkeypatch.setattr(viewer_main.shutil, "which", lambda name: "/usr/bin/ldd")
    monkeypatch.setattr(viewer_main.subprocess, "run", lambda *a, **k: subprocess.
                        CompletedProcess(a, 0, stdout=LDD_OUTPUT, stderr=""))
    monkeypatch.setattr(viewer_main, "_loadable", lambda name: False)
    assert viewer_main.missing_xcb_libraries(tmp_path) == [
        "libxcb-cursor.so.0", "libxcb-icccm.so.4", "libxcb-keysyms.so.1"]


def test_message_names_the_packages_and_the_command() -> None:
    text = viewer_main.xcb_message(["libxcb-icccm.so.4", "libxcb-cursor.so.0",
                                    "libfoo-2.so.0"])
    assert "sudo apt-get install libfoo-2-0 libxcb-cursor0 libxcb-icccm4" in text
    assert "libxcb-icccm.so.4" in text and "QT_QPA_PLATFORM=offscreen" in text


def test_platform_problem(monkeypatch) -> None:
    monkeypatch.setattr(viewer_main.sys, "platform", "linux")
    for name in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY", "DISPLAY"):
        monkeypatch.delenv(name, raising=False)
    assert "no display" in viewer_main.platform_problem()
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(viewer_main, "missing_xcb_libraries", lambda d: ["libxcb-cursor.so.0"])
    assert "libxcb-cursor0" in viewer_main.platform_problem()
    monkeypatch.setattr(viewer_main, "missing_xcb_libraries", lambda d: [])
    assert viewer_main.platform_problem() is None
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    monkeypatch.setattr(viewer_main, "missing_xcb_libraries", lambda d: ["libxcb-cursor.so.0"])
    assert viewer_main.platform_problem() is None  # not using xcb at all


def test_main_prints_the_problem_and_exits_1(monkeypatch, capsys) -> None:
    monkeypatch.setattr(viewer_main, "platform_problem", lambda: "cannot open a window: X")
    assert viewer_main.main([]) == 1
    assert "cannot open a window: X" in capsys.readouterr().err


@pytest.mark.parametrize(("args", "mixture", "normal"), [
    (["--model-dir", "/m"], "/m/mixture", "/m/normal"),
    (["--mixture", "/a", "--normal", "/b"], "/a", "/b"),
])
def test_model_paths(args: list[str], mixture: str, normal: str) -> None:
    paths = viewer_main.model_paths(viewer_main.build_parser().parse_args(args))
    assert (paths.mixture, paths.normal) == (Path(mixture), Path(normal))


def test_the_window_imports_without_torch() -> None:
    # torch (~2 s) is imported on the engine thread, after the window is shown; a module-level
    # torch import anywhere in the window's modules would delay the window again.
    code = ("import sys, app.qt.main_window, app.__main__; "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, env=dict(os.environ, QT_QPA_PLATFORM="offscreen"))
    assert done.returncode == 0, done.stderr or "torch was imported with the window's modules"


def test_new_session_sets_torch_threads_only_when_asked() -> None:
    import torch

    from app.qt.worker import new_session

    before = torch.get_num_threads()
    try:
        new_session("cpu")
        assert torch.get_num_threads() == before  # tests (one shared process) leave it
        new_session("cpu", threads=before + 1)  # the application sets it
        assert torch.get_num_threads() == before + 1
    finally:
        torch.set_num_threads(before)


# Every engine call blocks for ever, as a read from a pipe that never delivers would.
STUCK_ENGINE = """
import sys, threading
import app.__main__ as viewer_main
import app.engine.session
viewer_main.SMOKE_TIMEOUT_S, viewer_main.SMOKE_STOP_S = 3.0, 1.0
app.engine.session.Session.handle = lambda self, request: threading.Event().wait()
sys.exit(viewer_main.main(["--smoke-test"]))
"""


def test_smoke_test_ends_even_when_the_engine_is_stuck(tmp_path: Path) -> None:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "HOME": str(tmp_path)}
    try:
        done = subprocess.run([sys.executable, "-c", STUCK_ENGINE], env=env, timeout=120,
                              capture_output=True, text=True, cwd=Path(__file__).parents[1])
    except subprocess.TimeoutExpired:
        pytest.fail("the smoke test did not exit while the engine was stuck")
    assert done.returncode == 1
    assert "timed out" in done.stderr and "did not stop" in done.stderr
