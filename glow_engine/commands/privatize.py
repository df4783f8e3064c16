"""`dpglow privatize INPUT... --epsilon-per-pixel E --out DIR`: batch release."""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

import glow_engine
from glow_engine.choices import DEFAULT_ALPHA, DPGLOW_MODES, RELEASE_FORMATS
from glow_engine.device import pick_device
from glow_engine.mechanisms import Mechanism, create_mechanism
from glow_engine.modelfile import load_model
from glow_engine.release.batch import (
    ReleaseOptions,
    finish_shards,
    privatize,
    shared_run_secret,
)
from glow_engine.release.ledger import Ledger, default_ledger_path

DEFAULT_MODEL = Path(glow_engine.__file__).parents[1] / "resources" / "models" / "mixture"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image files (PNG/JPEG/TIFF/DICOM), folders (recursive) or CSV lists")
    p.add_argument("--epsilon-per-pixel", "--e-px", dest="e_px", type=float, required=True,
                   help="per-pixel budget e_px; the image's total epsilon is e_px * R * R "
                        "(inf: no noise, clip only)")
    p.add_argument("--mechanism", choices=sorted(Mechanism.registry), default="dpglow")
    p.add_argument("--mode", choices=DPGLOW_MODES, default="paper",
                   help="DP-GLOW sensitivity: paper (Delta_k, as published) or tight (w_k)")
    p.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help="DP-GLOW clip width")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--format", dest="fmt", choices=sorted(RELEASE_FORMATS), default="png")
    p.add_argument("--size", type=int, default=None,
                   help="resize outputs so that their long side is SIZE pixels, aspect kept "
                   "(post-processing, noted in outputs); default: the model's resolution")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--resolution", type=int, default=None,
                   help="ID-LDP only: working resolution (default: the model's)")
    p.add_argument("--ledger", type=Path, default=None,
                   help=f"privacy ledger (default {default_ledger_path()})")
    p.add_argument("--patient-budget", type=float, default=None,
                   help="per-patient total-epsilon limit for this run (default: the ledger's)")
    p.add_argument("--force", action="store_true",
                   help="release past the per-patient budget (recorded in the ledger)")
    p.add_argument("--allow-burned-in", action="store_true",
                   help="export DICOM inputs whose BurnedInAnnotation is YES")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    device = pick_device(args.device)
    if device.type == "cuda" and world > 1:
        device = pick_device(f"cuda:{os.environ.get('LOCAL_RANK', 0)}")
    needs_model = args.mechanism != "idldp" or args.resolution is None
    model = load_model(args.model, device) if needs_model else None
    mech = create_mechanism(args.mechanism, model, mode=args.mode, alpha=args.alpha,
                            resolution=args.resolution)
    opts = ReleaseOptions(e_px=args.e_px, out_dir=args.out, fmt=args.fmt, size=args.size,
                          force_budget=args.force, patient_budget=args.patient_budget,
                          allow_burned_in=args.allow_burned_in, batch_size=args.batch_size,
                          rank=rank, world=world, progress=not args.no_progress,
                          run_secret=shared_run_secret(world))
    if math.isinf(args.e_px):
        print("warning: e_px = inf adds no noise: these images carry no privacy guarantee",
              file=sys.stderr)
    with Ledger(args.ledger or default_ledger_path()) as ledger:
        summary = privatize(args.inputs, mech, ledger, opts)
        merged = finish_shards(opts)
        for row in summary.rows:
            if row["status"] == "failed":
                print(f"failed: {row['input']}: {row['message']}", file=sys.stderr)
        print(f"{mech.describe(args.e_px)}\nwritten {summary.count('written')}, "
              f"done earlier {summary.count('done-earlier')}, failed {summary.count('failed')}"
              f"\nmanifest {merged or summary.manifest}\nledger {ledger.path}")
    return 1 if summary.count("failed") else 0
