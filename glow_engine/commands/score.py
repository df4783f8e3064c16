"""`dpglow score IMAGE... [--json]`: anomaly scores of chest X-rays (see glow_engine.anomaly)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from glow_engine.device import pick_device
from glow_engine.imaging import ImageLoadError, load_image
from glow_engine.imaging.frame import to_square
from glow_engine.model_pair import ModelPair
from glow_engine.resources import default_model_dir
from glow_engine.scores import DEFAULT_SCORE_KIND, Score


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """--normal/--mixture/--device, shared with `dpglow evaluate`."""
    p.add_argument("--normal", default=None,
                   help="normal-only model (default: the shipped resources/models/normal)")
    p.add_argument("--mixture", default=None,
                   help="normal+abnormal model, calibrated (default: resources/models/mixture)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")


def load_pair(args: argparse.Namespace) -> ModelPair:
    return ModelPair.load(args.mixture or default_model_dir("mixture"),
                          args.normal or default_model_dir("normal"), pick_device(args.device))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", help="PNG, JPEG, TIFF or DICOM files")
    p.add_argument("--json", action="store_true", help="print the scores as one JSON document")
    add_model_arguments(p)


def _frames(paths: list[str], resolution: int
            ) -> tuple[list[Path], np.ndarray, np.ndarray, list[dict]]:
    """Load every file into the model frame (and whether it had colour); failures become
    error records, not exceptions."""
    ok, frames, colour, failed = [], [], [], []
    for name in paths:
        try:
            image = load_image(name)
            frame, _ = to_square(image.pixels, resolution)
        except ImageLoadError as e:
            failed.append({"path": name, "error": str(e)})
            continue
        ok.append(Path(name))
        frames.append(frame)
        colour.append(image.colour)
    stack = np.stack(frames) if frames else np.zeros((0, resolution, resolution), np.float32)
    return ok, stack, np.array(colour, bool), failed


def _line(path: Path, s: Score) -> str:
    flag = f"  OUTSIDE the model's distribution: {s.ood_description}" \
        if s.out_of_distribution else ""
    return (f"{path.name}: abnormality {s.abnormality():.4f} ({DEFAULT_SCORE_KIND.label}); "
            f"log p_N - log p_M {s.ratio_nats:+.1f} nats ({s.ratio_bits_per_pixel:+.4f} "
            f"bits/px); bits/dim M {s.bpd_mixture:.4f}, N {s.bpd_normal:.4f}{flag}")


def run(args: argparse.Namespace) -> int:
    pair = load_pair(args)
    scorer = pair.scorer
    paths, frames, colour, failed = _frames(args.images, scorer.resolution)
    scores = scorer.score(frames, colour) if len(frames) else []
    for f in failed:
        print(f"error: {f['error']}", file=sys.stderr)
    if args.json:
        records = [{"path": str(p), "abnormality": s.abnormality()} | s.to_dict()
                   for p, s in zip(paths, scores, strict=True)]
        print(json.dumps({"score_kind": DEFAULT_SCORE_KIND.value,
                          "normal_sha256": pair.normal.sha256,
                          "mixture_sha256": pair.mixture.sha256,
                          "ood_threshold_bpd": scorer.ood_threshold,
                          "images": records + failed}, indent=1))
    else:
        for p, s in zip(paths, scores, strict=True):
            print(_line(p, s))
    return 1 if failed else 0
