"""Unit tests for the glow_engine.imaging package on synthetic images in tmp_path (no real data)."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filewriter import dcmwrite
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    RLELossless,
    generate_uid,
)

from glow_engine.imaging import ImageLoadError, LoadedImage, load_image
from glow_engine.imaging.discovery import find_images
from glow_engine.imaging.frame import Placement, from_square, to_square
from glow_engine.imaging.load import SUPPORTED_SUFFIXES
from glow_engine.imaging.pixels import to_uint8, to_uint16
from glow_engine.imaging.write import save_png

DX_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation


# --------------------------------------------------------------------------- helpers


def gradient(h: int = 32, w: int = 48, top: int = 255) -> np.ndarray:
    """A horizontal ramp 0..top plus a vertical offset, so orientation errors show."""
    ramp = np.linspace(0, top, w)[None, :] * 0.8 + np.linspace(0, top, h)[:, None] * 0.2
    return np.rint(ramp)


def save_pil(arr: np.ndarray, path: Path, mode: str | None = None, **kwargs: object) -> Path:
    img = Image.fromarray(arr) if mode is None else Image.fromarray(arr).convert(mode)
    img.save(path, **kwargs)
    return path


def dicom_dataset(
    stored: np.ndarray,
    *,
    bits_stored: int | None = None,
    photometric: str = "MONOCHROME2",
    samples: int = 1,
    frames: int = 1,
    **extra: object,
) -> Dataset:
    """A minimal but valid DX dataset with file meta, pixel data from ``stored``."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = DX_STORAGE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.PatientID = "SYNTH-001"
    ds.Rows, ds.Columns = stored.shape[-3:-1] if samples > 1 else stored.shape[-2:]
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    if samples > 1:
        ds.PlanarConfiguration = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    allocated = stored.dtype.itemsize * 8
    ds.BitsAllocated = allocated
    ds.BitsStored = bits_stored or allocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(stored).tobytes()
    for key, value in extra.items():
        setattr(ds, key, value)
    return ds


def write_dicom(path: Path, stored: np.ndarray, **kwargs: object) -> Path:
    dicom_dataset(stored, **kwargs).save_as(path, enforce_file_format=True)
    return path


def load_pixels(path: Path) -> np.ndarray:
    return load_image(path).pixels


def assert_load_error(path: Path, *words: str, **kwargs: object) -> ImageLoadError:
    with pytest.raises(ImageLoadError) as info:
        load_image(path, **kwargs)  # type: ignore[arg-type]
    err = info.value
    assert str(err).startswith(f"Cannot open {path.name}: ")
    for word in words:
        assert word.lower() in err.reason.lower(), err.reason
    return err


# --------------------------------------------------------------------------- Pillow formats


def test_png_8bit_gray(tmp_path: Path) -> None:
    arr = gradient().astype(np.uint8)
    img = load_image(save_pil(arr, tmp_path / "g.png"))
    assert isinstance(img, LoadedImage)
    assert (img.kind, img.bits_stored, img.dataset) == ("png", 8, None)
    assert img.pixels.dtype == np.float32 and img.pixels.shape == arr.shape
    np.testing.assert_allclose(img.pixels, arr / 255.0, atol=1e-7)
    assert img.patient_id is None and img.burned_in_annotation is None


def test_png_16bit_keeps_precision(tmp_path: Path) -> None:
    arr = gradient(top=65535).astype(np.uint16)
    img = load_image(save_pil(arr, tmp_path / "g16.png"))
    assert img.bits_stored == 16
    np.testing.assert_allclose(img.pixels, arr / 65535.0, atol=1e-7)
    assert len(np.unique(img.pixels)) > 256  # not squeezed through 8 bits


def test_png_rgb_to_luma(tmp_path: Path) -> None:
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[:8] = (255, 0, 0)
    rgb[8:] = (10, 200, 30)
    pixels = load_pixels(save_pil(rgb, tmp_path / "rgb.png"))
    expected = np.asarray(Image.fromarray(rgb).convert("L")) / 255.0  # ITU-R 601 luma
    np.testing.assert_allclose(pixels, expected, atol=1e-7)
    assert pixels[0, 0] == pytest.approx(76 / 255)  # 0.299 * 255


def test_png_rgba_composited_on_black(tmp_path: Path) -> None:
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[:, :8] = (255, 255, 255, 0)  # white but fully transparent -> black
    rgba[:, 8:] = (200, 100, 50, 128)
    pixels = load_pixels(save_pil(rgba, tmp_path / "rgba.png"))
    luma = (0.299 * 200 + 0.587 * 100 + 0.114 * 50) / 255
    assert pixels[:, :8].max() == 0.0
    np.testing.assert_allclose(pixels[:, 8:], luma * 128 / 255, atol=1e-6)


def test_png_gray_alpha_and_palette(tmp_path: Path) -> None:
    arr = gradient(16, 16).astype(np.uint8)
    la = Image.merge("LA", [Image.fromarray(arr), Image.new("L", (16, 16), 255)])
    la.save(tmp_path / "la.png")
    np.testing.assert_allclose(load_pixels(tmp_path / "la.png"), arr / 255, atol=1e-6)
    Image.fromarray(arr).convert("P").save(tmp_path / "p.png")
    np.testing.assert_allclose(load_pixels(tmp_path / "p.png"), arr / 255, atol=1e-6)


def test_jpeg_gray_and_exif_rotation(tmp_path: Path) -> None:
    arr = gradient(32, 48).astype(np.uint8)
    img = load_image(save_pil(arr, tmp_path / "g.jpg", quality=95))
    assert img.kind == "jpeg" and img.pixels.shape == (32, 48)
    assert np.abs(img.pixels - arr / 255).max() < 6 / 255
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees to display
    save_pil(arr, tmp_path / "rot.jpeg", exif=exif)
    assert load_pixels(tmp_path / "rot.jpeg").shape == (48, 32)


def test_tiff_16bit(tmp_path: Path) -> None:
    arr = gradient(top=65535).astype(np.uint16)
    img = load_image(save_pil(arr, tmp_path / "g.tif"))
    assert (img.kind, img.bits_stored) == ("tiff", 16)
    np.testing.assert_allclose(img.pixels, arr / 65535.0, atol=1e-7)


def test_tiff_float_out_of_range_is_minmax_scaled(tmp_path: Path) -> None:
    arr = (gradient().astype(np.float32) * 4) - 100
    pixels = load_pixels(save_pil(arr, tmp_path / "f.tiff"))
    assert pixels.min() == 0.0 and pixels.max() == 1.0


def test_sha256_and_file_untouched(tmp_path: Path) -> None:
    path = save_pil(gradient().astype(np.uint8), tmp_path / "g.png")
    before, mtime = path.read_bytes(), path.stat().st_mtime_ns
    img = load_image(str(path))
    assert img.path == path
    assert img.content_sha256 == hashlib.sha256(before).hexdigest()
    assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime


# --------------------------------------------------------------------------- DICOM


def test_dicom_8bit_mono2(tmp_path: Path) -> None:
    stored = gradient().astype(np.uint8)
    path = write_dicom(tmp_path / "a.dcm", stored, BurnedInAnnotation="NO")
    img = load_image(path)
    assert (img.kind, img.bits_stored) == ("dicom", 8)
    # 8-bit data keeps its fixed 0..255 range, exactly like the same image as a PNG
    np.testing.assert_allclose(img.pixels, stored / 255.0, atol=1e-7)
    assert img.dataset is not None and "PixelData" not in img.dataset
    assert img.dataset.Modality == "DX"
    assert img.patient_id == "SYNTH-001"
    assert img.burned_in_annotation is False


def test_dicom_header_flags(tmp_path: Path) -> None:
    stored = gradient().astype(np.uint8)
    yes = load_image(write_dicom(tmp_path / "y.dcm", stored, BurnedInAnnotation="YES"))
    assert yes.burned_in_annotation is True
    blank = load_image(write_dicom(tmp_path / "b.dcm", stored, PatientID=""))
    assert blank.patient_id is None and blank.burned_in_annotation is None


def test_dicom_12bit_in_16_with_rescale(tmp_path: Path) -> None:
    stored = (gradient(top=2900) + 100).astype(np.uint16)  # uses only part of 0..4095
    path = write_dicom(
        tmp_path / "b.dcm", stored, bits_stored=12, RescaleSlope=2, RescaleIntercept=-1000
    )
    img = load_image(path)
    assert img.bits_stored == 12
    # no VOI: min-max over the (rescaled) values, which is linear in the stored values
    expected = (stored - stored.min()) / (stored.max() - stored.min())
    np.testing.assert_allclose(img.pixels, expected, atol=1e-6)


def test_dicom_window_center_width(tmp_path: Path) -> None:
    stored = np.tile(np.array([0, 1000, 2000, 3000, 4000], np.uint16), (8, 2))
    # Window on rescaled values (HU-like): stored*1 - 1000 -> [-1000, 0, 1000, 2000, 3000]
    path = write_dicom(
        tmp_path / "w.dcm",
        stored,
        bits_stored=12,
        RescaleSlope=1,
        RescaleIntercept=-1000,
        WindowCenter=[1000, 40],  # multi-valued: the first window applies
        WindowWidth=[3001, 400],
    )
    row = load_pixels(path)[0, :5]
    # window [-500, 2500]: -1000 and 3000 are clipped, the rest is linear, centre = mid-grey
    np.testing.assert_allclose(row, [0.0, 1 / 6, 0.5, 5 / 6, 1.0], atol=1e-3)
    assert row[0] == 0.0 and row[4] == 1.0


def test_dicom_monochrome1_is_inverted(tmp_path: Path) -> None:
    stored = gradient().astype(np.uint8)
    stored[0, 0] = 250  # bright-stored in MONOCHROME1 means low density
    mono1 = load_pixels(write_dicom(tmp_path / "m1.dcm", stored, photometric="MONOCHROME1"))
    mono2 = load_pixels(write_dicom(tmp_path / "m2.dcm", stored))
    assert mono1[0, 0] == pytest.approx(5 / 255, abs=1e-6)
    np.testing.assert_allclose(mono1, 1.0 - mono2, atol=1e-6)


def test_dicom_rle_lossless_matches_uncompressed(tmp_path: Path) -> None:
    stored = gradient(top=4095).astype(np.uint16)
    plain = write_dicom(tmp_path / "plain.dcm", stored, bits_stored=12)
    ds = dicom_dataset(stored, bits_stored=12)
    ds.compress(RLELossless)
    ds.save_as(tmp_path / "rle.dcm", enforce_file_format=True)
    assert pydicom.dcmread(tmp_path / "rle.dcm").file_meta.TransferSyntaxUID == RLELossless
    np.testing.assert_array_equal(load_pixels(tmp_path / "rle.dcm"), load_pixels(plain))


def test_dicom_jpeg_baseline_decodes(tmp_path: Path) -> None:
    stored = gradient(64, 64).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(stored).save(buffer, format="JPEG", quality=95)
    ds = dicom_dataset(stored)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.save_as(tmp_path / "jpeg.dcm", enforce_file_format=True)
    assert np.abs(load_pixels(tmp_path / "jpeg.dcm") - stored / 255).max() < 6 / 255


def test_dicom_without_file_meta(tmp_path: Path) -> None:
    stored = (gradient(top=800) + 50).astype(np.uint16)
    ds = dicom_dataset(stored, bits_stored=10, photometric="MONOCHROME1")
    del ds.file_meta
    path = tmp_path / "nometa"  # no suffix either, like many PACS exports
    dcmwrite(path, ds, implicit_vr=True, little_endian=True)
    assert path.read_bytes()[128:132] != b"DICM"
    img = load_image(path)
    assert img.kind == "dicom" and img.bits_stored == 10
    expected = 1.0 - (stored - stored.min()) / (stored.max() - stored.min())
    np.testing.assert_allclose(img.pixels, expected, atol=1e-6)
    assert img.dataset is not None and img.dataset.file_meta.TransferSyntaxUID.is_implicit_VR


def test_dicom_multiframe_rejected(tmp_path: Path) -> None:
    stored = np.stack([gradient().astype(np.uint8)] * 3)
    path = write_dicom(tmp_path / "mf.dcm", stored, frames=3)
    assert_load_error(path, "multi-frame", "3 frames")


def test_dicom_rgb_rejected(tmp_path: Path) -> None:
    rgb = np.zeros((16, 16, 3), np.uint8)
    path = write_dicom(tmp_path / "rgb.dcm", rgb, photometric="RGB", samples=3)
    assert_load_error(path, "colour", "RGB")


def test_dicom_without_pixel_data(tmp_path: Path) -> None:
    ds = dicom_dataset(gradient().astype(np.uint8))
    del ds.PixelData
    ds.save_as(tmp_path / "nopix.dcm", enforce_file_format=True)
    assert_load_error(tmp_path / "nopix.dcm", "no pixel data")


@pytest.mark.parametrize("keep", [0.5, 0.995])
def test_dicom_truncated(tmp_path: Path, keep: float) -> None:
    path = write_dicom(tmp_path / "full.dcm", gradient(64, 64).astype(np.uint8))
    data = path.read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[: int(len(data) * keep)])
    assert_load_error(cut, "truncated")


def test_dicom_undecodable_syntax_is_named(tmp_path: Path) -> None:
    ds = dicom_dataset(gradient(16, 16).astype(np.uint8))
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.PixelData = encapsulate([b"\x00" * 64])  # not a JPEG 2000 codestream
    ds["PixelData"].VR = "OB"
    ds.save_as(tmp_path / "j2k.dcm", enforce_file_format=True)
    assert_load_error(tmp_path / "j2k.dcm", "JPEG 2000")


def test_dicom_bad_window_falls_back_to_minmax(tmp_path: Path) -> None:
    stored = gradient(top=4095).astype(np.uint16)
    path = write_dicom(tmp_path / "bw.dcm", stored, bits_stored=12, WindowCenter=100, WindowWidth=0)
    pixels = load_pixels(path)
    assert pixels.min() == 0.0 and pixels.max() == 1.0


# --------------------------------------------------------------------------- failures


def test_missing_file(tmp_path: Path) -> None:
    err = assert_load_error(tmp_path / "nope.png", "not found")
    assert err.path == tmp_path / "nope.png"
    assert str(err) == "Cannot open nope.png: file not found"
    assert isinstance(err, ValueError)


def test_text_renamed_png(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("this is not an image\n" * 20)
    assert_load_error(path, "not an image")


def test_text_renamed_dcm(tmp_path: Path) -> None:
    path = tmp_path / "notes.dcm"
    path.write_text("this is not a DICOM file either\n" * 20)
    assert_load_error(path, "not")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    assert_load_error(path, "empty")


def test_truncated_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = save_pil(rng.integers(0, 255, (64, 64), dtype=np.uint8), tmp_path / "n.png")
    path.write_bytes(path.read_bytes()[:400])
    assert_load_error(path, "truncated")


def test_directory(tmp_path: Path) -> None:
    (tmp_path / "folder.png").mkdir()
    assert_load_error(tmp_path / "folder.png", "folder")


def test_too_large_and_too_small(tmp_path: Path) -> None:
    big = save_pil(gradient(32, 48).astype(np.uint8), tmp_path / "big.png")
    assert_load_error(big, "too large", max_pixels=1000)
    small = save_pil(np.zeros((4, 40), np.uint8), tmp_path / "small.png")
    assert_load_error(small, "too small")
    dcm = write_dicom(tmp_path / "big.dcm", gradient(32, 48).astype(np.uint8))
    assert_load_error(dcm, "too large", max_pixels=1000)


def test_unsupported_pillow_format(tmp_path: Path) -> None:
    path = save_pil(gradient().astype(np.uint8), tmp_path / "g.png", format="BMP")
    assert_load_error(path, "unsupported image format BMP")


# --------------------------------------------------------------------------- to_square


def test_to_square_portrait_pads_columns() -> None:
    pixels = np.ones((200, 100), np.float32)
    frame, place = to_square(pixels, 64)
    assert frame.shape == (64, 64) and frame.dtype == np.float32
    assert place == Placement(scale=0.32, top=0, left=16, height=64, width=32)
    assert np.all(frame[:, :16] == 0) and np.all(frame[:, 48:] == 0)
    np.testing.assert_allclose(frame[:, 16:48], 1.0, atol=1e-6)
    assert from_square(frame, place).shape == (64, 32)  # aspect 2:1 preserved


def test_to_square_landscape_odd_size_and_orientation() -> None:
    pixels = np.tile(np.linspace(0, 1, 91, dtype=np.float32), (37, 1))
    frame, place = to_square(pixels, 64)
    assert (place.height, place.width) == (26, 64)
    assert place.top == 19 and place.left == 0
    assert np.all(frame[:19] == 0) and np.all(frame[45:] == 0)
    crop = from_square(frame, place)
    assert crop.shape == (26, 64)
    assert np.all(np.diff(crop[13]) >= -1e-6)  # still a left-to-right ramp
    assert crop[:, 0].mean() < 0.05 and crop[:, -1].mean() > 0.95


def test_to_square_enlarge_is_clipped_and_same_size_is_identity() -> None:
    rng = np.random.default_rng(1)
    pixels = (rng.random((10, 20)) > 0.5).astype(np.float32)  # bicubic would overshoot
    frame, place = to_square(pixels, 80)
    assert frame.min() >= 0.0 and frame.max() <= 1.0
    assert (place.height, place.width, place.top) == (40, 80, 20)
    same = rng.random((16, 16)).astype(np.float32)
    frame, place = to_square(same, 16)
    np.testing.assert_array_equal(frame, same)
    np.testing.assert_array_equal(from_square(frame[None], place), same[None])


def test_to_square_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        to_square(np.zeros((4, 4, 3)), 8)
    with pytest.raises(ValueError):
        from_square(np.zeros((8, 8)), Placement(1.0, 0, 0, 16, 16))


# --------------------------------------------------------------------------- saving


def test_quantise_rounds_half_even_and_clips() -> None:
    values = np.array([-1.0, 0.0, 0.5 / 255, 1.5 / 255, 1.0, 2.0, np.nan])
    np.testing.assert_array_equal(to_uint8(values), [0, 0, 0, 2, 255, 255, 0])
    assert to_uint8(values).dtype == np.uint8
    assert to_uint16(np.array([0.5, 1.0])).tolist() == [32768, 65535]
    assert to_uint16(np.array([0.5])).dtype == np.uint16


@pytest.mark.parametrize(("bits", "top"), [(8, 255), (16, 65535)])
def test_save_png_round_trip(tmp_path: Path, bits: int, top: int) -> None:
    pixels = np.random.default_rng(2).random((20, 30)).astype(np.float32)
    path = tmp_path / f"out{bits}.png"
    save_png(pixels, path, bits=bits)
    img = load_image(path)
    assert img.bits_stored == bits
    quantised = to_uint8(pixels) if bits == 8 else to_uint16(pixels)
    np.testing.assert_array_equal(img.pixels, (quantised / top).astype(np.float32))
    assert np.abs(img.pixels - pixels).max() <= 0.5 / top + 1e-7


def test_save_png_refuses_overwrite_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "out.png"
    save_png(np.zeros((10, 10)), path)
    first = path.read_bytes()
    with pytest.raises(FileExistsError):
        save_png(np.ones((10, 10)), path)
    assert path.read_bytes() == first
    save_png(np.ones((10, 10)), path, overwrite=True)
    assert load_pixels(path).min() == 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_save_png_rejects_bad_bits(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        save_png(np.zeros((10, 10)), tmp_path / "x.png", bits=12)
    assert not any(tmp_path.iterdir())


# --------------------------------------------------------------------------- find_images


def test_find_images(tmp_path: Path) -> None:
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    (tmp_path / ".hidden").mkdir()
    arr = gradient().astype(np.uint8)
    wanted = [
        save_pil(arr, tmp_path / "top.png"),
        save_pil(arr, nested / "deep.TIFF"),
        write_dicom(nested / "IM0001", arr),  # extension-less DICOM
        write_dicom(tmp_path / "a" / "x.dcm", arr),
    ]
    save_pil(arr, tmp_path / ".secret.png")
    save_pil(arr, tmp_path / ".hidden" / "in_hidden.png")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "README").write_text("extension-less but not DICOM")
    write_dicom(tmp_path / "DICOMDIR", arr)  # an index, not an image
    assert find_images(tmp_path) == sorted(wanted)
    assert find_images(str(tmp_path / "top.png")) == [tmp_path / "top.png"]


def test_every_supported_suffix_is_found_and_loads(tmp_path: Path) -> None:
    arr = gradient().astype(np.uint8)
    pillow = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF"}
    for suffix in SUPPORTED_SUFFIXES | {".JPG", ".TIFF", ".DCM"}:  # suffixes in any case
        path = tmp_path / f"image{suffix}"
        if suffix.lower() in pillow:
            save_pil(arr, path, format=pillow[suffix.lower()])
        else:
            write_dicom(path, arr)
    save_pil(arr, tmp_path / "image.gif", mode="P", format="GIF")  # a format we do not take
    found = find_images(tmp_path)
    assert {p.suffix.lower() for p in found} == SUPPORTED_SUFFIXES
    assert {".png", ".jpg", ".tif", ".dcm"} <= SUPPORTED_SUFFIXES  # PNG, JPEG, TIFF, DICOM
    for path in found:
        assert load_image(path).pixels.shape == arr.shape, path.name


def test_colour_is_reported_and_grey_stored_as_colour_is_not(tmp_path):
    rng = np.random.default_rng(0)
    grey = (rng.random((40, 40)) * 255).astype(np.uint8)
    Image.fromarray(np.stack([grey] * 3, axis=-1)).save(tmp_path / "grey_rgb.png")
    Image.fromarray(np.stack([grey] * 3, axis=-1)).save(tmp_path / "grey_rgb.jpg", quality=70)
    rgb = np.stack([grey, grey[::-1], 255 - grey], axis=-1)
    Image.fromarray(rgb).save(tmp_path / "colour.png")
    Image.fromarray(rgb).convert("P").save(tmp_path / "colour_palette.png")
    Image.fromarray(grey).save(tmp_path / "grey.png")
    seen = {p.name: load_image(p).colour for p in sorted(tmp_path.iterdir())}
    assert seen == {"colour.png": True, "colour_palette.png": True, "grey.png": False,
                    "grey_rgb.jpg": False, "grey_rgb.png": False}
