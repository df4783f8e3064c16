"""PNG, JPEG and TIFF through Pillow, to grayscale ``float32`` in ``[0, 1]``.

Colour is reduced to ITU-R 601 luma, alpha is composited on black, 16-bit data keeps its
precision, and JPEGs are turned the way their EXIF orientation says.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from glow_engine.imaging.errors import ImageLoadError, check_size, describe
from glow_engine.imaging.jpeg import HUFFMAN_LOSSY, check_jpeg
from glow_engine.imaging.pixels import minmax
from glow_engine.imaging.png import check_png

_PIL_FORMATS = ("PNG", "JPEG", "TIFF")
_TIFF_JPEG = (6, 7)  # TIFF Compression: old-style and new-style JPEG
_PIL_KINDS = {"PNG": "png", "JPEG": "jpeg", "MPO": "jpeg", "TIFF": "tiff"}
# ITU-R BT.601 luma weights, the same as Pillow's convert("L").
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)


def load_pillow(data: bytes, path: Path, max_pixels: int
                ) -> tuple[np.ndarray, int, str, bool]:
    with _refusing_warnings(path):
        img = _open_pillow(data, path)
        with img:
            kind = _PIL_KINDS.get(img.format or "")
            if kind is None:
                raise ImageLoadError(path, f"unsupported image format {img.format}")
            if getattr(img, "n_frames", 1) > 1:
                raise ImageLoadError(path, f"multi-frame {img.format} images are not supported")
            check_size(path, img.height, img.width, max_pixels)
            _check_strictly(data, path, kind, img)
            white_is_zero = kind == "tiff" and img.tag_v2.get(262) == 0
            try:
                img.load()
                img = ImageOps.exif_transpose(img)  # show JPEGs from phones as viewers do
            except (OSError, SyntaxError, ValueError, EOFError) as exc:
                raise ImageLoadError(
                    path, f"the file is truncated or corrupt ({describe(exc)})"
                ) from None
            pixels, bits = _pillow_to_gray(img, _png_bit_depth(data), path)
            if white_is_zero and img.mode not in ("1", "L"):  # Pillow inverts those itself
                pixels = 1.0 - pixels
            colour = _has_colour(img)
    return pixels, bits, kind, colour


@contextmanager
def _refusing_warnings(path: Path) -> Iterator[None]:
    """A warning from Pillow while it reads a file (corrupt EXIF, so an orientation it
    skipped; data it could not place) is a refusal: the picture may not be the file's."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    meant = [w for w in caught if not issubclass(w.category, Image.DecompressionBombWarning)]
    if meant:
        said = " ".join(str(meant[0].message).split())
        raise ImageLoadError(path, f"it cannot be read faithfully (Pillow: {said})")


def _check_strictly(data: bytes, path: Path, kind: str, img: Image.Image) -> None:
    """What Pillow would decode without a word though pixels are missing or misread."""
    if kind == "png":
        check_png(data, path)
    elif kind == "jpeg":
        check_jpeg(data, path, HUFFMAN_LOSSY)
    elif kind == "tiff" and img.tag_v2.get(259) in _TIFF_JPEG:
        # libtiff decodes a damaged JPEG strip to garbage with only a message on stderr
        raise ImageLoadError(path, "JPEG-compressed TIFF is not supported (damage to it "
                             "cannot be detected): use PNG, JPEG, uncompressed or losslessly "
                             "compressed TIFF, or DICOM")


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
        raise ImageLoadError(path, f"the file is truncated or corrupt ({describe(exc)})") from None


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


def _pillow_to_gray(img: Image.Image, png_bits: int | None, path: Path
                    ) -> tuple[np.ndarray, int]:
    """Any Pillow mode -> float32 gray in [0, 1] plus the bits per sample."""
    mode = img.mode
    if mode.startswith("I;16"):
        bits = 16
        gray = np.asarray(img).astype(np.float64) / 65535.0
    elif mode == "I":
        gray, bits = _int32_to_unit(np.asarray(img))
    elif mode == "F":
        gray, bits = _float_to_unit(np.asarray(img), path), 32
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


_COLOUR_MODES = frozenset({"RGB", "RGBA", "RGBa", "RGBX", "P", "PA", "CMYK", "YCbCr", "LAB",
                           "HSV"})
_SAMPLE_PIXELS = 1_000_000  # enough to tell colour from grey; bounds the check's memory
# Sum of the two channel differences (8-bit) that 1 % of the pixels exceed: a grey picture
# saved as colour JPEG stays far below (chroma noise of a few levels), a colour one far above.
_COLOUR_SPREAD = 12


def _has_colour(img: Image.Image) -> bool:
    """Whether a colour-mode image really holds colour (its channels differ), not grey stored
    as RGB. The model sees the luma only, so the out-of-distribution check reports colour."""
    if img.mode not in _COLOUR_MODES:
        return False
    if img.mode in ("P", "PA"):
        img = img.convert("RGBA")
    step = max(1, int(np.ceil(np.sqrt(img.width * img.height / _SAMPLE_PIXELS))))
    rgb = np.asarray((img.reduce(step) if step > 1 else img).convert("RGB"), dtype=np.int16)
    spread = np.abs(rgb[..., 0] - rgb[..., 1]) + np.abs(rgb[..., 1] - rgb[..., 2])
    return bool(spread.size and np.percentile(spread, 99) > _COLOUR_SPREAD)


def _int32_to_unit(arr: np.ndarray) -> tuple[np.ndarray, int]:
    """Mode "I": usually 16-bit data in int32 (older Pillow PNGs, some TIFFs)."""
    arr = arr.astype(np.float64)
    if arr.size and arr.min() >= 0 and arr.max() <= 65535:
        return arr / 65535.0, 16
    return minmax(arr), 32


def _float_to_unit(arr: np.ndarray, path: Path) -> np.ndarray:
    """Mode "F": keep data already in [0, 1], otherwise min-max scale it."""
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ImageLoadError(path, "the image holds NaN or infinite values")
    if arr.size and arr.min() >= 0.0 and arr.max() <= 1.0:
        return arr
    return minmax(arr)


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
