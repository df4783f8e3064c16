"""Strict PNG: the image data must hold every row its header declares.

Pillow stops quietly when the compressed image data (the IDAT chunks) ends early but
correctly, as when a stream holding half the rows was written and closed: the missing rows
come back black, with no error. So before a PNG is decoded its chunks are walked (with
Pillow's own chunk reader, which checks every chunk's CRC, the image data's included) and the
image data is inflated once, without keeping it, to check that it is a complete zlib stream
of exactly the size the header implies (per Adam7 pass when interlaced).
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

from PIL.PngImagePlugin import ChunkStream

from glow_engine.imaging.errors import ImageLoadError

CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # PNG colour type -> samples per pixel
# Adam7 passes: (first column, first row, column step, row step)
ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
         (0, 1, 1, 2))
_BLOCK = 1 << 20  # inflate in pieces of at most this much: memory stays bounded


def check_png(data: bytes, path: Path) -> None:
    """ImageLoadError unless `data`'s image data is intact and holds every declared row."""
    fp = io.BytesIO(data)
    fp.seek(8)
    stream = ChunkStream(fp)
    expected, inflate, got = None, zlib.decompressobj(), 0
    try:
        while True:
            cid, _, length = stream.read()
            body = fp.read(length)
            if len(body) < length:
                raise ImageLoadError(path, "the file is truncated (it ends inside a chunk)")
            stream.crc(cid, body)
            if cid == b"IHDR":
                expected = _expected_bytes(body)
            elif cid == b"IDAT":
                got += _inflated_size(inflate, body, path)
                if expected is not None and got > expected:
                    break  # too much data: said below, without inflating the rest
            elif cid == b"IEND":
                break
    except (SyntaxError, struct.error, ValueError, EOFError) as exc:
        raise ImageLoadError(path, f"the file is truncated or corrupt ({exc})") from None
    if expected is not None and (got != expected or not inflate.eof):
        raise ImageLoadError(path, f"the image data is incomplete or corrupt (it holds {got:,} "
                             f"of the {expected:,} bytes its header declares)")


def _inflated_size(inflate: zlib._Decompress, body: bytes, path: Path) -> int:
    size = 0
    try:
        while body and not inflate.eof:
            size += len(inflate.decompress(body, _BLOCK))
            body = inflate.unconsumed_tail
    except zlib.error as exc:
        raise ImageLoadError(path, f"the image data is corrupt ({exc})") from None
    return size


def _expected_bytes(ihdr: bytes) -> int:
    """Size of the filtered image data: one filter byte per row, per Adam7 pass."""
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", ihdr[:13])
    bits = depth * CHANNELS.get(colour, 1)
    passes = ADAM7 if interlace else ((0, 0, 1, 1),)
    total = 0
    for x0, y0, dx, dy in passes:
        cols, rows = -(-(width - x0) // dx), -(-(height - y0) // dy)
        if cols > 0 and rows > 0:
            total += rows * (1 + -(-cols * bits // 8))
    return total
