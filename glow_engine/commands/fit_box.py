"""`dpglow fit-box MODEL --data ...`: fit DP-GLOW's clip box per budget into the model file."""

from __future__ import annotations

import argparse

from glow_engine.box_fitting import describe, fit_boxes
from glow_engine.choices import DPGLOW_ESTIMATES
from glow_engine.data import ImageSet, load_image_set
from glow_engine.device import pick_device
from glow_engine.errors import UserError
from glow_engine.evaluation.settings import parse_settings
from glow_engine.modelfile import load_model, save_model

DEFAULT_BUDGETS = "inf,1000,100,10,1,0.1"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="a calibrated model directory or .safetensors file")
    p.add_argument("--data", action="append", required=True,
                   help="the model's training images (as for `dpglow calibrate`); never the "
                        "images you report on")
    p.add_argument("--split", default="train")
    p.add_argument("--out", default=None, help="write here instead of updating MODEL")
    p.add_argument("--budgets", default=DEFAULT_BUDGETS,
                   help=f"the e_px values to fit a box for (default {DEFAULT_BUDGETS}); "
                        "other budgets use the nearest one's")
    p.add_argument("--estimate", choices=DPGLOW_ESTIMATES, default="posterior-mean",
                   help="the decode the boxes are chosen for")
    p.add_argument("--held-out-images", type=int, default=32,
                   help="training images (whole patients) held out to choose the boxes on")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1 or args.held_out_images < 1:
        raise UserError("--batch-size and --held-out-images must be at least 1")
    settings = parse_settings(args.budgets)
    if not all(s.clip for s in settings):
        raise UserError("--budgets: a box is a clip; drop the -noclip budgets")
    model = load_model(args.model, pick_device(args.device))
    data = ImageSet.concat([load_image_set(s, model.resolution, args.split) for s in args.data])
    boxes, report = fit_boxes(model, data, [s.e_px for s in settings], estimate=args.estimate,
                              held_out_images=args.held_out_images, seed=args.seed,
                              batch_size=args.batch_size, progress=not args.no_progress)
    print(describe(report))
    out = args.out or args.model
    sha = save_model(out, model.flow.cpu(), model.meta, model.calibration, boxes)
    print(f"fitted {len(boxes.rows)} boxes on {len(data)} training images; written to {out} "
          f"(sha256 {sha[:16]})")
    return 0
