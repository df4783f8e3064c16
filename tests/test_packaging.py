"""The PyInstaller build's inputs, checked without building (packaging/build.sh does that)."""

from __future__ import annotations

import ast
import importlib.util
import sys
import tomllib
from pathlib import Path

import pytest

from glow_engine import resources

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "packaging" / "dpglow.spec"
LAUNCHER = ROOT / "packaging" / "launcher.py"


def _load_launcher():
    # packaging/ is not a package (it would shadow the `packaging` distribution): load by path.
    spec = importlib.util.spec_from_file_location("dpglow_launcher", LAUNCHER)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _spec_strings() -> set[str]:
    tree = ast.parse(SPEC.read_text(encoding="utf-8"), filename=str(SPEC))
    return {
        n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    }


def test_spec_parses_and_names_executables_and_data():
    strings = _spec_strings()
    assert {"dpglow-viewer", "dpglow"} <= strings
    assert {"resources/models", "resources/icons"} <= strings
    for rel in ("resources/models", "resources/icons"):
        assert (ROOT / rel).is_dir(), rel
    for dist in ("pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg", "pydicom"):
        assert dist in strings, f"spec does not copy the metadata of {dist}"
    assert {"libjpeg", "openjpeg", "qdarkstyle", "glow_engine", "app"} <= strings
    assert "launcher.py" in SPEC.read_text(encoding="utf-8")
    assert LAUNCHER.is_file()


def test_launcher_entries_match_pyproject_scripts():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "scripts"
    ]
    launcher = _load_launcher()
    assert scripts["dpglow"] == launcher.ENTRIES["cli"] + ":main"
    assert scripts["dpglow-viewer"] == launcher.ENTRIES["viewer"] + ":main"
    # the modules the two executables start
    cli_src = (ROOT / "glow_engine" / "cli.py").read_text(encoding="utf-8")
    assert "def main(" in cli_src
    viewer = ROOT / "app" / "__main__.py"
    if not viewer.is_file():
        pytest.skip("app/__main__.py not written yet")
    assert "def main(" in viewer.read_text(encoding="utf-8")


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


def test_one_version_from_pyproject(capsys):
    import glow_engine
    from app.__main__ import main as viewer_main
    from glow_engine.cli import main as cli_main

    version = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "version"
    ]
    assert glow_engine.__version__ == version
    for main, prog in ((cli_main, "dpglow"), (viewer_main, "dpglow-viewer")):
        with pytest.raises(SystemExit) as stop:
            main(["--version"])
        assert stop.value.code == 0
        assert capsys.readouterr().out.strip() == f"{prog} {version}"


def test_installed_metadata_carries_the_same_version():
    # What a wheel or the PyInstaller bundle reports (they have no pyproject.toml to read).
    from importlib import metadata

    import glow_engine

    assert metadata.version(glow_engine.DISTRIBUTION) == glow_engine.__version__
