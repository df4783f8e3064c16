"""What the slider pays for DP-GLOW's decode choices: one preview frame (noise, box, estimate,
decode, quantise) of one 256x256 image, per mode and estimate, interleaved in one process and
reported as medians, plus the estimate alone (what the posterior mean adds).

    python benchmarks/bench_decoding.py --repeats 15

Uses the shipped mixture model (fitted mode is skipped with a note when it has no fitted box)
and a smooth synthetic image; the noise is the preview's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_engine import cpu_name, smooth_images
from glow_engine.mechanisms import DPGlow, preview_noise
from glow_engine.modelfile import load_model
from glow_engine.resources import default_model_dir


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--e-px", type=float, default=100.0)
    ap.add_argument("--model", default=None, help="default: the shipped mixture model")
    args = ap.parse_args()
    model = load_model(args.model or default_model_dir("mixture"))
    r = model.resolution
    image = (smooth_images(1, r, seed=0)[:, 0] + 0.5).clamp(0, 1).numpy()
    modes = ["paper", "tight"] + (["fitted"] if model.fitted_box is not None else [])
    mechs = {f"{m}/{e}": DPGlow(model, mode=m, estimate=e)
             for m in modes for e in ("plain", "posterior-mean")}
    enc = next(iter(mechs.values())).encode(image[0])
    noise = preview_noise(1, r * r, seed=0)
    frame: dict[str, list[float]] = {k: [] for k in mechs}
    estimate: dict[str, list[float]] = {k: [] for k in mechs}
    for _ in range(args.repeats):  # interleaved: load changes hit every variant alike
        for key, mech in mechs.items():
            t0 = time.perf_counter()
            mech.preview(enc, args.e_px, noise)
            frame[key].append(time.perf_counter() - t0)
            y = mech.perturb_preview(enc, args.e_px, noise)
            t0 = time.perf_counter()
            mech.estimate(y, args.e_px)
            estimate[key].append(time.perf_counter() - t0)
    out = {"machine": cpu_name(), "threads": torch.get_num_threads(), "e_px": args.e_px,
           "repeats": args.repeats,
           "median_ms": {k: {"frame": round(1000 * statistics.median(frame[k]), 1),
                             "estimate": round(1000 * statistics.median(estimate[k]), 2)}
                         for k in mechs}}
    if "fitted" not in modes:
        out["note"] = "the model has no fitted box: fitted mode not measured"
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
