"""Loading one image file (:func:`load_image`): read once, hashed, dispatched by content to
the Pillow or the DICOM decoder. The input file is only ever read."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from glow_engine.imaging.dicom import DICOM_SUFFIXES, load_dicom, looks_like_dicom
from glow_engine.imaging.errors import ImageLoadError, describe
from glow_engine.imaging.pillow import load_pillow
from glow_engine.reading import ReadError, read_bytes

if TYPE_CHECKING:
    import pydicom

# Far above any radiograph (a 4k x 4k 16-bit DICOM is 32 MiB); larger files are refused
# before they are read, so memory stays bounded whatever the input.
MAX_FILE_BYTES = 1 << 30
SUPPORTED_SUFFIXES: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff"}
                                               | DICOM_SUFFIXES)


@dataclass(frozen=True, eq=False)  # eq=False: comparing arrays element-wise makes no sense here
class LoadedImage:
    """A decoded image in display convention plus what the privacy tooling needs to know."""

    pixels: np.ndarray  # float32 (H, W) in [0, 1], bright = dense (MONOCHROME2)
    path: Path
    kind: str  # "png" | "jpeg" | "tiff" | "dicom"
    bits_stored: int
    content_sha256: str  # hex digest of the file's bytes, used by the privacy ledger
    dataset: pydicom.Dataset | None = None  # DICOM header without PixelData; None otherwise
    colour: bool = False  # the source held colour (shown and modelled as its grey luma)

    @property
    def patient_id(self) -> str | None:
        """DICOM PatientID when present and non-empty."""
        if self.dataset is None:
            return None
        value = str(self.dataset.get("PatientID", "") or "").strip()
        return value or None

    @property
    def burned_in_annotation(self) -> bool | None:
        """DICOM BurnedInAnnotation: YES -> True, NO -> False, absent or other -> None."""
        if self.dataset is None:
            return None
        value = str(self.dataset.get("BurnedInAnnotation", "") or "").strip().upper()
        return {"YES": True, "NO": False}.get(value)


def load_image(path: str | Path, *, max_pixels: int = 100_000_000) -> LoadedImage:
    """Load a PNG/JPEG/TIFF/DICOM file as float32 (H, W) in [0, 1], bright = dense.

    Raises :class:`ImageLoadError` (and nothing else) when the file cannot be used.
    """
    path = Path(path)
    data = _read_bytes(path)
    digest = hashlib.sha256(data).hexdigest()
    try:
        if looks_like_dicom(data, path):
            pixels, bits, dataset = load_dicom(data, path, max_pixels)
            kind, colour = "dicom", False  # colour DICOM is refused by load_dicom
        else:
            pixels, bits, kind, colour = load_pillow(data, path, max_pixels)
            dataset = None
    except ImageLoadError:
        raise
    except MemoryError:
        raise ImageLoadError(path, "not enough memory to decode the image") from None
    except Exception as exc:  # last resort: a decoder bug must not crash the app
        raise ImageLoadError(path, f"unexpected decoding error ({describe(exc)})") from exc
    if not np.all(np.isfinite(pixels)):  # whatever the decoder: never release NaN as black
        raise ImageLoadError(path, "the decoded image holds NaN or infinite values")
    return LoadedImage(pixels, path, kind, bits, digest, dataset, colour)


def _read_bytes(path: Path) -> bytes:
    """Read the whole file once, guarded (glow_engine.reading): the hash and the decoder then
    see the very same bytes."""
    try:
        data = read_bytes(path, what="image", limit=MAX_FILE_BYTES)
    except ReadError as e:
        raise ImageLoadError(path, e.reason) from None
    if not data:
        raise ImageLoadError(path, "the file is empty (0 bytes)")
    return data
