"""The PyInstaller build's inputs, checked without building (packaging/build.sh does that)."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
import tomllib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from glow_engine import resources

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "packaging" / "dpglow.spec"
LAUNCHER = ROOT / "packaging" / "launcher.py"


def _load(path: Path):
    # packaging/ is not a package (it would shadow the `packaging` distribution): load by path.
    spec = importlib.util.spec_from_file_location(f"dpglow_{path.stem}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _load_launcher():
    return _load(LAUNCHER)


def _spec_strings() -> set[str]:
    tree = ast.parse(SPEC.read_text(encoding="utf-8"), filename=str(SPEC))
    return {
        n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    }


def test_spec_parses_and_names_executables_and_data():
    strings = _spec_strings()
    assert {"dpglow-viewer", "dpglow"} <= strings
    assert {"resources/models", "resources/icons", "pyproject.toml"} <= strings
    for rel in ("resources/models", "resources/icons"):
        assert (ROOT / rel).is_dir(), rel
    for dist in ("pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg", "pydicom"):
        assert dist in strings, f"spec does not copy the metadata of {dist}"
    assert {"libjpeg", "openjpeg", "qdarkstyle", "glow_engine", "app"} <= strings
    assert "launcher.py" in SPEC.read_text(encoding="utf-8")
    assert LAUNCHER.is_file()


def test_launcher_entries_match_pyproject_scripts(capsys):
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "scripts"
    ]
    launcher = _load_launcher()
    assert scripts["dpglow"] == launcher.ENTRIES["cli"] + ":main"
    assert scripts["dpglow-viewer"] == launcher.ENTRIES["viewer"] + ":main"
    # what the installed scripts and the bundle start resolves to a main that runs
    for prog, target in scripts.items():
        module, _, name = target.partition(":")
        main = getattr(importlib.import_module(module), name)
        assert _exit_status(main, ["--version"]) == 0
        assert capsys.readouterr().out.startswith(f"{prog} ")


def _exit_status(main, argv: list[str]) -> int:
    """What the console script (sys.exit(main())) exits with, whether main returns or exits."""
    try:
        return main(argv) or 0
    except SystemExit as stop:
        return stop.code or 0


@pytest.mark.parametrize(
    ("exe", "entry"),
    [
        ("/opt/dpglow-viewer/dpglow", "cli"),
        (r"C:\Program Files\dpglow-viewer\dpglow.exe", "cli"),
        ("/opt/dpglow-viewer/dpglow-viewer", "viewer"),
        ("DPGLOW-VIEWER.EXE", "viewer"),
        ("/usr/bin/python3", "viewer"),
    ],
)
def test_launcher_dispatches_on_executable_name(monkeypatch, exe, entry):
    monkeypatch.delenv("DPGLOW_ENTRY", raising=False)
    launcher = _load_launcher()
    name = exe.replace("\\", "/") if sys.platform != "win32" else exe
    assert launcher.pick_entry(name) == entry


def test_launcher_entry_override(monkeypatch):
    monkeypatch.setenv("DPGLOW_ENTRY", "cli")
    assert _load_launcher().pick_entry("/x/dpglow-viewer") == "cli"


def test_resource_path_from_source(monkeypatch):
    monkeypatch.delenv(resources.ENV_VAR, raising=False)
    monkeypatch.delattr(sys, "frozen", raising=False)
    assert resources.resources_root() == ROOT / "resources"
    assert resources.resource_path("icons") == ROOT / "resources" / "icons"
    assert resources.resource_path("icons").is_dir()
    assert resources.default_model_dir("mixture") == ROOT / "resources" / "models" / "mixture"
    for name in resources.available_default_models():
        assert (resources.default_model_dir(name) / "model.json").is_file()


def test_resource_path_frozen_and_override(monkeypatch, tmp_path):
    monkeypatch.delenv(resources.ENV_VAR, raising=False)
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path / "_internal"), raising=False)
    assert resources.resource_path("models", "normal") == (
        tmp_path / "_internal" / "resources" / "models" / "normal"
    )
    assert resources.available_default_models() == []  # missing folder: empty, no error
    model = tmp_path / "_internal" / "resources" / "models" / "normal"
    model.mkdir(parents=True)
    (model / "model.json").write_text("{}")
    (model / "weights.safetensors").write_bytes(b"")
    assert resources.available_default_models() == ["normal"]

    monkeypatch.setenv(resources.ENV_VAR, str(tmp_path / "site"))
    assert resources.default_model_dir("mixture") == tmp_path / "site" / "models" / "mixture"
    # the Help documents are not resources: a site's resources folder does not move them
    assert resources.document_path("privacy.md") == tmp_path / "_internal" / "docs" / "privacy.md"


def test_help_documents_exist_in_the_source_tree(monkeypatch):
    monkeypatch.delattr(sys, "frozen", raising=False)
    for name in resources.USER_DOCUMENTS.values():
        assert resources.document_path(name) == ROOT / "docs" / name
        assert resources.document_path(name).is_file()


def test_one_version_from_pyproject(capsys):
    import glow_engine
    from app.__main__ import main as viewer_main
    from glow_engine.cli import main as cli_main

    version = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "version"
    ]
    assert glow_engine.__version__ == version
    assert cli_main(["--version"]) == 0  # dpglow's main returns its exit status
    assert capsys.readouterr().out.strip() == f"dpglow {version}"
    with pytest.raises(SystemExit) as stop:
        viewer_main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"dpglow-viewer {version}"


def test_installed_metadata_carries_the_same_version():
    # What a wheel or the PyInstaller bundle reports (they have no pyproject.toml to read).
    from importlib import metadata

    import glow_engine

    assert metadata.version(glow_engine.DISTRIBUTION) == glow_engine.__version__


def test_smoke_samples_open_as_the_same_chest(tmp_path):
    from glow_engine.imaging import load_image

    samples = _load(ROOT / "packaging" / "smoke_samples.py")
    paths = samples.write(tmp_path)
    j2k, rle = (load_image(p) for p in paths)
    syntaxes = {pydicom.dcmread(p).file_meta.TransferSyntaxUID for p in paths}
    assert syntaxes == {pydicom.uid.JPEG2000Lossless, pydicom.uid.RLELossless}
    assert j2k.pixels.shape == rle.pixels.shape == samples.SHAPE
    # 12-bit MONOCHROME2 and inverted 16-bit MONOCHROME1 of one picture display alike
    assert np.abs(j2k.pixels - rle.pixels).max() < 1e-3
    assert j2k.pixels.std() > 0.1


def test_release_check_passes_a_real_release_and_catches_a_leak(tmp_path):
    from glow_engine.cli import main as cli_main

    samples = _load(ROOT / "packaging" / "smoke_samples.py")
    if not resources.available_default_models():
        pytest.skip("no default model in resources/models")
    out = tmp_path / "out"
    ledger = tmp_path / "ledger.sqlite"
    rc = cli_main(["privatize", *map(str, samples.write(tmp_path / "in")), "--e-px", "100",
                   "--format", "dicom", "--out", str(out), "--no-progress",
                   "--ledger", str(ledger)])
    assert rc == 0
    assert samples.verify(out, ledger, 2) == []
    assert "expected 3" in samples.verify(out, ledger, 3)[-1]
    released = sorted(out.rglob("*.dcm"))
    assert len(released) == 2
    ds = pydicom.dcmread(released[0])
    ds.PatientID = samples.IDENTIFIERS["PatientID"]
    ds.save_as(released[0])
    assert any("identifying values" in p for p in samples.verify(out, ledger, 2))
    assert samples.verify(tmp_path / "nowhere", ledger, 2)[0].startswith("no readable manifest")


def test_platform_icons_match_the_svg():
    icons = ROOT / "resources" / "icons"
    ico, icns = Image.open(icons / "dpglow.ico"), Image.open(icons / "dpglow.icns")
    assert {(256, 256), (16, 16), (32, 32)} <= set(ico.info["sizes"])
    assert max(s[0] * s[2] for s in icns.info["sizes"]) >= 1024  # 512 px @2x
    png = np.asarray(Image.open(icons / "dpglow.png").convert("RGBA"), dtype=float)
    fresh = _load(ROOT / "packaging" / "make_icons.py").render_svg(icons / "app.svg", 256)
    # stale icons (app.svg edited, make_icons.py not rerun) differ by far more than resampling
    assert np.abs(png - np.asarray(fresh, dtype=float)).mean() < 4


@pytest.mark.skipif(sys.platform != "linux", reason="install.sh is the Linux installer")
def test_linux_installer_copies_links_and_uninstalls(tmp_path):
    import os
    import shutil
    import subprocess

    bundle = tmp_path / "dpglow-viewer-9.9.9"
    bundle.mkdir()
    for name in ("install.sh", "dpglow-viewer.desktop.in"):
        shutil.copy(ROOT / "packaging" / "linux" / name, bundle / name)
    for exe in ("dpglow", "dpglow-viewer"):
        (bundle / exe).write_text(f"#!/bin/sh\necho {exe} 9.9.9\n")
        (bundle / exe).chmod(0o755)
    where = {"PREFIX": tmp_path / "opt", "BINDIR": tmp_path / "bin",
             "APPDIR": tmp_path / "apps"}
    env = dict(os.environ, **{k: str(v) for k, v in where.items()})
    done = subprocess.run(["sh", str(bundle / "install.sh")], env=env, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "installed dpglow 9.9.9" in done.stdout
    installed = where["PREFIX"] / "dpglow-viewer-9.9.9"
    assert (installed / "dpglow").is_file()
    assert (where["PREFIX"] / "dpglow-viewer").resolve() == installed.resolve()
    run = subprocess.run([str(where["BINDIR"] / "dpglow-viewer")], capture_output=True,
                         text=True, check=True)
    assert run.stdout.strip() == "dpglow-viewer 9.9.9"
    desktop = (where["APPDIR"] / "dpglow-viewer.desktop").read_text()
    assert f"Exec={where['PREFIX']}/dpglow-viewer/dpglow-viewer %f" in desktop
    assert "@APP@" not in desktop
    # run again from the installed folder (how an older version is made current again)
    done = subprocess.run(["sh", str(installed / "install.sh")], env=env, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0 and (installed / "dpglow").is_file(), done.stderr

    done = subprocess.run(["sh", str(installed / "install.sh"), "--uninstall"], env=env,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert not (where["BINDIR"] / "dpglow").exists()
    assert not (where["APPDIR"] / "dpglow-viewer.desktop").exists()
    assert installed.is_dir()  # the folder stays: uninstalling never deletes data unasked
