"""The one image loader of DP-GLOW, shared by the CLI, training and the desktop app.

Qt-free and torch-free: everything here works on NumPy arrays, Pillow and pydicom.

Loading (:func:`load_image`)
    PNG, JPEG and TIFF are read with Pillow, DICOM with pydicom 3. Every image becomes a
    ``float32`` array of shape ``(H, W)`` with values in ``[0, 1]`` in *display convention*:
    bright = dense tissue (DICOM MONOCHROME2). Colour is reduced to ITU-R 601 luma, alpha is
    composited on black, 16-bit data keeps its precision. DICOM goes through the modality LUT
    (RescaleSlope/Intercept), then the VOI LUT or the first Window Center/Width; without a VOI
    the values are min-max scaled (8-bit data keeps its fixed 0..255 range, like a PNG).
    MONOCHROME1 is inverted. Any failure is an :class:`ImageLoadError` whose message names the
    file and gives a reason a user can act on. The input file is only ever read.

Mapping to the model input (:func:`to_square`)
    The model sees a square ``size x size`` frame. The image is resized *preserving its aspect
    ratio* so that its **long side equals the model resolution** ``size`` (antialiased: box
    filter when shrinking, bicubic when enlarging, clipped to ``[0, 1]``). It is then **centred**
    in the frame and the remaining rows or columns are **padded with 0 (black)**; nothing is
    cropped or stretched. The returned :class:`Placement` records the scale and the rectangle
    ``(top, left, height, width)`` the image occupies, and :func:`from_square` crops a model
    output frame back to that rectangle (at frame resolution).

Writing (:func:`save_png`, :func:`atomic_write_bytes`)
    Files are written to a temporary file in the destination folder and moved into place, so
    a crash never leaves a half-written file, and an existing file is never replaced unless
    ``overwrite=True``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import secrets
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from glow_engine.errors import UserError

if TYPE_CHECKING:
    import pydicom

__all__ = [
    "SUPPORTED_SUFFIXES",
    "ImageLoadError",
    "LoadedImage",
    "Placement",
    "atomic_write_bytes",
    "find_images",
    "from_square",
    "load_image",
    "save_png",
    "to_square",
    "to_uint8",
    "to_uint16",
]

SUPPORTED_SUFFIXES: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm", ".dicom"}
)
_DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
_MIN_SIDE = 8
_PIL_FORMATS = ("PNG", "JPEG", "TIFF")
_PIL_KINDS = {"PNG": "png", "JPEG": "jpeg", "MPO": "jpeg", "TIFF": "tiff"}
# ITU-R BT.601 luma weights, the same as Pillow's convert("L").
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)


class ImageLoadError(UserError, ValueError):
    """An image could not be loaded; ``str()`` is a message fit to show to a user."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"Cannot open {self.path.name}: {reason}")


@dataclass(frozen=True, eq=False)  # eq=False: comparing arrays element-wise makes no sense here
class LoadedImage:
    """A decoded image in display convention plus what the privacy tooling needs to know."""

    pixels: np.ndarray  # float32 (H, W) in [0, 1], bright = dense (MONOCHROME2)
    path: Path
    kind: str  # "png" | "jpeg" | "tiff" | "dicom"
    bits_stored: int
    content_sha256: str  # hex digest of the file's bytes, used by the privacy ledger
    dataset: pydicom.Dataset | None = None  # DICOM header without PixelData; None otherwise

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


# --------------------------------------------------------------------------- loading


def load_image(path: str | Path, *, max_pixels: int = 100_000_000) -> LoadedImage:
    """Load a PNG/JPEG/TIFF/DICOM file as float32 (H, W) in [0, 1], bright = dense.

    Raises :class:`ImageLoadError` (and nothing else) when the file cannot be used.
    """
    path = Path(path)
    data = _read_bytes(path)
    digest = hashlib.sha256(data).hexdigest()
    try:
        if _looks_like_dicom(data, path):
            pixels, bits, dataset = _load_dicom(data, path, max_pixels)
            kind = "dicom"
        else:
            pixels, bits, kind = _load_pillow(data, path, max_pixels)
            dataset = None
    except ImageLoadError:
        raise
    except MemoryError:
        raise ImageLoadError(path, "not enough memory to decode the image") from None
    except Exception as exc:  # last resort: a decoder bug must not crash the app
        raise ImageLoadError(path, f"unexpected decoding error ({_describe(exc)})") from exc
    return LoadedImage(pixels, path, kind, bits, digest, dataset)


def _read_bytes(path: Path) -> bytes:
    """Read the whole file once: the hash and the decoder then see the very same bytes."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageLoadError(path, "file not found") from None
    except IsADirectoryError:
        raise ImageLoadError(path, "is a folder, not a file") from None
    except PermissionError:
        raise ImageLoadError(path, "permission denied") from None
    except OSError as exc:
        raise ImageLoadError(path, f"cannot read the file ({exc.strerror or exc})") from None
    if not data:
        raise ImageLoadError(path, "the file is empty (0 bytes)")
    return data


def _looks_like_dicom(data: bytes, path: Path) -> bool:
    """DICOM by its "DICM" magic, or by suffix/no suffix when not a known raster format."""
    if data[128:132] == b"DICM":
        return True
    if data.startswith((b"\x89PNG", b"\xff\xd8", b"II*\x00", b"MM\x00*")):
        return False
    # Files without file meta have no magic at all: trust a DICOM-like name.
    return path.suffix.lower() in _DICOM_SUFFIXES or _is_dicom_like_name(path)


def _is_dicom_like_name(path: Path) -> bool:
    """No suffix, or a numeric one as in UID-named files ("1.2.840.113619.2.55")."""
    suffix = path.suffix
    return suffix == "" or suffix[1:].isdigit()


def _describe(exc: BaseException, limit: int = 200) -> str:
    """One short line for a user: the exception type and its message with lines joined.

    Lines are joined because pydicom lists each decoder plugin's failure on its own line.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = " ".join(line if line.endswith(":") else f"{line};" for line in lines).rstrip(";")
    if len(text) > limit:
        text = text[: limit - 3].rstrip() + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _check_size(path: Path, height: int, width: int, max_pixels: int) -> None:
    if height * width > max_pixels:
        raise ImageLoadError(
            path, f"image too large ({width}x{height} pixels, limit {max_pixels:,} pixels)"
        )
    if min(height, width) < _MIN_SIDE:
        raise ImageLoadError(
            path, f"image too small ({width}x{height} pixels, need at least {_MIN_SIDE} a side)"
        )


# --------------------------------------------------------------------------- Pillow


def _load_pillow(data: bytes, path: Path, max_pixels: int) -> tuple[np.ndarray, int, str]:
    img = _open_pillow(data, path)
    with img:
        kind = _PIL_KINDS.get(img.format or "")
        if kind is None:
            raise ImageLoadError(path, f"unsupported image format {img.format}")
        if getattr(img, "n_frames", 1) > 1:
            raise ImageLoadError(path, f"multi-frame {img.format} images are not supported")
        _check_size(path, img.height, img.width, max_pixels)
        try:
            img.load()
            img = ImageOps.exif_transpose(img)  # show JPEGs from phones the way viewers do
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageLoadError(
                path, f"the file is truncated or corrupt ({_describe(exc)})"
            ) from None
        pixels, bits = _pillow_to_gray(img, _png_bit_depth(data))
    return pixels, bits, kind


def _open_pillow(data: bytes, path: Path) -> Image.Image:
    try:
        # Our own max_pixels limit applies, so silence Pillow's lower bomb *warning*.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=_PIL_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(path, f"image too large ({exc})") from None
    except UnidentifiedImageError:
        raise ImageLoadError(path, _unsupported_reason(data)) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageLoadError(path, f"the file is truncated or corrupt ({_describe(exc)})") from None


def _unsupported_reason(data: bytes) -> str:
    """Tell "a GIF/BMP/... we do not take" apart from "not an image at all"."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return f"unsupported image format {img.format} (use PNG, JPEG, TIFF or DICOM)"
    except Exception:
        return "not an image (not a PNG, JPEG, TIFF or DICOM file)"


def _png_bit_depth(data: bytes) -> int | None:
    """Bit depth from the PNG IHDR chunk (byte 24), None for other formats."""
    if data.startswith(b"\x89PNG") and data[12:16] == b"IHDR" and len(data) > 24:
        return data[24]
    return None


def _pillow_to_gray(img: Image.Image, png_bits: int | None) -> tuple[np.ndarray, int]:
    """Any Pillow mode -> float32 gray in [0, 1] plus the bits per sample."""
    mode = img.mode
    if mode.startswith("I;16"):
        bits = 16
        gray = np.asarray(img).astype(np.float64) / 65535.0
    elif mode == "I":
        gray, bits = _int32_to_unit(np.asarray(img))
    elif mode == "F":
        gray, bits = _float_to_unit(np.asarray(img)), 32
    elif mode in ("1", "L"):
        bits = 1 if mode == "1" else 8
        gray = np.asarray(img.convert("L")).astype(np.float64) / 255.0
    else:
        gray, bits = _colour_to_unit(img), 8
    # A 1-4-bit PNG is widened to "L" by Pillow: report what the file really stores. (16-bit
    # colour PNGs come out of Pillow as 8-bit RGB, so 8 is the honest answer for those.)
    if png_bits is not None and png_bits < bits:
        bits = png_bits
    return np.ascontiguousarray(np.clip(gray, 0.0, 1.0), dtype=np.float32), bits


def _int32_to_unit(arr: np.ndarray) -> tuple[np.ndarray, int]:
    """Mode "I": usually 16-bit data in int32 (older Pillow PNGs, some TIFFs)."""
    arr = arr.astype(np.float64)
    if arr.size and arr.min() >= 0 and arr.max() <= 65535:
        return arr / 65535.0, 16
    return _minmax(arr), 32


def _float_to_unit(arr: np.ndarray) -> np.ndarray:
    """Mode "F": keep data already in [0, 1], otherwise min-max scale it."""
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
    if arr.size and arr.min() >= 0.0 and arr.max() <= 1.0:
        return arr
    return _minmax(arr)


def _colour_to_unit(img: Image.Image) -> np.ndarray:
    """Palette/colour/alpha -> luma; alpha is composited on black (the padding colour)."""
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    elif img.mode == "P":
        img = img.convert("RGB")
    if img.mode == "RGB":
        return np.asarray(img.convert("L")).astype(np.float64) / 255.0  # Pillow's 601 luma
    if img.mode in ("LA", "La", "PA"):
        img = img.convert("RGBA")
    if img.mode not in ("RGBA", "RGBa"):
        return np.asarray(img.convert("RGB").convert("L")).astype(np.float64) / 255.0
    rgba = np.asarray(img.convert("RGBA")).astype(np.float64) / 255.0
    return (rgba[..., :3] @ _LUMA) * rgba[..., 3]


def _minmax(arr: np.ndarray) -> np.ndarray:
    """Scale to [0, 1]; a constant image becomes all zeros rather than dividing by zero."""
    lo, hi = float(np.min(arr)), float(np.max(arr))
    if hi <= lo:
        return np.zeros_like(arr, dtype=np.float64)
    return (arr - lo) / (hi - lo)


# --------------------------------------------------------------------------- DICOM


def _load_dicom(
    data: bytes, path: Path, max_pixels: int
) -> tuple[np.ndarray, int, pydicom.Dataset]:
    ds = _read_dicom(data, path)
    _check_dicom_image(ds, path, max_pixels)
    stored = _decode_dicom_pixels(ds, path)
    pixels = _dicom_to_display(stored, ds)
    del ds.PixelData  # keep the header, drop the (large) encoded pixel data
    bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 8)
    return pixels, bits, ds


def _read_dicom(data: bytes, path: Path) -> pydicom.Dataset:
    """dcmread, falling back to force=True for files without the file meta header."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except InvalidDicomError:
        ds = _force_read(data, path)
    except Exception as exc:
        raise ImageLoadError(path, f"unreadable or truncated DICOM ({_describe(exc)})") from None
    ds.filename = str(path)
    if "TransferSyntaxUID" not in ds.file_meta:
        ds.file_meta.TransferSyntaxUID = _syntax_from_encoding(ds)
    return ds


def _force_read(data: bytes, path: Path) -> pydicom.Dataset:
    import pydicom

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception as exc:
        raise ImageLoadError(path, f"not a DICOM file ({_describe(exc)})") from None
    # force=True "reads" anything; a real dataset has at least the image geometry.
    if not any(k in ds for k in ("PixelData", "Rows", "SOPClassUID")):
        raise ImageLoadError(path, "not an image (not a PNG, JPEG, TIFF or DICOM file)")
    return ds


def _syntax_from_encoding(ds: pydicom.Dataset) -> pydicom.uid.UID:
    """The syntax pydicom detected while force-reading (usually implicit VR little endian)."""
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    implicit, little = ds.original_encoding
    if implicit is False:
        return ExplicitVRLittleEndian if little is not False else ExplicitVRBigEndian
    return ImplicitVRLittleEndian


def _check_dicom_image(ds: pydicom.Dataset, path: Path, max_pixels: int) -> None:
    """Reject what we cannot (or should not) turn into one grayscale frame, before decoding."""
    if "PixelData" not in ds:
        floats = "FloatPixelData" in ds or "DoubleFloatPixelData" in ds
        raise ImageLoadError(
            path, "float pixel data is not supported" if floats else "DICOM file has no pixel data"
        )
    frames = _int_or(ds.get("NumberOfFrames"), 1)
    if frames > 1:
        raise ImageLoadError(path, f"multi-frame DICOM ({frames} frames) is not supported")
    photometric = str(ds.get("PhotometricInterpretation") or "MONOCHROME2").strip().upper()
    samples = _int_or(ds.get("SamplesPerPixel"), 1)
    if samples > 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ImageLoadError(
            path, f"colour DICOM ({photometric}) is not supported; chest X-rays are grayscale"
        )
    rows, cols = _int_or(ds.get("Rows"), 0), _int_or(ds.get("Columns"), 0)
    if rows <= 0 or cols <= 0:
        raise ImageLoadError(path, "DICOM file has no image size (Rows/Columns)")
    _check_size(path, rows, cols, max_pixels)


def _int_or(value: object, default: int) -> int:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return default


def _decode_dicom_pixels(ds: pydicom.Dataset, path: Path) -> np.ndarray:
    syntax = ds.file_meta.TransferSyntaxUID
    try:
        arr = ds.pixel_array
    except Exception as exc:
        raise ImageLoadError(path, _decode_failure_reason(ds, syntax, exc)) from None
    if arr.ndim != 2:
        raise ImageLoadError(path, f"unexpected pixel array shape {arr.shape}")
    return arr


def _decode_failure_reason(ds: pydicom.Dataset, syntax: pydicom.uid.UID, exc: Exception) -> str:
    """Say *why* in terms a user can act on: truncated file or a syntax we cannot decode."""
    name = syntax.name if syntax.is_valid else str(syntax)
    if syntax.is_transfer_syntax and not syntax.is_compressed:
        expected = _expected_native_bytes(ds)
        got = len(ds.PixelData or b"")
        if expected and got < expected:
            return f"the file is truncated (pixel data has {got:,} of {expected:,} bytes)"
        return f"corrupt {name} pixel data ({_describe(exc)})"
    if not syntax.is_transfer_syntax:
        return f"unknown transfer syntax {syntax}"
    return f"cannot decode transfer syntax {name} ({_describe(exc)})"


def _expected_native_bytes(ds: pydicom.Dataset) -> int:
    rows, cols = _int_or(ds.get("Rows"), 0), _int_or(ds.get("Columns"), 0)
    bits = _int_or(ds.get("BitsAllocated"), 0)
    return (rows * cols * bits + 7) // 8


def _dicom_to_display(stored: np.ndarray, ds: pydicom.Dataset) -> np.ndarray:
    """Modality LUT, then VOI (or min-max), then MONOCHROME1 inversion -> float32 [0, 1]."""
    from pydicom.pixels import apply_modality_lut

    values = np.asarray(apply_modality_lut(stored, ds), dtype=np.float64)
    unit = _apply_voi(values, ds)
    if unit is None:
        unit = _stored_range_scale(values, ds)
    if str(ds.get("PhotometricInterpretation", "")).strip().upper() == "MONOCHROME1":
        unit = 1.0 - unit  # MONOCHROME1: low values are bright; we always show dense as bright
    return np.ascontiguousarray(np.clip(unit, 0.0, 1.0), dtype=np.float32)


def _apply_voi(values: np.ndarray, ds: pydicom.Dataset) -> np.ndarray | None:
    """VOI LUT or the first window, scaled to [0, 1]; None when absent or unusable."""
    from pydicom.pixels import apply_voi_lut

    has_window = ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None
    if not (ds.get("VOILUTSequence") or has_window):
        return None
    try:
        out = np.asarray(apply_voi_lut(values, ds, index=0), dtype=np.float64)
        lo, hi = _voi_output_range(ds, apply_voi_lut)
    except (ValueError, TypeError, IndexError, KeyError, AttributeError):
        return None  # a broken VOI header should not make the image unreadable
    if hi <= lo:
        return None
    return (out - lo) / (hi - lo)


def _voi_output_range(ds: pydicom.Dataset, apply: Callable[..., np.ndarray]) -> tuple[float, float]:
    """The range the VOI maps into, so scaling to [0, 1] does not depend on the image content.

    For a LUT: the span of its table, found by running its whole input domain through pydicom
    (descriptors often misstate the output bit depth). For a window: probe pydicom with values
    far outside the window on both sides.
    """
    voi = ds.get("VOILUTSequence")
    if voi and voi[0].get("LUTDescriptor") is not None:
        entries, first_mapped = int(voi[0].LUTDescriptor[0]), int(voi[0].LUTDescriptor[1])
        domain = np.arange(first_mapped, first_mapped + (entries or 65536), dtype=np.float64)
        table = np.asarray(apply(domain, ds, index=0), dtype=np.float64)
        return float(table.min()), float(table.max())
    center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
    far = 20.0 * max(abs(width), 1.0)  # 20 widths out: even a sigmoid is saturated
    probe = np.array([center - far, center + far], dtype=np.float64)
    edges = np.asarray(apply(probe, ds, index=0), dtype=np.float64)
    return float(edges.min()), float(edges.max())


def _first(value: object) -> float:
    """First value of a possibly multi-valued DS element."""
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        value = value[0]  # type: ignore[index]
    return float(value)  # type: ignore[arg-type]


def _stored_range_scale(values: np.ndarray, ds: pydicom.Dataset) -> np.ndarray:
    """No VOI: 8-bit data keeps its fixed range (so it matches the same image as PNG);
    deeper data is min-max scaled, because 12-16-bit files rarely use their full range."""
    bits = _int_or(ds.get("BitsStored"), 16)
    if bits > 8:
        return _minmax(values)
    from pydicom.pixels import apply_modality_lut

    signed = _int_or(ds.get("PixelRepresentation"), 0) == 1
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    full = np.asarray(apply_modality_lut(np.arange(lo, hi + 1), ds), dtype=np.float64)
    fmin, fmax = float(full.min()), float(full.max())
    if fmax <= fmin:
        return _minmax(values)
    return (values - fmin) / (fmax - fmin)


# --------------------------------------------------------------------------- finding files


def find_images(root: str | Path) -> list[Path]:
    """All loadable-looking files under ``root`` (recursive, sorted).

    Files with a supported suffix, plus files without a suffix (or with a numeric one, as in
    UID-named DICOM files) that start with the DICOM "DICM" preamble. Hidden files and folders
    are skipped, as is the DICOMDIR index (it has no image).
    """
    root = Path(root)
    if root.is_file():
        return [root] if _is_candidate(root) else []
    found: list[Path] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]  # prune hidden folders
        for name in files:
            path = Path(folder) / name
            if not name.startswith(".") and _is_candidate(path):
                found.append(path)
    return sorted(found)


def _is_candidate(path: Path) -> bool:
    if path.suffix.lower() in SUPPORTED_SUFFIXES:
        return True
    if path.name.upper() == "DICOMDIR" or not _is_dicom_like_name(path):
        return False
    return _has_dicm_preamble(path)


def _has_dicm_preamble(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            head = fh.read(132)
    except OSError:
        return False  # unreadable: load_image will explain why if asked
    return head[128:132] == b"DICM"


# --------------------------------------------------------------------------- model frame


@dataclass(frozen=True)
class Placement:
    """Where the resized image sits inside the square model frame."""

    scale: float  # frame pixels per original pixel
    top: int
    left: int
    height: int  # size of the resized image inside the frame
    width: int


def to_square(pixels: np.ndarray, size: int) -> tuple[np.ndarray, Placement]:
    """Aspect-preserving resize (long side -> ``size``), centred, black-padded to size x size."""
    pixels = np.asarray(pixels)
    if pixels.ndim != 2 or min(pixels.shape) < 1:
        raise ValueError(f"expected a non-empty 2-D image, got shape {pixels.shape}")
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    h, w = pixels.shape
    scale = size / max(h, w)
    new_h, new_w = _scaled_side(h, scale, size), _scaled_side(w, scale, size)
    resized = _resize(pixels.astype(np.float32, copy=False), new_h, new_w, scale)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    frame = np.zeros((size, size), dtype=np.float32)
    frame[top : top + new_h, left : left + new_w] = resized
    return frame, Placement(scale, top, left, new_h, new_w)


def _scaled_side(side: int, scale: float, size: int) -> int:
    return min(size, max(1, round(side * scale)))


def _resize(pixels: np.ndarray, new_h: int, new_w: int, scale: float) -> np.ndarray:
    """Antialiased resize in float: BOX averages when shrinking, BICUBIC when enlarging."""
    if (new_h, new_w) == pixels.shape:
        return np.clip(pixels, 0.0, 1.0)
    resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.BICUBIC
    img = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.float32))  # mode "F"
    out = np.asarray(img.resize((new_w, new_h), resample=resample), dtype=np.float32)
    return np.clip(out, 0.0, 1.0)  # bicubic overshoots at edges


def from_square(frame: np.ndarray, placement: Placement) -> np.ndarray:
    """Crop the padding off a model frame (leading axes such as channels are kept)."""
    frame = np.asarray(frame)
    p = placement
    if frame.ndim < 2 or frame.shape[-2] < p.top + p.height or frame.shape[-1] < p.left + p.width:
        raise ValueError(f"frame of shape {frame.shape} does not contain {placement}")
    return frame[..., p.top : p.top + p.height, p.left : p.left + p.width]


# --------------------------------------------------------------------------- saving


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """[0, 1] -> 0..255, round half to even, clipped; NaN becomes 0."""
    return _quantise(pixels, 255, np.uint8)


def to_uint16(pixels: np.ndarray) -> np.ndarray:
    """[0, 1] -> 0..65535, round half to even, clipped; NaN becomes 0."""
    return _quantise(pixels, 65535, np.uint16)


def _quantise(pixels: np.ndarray, top: int, dtype: type[np.unsignedinteger]) -> np.ndarray:
    arr = np.nan_to_num(np.asarray(pixels, dtype=np.float64), nan=0.0)
    return np.rint(np.clip(arr, 0.0, 1.0) * top).astype(dtype)  # np.rint rounds half to even


def save_png(
    pixels: np.ndarray, path: str | Path, *, bits: int = 8, overwrite: bool = False
) -> None:
    """Write a [0, 1] grayscale image as an 8- or 16-bit PNG, atomically.

    Raises FileExistsError if ``path`` exists and ``overwrite`` is False.
    """
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits}")
    arr = np.asarray(pixels)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image, got shape {arr.shape}")
    quantised = to_uint8(arr) if bits == 8 else to_uint16(arr)
    buffer = io.BytesIO()
    Image.fromarray(quantised).save(buffer, format="PNG")  # mode "L" or "I;16"
    atomic_write_bytes(path, buffer.getvalue(), overwrite=overwrite)


def atomic_write_bytes(path: str | Path, data: bytes, *, overwrite: bool = False) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder.

    Readers never see a partial file. Without ``overwrite`` an existing file is never
    replaced (FileExistsError), even if it appears while we write. No temp file is left behind.
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise FileExistsError(f"{path} already exists")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    fd = os.open(tmp, flags, 0o666)  # 0o666 & umask: same permissions as a normal new file
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        _move_into_place(tmp, path, overwrite)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _move_into_place(tmp: Path, path: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # atomic and fails if path exists: no check-then-replace race
    except FileExistsError:
        raise FileExistsError(f"{path} already exists") from None
    except OSError:  # filesystem without hard links: best effort
        if path.exists():
            raise FileExistsError(f"{path} already exists") from None
        os.replace(tmp, path)
