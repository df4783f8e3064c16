"""Strict JPEG: what a JPEG codestream must show before its pixels are trusted.

A JPEG decoder fills what it cannot read with grey and carries on: libjpeg-turbo (through
Pillow) and libjpeg (through pylibjpeg) both return a picture for a scan cut short and closed
with an end marker, for a run of zeroed or dropped scan bytes, or for Huffman-coded data
under an arithmetic-coding (SOF9) header, each with only a warning that neither wrapper
passes on. So a codestream is accepted only when

* its frame header (SOF) is one of the coding processes the caller allows (plain JPEG files:
  the Huffman baseline, extended and progressive processes; a DICOM JPEG transfer syntax: the
  processes it names), with the geometry the caller expects;
* it ends with its end-of-image marker (a cut file does not);
* for 8-bit Huffman lossy codestreams, two independent decoders succeed and agree (each
  refuses, or disagrees with the other about, different kinds of damage: the cases are in
  tests/test_bad_inputs.py).

JPEG carries no checksum: damage that both decoders read as valid data (a run of zero bytes
inside a small scan decodes as valid Huffman codes in both) cannot be told from a picture.
"""

from __future__ import annotations

import io
import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from glow_engine.imaging.errors import ImageLoadError, describe

# SOF marker -> the coding process, as ITU-T T.81 Table B.1 (and T.87 for JPEG-LS) name them
PROCESSES = {0xC0: "baseline", 0xC1: "extended Huffman", 0xC2: "progressive Huffman",
             0xC3: "lossless Huffman", 0xC5: "differential sequential Huffman",
             0xC6: "differential progressive Huffman", 0xC7: "differential lossless Huffman",
             0xC9: "extended arithmetic", 0xCA: "progressive arithmetic",
             0xCB: "lossless arithmetic", 0xCD: "differential sequential arithmetic",
             0xCE: "differential progressive arithmetic",
             0xCF: "differential lossless arithmetic", 0xF7: "JPEG-LS"}
HUFFMAN_LOSSY = frozenset({0xC0, 0xC1, 0xC2})  # what plain .jpg files are accepted with
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RSTn: markers without a length
# Mean absolute difference, in 8-bit levels, below which two decodings are the same picture:
# valid files differ by the decoders' IDCT and colour rounding (grey 0.01-0.04 levels, colour
# 0.4-0.6 on X-rays and noise at every chroma subsampling), damaged ones by tens of levels.
_AGREE_LEVELS = 2.0


def check_jpeg(data: bytes, path: Path, allowed: frozenset[int],
               shape: tuple[int, int] | None = None) -> None:
    """ImageLoadError unless `data` is a whole codestream of an `allowed` process (with the
    `shape` (rows, columns) given) that the two decoders read alike (8-bit data only)."""
    marker, precision, rows, cols = _frame_header(data, path)
    if marker not in allowed:
        raise ImageLoadError(path, f"JPEG coding process {PROCESSES.get(marker, hex(marker))} "
                             f"(SOF{marker - 0xC0 if marker < 0xF0 else 55}) is not supported "
                             "here; it cannot be decoded faithfully")
    if shape is not None and (rows, cols) != shape:
        raise ImageLoadError(path, f"the JPEG data is {cols}x{rows} pixels but the header says "
                             f"{shape[1]}x{shape[0]}")
    if not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        raise ImageLoadError(path, "the JPEG data is truncated (it has no end-of-image marker)")
    if precision == 8 and marker in HUFFMAN_LOSSY:  # what both decoders read
        _check_agreement(data, path)


def _frame_header(data: bytes, path: Path) -> tuple[int, int, int, int]:
    """(SOF marker, precision, rows, columns) of the first frame header."""
    if not data.startswith(b"\xff\xd8"):
        raise ImageLoadError(path, "the JPEG data does not start with a start-of-image marker")
    offset = 2
    try:
        while True:
            while data[offset + 1] == 0xFF:  # fill bytes before a marker
                offset += 1
            if data[offset] != 0xFF:
                raise ImageLoadError(path, "the JPEG header is corrupt")
            marker = data[offset + 1]
            if marker in _STANDALONE:
                offset += 2
                continue
            (length,) = struct.unpack(">H", data[offset + 2:offset + 4])
            if marker in PROCESSES:
                precision, rows, cols = struct.unpack(">BHH", data[offset + 4:offset + 9])
                return marker, precision, rows, cols
            if marker in (0xD9, 0xDA) or length < 2:  # EOI or a scan before any frame header
                raise ImageLoadError(path, "the JPEG data has no frame header")
            offset += 2 + length
    except (IndexError, struct.error):
        raise ImageLoadError(path, "the JPEG header is truncated") from None


def _check_agreement(data: bytes, path: Path) -> None:
    first, transform = _decode_pillow(data, path)
    second = _decode_libjpeg(data, path, transform)
    if first.shape != second.shape:
        raise ImageLoadError(path, f"the JPEG data is damaged (its decoders disagree about its "
                             f"shape: {first.shape} and {second.shape})")
    difference = float(np.mean(np.abs(first.astype(np.float64) - second)))
    if difference > _AGREE_LEVELS:
        raise ImageLoadError(path, f"the JPEG data is damaged (two decoders read it "
                             f"{difference:.1f} grey levels apart on average)")


def _decode_pillow(data: bytes, path: Path) -> tuple[np.ndarray, int]:
    """libjpeg-turbo's pixels, and the colour transform libjpeg must apply to match them."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data), formats=("JPEG",)) as img:
                img.load()
                mode, info, pixels = img.mode, img.info, np.asarray(img)
    except Exception as exc:
        raise ImageLoadError(path, f"the JPEG data is damaged ({describe(exc)})") from None
    if mode not in ("L", "RGB"):  # CMYK, YCCK: print colour spaces, never an X-ray
        raise ImageLoadError(path, f"{mode} JPEG images are not supported (use grayscale)")
    plain_rgb = info.get("adobe") is not None and info.get("adobe_transform") == 0
    return pixels, int(mode == "RGB" and not plain_rgb)  # 1: YCbCr to RGB


def _decode_libjpeg(data: bytes, path: Path, transform: int) -> np.ndarray:
    from libjpeg import decode  # pylibjpeg-libjpeg: Thomas Richter's libjpeg

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(decode(data, colour_transform=transform))
    except Exception as exc:
        raise ImageLoadError(path, f"the JPEG data is damaged ({describe(exc)})") from None
