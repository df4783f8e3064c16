"""`dpglow-viewer`: start the desktop viewer.

    dpglow-viewer [IMAGE] [--model-dir DIR | --mixture PATH [--normal PATH]]
    dpglow-viewer --smoke-test [--screenshot FILE] [IMAGE]

The smoke test starts the window, loads the models, opens IMAGE (or draws a sample), renders
every pane at e_px = 100, optionally saves a screenshot, and exits 0 (1 on any failure).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from glow_engine import __version__
from glow_engine.resources import default_model_dir

_IMPORTED = time.monotonic()
SMOKE_TIMEOUT_S = 300.0
SMOKE_STOP_S = 10.0  # how long a finished smoke test waits for the engine's current call
SMOKE_E_PX = 100.0
# Libraries Qt's xcb plugin needs that a bare Debian/Ubuntu lacks -> the package to install.
XCB_PACKAGES = {
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-xinerama.so.0": "libxcb-xinerama0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libfontconfig.so.1": "libfontconfig1",
    "libdbus-1.so.3": "libdbus-1-3",
}
# Qt 6.5+ loads libxcb-cursor at run time, so ldd of the plugin never lists it.
_DLOPENED = ("libxcb-cursor.so.0",)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dpglow-viewer", description=__doc__.split("\n")[0])
    p.add_argument("--version", action="version", version=f"dpglow-viewer {__version__}")
    p.add_argument("image", nargs="?", type=Path, help="an image to open (PNG/JPEG/TIFF/DICOM)")
    p.add_argument("--model-dir", type=Path, help="folder holding mixture/ and normal/ models")
    p.add_argument("--mixture", type=Path, help="the mixture model (privatises; default: "
                   "the shipped one)")
    p.add_argument("--normal", type=Path, help="the normal-only model (anomaly score)")
    p.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda, mps")
    p.add_argument("--smoke-test", action="store_true",
                   help="render all panes at e_px 100, then exit (0 = success)")
    p.add_argument("--screenshot", type=Path, help="with --smoke-test: save the window here")
    return p


def model_paths(args: argparse.Namespace):
    from app.qt.main_window import ModelPaths

    root = args.model_dir
    mixture = args.mixture or (root / "mixture" if root else default_model_dir("mixture"))
    normal = args.normal or (root / "normal" if root else default_model_dir("normal"))
    return ModelPaths(mixture, normal)


# --------------------------------------------------------------------------- platform checks


def missing_xcb_libraries(plugin_dir: Path) -> list[str]:
    """Shared libraries the xcb platform plugin needs but the system lacks (Linux only)."""
    plugin = plugin_dir / "libqxcb.so"
    missing: list[str] = []
    if plugin.is_file() and shutil.which("ldd"):
        out = subprocess.run(["ldd", str(plugin)], capture_output=True, text=True,
                             check=False).stdout
        missing = [line.split()[0] for line in out.splitlines() if "not found" in line]
    missing += [name for name in _DLOPENED if not _loadable(name)]
    return sorted(set(missing))


def _loadable(soname: str) -> bool:
    import ctypes

    try:
        ctypes.CDLL(soname)
    except OSError:
        return False
    return True


def xcb_message(missing: list[str]) -> str:
    packages = sorted({XCB_PACKAGES.get(name, _guess_package(name)) for name in missing})
    return (
        "dpglow-viewer cannot open a window: Qt's X11 (xcb) platform plugin needs system "
        f"libraries that are not installed:\n  {' '.join(missing)}\n\n"
        "Install them (Debian/Ubuntu) with:\n"
        f"  sudo apt-get install {' '.join(packages)}\n\n"
        "(Headless checks can run without them: QT_QPA_PLATFORM=offscreen dpglow-viewer "
        "--smoke-test)"
    )


def _guess_package(soname: str) -> str:
    """Debian's naming: libfoo.so.1 -> libfoo1, libfoo-2.so.0 -> libfoo-2-0."""
    stem, _, version = soname.partition(".so.")
    stem = stem.lower()
    return f"{stem}-{version}" if stem[-1].isdigit() else f"{stem}{version}"


def platform_problem() -> str | None:
    """Why the window cannot open on this Linux session, or None if it should."""
    if not sys.platform.startswith("linux"):
        return None
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if platform and not platform.startswith("xcb"):
        return None
    if not platform and os.environ.get("WAYLAND_DISPLAY"):
        return None  # Qt picks Wayland first
    if not os.environ.get("DISPLAY"):
        return ("dpglow-viewer cannot open a window: no display (DISPLAY is not set). "
                "Run it in a desktop session, or headless with QT_QPA_PLATFORM=offscreen.")
    import PySide6

    missing = missing_xcb_libraries(Path(PySide6.__file__).parent / "Qt" / "plugins"
                                    / "platforms")
    return xcb_message(missing) if missing else None


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.smoke_test and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # a smoke test needs no screen
    problem = platform_problem()
    if problem:
        print(problem, file=sys.stderr)
        return 1
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from app.qt.collector import collect_on_gui_thread
    from app.qt.main_window import MainWindow
    from app.qt.theme import apply_theme, configure_plots
    from app.qt.worker import engine_thread_count

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setOrganizationName("dp-glow")
    app.setApplicationName("viewer")
    settings = QSettings("dp-glow", "viewer")
    apply_theme(app, str(settings.value("theme", "dark")))
    configure_plots()
    restore_gc = collect_on_gui_thread()
    window = MainWindow(settings, model_paths(args), device=args.device,
                        threads=engine_thread_count())
    window.closed.connect(restore_gc)
    if args.smoke_test:
        return smoke_test(app, window, args.image, args.screenshot)
    window.place_on_screen()
    window.show()
    window.start(args.image)
    return app.exec()


def smoke_test(app, window, image: Path | None, screenshot: Path | None) -> int:
    """Run the real window until every pane is rendered at e_px 100 and scored; print how long
    start-up took (the figure IT staff compare between workstations)."""
    window.place_on_screen(restore=False)  # the screen's size, whatever was saved
    window.state.set_e_px(SMOKE_E_PX)
    window.state.set_display(strip=True)
    window.show()
    window.start(image)
    app.processEvents()
    times = {"window shown": seconds_since_process_start()}
    deadline = time.monotonic() + SMOKE_TIMEOUT_S
    while not smoke_done(window, image) and not window.messages and time.monotonic() < deadline:
        app.processEvents()
        if window.state.models is not None:
            times.setdefault("models loaded", seconds_since_process_start())
        if window.state.source is not None:
            times.setdefault("image open", seconds_since_process_start())
        time.sleep(0.01)
    times["all panes rendered and scored"] = seconds_since_process_start()
    ok = smoke_done(window, image) and not window.messages
    if ok and screenshot is not None:
        for _ in range(20):  # let the last repaint through before grabbing
            app.processEvents()
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        ok = window.grab().save(str(screenshot))
    problem = "; ".join(window.messages) or ("timed out" if not smoke_done(window, image) else
                                               "could not save the screenshot")
    if ok:
        print(f"smoke test: ok ({window.state.source.name})")
        print("start-up, seconds since the process started: "
              + ", ".join(f"{k} {v:.2f}" for k, v in times.items()))
    else:
        print(f"smoke test FAILED: {problem}", file=sys.stderr)
    if not window.engine.stop(SMOKE_STOP_S):
        # the engine is inside a call that cannot be interrupted (say, a read that never
        # returns): a check must still end, so the process goes without its thread
        print(f"smoke test: the engine did not stop within {SMOKE_STOP_S:.0f} s; exiting",
              file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(1)
    window.close()
    return 0 if ok else 1


def seconds_since_process_start() -> float:
    """Wall time since this process started: from the kernel on Linux (so the PyInstaller
    bootloader and Python's own start are counted), else since this module was imported."""
    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime", encoding="ascii") as f:
            uptime = float(f.read().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return time.monotonic() - _IMPORTED


def smoke_done(window, image: Path | None) -> bool:
    from app.core.messages import Kind
    from app.core.pane_keys import ORIGINAL

    s = window.state
    if s.models is None or s.source is None or s.rendered is None or s.strip is None:
        return False
    if image is not None and s.source.name != image.name:
        return False  # still the start-up sample, not the file asked for
    if s.params.e_px != SMOKE_E_PX or not s.is_current(Kind.RENDER, s.rendered.request_id):
        return False
    needs_scores = s.models.normal_path is not None
    return not needs_scores or {ORIGINAL, *s.rendered.panes, *s.strip.panes} <= set(s.scores)


if __name__ == "__main__":
    sys.exit(main())
