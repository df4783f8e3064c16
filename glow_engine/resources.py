"""Where the shipped resources (default models, icons) and the user documentation live: from a
source checkout and from the PyInstaller bundle alike.

From source (also an editable install) they are the repository's `resources/` folder, next to
the `glow_engine` package. In a frozen build (`sys.frozen`) PyInstaller unpacks data under
`sys._MEIPASS` (the one-folder build's `_internal/`), and `packaging/dpglow.spec` puts them at
`<_MEIPASS>/resources/`. The environment variable DPGLOW_RESOURCES overrides both (a site that
keeps its models elsewhere, or tests). The documents the viewer opens from its Help menu are
the repository's `docs/` (`<_MEIPASS>/docs/` in the bundle).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENV_VAR = "DPGLOW_RESOURCES"
VALIDATION_SCORES_NAME = "reference_scores.json"  # the default models' validation scores
RISK_CARD_NAME = "risk_card.json"  # their measured risk table (glow_engine.risk_card)
# The documents a privacy officer or radiologist reads in the app (Help menu), by title.
USER_DOCUMENTS = {"Privacy notes": "privacy.md", "Evaluation results": "evaluation.md"}
# What follows this line in a user document is for developers (commands, paths of the source
# tree): the Help menu does not show it, since an installed viewer has no source tree.
DEVELOPERS_MARKER = "<!-- developers -->"


def _bundle_root() -> Path | None:
    """The PyInstaller bundle's data folder, or None when running from source."""
    if not getattr(sys, "frozen", False):
        return None
    return Path(getattr(sys, "_MEIPASS", None) or os.path.dirname(sys.executable))


def resources_root() -> Path:
    """The folder holding `models/` and `icons/` (which may not exist, e.g. before training)."""
    override = os.environ.get(ENV_VAR)
    if override:
        return Path(override).expanduser()
    bundle = _bundle_root()
    if bundle is not None:
        return bundle / "resources"
    return Path(__file__).resolve().parents[1] / "resources"


def document_path(name: str) -> Path:
    """A user document (`privacy.md`, ...); returned whether or not it exists."""
    bundle = _bundle_root()
    return (bundle if bundle is not None else Path(__file__).resolve().parents[1]) / "docs" / name


def user_text(path: Path) -> str:
    """The part of a user document the viewer shows: everything before DEVELOPERS_MARKER."""
    return path.read_text(encoding="utf-8").split(DEVELOPERS_MARKER, 1)[0]


def resource_path(*parts: str) -> Path:
    """`resource_path("icons", "open.svg")` -> absolute path under the resources folder."""
    return resources_root().joinpath(*parts)


def default_model_dir(name: str) -> Path:
    """Directory of a shipped model (`mixture` or `normal`): weights.safetensors, model.json,
    MODEL_CARD.md. The path is returned whether or not it exists; callers check."""
    return resource_path("models", name)


def default_validation_scores_path() -> Path:
    """The validation score distribution of the shipped model pair (glow_engine.validation_scores),
    beside the model folders. Returned whether or not it exists."""
    return resource_path("models", VALIDATION_SCORES_NAME)


def default_risk_card_path() -> Path:
    """The shipped model pair's risk card (glow_engine.risk_card), beside the model folders.
    Returned whether or not it exists."""
    return resource_path("models", RISK_CARD_NAME)


def available_default_models() -> list[str]:
    """Names of the shipped models that are actually present (have weights and metadata)."""
    root = resource_path("models")
    if not root.is_dir():
        return []
    return sorted(
        p.name for p in root.iterdir()
        if (p / "weights.safetensors").is_file() and (p / "model.json").is_file()
    )
