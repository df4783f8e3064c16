"""Where the shipped resources (default models, icons) live: from a source checkout and from
the PyInstaller bundle alike.

From source (also an editable install) they are the repository's `resources/` folder, next to
the `glow_engine` package. In a frozen build (`sys.frozen`) PyInstaller unpacks data under
`sys._MEIPASS` (the one-folder build's `_internal/`), and `packaging/dpglow.spec` puts them at
`<_MEIPASS>/resources/`. The environment variable DPGLOW_RESOURCES overrides both (a site that
keeps its models elsewhere, or tests).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENV_VAR = "DPGLOW_RESOURCES"
DEFAULT_MODELS = ("mixture", "normal")
REFERENCE_NAME = "reference_scores.json"  # the default models' validation scores


def resources_root() -> Path:
    """The folder holding `models/` and `icons/` (which may not exist, e.g. before training)."""
    override = os.environ.get(ENV_VAR)
    if override:
        return Path(override).expanduser()
    if getattr(sys, "frozen", False):
        base = getattr(sys, "_MEIPASS", None) or os.path.dirname(sys.executable)
        return Path(base) / "resources"
    return Path(__file__).resolve().parents[1] / "resources"


def resource_path(*parts: str) -> Path:
    """`resource_path("icons", "open.svg")` -> absolute path under the resources folder."""
    return resources_root().joinpath(*parts)


def default_model_dir(name: str) -> Path:
    """Directory of a shipped model (`mixture` or `normal`): weights.safetensors, model.json,
    MODEL_CARD.md. The path is returned whether or not it exists; callers check."""
    return resource_path("models", name)


def default_reference_path() -> Path:
    """The validation score distribution of the shipped model pair (glow_engine.reference),
    beside the model folders. Returned whether or not it exists."""
    return resource_path("models", REFERENCE_NAME)


def available_default_models() -> list[str]:
    """Names of the shipped models that are actually present (have weights and metadata)."""
    root = resource_path("models")
    if not root.is_dir():
        return []
    return sorted(
        p.name for p in root.iterdir()
        if (p / "weights.safetensors").is_file() and (p / "model.json").is_file()
    )
