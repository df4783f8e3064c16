"""DICOM through pydicom 3, to grayscale ``float32`` in ``[0, 1]``, bright = dense.

The stored values go through the modality LUT (RescaleSlope/Intercept), then the VOI LUT or
the first Window Center/Width; without a VOI they are min-max scaled (8-bit data keeps its
fixed 0..255 range, like a PNG). MONOCHROME1 is inverted. Only single-frame grayscale images
are accepted. pydicom is imported on first use.

Decoding is strict: what pydicom would read without a word though it cannot be right is
refused with a reason. Native pixel data must be exactly as long as Rows x Columns x
BitsAllocated say (pydicom crops or reshapes otherwise) and must not be encapsulated; an
encapsulated JPEG frame must be whole and of the coding process and size its transfer syntax
and header name (glow_engine.imaging.jpeg); a decoder's warning is a refusal; a rescale that
is not finite or overflows is refused. A window that is not finite is ignored like any other
unusable VOI header.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from glow_engine.imaging.errors import ImageLoadError, check_size, describe
from glow_engine.imaging.jpeg import check_jpeg
from glow_engine.imaging.pixels import minmax

if TYPE_CHECKING:
    import pydicom

DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
_PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"  # (7FE0,0010) in little-endian byte order
_ITEM_TAG = b"\xfe\xff\x00\xe0"  # (FFFE,E000): the first item of encapsulated data
# JPEG transfer syntaxes -> the coding processes (SOF markers) each one names
_JPEG_PROCESSES = {
    "1.2.840.10008.1.2.4.50": frozenset({0xC0}),  # JPEG Baseline (Process 1)
    "1.2.840.10008.1.2.4.51": frozenset({0xC0, 0xC1}),  # JPEG Extended (Process 2 & 4)
    "1.2.840.10008.1.2.4.57": frozenset({0xC3}),  # JPEG Lossless (Process 14)
    "1.2.840.10008.1.2.4.70": frozenset({0xC3}),  # JPEG Lossless, first-order prediction
    "1.2.840.10008.1.2.4.80": frozenset({0xF7}),  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81": frozenset({0xF7}),  # JPEG-LS Near-Lossless
}


def looks_like_dicom(data: bytes, path: Path) -> bool:
    """DICOM by its "DICM" magic, or by suffix/no suffix when not a known raster format."""
    if data[128:132] == b"DICM":
        return True
    if data.startswith((b"\x89PNG", b"\xff\xd8", b"II*\x00", b"MM\x00*")):
        return False
    # Files without file meta have no magic at all: trust a DICOM-like name.
    return path.suffix.lower() in DICOM_SUFFIXES or is_dicom_like_name(path)


def is_dicom_like_name(path: Path) -> bool:
    """No suffix, or a numeric one as in UID-named files ("1.2.840.113619.2.55")."""
    suffix = path.suffix
    return suffix == "" or suffix[1:].isdigit()


def load_dicom(
    data: bytes, path: Path, max_pixels: int
) -> tuple[np.ndarray, int, pydicom.Dataset]:
    with warnings.catch_warnings():
        # pydicom warns about every header oddity it tolerates: the user gets one error or none
        warnings.simplefilter("ignore")
        ds = _read_dicom(data, path)
        if "PixelData" not in ds and _PIXEL_DATA_TAG in data:  # the reader stopped inside it
            raise ImageLoadError(path, "the file is truncated (it ends inside its pixel data)")
        _check_dicom_image(ds, path, max_pixels)
        _check_pixel_data(ds, path)
    stored = _decode_dicom_pixels(ds, path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pixels = _dicom_to_display(stored, ds, path)
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
        raise ImageLoadError(path, f"unreadable or truncated DICOM ({describe(exc)})") from None
    ds.filename = str(path)
    if "TransferSyntaxUID" not in ds.file_meta:
        ds.file_meta.TransferSyntaxUID = _syntax_from_encoding(ds)
    return ds


def _force_read(data: bytes, path: Path) -> pydicom.Dataset:
    import pydicom

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception as exc:
        raise ImageLoadError(path, f"not a DICOM file ({describe(exc)})") from None
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
    check_size(path, rows, cols, max_pixels)


def _check_pixel_data(ds: pydicom.Dataset, path: Path) -> None:
    """The pixel data is what its transfer syntax and image header say it is."""
    syntax = ds.file_meta.TransferSyntaxUID
    element = ds["PixelData"]
    encapsulated = element.is_undefined_length or bytes(ds.PixelData[:4]) == _ITEM_TAG
    if syntax.is_transfer_syntax and not syntax.is_compressed:
        if encapsulated:
            raise ImageLoadError(path, f"the pixel data is encapsulated (compressed) but the "
                                 f"transfer syntax {syntax.name} says it is not")
        expected, got = _expected_native_bytes(ds), len(ds.PixelData)
        if got < expected:
            raise ImageLoadError(path, f"the file is truncated (pixel data has {got:,} of "
                                 f"{expected:,} bytes)")
        if got > expected + expected % 2:  # an odd length is padded to an even one
            raise ImageLoadError(path, f"the pixel data has {got:,} bytes but Rows x Columns "
                                 f"x BitsAllocated say {expected:,}: the header does not match "
                                 "the data")
    elif syntax in _JPEG_PROCESSES:
        check_jpeg(_first_frame(ds, path), path, _JPEG_PROCESSES[syntax],
                   shape=(int(ds.Rows), int(ds.Columns)))


def _first_frame(ds: pydicom.Dataset, path: Path) -> bytes:
    from pydicom.encaps import generate_frames

    try:
        return next(generate_frames(ds.PixelData, number_of_frames=1))
    except Exception as exc:
        raise ImageLoadError(path, f"the encapsulated pixel data is corrupt "
                             f"({describe(exc)})") from None


def _int_or(value: object, default: int) -> int:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return default


def _decode_dicom_pixels(ds: pydicom.Dataset, path: Path) -> np.ndarray:
    """The stored values; a decoder's warning (damaged data it read anyway) is a refusal."""
    syntax = ds.file_meta.TransferSyntaxUID
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            arr = ds.pixel_array
    except Warning as warning:
        raise ImageLoadError(path, f"the pixel data cannot be decoded faithfully "
                             f"({describe(warning)})") from None
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
        return f"corrupt {name} pixel data ({describe(exc)})"
    if not syntax.is_transfer_syntax:
        return f"unknown transfer syntax {syntax}"
    return f"cannot decode transfer syntax {name} ({describe(exc)})"


def _expected_native_bytes(ds: pydicom.Dataset) -> int:
    rows, cols = _int_or(ds.get("Rows"), 0), _int_or(ds.get("Columns"), 0)
    bits = _int_or(ds.get("BitsAllocated"), 0)
    return (rows * cols * bits + 7) // 8


def _dicom_to_display(stored: np.ndarray, ds: pydicom.Dataset, path: Path) -> np.ndarray:
    """Modality LUT, then VOI (or min-max), then MONOCHROME1 inversion -> float32 [0, 1]."""
    from pydicom.pixels import apply_modality_lut

    for keyword in ("RescaleSlope", "RescaleIntercept"):
        if keyword in ds and not _finite_number(ds.get(keyword)):
            raise ImageLoadError(path, f"{keyword} is not a finite number "
                                 f"({ds.get(keyword)!s:.20})")
    with np.errstate(over="ignore", invalid="ignore"):
        values = np.asarray(apply_modality_lut(stored, ds), dtype=np.float64)
        span = float(values.max()) - float(values.min()) if values.size else 0.0
    if not (np.all(np.isfinite(values)) and np.isfinite(span)):
        raise ImageLoadError(path, "the rescaled values (RescaleSlope/Intercept or the "
                             "modality LUT) overflow")
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
    if has_window and not ds.get("VOILUTSequence") and not all(
            _finite_number(_first_or_none(ds.get(k))) for k in ("WindowCenter", "WindowWidth")):
        return None  # a NaN or infinite window is as unusable as a missing one
    try:
        out = np.asarray(apply_voi_lut(values, ds, index=0), dtype=np.float64)
        lo, hi = _voi_output_range(ds, apply_voi_lut)
    except (ValueError, TypeError, IndexError, KeyError, AttributeError):
        return None  # a broken VOI header should not make the image unreadable
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo and np.all(np.isfinite(out))):
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


def _finite_number(value: object) -> bool:
    try:
        return bool(np.isfinite(float(value)))  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return False


def _first_or_none(value: object) -> object:
    try:
        return _first(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


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
        return minmax(values)
    from pydicom.pixels import apply_modality_lut

    signed = _int_or(ds.get("PixelRepresentation"), 0) == 1
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    full = np.asarray(apply_modality_lut(np.arange(lo, hi + 1), ds), dtype=np.float64)
    fmin, fmax = float(full.min()), float(full.max())
    if fmax <= fmin:
        return minmax(values)
    return (values - fmin) / (fmax - fmin)
