"""Entry script of the PyInstaller build: one analysed program, two executables.

`packaging/dpglow.spec` builds this script twice into the same folder, as `dpglow-viewer`
(the viewer, `app.__main__:main`) and `dpglow` (the command line, `glow_engine.cli:main`),
sharing one copy of Python, torch and Qt. Which of the two runs is decided by the name of the
executable, like busybox; DPGLOW_ENTRY=viewer|cli overrides it. DPGLOW_ENTRY=selfcheck runs
`selfcheck()` instead: it checks what PyInstaller tends to miss (pydicom's JPEG / JPEG 2000
plugins found through entry points, the bundled resources, Qt's platform plugins) and is run by
packaging/build.sh against the built executable.
"""

from __future__ import annotations

import os
import sys

ENTRIES = {
    "viewer": "app.__main__",  # pyproject: dpglow-viewer = "app.__main__:main"
    "cli": "glow_engine.cli",  # pyproject: dpglow = "glow_engine.cli:main"
    "selfcheck": "launcher.selfcheck",  # packaging check, see selfcheck()
}
CLI_NAMES = {"dpglow", "dpglow-cli"}


def pick_entry(executable: str) -> str:
    """'cli' or 'viewer' for an executable path such as /opt/dpglow-viewer/dpglow.exe."""
    forced = os.environ.get("DPGLOW_ENTRY", "").strip().lower()
    if forced in ENTRIES:
        return forced
    stem = os.path.splitext(os.path.basename(executable))[0].lower()
    return "cli" if stem in CLI_NAMES else "viewer"


def _dicom_roundtrip(syntax: str) -> str:
    """Encode a small 8-bit image with `syntax`, decode it with the plugin the program uses for
    it (pylibjpeg for JPEG / JPEG 2000, pydicom's own for RLE), compare."""
    import io

    import numpy as np
    from pydicom import uid
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.pixels import pixel_array

    img = (np.add.outer(np.arange(32), np.arange(32)) * 4).astype(np.uint8)
    plugin = "pydicom" if syntax == uid.RLELossless else "pylibjpeg"
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = uid.SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = uid.generate_uid()
    ds.SOPClassUID, ds.SOPInstanceUID = uid.SecondaryCaptureImageStorage, uid.generate_uid()
    ds.Rows, ds.Columns = img.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if syntax == uid.JPEGBaseline8Bit:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=95)
        ds.PixelData = encapsulate([buf.getvalue()])
        ds.file_meta.TransferSyntaxUID = syntax
        tol = 8
    else:
        ds.file_meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
        ds.PixelData = img.tobytes()
        ds.compress(syntax, encoding_plugin=plugin)
        tol = 0
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    # Name the plugin: Pillow could also decode JPEGs, which would hide a missing pylibjpeg.
    back = pixel_array(io.BytesIO(out.getvalue()), decoding_plugin=plugin)
    err = int(np.abs(back.astype(int) - img.astype(int)).max())
    if err > tol:
        raise RuntimeError(f"decoded image differs by {err}")
    return f"ok (max error {err})"


def selfcheck() -> int:
    """Report what the frozen program finds; exit 1 if a DICOM codec or Qt platform is missing."""
    failures = 0

    def line(what: str, fn) -> None:
        nonlocal failures
        try:
            print(f"  {what:<28} {fn()}")
        except Exception as e:  # report every check, then fail
            failures += 1
            print(f"  {what:<28} FAILED: {type(e).__name__}: {e}")

    from importlib import metadata

    frozen = getattr(sys, "frozen", False)
    print(f"dpglow selfcheck (frozen={frozen}, python {sys.version.split()[0]})")
    line("executable", lambda: sys.executable)

    def plugins() -> str:
        eps = metadata.entry_points(group="pylibjpeg.pixel_data_decoders")
        names = sorted({ep.value.split(":")[0] for ep in eps})
        if not {"libjpeg", "openjpeg"} <= set(names):
            raise RuntimeError(f"pylibjpeg decoder entry points found: {names}")
        return ", ".join(names)

    line("pylibjpeg entry points", plugins)

    from pydicom import uid

    line("DICOM JPEG baseline", lambda: _dicom_roundtrip(uid.JPEGBaseline8Bit))
    line("DICOM JPEG 2000 lossless", lambda: _dicom_roundtrip(uid.JPEG2000Lossless))
    line("DICOM RLE lossless", lambda: _dicom_roundtrip(uid.RLELossless))

    def resources() -> str:
        from glow_engine.resources import available_default_models, resources_root

        root = resources_root()
        icons = root / "icons"
        n_icons = sum(1 for p in icons.iterdir() if p.is_file()) if icons.is_dir() else 0
        models = available_default_models()
        return f"{root}: models {models or 'NONE'}, {n_icons} icons"

    line("resources", resources)

    def documents() -> str:
        from glow_engine.resources import USER_DOCUMENTS, document_path

        paths = [document_path(name) for name in USER_DOCUMENTS.values()]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(", ".join(missing))
        n_img = len(list(paths[0].parent.glob("img/*.png")))
        return f"{', '.join(p.name for p in paths)} and {n_img} pictures"

    line("Help documents", documents)

    def import_all() -> str:
        # Every module of the engine and the viewer: catches hidden imports and package data
        # read at import time that the build missed.
        import importlib
        import pkgutil

        n = 0
        for pkg_name in ("glow_engine", "app"):
            pkg = importlib.import_module(pkg_name)
            for info in pkgutil.walk_packages(pkg.__path__, pkg_name + "."):
                importlib.import_module(info.name)
                n += 1
        if n < 10:
            raise RuntimeError(f"only {n} modules found: the package listing is broken")
        return f"{n} modules of glow_engine and app imported"

    line("engine + viewer modules", import_all)

    def qt_platforms() -> str:
        from pathlib import Path

        import PySide6

        plat = Path(PySide6.__file__).parent / "Qt" / "plugins" / "platforms"
        found = sorted(p.name.split(".")[0].removeprefix("libq") for p in plat.glob("*"))
        if not any("offscreen" in f for f in found):
            raise RuntimeError(f"no offscreen platform plugin in {plat}: {found}")
        return ", ".join(found)

    line("Qt platform plugins", qt_platforms)

    def torch_ok() -> str:
        import torch

        x = torch.randn(4, 4)
        det = float(torch.linalg.det(x @ x.T + torch.eye(4)))
        return f"torch {torch.__version__}, det {det:.2f}"

    line("torch", torch_ok)
    print("selfcheck:", "FAILED" if failures else "ok")
    return 1 if failures else 0


def main() -> int:
    # Needed before anything else in a frozen program that may start worker processes
    # (torch DataLoader workers, multiprocessing spawn on Windows/macOS).
    import multiprocessing

    multiprocessing.freeze_support()
    entry_name = pick_entry(sys.executable)
    if entry_name == "selfcheck":
        return selfcheck()
    if entry_name == "cli":
        from glow_engine.cli import main as entry
    else:
        from app.__main__ import main as entry
    rc = entry()
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
