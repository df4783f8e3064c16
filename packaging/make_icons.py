"""Render resources/icons/app.svg into the platform icons of the build and the Linux menu entry.

    QT_QPA_PLATFORM=offscreen python packaging/make_icons.py

writes resources/icons/dpglow.ico (Windows executables), dpglow.icns (macOS .app) and
dpglow.png (256 px, the Linux .desktop entry). The outputs are committed, so a build never needs
this script; run it again after editing app.svg (tests/test_packaging.py checks they agree).
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

from PIL import Image

ICONS = Path(__file__).resolve().parents[1] / "resources" / "icons"
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
RENDER_SIZE = 1024  # icns carries up to 512@2x


def render_svg(svg: Path, size: int) -> Image.Image:
    """Rasterise with Qt's SVG renderer (the one that draws the icon in the running app)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    _app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    QSvgRenderer(str(svg)).render(painter)
    painter.end()
    data = QByteArray()
    buf = QBuffer(data)
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buf, "PNG")
    return Image.open(io.BytesIO(bytes(data))).convert("RGBA")


def main() -> int:
    big = render_svg(ICONS / "app.svg", RENDER_SIZE)
    big.save(ICONS / "dpglow.ico", sizes=[(s, s) for s in ICO_SIZES])
    big.save(ICONS / "dpglow.icns")
    big.resize((256, 256), Image.Resampling.LANCZOS).save(ICONS / "dpglow.png", optimize=True)
    for name in ("dpglow.ico", "dpglow.icns", "dpglow.png"):
        print(f"wrote {ICONS / name} ({(ICONS / name).stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
