"""The measured risk table that ships with a model pair (``risk_card.json``).

``dpglow evaluate ... --write-reference FILE`` writes it beside the validation scores, from the
evaluation's results: for every mechanism and budget measured with the clip (what a release
can be), the worse case of the two correlation attackers for each re-identification and
same-patient rate (each rate from whichever attacker does better at it), the best
verification AUC (correlation or learned attacker), the marker and flip checks, and the utility
AUCs (the anomaly score, the compressor baselines, the downstream classifier) with their 95%
intervals. Numbers only: no pixels, no ids, no per-image values.

    {"format": "dp-glow-risk-card", "format_version": 1,
     "models": {"mixture": {"sha256": ..., "name": ...}, "normal": {...}},
     "resolution": 128, "images": 117, "patients": 78, "data": "...", "config": {...},
     "chance": {"reid_top1": ..., "reid_top5": ..., "same_patient_top1": ..., ...},
     "fields": {name: meaning}, "original": {field: value},
     "identities": {"dpglow-paper": {"mechanism": "dpglow", "mode": "paper",
                                     "label": "DP-GLOW (paper, α=0.4)"}, ...},
     "mechanisms": {"dpglow-paper": {"10": {field: value, ...}, ...}, ...}}

Like the validation scores it describes one pair of models: :func:`load_risk_card` returns it
only when both sha256 hashes match. Qt-free and torch-free (the viewer and the release report
read it).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

from glow_engine.atomic import write_text_atomic
from glow_engine.budget import total_epsilon
from glow_engine.model_pair_files import load_for_models
from glow_engine.reading import MiB, read_text
from glow_engine.resources import RISK_CARD_NAME

__all__ = ["FIELDS", "FORMAT", "RISK_CARD_NAME", "RiskCard", "from_results", "load_risk_card",
           "read_risk_card", "write_risk_card"]

log = logging.getLogger(__name__)

FORMAT = "dp-glow-risk-card"
FORMAT_VERSION = 1
FIELDS = {
    "total_epsilon": "the image's budget e_px * R * R",
    "reid_top1": "share of privatised images whose own original the better correlation "
                 "attacker (who holds every original) ranks first",
    "reid_top5": "share ranked in that attacker's first five",
    "same_patient_top1": "share for which another image of the same patient is ranked first",
    "same_patient_top5": "share for which one is ranked in the first five",
    "verification_auc": "how well the best attacker tells same-patient from different-patient "
                        "pairs of a released image and another original (0.5 = chance)",
    "marker_kept": "share of a block marker's added contrast that survives (0 erased, 1 intact)",
    "flip_detected": "accuracy of telling the image from its mirror image (0.5 = chance)",
    "ssim": "structural similarity to the original (1 = the same picture)",
    "auc_bpd": "pneumonia vs normal AUC of the viewer's anomaly score (bits/dim under M)",
    "auc_ratio": "the same for the paper's score log p_N - log p_M",
    "auc_png": "the same for PNG bits per pixel (a picture-complexity baseline)",
    "auc_jpeg2000": "the same for lossless JPEG 2000 bits per pixel",
    "downstream_real_to_private": "AUC of a CNN trained on real images, on released images",
    "downstream_private_to_real": "AUC of a CNN trained on released images, on real images",
}


def _auc_fields(name: str, auc: dict | None) -> dict:
    """{"auc_x": value, "auc_x_ci95": [lo, hi]} from an AUC dict (nothing when absent)."""
    if not auc:
        return {}
    return {name: auc["auc"], f"{name}_ci95": list(auc["ci95"])}


def _learned(results: dict) -> dict[tuple[str, str], dict]:
    learned = results.get("learned") or {}
    return {(r["mechanism"], r["setting"]): r for r in learned.get("runs", [])}


def _best_verification(candidates: dict[str, dict]) -> dict:
    known = {k: v for k, v in candidates.items() if v and v.get("auc") is not None
             and math.isfinite(v["auc"])}
    if not known:
        return {}
    name = max(known, key=lambda k: known[k]["auc"])
    return _auc_fields("verification_auc", known[name]) | {"verification_attacker": name}


def _row(run: dict, learned: dict | None, resolution: int) -> dict:
    reid = run["reid"]

    def stronger(rate: str) -> str | None:  # the risk is what the stronger attacker achieves
        known = [a for a in ("pixel", "latent") if reid[a].get(rate) is not None]
        return max(known, key=lambda a: reid[a][rate]) if known else None

    def worst(rate: str) -> float | None:  # None: not measurable (no same-patient pairs)
        attacker = stronger(rate)
        return None if attacker is None else reid[attacker][rate]

    best, same = stronger("top1"), stronger("same_patient_top1")
    e_px = float(run["e_px"])  # "inf" in results.json
    row = {"total_epsilon": "inf" if math.isinf(e_px) else total_epsilon(e_px, resolution),
           "reid_top1": worst("top1"), "reid_top5": worst("top5"),
           "same_patient_top1": worst("same_patient_top1"),
           "same_patient_top5": worst("same_patient_top5"), "reid_attacker": best,
           "same_patient_attacker": same,
           "marker_kept": run["marker"]["marker_kept_mean"],
           "flip_detected": run["flip"]["accuracy"],
           "ssim": sum(run["ssim"]) / len(run["ssim"])}
    row |= _auc_fields("auc_bpd", run["auc"]["bpd_mixture"])
    row |= _auc_fields("auc_ratio", run["auc"]["ratio"])
    for name, base in run.get("baselines", {}).items():
        row |= _auc_fields(f"auc_{name}", base["all"])
    candidates = {a: reid[a].get("verification") for a in ("pixel", "latent")}
    if learned:
        attacker = learned.get("attacker", {})
        candidates |= {f"siamese-{k}": v for k, v in attacker.items() if isinstance(v, dict)}
        for k, v in learned.get("downstream", {}).items():
            if isinstance(v, dict):
                row |= _auc_fields(f"downstream_{k}", v)
    return row | _best_verification(candidates)


def from_results(results: dict) -> dict:
    """The risk card's body from `dpglow evaluate`'s results as results.json holds them
    (JSON-clean: "inf" for infinity, null for NaN)."""
    resolution = results["models"]["mixture"]["resolution"]
    learned = _learned(results)
    mechanisms: dict[str, dict] = {}
    identities: dict[str, dict] = {}
    for run in results["runs"]:
        if not run["clip"]:  # never a release: without the clip nothing is bounded
            continue
        key = run["mechanism"]
        identities[key] = {"mechanism": run["name"], "mode": run["mode"],
                           "label": run.get("label", key)}
        mechanisms.setdefault(key, {})[run["setting"]] = _row(
            run, learned.get((key, run["setting"])), resolution)
    first = results["runs"][0]["reid"]["pixel"]
    orig = results["original"]
    original = _auc_fields("auc_bpd", orig["auc"]["bpd_mixture"]) | _auc_fields(
        "auc_ratio", orig["auc"]["ratio"])
    for name, base in orig.get("baselines", {}).items():
        original |= _auc_fields(f"auc_{name}", base if name == "view" else base["all"])
    learned_orig = (results.get("learned") or {}).get("original", {})
    if "downstream" in learned_orig:
        original |= _auc_fields("downstream_real_to_real",
                                learned_orig["downstream"]["real_to_real"])
    candidates = dict(orig.get("verification", {}))
    if "attacker" in learned_orig:
        candidates["siamese-originals"] = learned_orig["attacker"]["originals"]
    original |= _best_verification(candidates)
    models = {role: {"sha256": m["sha256"], "name": m.get("name")}
              for role, m in results["models"].items()}
    cfg = results["config"]
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "models": models,
        "resolution": resolution, "images": results["images"],
        "patients": results["patients"], "data": results["data"],
        "config": {k: cfg.get(k) for k in ("alpha", "block", "seed", "n_boot")},
        "chance": {"reid_top1": first["chance_top1"], "reid_top5": first["chance_top5"],
                   "same_patient_top1": first["same_patient_chance_top1"],
                   "same_patient_top5": first["same_patient_chance_top5"],
                   "verification_auc": 0.5, "flip_detected": 0.5},
        "fields": FIELDS, "original": original, "identities": identities,
        "mechanisms": mechanisms}


# --------------------------------------------------------------------------- the file


@dataclass(frozen=True)
class RiskCard:
    body: dict

    @property
    def mixture_sha256(self) -> str:
        return self.body["models"]["mixture"]["sha256"]

    @property
    def normal_sha256(self) -> str:
        return self.body["models"]["normal"]["sha256"]

    def key_of(self, mechanism: str, mode: str) -> str | None:
        """The card's key of a release's mechanism and mode (as the ledger records them)."""
        for key, ident in self.body["identities"].items():
            if (ident["mechanism"], ident["mode"]) == (mechanism, mode):
                return key
        return None

    def label(self, key: str) -> str:
        return self.body["identities"][key]["label"]

    def budgets(self, key: str) -> dict[float, dict]:
        """Measured finite budgets of `key`, ascending, with their fields."""
        rows = self.body["mechanisms"].get(key, {})
        return dict(sorted((float(b), r) for b, r in rows.items() if math.isfinite(float(b))))

    def nearest(self, key: str, e_px: float) -> list[tuple[float, dict]]:
        """The measured budgets that bracket e_px: itself if measured, else the nearest below
        and above (one of them at either end), on the log axis."""
        rows = self.budgets(key)
        if math.isinf(e_px):
            inf = self.body["mechanisms"].get(key, {}).get("inf")
            return [(math.inf, inf)] if inf else []
        exact = [b for b in rows if math.isclose(b, e_px, rel_tol=1e-9)]
        if exact:
            return [(exact[0], rows[exact[0]])]
        below = [b for b in rows if b < e_px]
        above = [b for b in rows if b > e_px]
        return [(b, rows[b]) for b in ([max(below)] if below else []) + (
            [min(above)] if above else [])]


def write_risk_card(path: str | Path, results: dict) -> RiskCard:
    body = from_results(results)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(body, indent=1, allow_nan=False) + "\n", overwrite=True)
    return RiskCard(body)


def read_risk_card(path: str | Path) -> RiskCard:
    """The card in `path`, whichever models it belongs to. Raises OSError, or ValueError for
    a malformed file."""
    body = json.loads(read_text(path, what="risk card", limit=16 * MiB))  # guarded
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} file")
    if body.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"format version {body.get('format_version')!r} is not "
                         f"{FORMAT_VERSION}")
    card = RiskCard(body)
    try:
        hashes = (card.mixture_sha256, card.normal_sha256)
        for key in body["identities"]:
            card.budgets(key)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"malformed risk card ({type(exc).__name__}: {exc})") from None
    if not all(isinstance(h, str) for h in hashes):
        raise ValueError("malformed risk card (the model hashes are not text)")
    return card


def load_risk_card(path: str | Path | None, mixture_sha256: str | None,
                   normal_sha256: str | None) -> RiskCard | None:
    """The card in `path` if it was measured with these models, else None (the reason is
    logged: no file, unreadable, or other models). A hash of None matches any model: a release
    by a mechanism without a model (ID-LDP, DP-Pix) passes None for both, the viewer both."""
    return load_for_models(path, read_risk_card, lambda c: (c.mixture_sha256, c.normal_sha256),
                           mixture_sha256, normal_sha256, "risk card", log)
