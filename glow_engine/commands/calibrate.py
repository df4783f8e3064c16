"""`dpglow calibrate MODEL --data ...`: store the latent range in the model file."""

from __future__ import annotations

import argparse
import itertools

from glow_engine.calibration import calibrate
from glow_engine.data import stream_image_set
from glow_engine.device import pick_device
from glow_engine.errors import UserError
from glow_engine.modelfile import load_model, save_model


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model directory or .safetensors file")
    p.add_argument("--data", action="append", required=True,
                   help="the model's training images: .npz (split 'train'), folder or CSV")
    p.add_argument("--split", default="train")
    p.add_argument("--out", default=None, help="write here instead of updating MODEL")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
    model = load_model(args.model, pick_device(args.device))
    res = model.resolution
    streams = [stream_image_set(s, res, args.split, args.batch_size) for s in args.data]
    cal = calibrate(model, itertools.chain.from_iterable(b for _, _, b in streams),
                    " + ".join(d for _, d, _ in streams), total=sum(n for n, _, _ in streams),
                    progress=not args.no_progress)
    out = args.out or args.model
    # the flow is unchanged, so boxes fitted on its latents still hold
    sha = save_model(out, model.flow.cpu(), model.meta, cal, model.fitted_box)
    print(f"calibrated on {cal.info['images']} images; mean Delta {cal.info['delta_mean']:.3f}; "
          f"written to {out} (sha256 {sha[:16]})")
    return 0
