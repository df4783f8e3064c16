"""One released file: its name and its bytes, for the batch release and the viewer's export.

By default a release is the whole square model frame, padding included, at a size that does
not depend on the input (the model resolution, or `--size`): two sources of different shapes
give outputs of the same size. `keep_aspect` crops the padding off instead, which publishes
the source's aspect ratio unprotected.

A release is named `<16 random hex digits>.png` or `.dcm`, flat in the output folder: the name
carries nothing of the source (not its name, folder, UID or position in a listing), and only
the operator's record beside the ledger maps it back. Written atomically, never over an
existing file.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset

from glow_engine.atomic import write_bytes_atomic
from glow_engine.choices import RELEASE_FORMATS
from glow_engine.imaging.frame import Placement, from_square
from glow_engine.imaging.pixels import to_uint8
from glow_engine.imaging.write import save_png
from glow_engine.release.deid import DicomExporter, to_bytes


def new_release_name(out_dir: Path, fmt: str) -> str:
    """A fresh random file name in `out_dir` (64 random bits; drawn again if taken)."""
    while True:
        name = f"{secrets.token_hex(8)}{RELEASE_FORMATS[fmt].suffix}"
        if not (out_dir / name).exists():
            return name


def shape_release(frame: np.ndarray, placement: Placement, *, keep_aspect: bool,
                  size: int | None) -> tuple[np.ndarray, str]:
    """The released pixels from the noisy model frame, and a note saying what was done
    (post-processing: no privacy cost, but `keep_aspect` publishes the aspect ratio)."""
    r = frame.shape[-1]
    if keep_aspect:
        pixels = from_square(frame, placement)
        note = "cropped to the source's aspect ratio (published unprotected)"
    else:
        pixels, note = frame, f"the whole {r}x{r} model frame, padding included"
    h, w = pixels.shape
    if size and size != max(h, w):
        new_w, new_h = (max(1, round(side * size / max(h, w))) for side in (w, h))
        img = Image.fromarray(to_uint8(pixels)).resize((new_w, new_h), Image.Resampling.BICUBIC)
        pixels = np.asarray(img, dtype=np.float32) / 255
        note += f"; resized from {w}x{h} to {new_w}x{new_h} (bicubic)"
    return pixels, note


def write_release(path: Path, pixels: np.ndarray, exporter: DicomExporter | None,
                  source: Dataset | None, description: str, *, burned_in: bool | None,
                  derivation: str = "") -> None:
    """`pixels` ([0, 1], H x W) to `path`: PNG when `exporter` is None, else DICOM carrying
    the mechanism's `description`, the post-processing `derivation` and the source's
    declared BurnedInAnnotation (`burned_in`: None when it did not say)."""
    if exporter is None:
        save_png(pixels, path)
        return
    ds = exporter.build(to_uint8(pixels), source, description, burned_in=burned_in,
                        derivation=derivation)
    write_bytes_atomic(path, to_bytes(ds))
