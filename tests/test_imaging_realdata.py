"""glow_engine.imaging on the real chest X-rays in ../shared/data (skipped when absent).

The files are read in place and never copied into the project.
Override the location with the DPGLOW_SHARED_DATA environment variable.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pydicom
import pytest

from glow_engine.imaging import load_image
from glow_engine.imaging.discovery import find_images
from glow_engine.imaging.frame import from_square, to_square

DATA = Path(
    os.environ.get("DPGLOW_SHARED_DATA")
    or Path(__file__).resolve().parents[1].parent / "shared" / "data"
)
DICOM_DIR = DATA / "dicom"
PNG_DIR = DATA / "png1024"

if not DICOM_DIR.is_dir():
    pytest.skip(reason=f"real data not found at {DATA}", allow_module_level=True)

pytestmark = pytest.mark.realdata

DICOM_FILES = sorted(DICOM_DIR.iterdir())
MONO2 = DICOM_DIR / "siim_cr_mono2_jpeg_baseline.dcm"
FAKE_MONO1 = DICOM_DIR / "siim_cr_jpeg_baseline_fake_mono1.dcm"
TEN_BIT = DICOM_DIR / "cr_mono1_10bit_no_file_meta.dcm"
NIH_DICOM = DICOM_DIR / "nih_dx_mono2_8bit_uncompressed.dcm"


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


@pytest.mark.parametrize("path", DICOM_FILES, ids=lambda p: p.name)
def test_every_dicom_loads(path: Path) -> None:
    before = path.read_bytes()
    img = load_image(path)
    assert img.kind == "dicom"
    assert img.pixels.shape in {(1024, 1024), (440, 440)}
    assert img.pixels.dtype == np.float32
    assert np.all(np.isfinite(img.pixels))
    assert img.pixels.min() >= 0.0 and img.pixels.max() <= 1.0
    assert img.pixels.std() > 0.05  # a real picture, not a flat or blown-out frame
    assert img.content_sha256 == hashlib.sha256(before).hexdigest()
    assert img.dataset is not None and "PixelData" not in img.dataset
    assert path.read_bytes() == before


def test_fake_monochrome1_is_the_inverse_of_its_original() -> None:
    original, fake = load_image(MONO2).pixels, load_image(FAKE_MONO1).pixels
    assert corr(original, fake) < -0.9
    np.testing.assert_allclose(fake, 1.0 - original, atol=1e-6)


def test_10bit_monochrome1_without_file_meta() -> None:
    assert TEN_BIT.read_bytes()[128:132] != b"DICM"  # really has no preamble/file meta
    img = load_image(TEN_BIT)
    assert img.bits_stored == 10 and img.pixels.shape == (440, 440)
    assert img.patient_id is None  # this classic file has no PatientID
    raw = pydicom.dcmread(TEN_BIT, force=True)
    raw.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    # MONOCHROME1: high stored values are bright on film-like display -> shown dark here
    assert corr(img.pixels, raw.pixel_array) < -0.9


def test_8bit_dicom_keeps_its_grey_levels() -> None:
    img = load_image(NIH_DICOM)
    assert img.patient_id == "Covid0000"
    levels = img.pixels.astype(np.float64) * 255
    np.testing.assert_allclose(levels, np.rint(levels), atol=1e-3)  # exact k/255 steps


def test_png1024_files_load() -> None:
    for path in sorted(PNG_DIR.glob("*.png"))[:2] + sorted(PNG_DIR.glob("pneumonia_*.png"))[:1]:
        img = load_image(path)
        assert (img.kind, img.bits_stored, img.pixels.shape) == ("png", 8, (1024, 1024))
        assert 0.0 <= img.pixels.min() < img.pixels.max() <= 1.0


def test_find_images_on_shared_data() -> None:
    found = find_images(DATA)
    assert set(DICOM_FILES) <= set(found)
    assert set(PNG_DIR.glob("*.png")) <= set(found)
    assert not any(p.suffix in {".md", ".npz"} for p in found)


def test_model_frame_round_trip_on_real_image() -> None:
    pixels = load_image(TEN_BIT).pixels
    frame, place = to_square(pixels, 256)
    assert frame.shape == (256, 256) and (place.height, place.width) == (256, 256)
    crop = from_square(frame, place)
    assert abs(float(crop.mean()) - float(pixels.mean())) < 0.01  # box filter keeps the mean
