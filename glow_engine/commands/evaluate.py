"""`dpglow evaluate --data FILE --split val --out DIR`: utility (with its baselines),
re-identification, marker and flip checks of every mechanism x privacy budget, and with
--downstream / --learned-attacker the networks trained on the training split (see
glow_engine.evaluation and docs/evaluation.md). Writes OUT/results.json, OUT/report.md and PNG
plots; resumable. --write-reference also writes the model pair's risk card beside the
validation scores."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

from glow_engine.choices import DEFAULT_ALPHA
from glow_engine.commands.score import add_model_arguments, load_pair
from glow_engine.data import ImageSet, load_image_set
from glow_engine.errors import UserError
from glow_engine.evaluation import examples, plots, report
from glow_engine.evaluation.cnn import Recipe
from glow_engine.evaluation.learned import DEFAULT_LEARNED_SETTINGS, LearnedConfig, run_learned
from glow_engine.evaluation.runner import (
    DEFAULT_CHECK_IMAGES,
    DEFAULT_MARKER,
    EvalConfig,
    Originals,
    run_evaluation,
)
from glow_engine.evaluation.settings import (
    DEFAULT_MECHANISMS,
    DEFAULT_SETTINGS,
    MECHANISMS,
    Setting,
    parse_mechanisms,
    parse_settings,
)
from glow_engine.evaluation.siamese import same_patient_pairs
from glow_engine.mechanisms.dppix import DEFAULT_BLOCK
from glow_engine.modelfile import LoadedModel
from glow_engine.overlays import BlockMarker
from glow_engine.risk_card import RISK_CARD_NAME, write_risk_card
from glow_engine.validation_scores import write_from_scores


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True,
                   help=".npz (keys images, labels, split, patient_ids, views), a folder of "
                        "images, or a CSV with columns path,label[,patient_id,view]")
    p.add_argument("--split", default="val", help="split of an .npz file (default val)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    add_model_arguments(p)
    p.add_argument("--mechanisms", default=DEFAULT_MECHANISMS,
                   help=f"comma-separated, from {', '.join(MECHANISMS)}")
    p.add_argument("--epx", default=DEFAULT_SETTINGS,
                   help="per-pixel budgets, comma-separated; inf-noclip = plain reconstruction "
                        f"(default {DEFAULT_SETTINGS})")
    p.add_argument("--alpha", type=float, default=DEFAULT_ALPHA,
                   help="DP-GLOW clip width factor")
    p.add_argument("--block-size", type=int, default=DEFAULT_BLOCK,
                   help=f"DP-Pix block side in pixels (default {DEFAULT_BLOCK})")
    p.add_argument("--seed", type=int, default=0,
                   help="preview-noise, bootstrap and network-training seed")
    p.add_argument("--marker-row", type=float, default=DEFAULT_MARKER.row)
    p.add_argument("--marker-col", type=float, default=DEFAULT_MARKER.col)
    p.add_argument("--marker-size", type=float, default=DEFAULT_MARKER.size,
                   help="side as a fraction of the image side")
    p.add_argument("--marker-intensity", type=float, default=DEFAULT_MARKER.intensity)
    p.add_argument("--check-images", type=int, default=DEFAULT_CHECK_IMAGES,
                   help="marker/flip checks on the first N images (default "
                        f"{DEFAULT_CHECK_IMAGES}; 0 = all)")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples for CIs")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--limit", type=int, default=None, help="use the first N images only")
    p.add_argument("--fresh", action="store_true", help="ignore results cached in OUT")
    p.add_argument("--no-synthetic", action="store_true",
                   help="skip the example grid of model samples")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--write-reference", type=Path, default=None, metavar="FILE",
                   help="also write the originals' scores per label, and those of their "
                        "privatised versions per mechanism and budget (numbers only), as the "
                        "models' validation reference for the viewer, e.g. "
                        "resources/models/reference_scores.json, and the measured risk table "
                        f"beside it ({RISK_CARD_NAME})")
    learned = p.add_argument_group("learned measures (networks trained on the training split)")
    learned.add_argument("--downstream", action="store_true",
                         help="train the downstream CNN: real -> privatised and privatised -> "
                              "real AUC")
    learned.add_argument("--learned-attacker", action="store_true",
                         help="train the siamese verification attacker (and its retrained "
                              "variant)")
    learned.add_argument("--learned-epx", default=DEFAULT_LEARNED_SETTINGS,
                         help="budgets at which they are trained, added to --epx (default "
                              f"{DEFAULT_LEARNED_SETTINGS}: about 30 CPU minutes)")
    learned.add_argument("--learned-mechanisms", default=None,
                         help="the mechanisms they are trained for, a subset of --mechanisms "
                              "(default: all of them; each costs about 8 CPU minutes)")
    learned.add_argument("--train-data", default=None,
                         help="training images (default: --data, when it is an .npz)")
    learned.add_argument("--train-split", default="train",
                         help="split of the training .npz (default train)")
    learned.add_argument("--learned-epochs", type=int, default=Recipe.epochs,
                         help=f"training epochs of each network (default {Recipe.epochs})")


def _config(args: argparse.Namespace) -> EvalConfig:
    try:
        marker = BlockMarker(args.marker_row, args.marker_col, args.marker_size,
                             args.marker_intensity)
    except ValueError as e:
        raise UserError(str(e)) from None
    settings = parse_settings(args.epx)
    learned = _learned_config(args)
    if learned.active:  # the learned measures read the privatised val images of these runs
        settings += [s for s in learned.settings if s not in settings]
    return EvalConfig(settings, parse_mechanisms(args.mechanisms),
                      alpha=args.alpha, block=args.block_size, seed=args.seed, marker=marker,
                      check_images=args.check_images or None, n_boot=args.bootstrap,
                      batch_size=args.batch_size)


def _learned_config(args: argparse.Namespace) -> LearnedConfig:
    if args.learned_epochs < 1:
        raise UserError("--learned-epochs must be at least 1")
    subset = None if args.learned_mechanisms is None else parse_mechanisms(args.learned_mechanisms)
    if subset is not None and (extra := set(subset) - set(parse_mechanisms(args.mechanisms))):
        raise UserError(f"--learned-mechanisms {', '.join(sorted(extra))} not in --mechanisms")
    return LearnedConfig(args.downstream, args.learned_attacker, parse_settings(args.learned_epx),
                         Recipe(epochs=args.learned_epochs), subset)


def _train_data(args: argparse.Namespace, resolution: int, val: ImageSet,
                learned: LearnedConfig) -> ImageSet:
    """The training split for the learned measures; refused if it shares a patient with the
    evaluated images (the attacker and the classifier must not have seen them) or lacks what
    the networks learn from. Checked before the evaluation starts, which can take an hour."""
    source = Path(args.train_data or args.data)
    if args.train_data is None and source.suffix != ".npz":
        raise UserError("--downstream and --learned-attacker need training images: give "
                        "--train-data")
    train = load_image_set(source, resolution,
                           split=args.train_split if source.suffix == ".npz" else None)
    shared = set(train.patient_ids.astype(str)) & set(val.patient_ids.astype(str)) - {""}
    if shared:
        raise UserError(f"the training images share {len(shared)} patient(s) with the "
                        "evaluated images; the learned measures need disjoint patients")
    if learned.downstream and not {0, 1} <= set(train.labels.tolist()):
        raise UserError(f"{source}: --downstream needs normal (0) and abnormal (1) training "
                        "images")
    if learned.attacker and not len(same_patient_pairs(train.patient_ids)):
        raise UserError(f"{source}: --learned-attacker needs training patients with several "
                        "images (patient_ids)")
    return train


def _data(args: argparse.Namespace, resolution: int) -> ImageSet:
    source = Path(args.data)
    data = load_image_set(source, resolution,
                          split=args.split if source.suffix == ".npz" else None)
    if args.limit:
        data = data.subset(slice(0, args.limit), f" first {args.limit}")
    if len(data) < 2:
        raise UserError(f"{source}: {len(data)} image(s) in split {args.split!r}; need >= 2")
    return data


def write_outputs(results: dict, orig: Originals, mixture: LoadedModel, cfg: EvalConfig,
                  out: Path, synthetic: bool) -> list[Path]:
    report.add_summaries(results)
    report.write_json(results, out / "results.json")
    (out / "report.md").write_text(report.markdown(results))
    written = [out / "results.json", out / "report.md",
               plots.auc_plot(results, out / "auc_vs_epsilon.png"),
               plots.reid_plot(results, out / "reid_vs_epsilon.png"),
               plots.tradeoff_plot(results, out / "auc_vs_reid.png"),
               plots.frontier_plot(results, out / "quality_vs_reid.png"),
               plots.marker_flip_plot(results, out / "marker_flip.png")]
    written.append(plots.baselines_plot(results, out / "baselines.png"))
    if "learned" in results:
        written.append(plots.learned_plot(results, out / "learned.png"))
    written += _grids(orig, cfg, out)
    if synthetic:
        written += _synthetic_grids(mixture, cfg, out)
    return written


def _grids(orig: Originals, cfg: EvalConfig, out: Path) -> list[Path]:
    """Example grids of real images: derived from the data, so they stay in OUT."""
    originals = examples.rows(orig.pixels, orig.marked, orig.flipped, orig.examples)
    paths = []
    for key in cfg.mechanisms:
        priv = [examples.load(out / "cache" / f"{key}__{s.key}.npz") for s in cfg.settings]
        paths.append(plots.example_grid(
            originals, np.stack(priv, axis=1), cfg.settings,
            f"{MECHANISMS[key]} on evaluated images (do not publish)",
            out / f"examples_{key}.png"))
    return paths


def _synthetic_grids(mixture: LoadedModel, cfg: EvalConfig, out: Path) -> list[Path]:
    originals, grids = examples.synthetic_grids(mixture, cfg.mechanisms, cfg.settings,
                                                cfg.alpha, cfg.marker, cfg.seed, cfg.block)
    return [plots.example_grid(originals, grids[key], cfg.settings,
                               f"{MECHANISMS[key]} on images sampled from the mixture model",
                               out / f"examples_synthetic_{key}.png",
                               examples.SYNTHETIC_ROW_NAMES)
            for key in cfg.mechanisms]


def _print_summary(results: dict, settings: list[Setting]) -> None:
    o = results["original"]
    base = "  ".join(f"{k} {v['all']['auc']:.3f}" for k, v in o["baselines"].items()
                     if k != "view")
    print(f"original images: AUC ratio {o['auc']['ratio']['auc']:.3f}, "
          f"bpd {o['auc']['bpd_mixture']['auc']:.3f}; baselines {base}  "
          f"view {o['baselines']['view']['auc']:.3f}")
    for run in results["runs"]:
        s = run["summary"]
        print(f"{MECHANISMS[run['mechanism']]:>16} e_px {run['setting']:>10}: "
              f"AUC ratio {s['auc_ratio']['auc']:.3f} bpd {s['auc_bpd']['auc']:.3f} "
              f"png {run['baselines']['png']['all']['auc']:.3f}  "
              f"SSIM {s['ssim']:.3f}  re-id top-1 {s['reid_best_top1']:.2f}  "
              f"marker kept {s['marker_kept']:.2f}  flip acc {s['flip_accuracy']:.2f}")
    for run in results.get("learned", {}).get("runs", []):
        parts = [f"{name} {v['auc']:.3f}" for part in ("downstream", "attacker")
                 for name, v in run.get(part, {}).items() if isinstance(v, dict)]
        print(f"{MECHANISMS[run['mechanism']]:>16} e_px {run['setting']:>10}: "
              f"learned: {'  '.join(parts)}")


def _write_validation_scores(args: argparse.Namespace, orig: Originals, normal: LoadedModel,
                     mixture: LoadedModel, runs: list[dict]) -> None:
    """The originals' scores and those of their privatised versions (each mechanism and
    budget), already computed by the evaluation, as the viewer's reference."""
    source = Path(args.data)
    data = {"file": source.name, "split": args.split if source.suffix == ".npz" else None,
            "limit": args.limit}
    # DP-GLOW's clip width is not in its recorded mode: the viewer compares it.
    runs = [run | {"options": {"alpha": args.alpha} if run["name"] == "dpglow" else {}}
            for run in runs]
    try:
        written = write_from_scores(args.write_reference, orig.scores, orig.data.labels, normal,
                                    mixture, {k: v for k, v in data.items() if v is not None},
                                    runs)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot write the reference {args.write_reference}: {e}") from None
    print(f"wrote the validation reference ({written.description}; "
          f"{len(written.privatised)} privatised settings) to {args.write_reference}")


def run(args: argparse.Namespace) -> int:
    cfg, learned = _config(args), _learned_config(args)
    pair = load_pair(args)
    normal, mixture = pair.normal, pair.mixture
    data = _data(args, mixture.resolution)
    train = _train_data(args, mixture.resolution, data, learned) if learned.active else None
    out: Path = args.out
    if args.fresh and (out / "cache").exists():
        shutil.rmtree(out / "cache")
    out.mkdir(parents=True, exist_ok=True)
    results, orig = run_evaluation(data, normal, mixture, cfg, out,
                                  progress=not args.no_progress)
    if train is not None:
        results["learned"] = run_learned(train, data, mixture, cfg, learned, out)
    written = write_outputs(results, orig, mixture, cfg, out, not args.no_synthetic)
    _print_summary(results, cfg.settings)
    if args.write_reference is not None:
        _write_validation_scores(args, orig, normal, mixture, results["runs"])
        card = args.write_reference.with_name(RISK_CARD_NAME)
        write_risk_card(card, report.clean_json(results))
        print(f"wrote the risk card of these models to {card}")
    print(f"wrote {', '.join(p.name for p in written)} to {out} "
          f"({report.run_time(results)}; examples_<mechanism>.png show real images: keep "
          "them out of the repository)")
    return 0
