"""Loading one image file (:func:`load_image`): read once, hashed, dispatched by content to
the Pillow or the DICOM decoder. The input file is only ever read."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from glow_engine.imaging.dicom import DICOM_SUFFIXES, load_dicom, looks_like_dicom
from glow_engine.imaging.errors import ImageLoadError, describe
from glow_engine.imaging.pillow import load_pillow

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
    """Read the whole file once: the hash and the decoder then see the very same bytes.

    Opened without blocking and checked before reading: only a regular file of at most
    MAX_FILE_BYTES is read (a named pipe would block forever, /dev/zero never ends)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise ImageLoadError(path, _open_failure(exc)) from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise ImageLoadError(path, "is a folder, not a file" if stat.S_ISDIR(info.st_mode) else
                             "not a regular file (a named pipe, device or socket); nothing "
                             "was read")
    with os.fdopen(fd, "rb") as fh:
        try:
            data = fh.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise ImageLoadError(path, f"cannot read the file ({exc.strerror or exc})") from None
    if max(info.st_size, len(data)) > MAX_FILE_BYTES:
        raise ImageLoadError(path, f"the file is larger than {MAX_FILE_BYTES >> 20:,} MiB")
    if not data:
        raise ImageLoadError(path, "the file is empty (0 bytes)")
    return data


def _open_failure(exc: OSError) -> str:
    reasons = {errno.ENOENT: "file not found", errno.EISDIR: "is a folder, not a file",
               errno.EACCES: "permission denied", errno.ELOOP: "a symbolic link loop",
               errno.ENAMETOOLONG: "the file name is too long"}
    return reasons.get(exc.errno or 0, f"cannot read the file ({exc.strerror or exc})")
