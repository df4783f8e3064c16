"""`dpglow privatize INPUT... --epsilon-per-pixel E --out DIR`: batch release (the work is in
glow_engine.release.batch)."""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from tqdm import tqdm

from glow_engine.budget import parse_e_px
from glow_engine.choices import (
    DEFAULT_ALPHA,
    DEFAULT_BLOCK,
    DEFAULT_ESTIMATE,
    DEFAULT_MODE,
    DPGLOW_ESTIMATES,
    DPGLOW_MODES,
    RELEASE_FORMATS,
)
from glow_engine.commands import argument_type
from glow_engine.device import pick_device, torchrun_ranks
from glow_engine.errors import UserError
from glow_engine.imaging.errors import MIN_SIDE
from glow_engine.mechanism_specs import MECHANISM_SPECS, spec_of
from glow_engine.mechanisms import Mechanism, create_mechanism
from glow_engine.modelfile import load_model
from glow_engine.release.batch import (
    MAX_SIDE,
    ReleaseOptions,
    Summary,
    finish_shards,
    release_folder,
    shared_run_secret,
)
from glow_engine.release.deid import DEFAULT_LINKAGE, LINKAGES
from glow_engine.release.inputs import patient_pattern
from glow_engine.release.ledger import Ledger, default_ledger_path
from glow_engine.release.records import check_private_locations
from glow_engine.release.report import report_run
from glow_engine.resources import default_model_dir

REPORTED = ("refused", "failed", "skipped", "not-started")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image files (PNG/JPEG/TIFF/DICOM), folders (recursive) or CSV lists "
                        "(columns path[,patient_id])")
    p.add_argument("--out", type=_folder, required=True,
                   help="output folder (flat, random file names; it is what gets published)")
    p.add_argument("--format", dest="fmt", choices=sorted(RELEASE_FORMATS), default="png")
    add_release_arguments(p)


def add_release_arguments(p: argparse.ArgumentParser) -> None:
    """The options `dpglow privatize` shares with `dpglow pacs release`."""
    p.add_argument("--epsilon-per-pixel", "--e-px", dest="e_px", type=argument_type(parse_e_px),
                   required=True,
                   help="per-pixel budget e_px; the image's total epsilon is e_px * R * R "
                        "(inf: no noise, clip only)")
    p.add_argument("--mechanism", choices=list(MECHANISM_SPECS), default="dpglow")
    p.add_argument("--mode", choices=DPGLOW_MODES, default=DEFAULT_MODE,
                   help="DP-GLOW box and sensitivity: paper (the published box, Delta_k, as "
                        "published), tight (the published box, w_k) or fitted (the model's "
                        f"box for the budget, w_k); default {DEFAULT_MODE}")
    p.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help="DP-GLOW clip width")
    p.add_argument("--estimate", choices=DPGLOW_ESTIMATES, default=DEFAULT_ESTIMATE,
                   help="what DP-GLOW decodes: the released latent (plain, as published) or "
                        "the posterior mean of the original given it (post-processing: no "
                        "privacy cost; where the noise is small against the box, else the "
                        f"released latent); default {DEFAULT_ESTIMATE}")
    p.add_argument("--block-size", dest="block", type=int, default=DEFAULT_BLOCK,
                   help=f"DP-Pix block side in pixels, dividing the resolution (default "
                        f"{DEFAULT_BLOCK})")
    p.add_argument("--linkage", choices=sorted(LINKAGES), default=DEFAULT_LINKAGE,
                   help="DICOM output: 'patient' gives a patient's images in this output folder "
                        "one keyed pseudonym and study UID (HMAC under the ledger's secret); "
                        "'none' (default) links nothing")
    p.add_argument("--size", type=int, default=None,
                   help=f"side of the released square ({MIN_SIDE}..{MAX_SIDE}; with "
                        "--keep-aspect the long side); default: the model's resolution")
    p.add_argument("--keep-aspect", action="store_true",
                   help="crop the padding off: outputs keep the source's aspect ratio, which "
                        "is then published unprotected")
    p.add_argument("--model", type=Path, default=None,
                   help="model folder (default: the shipped resources/models/mixture)")
    p.add_argument("--resolution", type=int, default=None,
                   help="ID-LDP and DP-Pix only: working resolution (default: the model's)")
    p.add_argument("--ledger", type=Path, default=None,
                   help=f"privacy ledger (default {default_ledger_path()})")
    p.add_argument("--patient-budget", type=float, default=None,
                   help="a lower per-patient total-epsilon limit for this run (a higher one "
                        "than the ledger's needs --force)")
    p.add_argument("--force", action="store_true",
                   help="release past the ledger's per-patient budget (recorded as forced)")
    p.add_argument("--allow-burned-in", action="store_true",
                   help="also release DICOM sources whose BurnedInAnnotation is YES (or absent)")
    p.add_argument("--allow-unknown-burned-in", action="store_true",
                   help="release DICOM sources that do not say whether text is burned in "
                        "(BurnedInAnnotation absent), after checking their pixels")
    p.add_argument("--patient-id-pattern", metavar="REGEX", default=None,
                   type=argument_type(_pattern),
                   help="a regular expression whose first group is the patient id, searched "
                        "in each file's path relative to the folder given (or its name), "
                        r"e.g. '^(\d+)_' for 00001389_001.png; a CSV list's patient_id and a "
                        "DICOM's PatientID must agree with it")
    p.add_argument("--confirm-one-patient-per-image", dest="one_patient_per_image",
                   action="store_true",
                   help="release images that have no patient id (none in the list, none "
                        "matched by the pattern, no DICOM PatientID), each counted as a patient "
                        "of its own; without it they are refused and nothing is spent on them")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")


def _pattern(text: str) -> str:
    """Checked before anything is opened or made."""
    patient_pattern(text)
    return text


def _folder(text: str) -> Path:
    """A named folder: an empty --out would be the current folder, published by mistake."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty name is not an output folder (name one)")
    return Path(text)


def run(args: argparse.Namespace) -> int:
    ledger_path = args.ledger or default_ledger_path()
    check_private_locations(args.out, ledger_path)  # before the ledger file is made
    ranks = torchrun_ranks()  # a stray RANK outside torchrun is ignored, with a warning
    rank, world = ranks.rank, ranks.world
    mech = mechanism_of(args, world)
    opts = ReleaseOptions(e_px=args.e_px, out_dir=args.out, fmt=args.fmt, size=args.size,
                          keep_aspect=args.keep_aspect, force_budget=args.force,
                          patient_budget=args.patient_budget,
                          allow_burned_in=args.allow_burned_in,
                          allow_unknown_burned_in=args.allow_unknown_burned_in,
                          patient_id_pattern=args.patient_id_pattern,
                          one_patient_per_image=args.one_patient_per_image,
                          batch_size=args.batch_size, rank=rank, world=world,
                          run_secret=shared_run_secret(world), linkage=args.linkage)
    if math.isinf(args.e_px):
        print("warning: e_px = inf adds no noise: these images carry no privacy guarantee",
              file=sys.stderr)
    with Ledger(ledger_path) as ledger, \
            tqdm(unit="img", desc="privatising", disable=args.no_progress,
                 position=rank) as bar:
        def progress(done: int, total: int) -> None:
            bar.total, bar.n = total, done
            bar.refresh()

        summary = release_folder(args.inputs, mech, ledger, opts, on_progress=progress)
        finish_shards(opts)
        report = report_run(mech, args.e_px, summary, ledger) if world == 1 else None
    report_summary(summary, mech.describe(args.e_px), ledger.path)
    if report is not None:
        print(f"release report:     {report} (no patient data; the operator's)")
    return 0 if summary.complete else 1


def mechanism_of(args: argparse.Namespace, world: int) -> Mechanism:
    if args.resolution is not None and not MIN_SIDE <= args.resolution <= MAX_SIDE:
        raise UserError(f"--resolution must be between {MIN_SIDE} and {MAX_SIDE}, got "
                        f"{args.resolution}")
    device = pick_device(args.device)
    if device.type == "cuda" and world > 1:
        device = pick_device(f"cuda:{os.environ.get('LOCAL_RANK', 0)}")
    if args.resolution is not None and spec_of(args.mechanism).needs_model:
        raise UserError(f"--resolution applies to ID-LDP and DP-Pix only: "
                        f"{spec_of(args.mechanism).title} works at its model's resolution")
    needs_model = spec_of(args.mechanism).needs_model or args.resolution is None
    model = load_model(args.model or default_model_dir("mixture"), device) if needs_model \
        else None
    return create_mechanism(args.mechanism, model, mode=args.mode, alpha=args.alpha,
                            estimate=args.estimate, block=args.block,
                            resolution=args.resolution)


def report_summary(summary: Summary, description: str, ledger: Path) -> None:
    for outcome in summary.outcomes:
        if outcome.status in REPORTED:
            print(f"{outcome.status}: {outcome.source}: {outcome.message or 'run stopped'}",
                  file=sys.stderr)
    counts = ", ".join(f"{status.replace('-', ' ')} {summary.count(status)}"
                       for status in ("written", "done-earlier", *REPORTED)
                       if status in ("written", "done-earlier", "failed")
                       or summary.count(status))
    if summary.settled:
        counts += f"; settled {summary.settled} release(s) an interrupted run left"
    print(f"{description}\n{counts}\n"
          f"published manifest: {summary.manifest} (publish it with the images)\n"
          f"operator's record:  {summary.record} (names the sources: keep it private)\n"
          f"ledger:             {ledger}")
    if summary.own_patients:
        print(f"warning: {summary.own_patients} image(s) had no patient id and were each "
              "counted as a patient of its own, as confirmed: several images of one patient "
              "among them do not add up against the per-patient budget", file=sys.stderr)
    if summary.without_patient:
        print(f"warning: {summary.without_patient} image(s) had no patient id and were not "
              "released: give --patient-id-pattern REGEX or a CSV list with a patient_id "
              "column, or --confirm-one-patient-per-image", file=sys.stderr)
    if summary.error:
        print(f"error: {summary.error}", file=sys.stderr)
