"""The evaluation loop: every mechanism x budget, privatised once, measured every way.

Cost control (the real run is 117 images x 3 mechanisms x 5 budgets on a 2-core CPU): each
original is scored and encoded once; the DP-GLOW modes share one encoding (the raw latent, which
each clips into its own box at the budget); identical privatised sets (ID-LDP at inf = the
originals, DP-GLOW paper and tight at inf) are scored once; the adaptive attacker
reuses the mixture model's latents that scoring computes anyway. Each finished (mechanism,
budget) is written to OUT/cache/ with a fingerprint of everything it depends on, so an
interrupted run resumes where it stopped and a changed model or option recomputes.

Noise: one standard-Laplace draw per image from --seed (preview_noise), shared by all
mechanisms and budgets (common random numbers make their comparison less noisy) and by the
plain, marked and flipped version of an image (so the marker's effect is isolated).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from glow_engine.anomaly import AnomalyScorer
from glow_engine.atomic import write_text_atomic
from glow_engine.choices import DEFAULT_ALPHA
from glow_engine.data import ImageSet
from glow_engine.evaluation import baselines, checks, examples, reid
from glow_engine.evaluation.metrics import auc_with_ci, psnr, ssim
from glow_engine.evaluation.settings import Setting, build_mechanism, encode_group
from glow_engine.mechanisms import DPGlow, Encoded, Mechanism, preview_noise
from glow_engine.mechanisms.dppix import DEFAULT_BLOCK
from glow_engine.modelfile import Calibration, LoadedModel
from glow_engine.overlays import BlockMarker
from glow_engine.scores import ScoreBatch, ScoreKind

__all__ = ["DEFAULT_MARKER", "EvalConfig", "run_evaluation"]

CACHE_VERSION = 3  # bump when a change to this package changes cached numbers
DEFAULT_MARKER = BlockMarker(row=0.3, col=0.7, size=0.08, intensity=1.0)
DEFAULT_CHECK_IMAGES = 48


@dataclass
class EvalConfig:
    settings: list[Setting]
    mechanisms: list[str]
    alpha: float = DEFAULT_ALPHA
    block: int = DEFAULT_BLOCK  # DP-Pix's block side
    seed: int = 0
    marker: BlockMarker = DEFAULT_MARKER
    # Marker/flip checks on the first n images (None = all). They measure the mechanism, not
    # the data, so 48 images (96 flip decisions) suffice and keep the CPU run under 15 min.
    check_images: int | None = DEFAULT_CHECK_IMAGES
    n_boot: int = 2000
    batch_size: int = 16

    def to_dict(self) -> dict:
        d = asdict(self)
        d["settings"] = [s.key for s in self.settings]
        return d


@dataclass
class Originals:
    """The originals and what is computed from them once."""

    data: ImageSet
    pixels: np.ndarray  # float32 (N, R, R)
    scores: ScoreBatch
    pixel_gallery: np.ndarray
    latent_gallery: np.ndarray
    checks: np.ndarray  # indices of the images used for the marker and flip checks
    marked: np.ndarray
    flipped: np.ndarray
    noise: torch.Tensor  # (N, R*R) standard Laplace
    examples: np.ndarray  # indices of the example-grid images


@dataclass
class Privatised:
    plain: np.ndarray
    marked: np.ndarray
    flipped: np.ndarray


@dataclass
class Context:
    cfg: EvalConfig
    scorer: AnomalyScorer
    orig: Originals
    cache_dir: Path
    fingerprint: str
    score_memo: dict[str, ScoreBatch] = field(default_factory=dict)
    encodings: dict[str, list[list[Encoded]]] = field(default_factory=dict)


# --------------------------------------------------------------------------- originals


def check_indices(n: int, k: int | None) -> np.ndarray:
    """k images spread evenly over the set (files are often sorted by label)."""
    if k is None or k >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max(k, 1)).round().astype(np.int64))


def build_originals(data: ImageSet, scorer: AnomalyScorer, cfg: EvalConfig) -> Originals:
    pixels = data.images.astype(np.float32) / 255
    scores = scorer.evaluate(pixels, keep_latent=True)
    cal = scorer.mixture.calibration
    idx = check_indices(len(pixels), cfg.check_images)
    r = scorer.resolution
    return Originals(
        data, pixels, scores, reid.pixel_features(pixels),
        reid.latent_features(scores.latent_mixture, cal.centre, cal.width(cfg.alpha)),
        idx, checks.marked(pixels[idx], cfg.marker), checks.flipped(pixels[idx]),
        preview_noise(len(pixels), r * r, cfg.seed), examples.pick(data.labels))


def fingerprint(data: ImageSet, normal: LoadedModel, mixture: LoadedModel,
                cfg: EvalConfig) -> str:
    h = hashlib.sha256()
    for arr in (data.images, data.labels, data.patient_ids.astype(str),
                data.views.astype(str)):
        h.update(np.ascontiguousarray(arr).tobytes())
    body = {"version": CACHE_VERSION, "normal": normal.sha256, "mixture": mixture.sha256,
            "cfg": {k: v for k, v in cfg.to_dict().items() if k not in ("settings",
                                                                        "mechanisms")}}
    h.update(json.dumps(body, sort_keys=True, default=str).encode())
    return h.hexdigest()


# --------------------------------------------------------------------------- privatising


def _encodings(ctx: Context, key: str, mech: Mechanism) -> list[list[Encoded]]:
    """[plain, marked, flipped] encodings in batches, once per encode group."""
    group = encode_group(key, ctx.cfg.alpha, ctx.cfg.block)
    if group not in ctx.encodings:
        bs, orig = ctx.cfg.batch_size, ctx.orig
        ctx.encodings[group] = [[mech.encode(s[i:i + bs]) for i in range(0, len(s), bs)]
                                for s in (orig.pixels, orig.marked, orig.flipped)]
    return ctx.encodings[group]


def preview_batches(mech: Mechanism, encs: list[Encoded], noise: torch.Tensor,
                    setting: Setting) -> np.ndarray:
    out, start = [], 0
    for enc in encs:
        out.append(mech.preview(enc, setting.e_px, noise[start:start + enc.batch],
                                clip=setting.clip))
        start += enc.batch
    return np.concatenate(out).astype(np.float32)


def privatise(ctx: Context, key: str, mech: Mechanism, setting: Setting) -> Privatised:
    plain, marked, flipped = _encodings(ctx, key, mech)
    noise = ctx.orig.noise
    checked = noise[ctx.orig.checks]
    return Privatised(preview_batches(mech, plain, noise, setting),
                      preview_batches(mech, marked, checked, setting),
                      preview_batches(mech, flipped, checked, setting))


def score_memo(ctx: Context, pixels: np.ndarray) -> ScoreBatch:
    """Score a set of images, once per distinct (8-bit) content."""
    digest = hashlib.sha256(np.rint(pixels * 255).astype(np.uint8).tobytes()).hexdigest()
    if digest not in ctx.score_memo:
        ctx.score_memo[digest] = ctx.scorer.evaluate(pixels, keep_latent=True)
    return ctx.score_memo[digest]


# --------------------------------------------------------------------------- measuring


def utility(scores: ScoreBatch, data: ImageSet, cfg: EvalConfig) -> dict:
    pa = data.views == "PA"
    out: dict = {}
    for kind in ScoreKind:
        s = scores.abnormality(kind)
        out[kind.value] = auc_with_ci(s, data.labels, data.patient_ids, cfg.n_boot,
                                      cfg.seed).to_dict()
        out[f"{kind.value}_pa"] = auc_with_ci(s[pa], data.labels[pa], data.patient_ids[pa],
                                              cfg.n_boot, cfg.seed).to_dict()
    return out


def attacker_box(mech: Mechanism, e_px: float, calibration: Calibration,
                 alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """(centre, width) of the box the adaptive attacker clips into: DP-GLOW's own box at this
    budget (it knows the mechanism), the published one for the pixel mechanisms."""
    if isinstance(mech, DPGlow):
        lo, width = mech.box_at(e_px)
        return lo + width / 2, width
    return calibration.centre, calibration.width(alpha)


def reidentification(orig: Originals, priv: np.ndarray, latents: np.ndarray,
                     box: tuple[np.ndarray, np.ndarray], cfg: EvalConfig) -> dict:
    n = len(priv)
    truth = np.arange(n)
    centre, width = box
    gallery = reid.latent_features(orig.scores.latent_mixture, centre, width)
    queries = {"pixel": (reid.pixel_features(priv), orig.pixel_gallery),
               "latent": (reid.latent_features(latents, centre, width), gallery)}
    out: dict = {}
    for name, (q, g) in queries.items():
        own = reid.reid_ranks(q, g, truth)
        sp, counts = reid.same_patient_ranks(q, g, orig.data.patient_ids)
        out[name] = reid.summarise(own, sp, counts, n).to_dict() | {
            "ranks": own.tolist(),
            "verification": reid.verification_auc(q @ g.T, orig.data.patient_ids, cfg.n_boot,
                                                  cfg.seed)}
    return out


def measure(ctx: Context, key: str, mech: Mechanism, setting: Setting) -> dict:
    t0 = time.perf_counter()
    orig, cfg = ctx.orig, ctx.cfg
    priv = privatise(ctx, key, mech, setting)
    scores = score_memo(ctx, priv.plain)
    cal = ctx.scorer.mixture.calibration
    plain_checked = priv.plain[orig.checks]
    result = {
        "mechanism": key, "setting": setting.key, "e_px": setting.e_px, "clip": setting.clip,
        "name": mech.name, "mode": mech.mode, "label": mech.label,  # as a release records them
        "describe": mech.describe(setting.e_px, setting.clip),
        "auc": utility(scores, orig.data, cfg),
        "ssim": ssim(orig.pixels, priv.plain).tolist(),
        "psnr": psnr(orig.pixels, priv.plain).tolist(),
        "out_of_distribution": float(scores.out_of_distribution.mean()),
        "scores": {"ratio_nats": scores.ratio_nats.tolist(),
                   "bpd_mixture": scores.bpd_mixture.tolist(),
                   "bpd_normal": scores.bpd_normal.tolist()},
        "reid": reidentification(orig, priv.plain, scores.latent_mixture,
                                 attacker_box(mech, setting.e_px, cal, cfg.alpha), cfg),
        "baselines": baselines.compressor_aucs(priv.plain, orig.data, cfg.n_boot, cfg.seed),
        "marker": checks.marker_check(orig.pixels[orig.checks], orig.marked, plain_checked,
                                      priv.marked, cfg.marker),
        "flip": checks.flip_check(orig.pixels[orig.checks], plain_checked, priv.flipped),
    }
    result["seconds"] = round(time.perf_counter() - t0, 1)
    examples.save(_cache_path(ctx, key, setting, ".npz"),
                  examples.rows(priv.plain, priv.marked, priv.flipped, orig.examples))
    examples.save(image_cache_path(ctx.cache_dir, key, setting), priv.plain)  # for learned.py
    return result


# --------------------------------------------------------------------------- cache


def _cache_path(ctx: Context, key: str, setting: Setting, suffix: str) -> Path:
    return ctx.cache_dir / f"{key}__{setting.key}{suffix}"


def image_cache_path(cache_dir: Path, key: str, setting: Setting) -> Path:
    """The privatised images of one run, 8-bit (derived from the data: they stay in OUT)."""
    return cache_dir / f"{key}__{setting.key}.images.npz"


def cached_images(cache_dir: Path, key: str, setting: Setting) -> np.ndarray:
    return examples.load(image_cache_path(cache_dir, key, setting))


def _load_cached(ctx: Context, key: str, setting: Setting) -> dict | None:
    path = _cache_path(ctx, key, setting, ".json")
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    ok = stored.get("fingerprint") == ctx.fingerprint
    files = (_cache_path(ctx, key, setting, ".npz"), image_cache_path(ctx.cache_dir, key, setting))
    return stored["result"] if ok and all(f.exists() for f in files) else None


def _store(ctx: Context, key: str, setting: Setting, result: dict) -> None:
    path = _cache_path(ctx, key, setting, ".json")
    # atomic: an interrupted run never leaves a half-written entry
    write_text_atomic(path, json.dumps({"fingerprint": ctx.fingerprint, "result": result}),
                      overwrite=True)


# --------------------------------------------------------------------------- loop


def run_evaluation(data: ImageSet, normal: LoadedModel, mixture: LoadedModel, cfg: EvalConfig,
                   out: Path, progress: bool = True,
                   log: Callable[[str], None] = print) -> tuple[dict, Originals]:
    """Run (or resume) every mechanism x setting; returns (results, originals)."""
    if len(data) < 2:
        raise ValueError("the evaluation needs at least two images")
    t0 = time.perf_counter()
    cache_dir = Path(out) / "cache"
    cache_dir.mkdir(parents=True, exist_ok=True)
    scorer = AnomalyScorer(normal, mixture, cfg.batch_size)
    log(f"scoring {len(data)} original images ...")
    orig = build_originals(data, scorer, cfg)
    ctx = Context(cfg, scorer, orig, cache_dir, fingerprint(data, normal, mixture, cfg))
    ctx.score_memo[hashlib.sha256(data.images.tobytes()).hexdigest()] = orig.scores
    runs: list[dict] = []
    todo = [(k, s) for k in cfg.mechanisms for s in cfg.settings]
    bar = tqdm(todo, desc="evaluating", unit="run", disable=not progress)
    mechs: dict[str, Mechanism] = {}
    for key, setting in bar:
        bar.set_postfix_str(f"{key} e_px={setting.key}")
        result = _load_cached(ctx, key, setting)
        if result is None:
            mech = mechs.setdefault(key, build_mechanism(key, mixture, cfg.alpha,
                                                                 cfg.block))
            result = measure(ctx, key, mech, setting)
            _store(ctx, key, setting, result)
        runs.append(result)
    bar.close()
    galleries = {"pixel": orig.pixel_gallery, "latent": orig.latent_gallery}
    original = {"auc": utility(orig.scores, data, cfg),
                "baselines": baselines.compressor_aucs(orig.pixels, data, cfg.n_boot, cfg.seed)
                | {"view": baselines.view_auc(data, cfg.n_boot, cfg.seed)},
                "complexity_corrected": baselines.complexity_corrected_aucs(
                    {"bpd_mixture": orig.scores.bpd_mixture,
                     "bpd_normal": orig.scores.bpd_normal}, orig.pixels, data, cfg.n_boot,
                    cfg.seed),
                "verification": {a: reid.verification_auc(g @ g.T, data.patient_ids, cfg.n_boot,
                                                           cfg.seed) for a, g in galleries.items()},
                "out_of_distribution": float(orig.scores.out_of_distribution.mean()),
                "scores": {"ratio_nats": orig.scores.ratio_nats.tolist(),
                           "bpd_mixture": orig.scores.bpd_mixture.tolist(),
                           "bpd_normal": orig.scores.bpd_normal.tolist()}}
    summary = _header(orig, normal, mixture, cfg) | {
        "original": original, "runs": runs,
        "seconds": round(time.perf_counter() - t0, 1)}
    return summary, orig


def _model_info(model: LoadedModel) -> dict:
    return {"name": model.meta.get("name"), "path": str(model.path) if model.path else None,
            "sha256": model.sha256, "resolution": model.resolution,
            "validation_bpd": model.meta.get("validation", {}).get("bpd")}


def _header(orig: Originals, normal: LoadedModel, mixture: LoadedModel, cfg: EvalConfig) -> dict:
    data, labels = orig.data, orig.data.labels
    return {
        "data": data.description, "images": len(data),
        "normal_images": int((labels == 0).sum()), "abnormal_images": int((labels == 1).sum()),
        "pa_images": int((data.views == "PA").sum()),
        "patients": len(np.unique(data.patient_ids)),
        "check_images": len(orig.checks),
        "models": {"normal": _model_info(normal), "mixture": _model_info(mixture)},
        "config": cfg.to_dict(),
        "score_kinds": {k.value: k.label for k in ScoreKind},
        "chance_top1": 1 / len(data) if len(data) else math.nan,
    }
