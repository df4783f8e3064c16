"""results.json and the Markdown report (tables shaped like the paper's Table 3, plus
re-identification, marker and flip columns)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from glow_engine.atomic import write_bytes_atomic
from glow_engine.budget import format_number, total_epsilon
from glow_engine.evaluation.settings import MECHANISMS, Setting
from glow_engine.scores import DEFAULT_SCORE_KIND, ScoreKind

__all__ = ["clean_json", "markdown", "summary_row", "write_json"]

PAPER_TABLE3 = {  # RSNA pneumonia, 512x512 (Shibata et al. 2023, Table 3): ID-LDP, DP-GLOW
    "inf-noclip": (0.807, 0.807), "1000": (0.813, 0.679), "100": (0.559, 0.665),
    "10": (0.643, 0.539)}


def clean_json(value):
    """JSON-safe copy: inf -> "inf", NaN -> null, numpy scalars -> Python."""
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def write_json(results: dict, path: Path) -> None:
    text = json.dumps(clean_json(results), indent=1, allow_nan=False)
    write_bytes_atomic(path, text.encode(), overwrite=True)


# --------------------------------------------------------------------------- summaries


def _mean(values: list[float]) -> float:
    arr = np.asarray(values, np.float64)
    return float(arr.mean()) if arr.size else math.nan


def summary_row(run: dict) -> dict:
    """The headline numbers of one run (what tables and plots show)."""
    reid = run["reid"]
    best = max(("pixel", "latent"), key=lambda a: reid[a]["top1"])
    psnr = np.asarray(run["psnr"], np.float64)
    return {
        "auc_ratio": run["auc"]["ratio"], "auc_bpd": run["auc"]["bpd_mixture"],
        "auc_ratio_pa": run["auc"]["ratio_pa"], "auc_bpd_pa": run["auc"]["bpd_mixture_pa"],
        "ssim": _mean(run["ssim"]), "psnr_median": float(np.median(psnr)),
        "reid_pixel_top1": reid["pixel"]["top1"], "reid_latent_top1": reid["latent"]["top1"],
        "reid_best_top1": reid[best]["top1"], "reid_best_top5": reid[best]["top5"],
        "reid_best_attacker": best,
        "same_patient_top1": max(reid[a]["same_patient_top1"] for a in ("pixel", "latent")),
        "marker_kept": run["marker"]["marker_kept_mean"],
        "contrast_kept": run["marker"]["contrast_kept_mean"],
        "flip_accuracy": run["flip"]["accuracy"],
        "ood": run["out_of_distribution"],
    }


def add_summaries(results: dict) -> dict:
    for run in results["runs"]:
        run["summary"] = summary_row(run)
    return results


# --------------------------------------------------------------------------- formatting


def _auc(a: dict) -> str:
    if a["auc"] is None or (isinstance(a["auc"], float) and math.isnan(a["auc"])):
        return "n/a"
    lo, hi = a["ci95"]
    ci = "" if lo is None or math.isnan(lo) else f" [{lo:.2f}, {hi:.2f}]"
    return f"{a['auc']:.3f}{ci}"


def _num(x: float, fmt: str = ".2f") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return "∞" if math.isinf(x) else format(x, fmt)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _settings(results: dict) -> list[Setting]:
    seen: dict[str, Setting] = {}
    for run in results["runs"]:
        seen.setdefault(run["setting"], Setting(float(run["e_px"]), bool(run["clip"])))
    return list(seen.values())


def _lookup(results: dict) -> dict[tuple[str, str], dict]:
    return {(r["mechanism"], r["setting"]): r for r in results["runs"]}


def _budget(s: Setting, resolution: int) -> str:
    if not s.noisy:
        return s.label
    return f"{format_number(s.e_px)} (ε = {total_epsilon(s.e_px, resolution):.3g})"


def _paper_table(results: dict) -> str:
    runs, mechs = _lookup(results), results["config"]["mechanisms"]
    res = results["models"]["mixture"]["resolution"]
    header = ["e_px (ε = e_px·H·W)"] + [f"{MECHANISMS[m]} {k}" for m in mechs
                                         for k in ("ratio", "bpd")] + ["paper ID-LDP / DP-GLOW"]
    rows = []
    for s in _settings(results):
        row = [_budget(s, res)]
        for m in mechs:
            run = runs.get((m, s.key))
            row += [_auc(run["auc"]["ratio"]), _auc(run["auc"]["bpd_mixture"])] if run \
                else ["—", "—"]
        paper = PAPER_TABLE3.get(s.key)
        row.append(f"{paper[0]:.3f} / {paper[1]:.3f}" if paper else "—")
        rows.append(row)
    return _table(header, rows)


def _detail_table(results: dict, mech: str) -> str:
    header = ["e_px", "AUC ratio", "AUC bpd", "AUC ratio PA", "AUC bpd PA", "SSIM",
              "PSNR dB (median)", "re-id top-1 pixel", "re-id top-1 latent", "re-id top-5 best",
              "same patient top-1", "contrast kept", "marker kept", "flip detected (acc.)",
              "OOD"]
    rows = []
    for s in _settings(results):
        run = _lookup(results).get((mech, s.key))
        if run is None:
            continue
        x = run["summary"]
        rows.append([s.label, _auc(x["auc_ratio"]), _auc(x["auc_bpd"]), _auc(x["auc_ratio_pa"]),
                     _auc(x["auc_bpd_pa"]), _num(x["ssim"], ".3f"), _num(x["psnr_median"], ".1f"),
                     _num(x["reid_pixel_top1"]), _num(x["reid_latent_top1"]),
                     _num(x["reid_best_top5"]), _num(x["same_patient_top1"]),
                     _num(x["contrast_kept"]), _num(x["marker_kept"]),
                     _num(x["flip_accuracy"]), f"{x['ood']:.0%}"])
    return _table(header, rows)


def _chance_line(results: dict) -> str:
    first = results["runs"][0]["reid"]["pixel"]
    same = _num(first["same_patient_chance_top1"], ".3f")
    return (f"Chance levels: own-image top-1 {first['chance_top1']:.3f}, top-5 "
            f"{first['chance_top5']:.3f}; same-patient top-1 {same} "
            f"over {first['same_patient_queries']} images whose patient has another image; "
            "flip detector 0.50.")


def markdown(results: dict) -> str:
    cfg, orig = results["config"], results["original"]["auc"]
    m = cfg["marker"]
    models = results["models"]
    parts = [
        "# DP-GLOW evaluation",
        f"Data: {results['data']}: {results['images']} images ({results['normal_images']} "
        f"normal, {results['abnormal_images']} abnormal, {results['pa_images']} PA), "
        f"{results['patients']} patients. Models: mixture `{models['mixture']['name']}` "
        f"(sha256 {models['mixture']['sha256'][:12]}), normal `{models['normal']['name']}` "
        f"(sha256 {models['normal']['sha256'][:12]}), {models['mixture']['resolution']}² px. "
        f"α = {cfg['alpha']}, seed {cfg['seed']}, {cfg['n_boot']} bootstrap resamples by patient; "
        f"marker at ({m['row']}, {m['col']}), side {m['size']}, intensity {m['intensity']}; "
        f"marker and flip checks on {results['check_images']} images. "
        f"Run time: {run_time(results)}.",
        "Scores: **ratio** = log p_N(x) − log p_M(x) (the paper's Appendix A; its negative is the "
        "abnormality), **bpd** = bits/dim under the mixture model M. AUC with abnormal as the "
        f"positive class and a 95% bootstrap interval. The viewer shows "
        f"**{ScoreKind(DEFAULT_SCORE_KIND).value}**.",
        f"Original images: AUC ratio {_auc(orig['ratio'])}, bpd {_auc(orig['bpd_mixture'])}; "
        f"PA only: ratio {_auc(orig['ratio_pa'])}, bpd {_auc(orig['bpd_mixture_pa'])}."
        + _complexity_line(results["original"]),
        "## AUC by budget (shaped like the paper's Table 3)",
        _paper_table(results),
        "The paper's column is RSNA pneumonia at 512x512 with its own models: a reference, not "
        "the same experiment.",
    ]
    for mech in cfg["mechanisms"]:
        parts += [f"## {MECHANISMS[mech]}", _detail_table(results, mech)]
    parts += [*comparison_sections(results), "## Reading the columns", _chance_line(results),
              LEGEND]
    return "\n\n".join(parts) + "\n"


LEGEND = """\
- *re-id top-1 pixel / latent*: share of privatised images whose own original ranks first in a
  gallery of all originals, for the pixel-correlation attacker (32x32, histogram-equalised) and
  the adaptive latent attacker (re-encodes with the same GLOW, clips to the box, correlates).
  *top-5 best*: the better attacker's top-5 rate. *same patient*: another image of the same
  patient ranked first, among images other than the query's own original (better attacker).
- *contrast kept*: marker-region contrast after / before (anatomy under the marker included);
  *marker kept*: the marker's added contrast after / before (0 = erased, 1 = intact).
- *flip detected*: accuracy of telling a privatised flipped image from a privatised unflipped
  one by correlation with the original and its mirror image (0.5 = chance).
- *OOD*: share of privatised images that the out-of-distribution check flags (for a mixture
  model calibrated with it, glow_engine.ood: atypical per level beside PNG's bits per pixel,
  turned or inverted; before it, bits/dim above the calibration's 99.5th percentile)."""


# --------------------------------------------------------------------------- comparisons


def _learned_runs(results: dict) -> dict[tuple[str, str], dict]:
    return {(r["mechanism"], r["setting"]): r
            for r in (results.get("learned") or {}).get("runs", [])}


def _get(d: dict | None, *path: str) -> dict | None:
    for key in path:
        d = d.get(key) if isinstance(d, dict) else None
    return d


def _auc_or_dash(a: dict | None) -> str:
    return "—" if a is None else _auc(a)


def _baseline_table(results: dict) -> str:
    learned, orig = _learned_runs(results), results["original"]
    header = ["mechanism", "e_px", "flow bpd", "flow ratio", "PNG bpp", "JPEG 2000 bpp",
              "CNN real → privatised", "CNN privatised → real"]
    rows = [["originals (CNN: real → real)", "—", _auc(orig["auc"]["bpd_mixture"]),
             _auc(orig["auc"]["ratio"]), _auc_or_dash(_get(orig, "baselines", "png", "all")),
             _auc_or_dash(_get(orig, "baselines", "jpeg2000", "all")),
             _auc_or_dash(_get(results, "learned", "original", "downstream", "real_to_real")),
             "—"]]
    for run in results["runs"]:
        lr = learned.get((run["mechanism"], run["setting"]))
        rows.append([MECHANISMS[run["mechanism"]],
                     Setting(float(run["e_px"]), bool(run["clip"])).label,
                     _auc(run["auc"]["bpd_mixture"]), _auc(run["auc"]["ratio"]),
                     _auc_or_dash(_get(run, "baselines", "png", "all")),
                     _auc_or_dash(_get(run, "baselines", "jpeg2000", "all")),
                     _auc_or_dash(_get(lr, "downstream", "real_to_private")),
                     _auc_or_dash(_get(lr, "downstream", "private_to_real"))])
    return _table(header, rows)


def _verification_table(results: dict) -> str:
    learned, orig = _learned_runs(results), results["original"]
    header = ["mechanism", "e_px", "pixel", "latent", "siamese (originals)",
              "siamese (retrained)", "same patient top-1 (better corr.)"]
    rows = [["originals", "—", _auc_or_dash(_get(orig, "verification", "pixel")),
             _auc_or_dash(_get(orig, "verification", "latent")),
             _auc_or_dash(_get(results, "learned", "original", "attacker", "originals")),
             "—", "—"]]
    for run in results["runs"]:
        lr = learned.get((run["mechanism"], run["setting"]))
        rows.append([MECHANISMS[run["mechanism"]],
                     Setting(float(run["e_px"]), bool(run["clip"])).label,
                     _auc_or_dash(_get(run, "reid", "pixel", "verification")),
                     _auc_or_dash(_get(run, "reid", "latent", "verification")),
                     _auc_or_dash(_get(lr, "attacker", "originals")),
                     _auc_or_dash(_get(lr, "attacker", "retrained")),
                     _num(run["summary"]["same_patient_top1"])])
    return _table(header, rows)


def _view_line(results: dict) -> str:
    view = _get(results["original"], "baselines", "view")
    if view is None:
        return ""
    return (f"View-only baseline (the score is 1 for {view['abnormal_view']} images, the view "
            f"more frequent among this set's abnormal images, an upper bound for any rule "
            f"that reads the view alone): AUC {_auc(view)}. It does not depend on the "
            "mechanism.")


def comparison_sections(results: dict) -> list[str]:
    """The baselines beside every utility number and the verification AUCs of every attacker
    (empty columns where a measure was not run)."""
    cfg = (results.get("learned") or {}).get("config")
    trained = ("" if cfg is None else
               f" The CNNs ({cfg['recipe']['input']}² input, {cfg['recipe']['epochs']} epochs) "
               f"were trained on {cfg['train']['images']} training images ("
               f"{cfg['train']['same_patient_pairs']} same-patient pairs for the siamese "
               f"network, then {cfg['finetune_epochs']} epochs on originals or with privatised "
               "queries) at the budgets "
               f"{', '.join(cfg['settings'])}.")
    parts = [
        "## Utility beside its baselines",
        "AUC (abnormal positive, 95% patient-bootstrap interval) of the flow's scores next to "
        "lossless compressors' bits per pixel (higher = abnormal) and a small CNN trained on "
        "real images and applied to privatised ones, or trained on privatised images and "
        "applied to real ones (`--downstream`). A score that does not beat the compressors "
        f"measures picture complexity, not pathology.{trained}",
        _baseline_table(results), _view_line(results),
        "## Verification: same patient or not?",
        "AUC of telling same-patient pairs (a privatised image and *another* original of its "
        "patient) from different-patient pairs, over every pair of two different val images "
        "(the query's own original never counts; 0.5 = chance; interval: query patients "
        "resampled). *pixel*, *latent*: the correlation attackers' similarity; *siamese*: the "
        "learned attacker (`--learned-attacker`): one network trained on training-split pairs "
        "of originals, then continued for the same few epochs on pairs of originals "
        "(*originals*) or with privatised queries (*retrained*, PriCheXy-Net's adaptive "
        "attacker).",
        _verification_table(results)]
    return [p for p in parts if p]


def _complexity_line(original: dict) -> str:
    corrected = original.get("complexity_corrected")
    if not corrected:  # results written before it was measured
        return ""
    return (" Complexity-corrected (bits/dim minus PNG bits per pixel, Serrà et al. 2020): "
            f"under M {_auc(corrected['bpd_mixture'])}, under N "
            f"{_auc(corrected['bpd_normal'])}.")


def run_time(results: dict) -> str:
    """The mechanism settings' time, and the learned measures' when they ran (each as
    computed, cached parts at what they cost when they were computed)."""
    text = f"{results['seconds']:.0f} s for the mechanism settings"
    learned = results.get("learned") or {}
    if "seconds" in learned:
        text += f", {learned['seconds']:.0f} s for the learned measures"
    return text
