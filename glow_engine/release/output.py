"""Writing one released image, for the batch release and the viewer's export alike: a PNG, or
a de-identified DICOM built by a `DicomExporter`. Atomic, and never over an existing file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from glow_engine.atomic import write_bytes_atomic
from glow_engine.imaging.pixels import to_uint8
from glow_engine.imaging.write import save_png
from glow_engine.release.deid import DicomExporter, to_bytes


def write_release(path: Path, pixels: np.ndarray, exporter: DicomExporter | None,
                  source: Dataset | None, description: str, *, force_burned_in: bool = False,
                  derivation: str = "") -> None:
    """`pixels` ([0, 1], H x W) to `path`: PNG when `exporter` is None, else DICOM carrying
    the mechanism's `description` and the post-processing `derivation`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if exporter is None:
        save_png(pixels, path)
        return
    ds = exporter.build(to_uint8(pixels), source, description, force_burned_in=force_burned_in,
                        derivation=derivation)
    write_bytes_atomic(path, to_bytes(ds))
