"""`dpglow privatize` on the real files in ../shared/data (skipped when absent): every PNG
and DICOM there is released as PNG and as de-identified DICOM that pydicom reads back.
Outputs go to pytest's tmp_path; nothing is copied into the project. Uses the tiny model."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from glow_engine.commands import privatize as privatize_cmd
from glow_engine.imaging import load_image
from glow_engine.imaging.discovery import find_images
from glow_engine.modelfile import LoadedModel, save_model
from glow_engine.release.ledger import Ledger
from glow_engine.release.records import read_rows

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

if not (DATA / "dicom").is_dir() or not (DATA / "png1024").is_dir():
    pytest.skip(reason=f"real data not found at {DATA}", allow_module_level=True)

pytestmark = pytest.mark.realdata


def test_real_pngs_and_dicoms_as_png_and_dicom(tiny_model: LoadedModel,
                                               tmp_path: Path) -> None:
    model = tmp_path / "model"
    save_model(model, tiny_model.flow, {"name": "tiny"}, tiny_model.calibration,
               tiny_model.fitted_box)
    sources = find_images(DATA / "png1024") + find_images(DATA / "dicom")
    ledger = tmp_path / "ledger.sqlite"
    parser = argparse.ArgumentParser()
    privatize_cmd.add_arguments(parser)
    for fmt in ("png", "dicom"):  # the real DICOMs do not say whether text is burned in
        args = parser.parse_args([str(DATA / "png1024"), str(DATA / "dicom"), "--e-px", "100",
                                  "--format", fmt, "--out", str(tmp_path / fmt), "--model",
                                  str(model), "--ledger", str(ledger), "--no-progress",
                                  "--allow-unknown-burned-in",
                                  "--confirm-one-patient-per-image"])
        assert privatize_cmd.run(args) == 0
        assert len(read_rows(tmp_path / fmt / "manifest.csv")) == len(sources)
    rows = [r for r in read_rows(ledger.with_name("ledger.record.csv"))
            if r["out_dir"] == str((tmp_path / "dicom").resolve())
            and r["status"] != "reserved"]  # each release's row before its noise is drawn
    assert len(rows) == len(sources) and {r["status"] for r in rows} == {"written"}
    for row in rows:  # the DICOM run
        data = (tmp_path / "dicom" / row["file"]).read_bytes()
        ds = pydicom.dcmread(io.BytesIO(data))
        assert ds.pixel_array.shape == (32, 32) and ds.PatientIdentityRemoved == "YES"
        source = load_image(row["source"]).dataset
        if source is not None:  # no original name or id anywhere in the file
            for keyword in ("PatientName", "PatientID"):
                value = str(source.get(keyword, "") or "")
                assert not value or value.encode() not in data, (keyword, value)
        assert Path(row["source"]).stem not in row["file"]
    png = next((tmp_path / "png").glob("*.png"))
    assert np.asarray(Image.open(png)).shape == (32, 32)
    with Ledger(ledger) as led:
        assert len(led.releases()) == 2 * len(sources)
        assert sum(r["total_epsilon"] for r in led.image_totals()) == 2 * len(sources) * 102400
