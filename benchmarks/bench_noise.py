"""Release-path noise sampling time and `dpglow privatize` throughput on this machine.

    .venv/bin/python benchmarks/bench_noise.py [--model DIR] [--images 12] [--repeats 20]

Sampling: exact discrete Laplace (os.urandom) for 16,384 (128x128) and 65,536 (256x256)
elements at the scale DP-GLOW tight uses at e_px = 100 (2^20 / 100 grid steps).
Throughput: privatize 1024x1024 8-bit inputs (synthetic, written to a temp folder) as PNG ->
PNG and DICOM -> de-identified DICOM with the default model (resources/models/mixture). If
that is not there yet, an untrained model of the same architecture stands in: the timing
depends on the architecture, not on the weights (the output says which was used).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from glow_engine.device import describe, pick_device
from glow_engine.flow import Glow, GlowConfig
from glow_engine.flow.glow import pixels_to_model
from glow_engine.mechanisms import DPGlow
from glow_engine.mechanisms.box import GRID_STEPS
from glow_engine.mechanisms.noise import discrete_laplace, rational_scale
from glow_engine.modelfile import Calibration, LoadedModel, load_model
from glow_engine.release.batch import ReleaseOptions, release_folder
from glow_engine.release.ledger import Ledger
from glow_engine.resources import default_model_dir


def bench_sampling(repeats: int) -> None:
    t, s = rational_scale(Fraction(GRID_STEPS, 100))
    for n in (16_384, 65_536):
        discrete_laplace(n, t, s)  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            discrete_laplace(n, t, s)
            times.append(time.perf_counter() - start)
        print(f"release noise, {n:>6} elements: median {statistics.median(times) * 1e3:6.1f} ms"
              f", best {min(times) * 1e3:6.1f} ms ({repeats} runs)")


def stand_in_model(device: torch.device) -> LoadedModel:
    """Untrained default architecture with a synthetic calibration (timing only)."""
    flow = Glow(GlowConfig())
    rng = np.random.default_rng(0)
    x = pixels_to_model(torch.from_numpy(rng.random((16, 1, 128, 128), dtype=np.float32)))
    flow.initialize_actnorm(x)
    flow.eval()
    with torch.inference_mode():
        z = flow.encode(x).double().numpy()
    return LoadedModel(flow.to(device), {"name": "stand-in"},
                       Calibration(z.min(0), z.max(0)), "0" * 64)


def synthetic_inputs(folder: Path, n: int, fmt: str) -> None:
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True)
    for i in range(n):
        pixels = (rng.random((1024, 1024)) * 255).astype(np.uint8)
        if fmt == "png":
            Image.fromarray(pixels).save(folder / f"img{i:03d}.png")
        else:
            write_dicom(folder / f"img{i:03d}.dcm", pixels)


def write_dicom(path: Path, pixels: np.ndarray) -> None:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.1.1", generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = "Bench^Patient", path.stem, "DX"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.BurnedInAnnotation = "NO"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)


def bench_privatize(model: LoadedModel, n: int, batch: int) -> None:
    mech = DPGlow(model, mode="tight")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with Ledger(root / "ledger.sqlite") as ledger:
            for fmt in ("png", "dicom"):
                synthetic_inputs(root / f"in-{fmt}", n, fmt)
                opts = ReleaseOptions(e_px=100, out_dir=root / f"out-{fmt}", fmt=fmt,
                                      batch_size=batch, one_patient_per_image=True)
                start = time.perf_counter()
                summary = release_folder([root / f"in-{fmt}"], mech, ledger, opts)
                elapsed = time.perf_counter() - start
                print(f"privatize {fmt:>5} -> {fmt:<5}: {summary.count('written')} images of "
                      f"1024x1024 in {elapsed:5.1f} s = {summary.count('written') / elapsed:5.2f}"
                      f" images/s (batch {batch})")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=default_model_dir("mixture"))
    p.add_argument("--images", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    device = pick_device(args.device)
    print(f"{describe(device)}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    bench_sampling(args.repeats)
    if args.model.exists():
        model = load_model(args.model, device)
        print(f"model {args.model} ({model.resolution}x{model.resolution}, "
              f"sha256 {model.short_hash})")
    else:
        model = stand_in_model(device)
        print(f"model: {args.model} not found; an untrained model of the default "
              f"architecture ({model.flow.cfg}) stands in (timing only)")
    bench_privatize(model, args.images, args.batch_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
