"""The learned measures of `dpglow evaluate --downstream --learned-attacker`: networks trained
on the training split, at each mechanism and budget of a (short) list.

* downstream (evaluation.downstream): real -> privatised and privatised -> real AUC;
* learned attacker (evaluation.siamese): verification AUC of the siamese network trained on
  originals, and of that network fine-tuned with privatised queries (the retrained variant).

Both need the *training* images privatised by the mechanism at the budget. They are privatised
like the val images (the seeded preview noise, one draw per image, from a seed of their own so
that no training image shares a draw with a val image), stored as 8-bit in OUT/cache and shared
by both measures. The privatised val images are the runner's own (runner.cached_images). Each
result, each privatised training set and the two networks trained on originals are cached with
a fingerprint of everything they depend on, so a resumed run or an added budget trains only what
is missing.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import safe_open, save_file

from glow_engine.atomic import write_atomic, write_text_atomic
from glow_engine.data import ImageSet
from glow_engine.evaluation import cnn, downstream, examples, reid, siamese
from glow_engine.evaluation.runner import EvalConfig, cached_images, preview_batches
from glow_engine.evaluation.settings import Setting, build_mechanism, encode_group, parse_settings
from glow_engine.mechanisms import Encoded, preview_noise
from glow_engine.modelfile import LoadedModel

__all__ = ["DEFAULT_LEARNED_SETTINGS", "LearnedConfig", "run_learned"]

VERSION = 2  # bump when a change here changes cached numbers
# e_px = 10 is the paper's smallest budget, 0.1 where the correlation attackers approach
# chance (and PriCheXy-Net's DP-Pix setting): together about 30 CPU minutes (docs/evaluation.md)
DEFAULT_LEARNED_SETTINGS = "10,0.1"


@dataclass
class LearnedConfig:
    downstream: bool = False
    attacker: bool = False
    settings: list[Setting] = field(
        default_factory=lambda: parse_settings(DEFAULT_LEARNED_SETTINGS))
    recipe: cnn.Recipe = field(default_factory=cnn.Recipe)
    mechanisms: list[str] | None = None  # a subset of the evaluation's; None: all of them

    @property
    def active(self) -> bool:
        return self.downstream or self.attacker

    @property
    def finetune_epochs(self) -> int:
        """Both attackers continue one base network for a quarter of its epochs (5 of 20):
        on pairs of originals (the attacker of originals), or with privatised queries (the
        retrained one). Equal training, and a quarter of the cost of one network per budget."""
        return max(1, self.recipe.epochs // 4)

    @property
    def finetune(self) -> cnn.Recipe:
        return replace(self.recipe, epochs=self.finetune_epochs)


@dataclass
class _Stage:
    """What every learned measurement reads."""

    train: ImageSet
    val: ImageSet
    mixture: LoadedModel
    cfg: EvalConfig
    lcfg: LearnedConfig
    cache: Path
    fingerprint: str
    log: Callable[[str], None]
    networks: dict[str, torch.nn.Module] = field(default_factory=dict)
    encodings: dict[str, list[Encoded]] = field(default_factory=dict)
    train_noise: torch.Tensor | None = None

    @property
    def train_pixels(self) -> np.ndarray:
        return self.train.images.astype(np.float32) / 255

    @property
    def val_pixels(self) -> np.ndarray:
        return self.val.images.astype(np.float32) / 255


def _fingerprint(train: ImageSet, val: ImageSet, mixture: LoadedModel, cfg: EvalConfig,
                 lcfg: LearnedConfig) -> str:
    h = hashlib.sha256()
    for data in (train, val):
        for arr in (data.images, data.labels, data.patient_ids.astype(str)):
            h.update(np.ascontiguousarray(arr).tobytes())
    body = {"version": VERSION, "mixture": mixture.sha256, "seed": cfg.seed,
            "alpha": cfg.alpha, "block": cfg.block, "batch": cfg.batch_size, "n_boot": cfg.n_boot,
            "recipe": lcfg.recipe.to_dict(), "finetune_epochs": lcfg.finetune_epochs}
    h.update(json.dumps(body, sort_keys=True).encode())
    return h.hexdigest()


# --------------------------------------------------------------------------- cache


def _cached(stage: _Stage, name: str, compute: Callable[[], dict],
            seconds: dict[str, float]) -> dict:
    """compute(), or its cached result; the time it took (then) goes into `seconds`."""
    path = stage.cache / f"{name}.json"
    try:
        stored = json.loads(path.read_text())
        if stored.get("fingerprint") == stage.fingerprint:
            seconds[name] = stored["seconds"]
            return stored["result"]
    except (OSError, ValueError, KeyError):
        pass
    t0 = time.perf_counter()
    result = compute()
    seconds[name] = round(time.perf_counter() - t0, 1)
    write_text_atomic(path, json.dumps({"fingerprint": stage.fingerprint, "result": result,
                                        "seconds": seconds[name]}), overwrite=True)
    return result


def _load_network(path: Path, fingerprint: str,
                  make: Callable[[], torch.nn.Module]) -> torch.nn.Module | None:
    try:
        with safe_open(path, "pt") as f:
            if (f.metadata() or {}).get("fingerprint") != fingerprint:
                return None
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except (OSError, SafetensorError):
        return None
    model = make()
    model.load_state_dict(state)
    return model


def _network(stage: _Stage, name: str, make: Callable[[], torch.nn.Module],
             train: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """A network trained on the originals: once per process, its weights cached."""
    if name not in stage.networks:
        path = stage.cache / f"{name}.safetensors"
        model = _load_network(path, stage.fingerprint, make)
        if model is None:
            stage.log(f"training the {name.replace('_', ' ')} on the original training images")
            model = train()
            state = {k: v.contiguous() for k, v in model.state_dict().items()}
            write_atomic(path, lambda tmp: save_file(state, tmp,
                                                     {"fingerprint": stage.fingerprint}),
                         overwrite=True)
        stage.networks[name] = model.eval()
    return stage.networks[name]


def _classifier(stage: _Stage) -> downstream.Classifier:
    return _network(stage, "real_classifier", lambda: downstream.Classifier(
                    stage.lcfg.recipe.input),
                    lambda: downstream.train_classifier(stage.train_pixels, stage.train.labels,
                                                        stage.cfg.seed, stage.lcfg.recipe))


def _verifier(stage: _Stage, variant: str = "original") -> siamese.Verifier:
    """The base verifier (trained on pairs of originals) or the attacker of originals (the
    base continued on them for the fine-tuning epochs)."""
    train, ids, seed = stage.train_pixels, stage.train.patient_ids, stage.cfg.seed
    if variant == "base":
        def fit() -> siamese.Verifier:
            return siamese.train_verifier(train, ids, seed, stage.lcfg.recipe)
    else:
        def fit() -> siamese.Verifier:
            return siamese.train_verifier(train, ids, seed, stage.lcfg.finetune,
                                          init=_verifier(stage, "base"))
    return _network(stage, f"{variant}_verifier",
                    lambda: siamese.Verifier(stage.lcfg.recipe.input), fit)


# --------------------------------------------------------------------------- privatising


def _train_noise_seed(seed: int) -> int:
    """The training split's own preview-noise seed, never equal to a val seed in practice."""
    return int.from_bytes(hashlib.sha256(f"train-split-noise-{seed}".encode()).digest()[:7],
                          "big")


def _privatised_train(stage: _Stage, key: str, setting: Setting) -> np.ndarray:
    """The training images privatised by `key` at `setting` (cached as 8-bit)."""
    path = stage.cache / f"train__{key}__{setting.key}.npz"
    cached = examples.load(path, stage.fingerprint)
    if cached is not None:
        return cached
    cfg = stage.cfg
    mech = build_mechanism(key, stage.mixture, cfg.alpha, cfg.block)
    group = encode_group(key, cfg.alpha, cfg.block)
    if group not in stage.encodings:  # one group at a time: 795 latents at 256^2 are 400 MB
        stage.log(f"encoding the {len(stage.train)} training images for {key} ...")
        px, bs = stage.train_pixels, cfg.batch_size
        stage.encodings = {group: [mech.encode(px[i:i + bs]) for i in range(0, len(px), bs)]}
    if stage.train_noise is None:
        r = stage.mixture.resolution
        stage.train_noise = preview_noise(len(stage.train), r * r, _train_noise_seed(cfg.seed))
    stage.log(f"privatising the training images: {key} e_px {setting.key} ...")
    images = preview_batches(mech, stage.encodings[group], stage.train_noise, setting)
    examples.save(path, images, stage.fingerprint)
    return examples.load(path)


# --------------------------------------------------------------------------- measuring


def _auc(stage: _Stage, model: downstream.Classifier, pixels: np.ndarray) -> dict:
    val, cfg = stage.val, stage.cfg
    return downstream.auc(model, pixels, val.labels, val.patient_ids, cfg.n_boot, cfg.seed)


def _verification(stage: _Stage, model: siamese.Verifier, queries: np.ndarray) -> dict:
    sim = siamese.similarity(model, queries, stage.val_pixels)
    return reid.verification_auc(sim, stage.val.patient_ids, stage.cfg.n_boot, stage.cfg.seed)


def _downstream(stage: _Stage, key: str, setting: Setting) -> dict:
    private_val = cached_images(stage.cache, key, setting)
    trained = downstream.train_classifier(_privatised_train(stage, key, setting),
                                          stage.train.labels, stage.cfg.seed, stage.lcfg.recipe)
    return {"real_to_private": _auc(stage, _classifier(stage), private_val),
            "private_to_real": _auc(stage, trained, stage.val_pixels)}


def _attacker(stage: _Stage, key: str, setting: Setting) -> dict:
    private_val = cached_images(stage.cache, key, setting)
    tuned = siamese.train_verifier(
        stage.train_pixels, stage.train.patient_ids, stage.cfg.seed, stage.lcfg.finetune,
        queries=_privatised_train(stage, key, setting), init=_verifier(stage, "base"))
    return {"originals": _verification(stage, _verifier(stage), private_val),
            "retrained": _verification(stage, tuned, private_val)}


def run_learned(train: ImageSet, val: ImageSet, mixture: LoadedModel, cfg: EvalConfig,
                lcfg: LearnedConfig, out: Path,
                log: Callable[[str], None] = print) -> dict:
    """The learned measures on the originals and at every mechanism x lcfg.settings (whose
    privatised val images the runner must already have cached)."""
    t0 = time.perf_counter()
    stage = _Stage(train, val, mixture, cfg, lcfg, Path(out) / "cache",
                   _fingerprint(train, val, mixture, cfg, lcfg), log)
    seconds: dict[str, float] = {}  # per cached entry: what a fresh run of it costs
    original: dict = {}
    if lcfg.downstream:
        original["downstream"] = _cached(stage, "downstream__original", lambda: {
            "real_to_real": _auc(stage, _classifier(stage), stage.val_pixels)}, seconds)
    if lcfg.attacker:
        original["attacker"] = _cached(stage, "attacker__original", lambda: {
            "originals": _verification(stage, _verifier(stage), stage.val_pixels)}, seconds)
    runs = []
    for key in [k for k in cfg.mechanisms if lcfg.mechanisms is None or k in lcfg.mechanisms]:
        for s in lcfg.settings:
            run: dict = {"mechanism": key, "setting": s.key, "e_px": s.e_px, "clip": s.clip}
            if lcfg.downstream:
                run["downstream"] = _cached(stage, f"downstream__{key}__{s.key}",
                                            lambda k=key, s=s: _downstream(stage, k, s), seconds)
            if lcfg.attacker:
                run["attacker"] = _cached(stage, f"attacker__{key}__{s.key}",
                                          lambda k=key, s=s: _attacker(stage, k, s), seconds)
            runs.append(run)
    return {"config": {"settings": [s.key for s in lcfg.settings],
                       "recipe": lcfg.recipe.to_dict(),
                       "finetune_epochs": lcfg.finetune_epochs,
                       "train": {"data": train.description, "images": len(train),
                                 "same_patient_pairs": len(siamese.same_patient_pairs(
                                     train.patient_ids))}},
            "original": original, "runs": runs, "seconds_per_entry": seconds,
            "seconds": round(time.perf_counter() - t0, 1)}
