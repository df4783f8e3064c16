"""The one image reader and writer of DP-GLOW, shared by the CLI, training and the viewer.

Qt-free and torch-free: NumPy arrays, Pillow and pydicom. Every image becomes a ``float32``
array of shape ``(H, W)`` in ``[0, 1]``, in *display convention* (bright = dense tissue, DICOM
MONOCHROME2). One module per step:

- :mod:`~glow_engine.imaging.load`: :func:`load_image`, the entry point (reads, hashes, dispatches)
- :mod:`~glow_engine.imaging.pillow`, :mod:`~glow_engine.imaging.dicom`: the two decoders
- :mod:`~glow_engine.imaging.errors`: :class:`ImageLoadError` and the size limits
- :mod:`~glow_engine.imaging.discovery`: finding image files in a folder tree
- :mod:`~glow_engine.imaging.frame`: the square model frame (``to_square`` / ``from_square``)
- :mod:`~glow_engine.imaging.pixels`: value scaling (``to_uint8``, ``to_uint16``)
- :mod:`~glow_engine.imaging.write`: ``save_png``, atomic

The loader is the package's front door, so its three names are importable from here.
"""

from glow_engine.imaging.errors import ImageLoadError
from glow_engine.imaging.load import LoadedImage, load_image

__all__ = ["ImageLoadError", "LoadedImage", "load_image"]
