"""DP-GLOW engine: the flow, the privacy mechanisms, training, evaluation and release.

Qt-free by design: importable by the CLI, the viewer, tests and torchrun workers.
"""

import tomllib
from importlib import metadata
from pathlib import Path

DISTRIBUTION = "dp-glow"


def _version() -> str:
    """The version written once, in pyproject.toml.

    A source checkout (also an editable install) reads pyproject.toml itself, so an edit shows
    without reinstalling; a wheel or the PyInstaller bundle has no pyproject.toml beside the
    package and reads the installed metadata, which was built from it.
    """
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    if pyproject.is_file():
        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
        if project.get("name") == DISTRIBUTION:
            return str(project["version"])
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "0+unknown"


__version__ = _version()
