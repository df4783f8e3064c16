"""The validation score distribution that ships with a model pair (``reference_scores.json``).

The viewer draws where the open image's score lies against the scores of the validation
normals and abnormals. Those come from ``dpglow evaluate ... --write-reference FILE``, which
stores, per validation image, the two scores of ``glow_engine.scores`` (numbers only: no
pixels, no file names, no patient ids; the pairs are sorted by bits/dim, so not even the order
of the data file is kept):

    {"format": "dp-glow-reference", "format_version": 1,
     "models": {"mixture": {"sha256": ..., "name": ...}, "normal": {"sha256": ..., ...}},
     "data": {"file": "nih_cxr14_subset_256.npz", "split": "val", "images": 117, ...},
     "fields": {"bpd_mixture": "bits/dim under M", "ratio_bits_per_pixel": "..."},
     "normal":   {"label": 0, "bpd_mixture": [...], "ratio_bits_per_pixel": [...]},
     "abnormal": {"label": 1, "bpd_mixture": [...], "ratio_bits_per_pixel": [...]},
     "privatised": [{"mechanism": "dpglow", "mode": "paper", "options": {"alpha": 0.4},
                     "e_px": 100.0, "auc": {"bpd_mixture": {"auc": ..., "ci95": [...]}, ...},
                     "normal": {...}, "abnormal": {...}}, ...]}

"privatised" (optional: older files lack it) holds the same validation images' scores after
privatisation, one entry per mechanism, variant and measured budget of the evaluation (its
preview noise, one draw per image), with the evaluation's AUC of each score at that setting:
the viewer judges a privatised pane against the entry of its mechanism and variant at the
same budget, or the nearest measured one (:meth:`ValidationScores.privatised_reference`).

The scores describe one pair of models: :func:`load_validation_scores` returns it only when both
sha256 content hashes match the loaded models, so a user's own model never shows another
model's distribution. Any other case (no file, unreadable, other models) returns None and logs
why. Qt-free.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from glow_engine.atomic import write_text_atomic
from glow_engine.bits import bits_per_pixel
from glow_engine.model_pair_files import load_for_models
from glow_engine.reading import MiB, read_text
from glow_engine.resources import VALIDATION_SCORES_NAME
from glow_engine.scores import ScoreBatch, ScoreKind

if TYPE_CHECKING:  # the viewer reads these files without importing torch
    from glow_engine.modelfile import LoadedModel

__all__ = [
    "FORMAT",
    "VALIDATION_SCORES_NAME",
    "PrivatisedReference",
    "ReferenceMatch",
    "ValidationGroup",
    "ValidationScores",
    "load_validation_scores",
    "privatised_entries",
    "read_validation_scores",
    "write_from_scores",
    "write_validation_scores",
]

log = logging.getLogger(__name__)

FORMAT = "dp-glow-reference"
FORMAT_VERSION = 1
GROUPS = {"normal": 0, "abnormal": 1}  # group name -> label
FIELDS = {"bpd_mixture": "bits/dim under the mixture model M",
          "ratio_bits_per_pixel": "log p_N - log p_M in bits per pixel (higher = more normal)"}
_DIGITS = 5  # 1e-5 bits/dim: far below anything a histogram shows


@dataclass(frozen=True, eq=False)
class ValidationGroup:
    """The validation images of one label: one value per image in each array."""

    label: int
    bpd_mixture: np.ndarray
    ratio_bits_per_pixel: np.ndarray

    def __len__(self) -> int:
        return len(self.bpd_mixture)

    def values(self, kind: ScoreKind) -> np.ndarray:
        """The score of `kind` in the units the viewer shows: bits/dim under M, or the ratio
        log p_N - log p_M in bits per pixel."""
        return self.bpd_mixture if kind is ScoreKind.BPD_MIXTURE else self.ratio_bits_per_pixel


@dataclass(frozen=True, eq=False)
class PrivatisedReference:
    """The validation images privatised by one mechanism and variant at one budget."""

    mechanism: str  # registry name ("dpglow")
    mode: str  # the variant as a release records it (Mechanism.mode)
    options: dict  # what else the variant was built with ({"alpha": 0.4}, {"block": 8})
    e_px: float  # may be math.inf (no noise, latent still clipped)
    auc: dict  # score kind -> {"auc", "ci95"}: how well that score told the groups apart
    normal: ValidationGroup
    abnormal: ValidationGroup

    def values(self, kind: ScoreKind) -> np.ndarray:
        return np.concatenate([self.normal.values(kind), self.abnormal.values(kind)])

    def typical(self, value: float, kind: ScoreKind) -> bool:
        """Within the range the privatised validation images reached at this setting (a rule
        with nothing tuned: outside it, no validation image was as atypical)."""
        values = self.values(kind)
        return bool(values.min() <= value <= values.max())


@dataclass(frozen=True)
class ReferenceMatch:
    """The privatised reference a pane is judged against, and whether it is the pane's own
    setting or the nearest measured one."""

    reference: PrivatisedReference
    exact: bool


@dataclass(frozen=True, eq=False)
class ValidationScores:
    mixture_sha256: str
    normal_sha256: str
    data: dict  # {"file", "split", "images", ...}: where the scores come from
    normal: ValidationGroup
    abnormal: ValidationGroup
    models: dict = field(default_factory=dict)  # {"mixture": {...}, "normal": {...}}
    privatised: tuple[PrivatisedReference, ...] = ()

    def privatised_reference(self, mechanism: str, mode: str, options: dict,
                             e_px: float) -> ReferenceMatch | None:
        """The entry of this mechanism and variant at `e_px`, else at the nearest measured
        budget (on a log scale; ∞ only matches ∞); None when none was measured. Options
        that differ from the measured ones (another α) make the match inexact too."""
        same = [r for r in self.privatised if r.mechanism == mechanism and r.mode == mode
                and math.isinf(r.e_px) == math.isinf(e_px)]
        if not same:
            return None
        if math.isinf(e_px):
            best = same[0]
        else:
            best = min(same, key=lambda r: abs(math.log10(r.e_px / e_px)))
        exact = (best.e_px == e_px or math.isinf(e_px)) and all(
            options.get(k) == v for k, v in best.options.items())
        return ReferenceMatch(best, exact)

    @property
    def description(self) -> str:
        """e.g. "nih_cxr14_subset_256.npz split val: 62 normal, 55 abnormal"."""
        where = self.data.get("file") or "?"
        if self.data.get("split"):
            where += f" split {self.data['split']}"
        return f"{where}: {len(self.normal)} normal, {len(self.abnormal)} abnormal"


def write_validation_scores(path: str | Path, *, mixture_sha256: str, normal_sha256: str,
                    labels: np.ndarray, bpd_mixture: np.ndarray,
                    ratio_bits_per_pixel: np.ndarray, data: dict,
                    models: dict | None = None,
                    privatised: list[dict] | None = None) -> ValidationScores:
    """Write the validation scores file atomically and return what it holds.

    labels: 0 (normal) or 1 (abnormal) per image; images of any other label (unknown: -1) are
    left out. bpd_mixture, ratio_bits_per_pixel: the images' scores, in the same order.
    data: a JSON-able description of the images' source, at least {"file", "split"}; never
    the images' ids. privatised: the entries :func:`privatised_entries` makes.
    """
    labels = np.asarray(labels)
    bpd = np.asarray(bpd_mixture, dtype=np.float64)
    ratio = np.asarray(ratio_bits_per_pixel, dtype=np.float64)
    if not (len(labels) == len(bpd) == len(ratio)):
        raise ValueError(f"{len(labels)} labels but {len(bpd)} bits/dim and {len(ratio)} "
                         "ratio values")
    if not (np.isfinite(bpd).all() and np.isfinite(ratio).all()):
        raise ValueError("a reference score is not finite")
    body: dict = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "models": {"mixture": {"sha256": mixture_sha256}, "normal": {"sha256": normal_sha256}},
        "data": dict(data, images=int(np.isin(labels, list(GROUPS.values())).sum())),
        "fields": FIELDS,
    }
    for role, info in (models or {}).items():
        body["models"].setdefault(role, {}).update(
            {k: v for k, v in info.items() if k != "sha256"})
    body.update(_groups(labels, bpd, ratio))
    if not (body["normal"]["bpd_mixture"] and body["abnormal"]["bpd_mixture"]):
        raise ValueError("a reference needs labelled normal (0) and abnormal (1) images")
    if privatised:
        body["privatised"] = privatised
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(body, indent=1) + "\n", overwrite=True)
    return _parse(body)


def write_from_scores(path: str | Path, scores: ScoreBatch, labels: np.ndarray,
                      normal: LoadedModel, mixture: LoadedModel, data: dict,
                      runs: list[dict] = ()) -> ValidationScores:
    """write_validation_scores from an AnomalyScorer's ScoreBatch of the images labelled
    `labels`, with the privatised images' scores of the evaluation's `runs` (its results'
    "runs", glow_engine.evaluation.runner)."""
    info = {role: {"name": m.meta.get("name"), "resolution": m.resolution}
            for role, m in (("mixture", mixture), ("normal", normal))}
    return write_validation_scores(path, mixture_sha256=mixture.sha256, normal_sha256=normal.sha256,
                           labels=labels, bpd_mixture=scores.bpd_mixture,
                           ratio_bits_per_pixel=bits_per_pixel(scores.ratio_nats,
                                                               scores.num_pixels),
                           data=data, models=info,
                           privatised=privatised_entries(runs, labels, scores.num_pixels))


def privatised_entries(runs: list[dict], labels: np.ndarray, num_pixels: int) -> list[dict]:
    """One entry per run that a release could make (clipped: the plain reconstruction is
    left out): the privatised images' scores per group and the run's AUCs. A run with a
    non-finite score is left out (it could not be drawn or compared)."""
    entries = []
    for run in runs:
        if not run.get("clip", True):
            continue
        scores = run["scores"]
        bpd = np.asarray(scores["bpd_mixture"], dtype=np.float64)
        ratio = bits_per_pixel(np.asarray(scores["ratio_nats"], dtype=np.float64), num_pixels)
        if not (np.isfinite(bpd).all() and np.isfinite(ratio).all()):
            log.warning("%s at e_px %s: a privatised score is not finite; left out of the "
                        "reference", run["mechanism"], run["setting"])
            continue
        e_px = float(run["e_px"])
        entries.append({
            "mechanism": run["name"], "mode": run["mode"], "options": run.get("options", {}),
            "e_px": "inf" if math.isinf(e_px) else e_px,
            "auc": {kind.value: {"auc": run["auc"][kind.value]["auc"],
                                 "ci95": run["auc"][kind.value]["ci95"]} for kind in ScoreKind},
            **_groups(np.asarray(labels), bpd, ratio)})
    return entries


def read_validation_scores(path: str | Path) -> ValidationScores:
    """The validation scores in `path`, whichever models it belongs to. Raises OSError, or
    ValueError for a malformed file (json.JSONDecodeError is one)."""
    return _parse(json.loads(read_text(path, what="validation scores", limit=64 * MiB)))


def load_validation_scores(path: str | Path | None, mixture_sha256: str,
                   normal_sha256: str | None) -> ValidationScores | None:
    """The validation scores in `path` if it was made with exactly these two models, else None (the
    reason is logged: no file, unreadable, or other models)."""
    if path is not None and normal_sha256 is None:
        log.info("no validation reference: no normal-only model is loaded")
        return None
    return load_for_models(path, read_validation_scores,
                           lambda v: (v.mixture_sha256, v.normal_sha256), mixture_sha256,
                           normal_sha256, "validation reference", log)


# --------------------------------------------------------------------------- parsing


def _rounded(values: np.ndarray) -> list[float]:
    return [round(float(v), _DIGITS) for v in values]


def _groups(labels: np.ndarray, bpd: np.ndarray, ratio: np.ndarray) -> dict:
    """{"normal": {...}, "abnormal": {...}}, each sorted by bits/dim (the data file's order
    is dropped)."""
    out = {}
    for name, label in GROUPS.items():
        mask = labels == label
        order = np.argsort(bpd[mask], kind="stable")
        out[name] = {"label": label, "bpd_mixture": _rounded(bpd[mask][order]),
                     "ratio_bits_per_pixel": _rounded(ratio[mask][order])}
    return out


def _parse(body: object) -> ValidationScores:
    try:
        if not isinstance(body, dict) or body.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} file")
        if body.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"format version {body.get('format_version')!r} is not "
                             f"{FORMAT_VERSION}")
        models = body["models"]
        groups = {name: _group(body[name], label) for name, label in GROUPS.items()}
        return ValidationScores(str(models["mixture"]["sha256"]), str(models["normal"]["sha256"]),
                         dict(body.get("data", {})), groups["normal"], groups["abnormal"],
                         models, tuple(map(_privatised, body.get("privatised", []))))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"malformed reference ({type(exc).__name__}: {exc})") from None


def _group(raw: dict, label: int) -> ValidationGroup:
    if raw.get("label") != label:
        raise ValueError(f"group label {raw.get('label')!r}, expected {label}")
    bpd = np.asarray(raw["bpd_mixture"], dtype=np.float64)
    ratio = np.asarray(raw["ratio_bits_per_pixel"], dtype=np.float64)
    if bpd.ndim != 1 or bpd.shape != ratio.shape or not len(bpd):
        raise ValueError("each group needs equally long, non-empty lists of scores")
    if not (np.isfinite(bpd).all() and np.isfinite(ratio).all()):
        raise ValueError("a reference score is not finite")
    return ValidationGroup(label, bpd, ratio)


def _privatised(raw: dict) -> PrivatisedReference:
    e_px = float(raw["e_px"])  # "inf" reads as math.inf
    if not e_px > 0:
        raise ValueError(f"a privatised reference's budget must be positive, got {e_px}")
    return PrivatisedReference(str(raw["mechanism"]), str(raw["mode"]),
                               dict(raw.get("options", {})), e_px, dict(raw["auc"]),
                               _group(raw["normal"], GROUPS["normal"]),
                               _group(raw["abnormal"], GROUPS["abnormal"]))
