"""PNG figures of an evaluation. Bare matplotlib Figures (no pyplot): no display is needed and
the global backend, which the Qt viewer may use, is left alone."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from glow_engine.evaluation.examples import ROW_NAMES
from glow_engine.evaluation.settings import MECHANISMS, Setting
from glow_engine.scores import DEFAULT_SCORE_KIND, ScoreKind

__all__ = ["auc_plot", "baselines_plot", "example_grid", "frontier_plot", "learned_plot",
           "marker_flip_plot", "reid_plot", "tradeoff_plot"]

COLOURS = {"dpglow-paper": "tab:blue", "dpglow-tight": "tab:green", "idldp": "tab:red",
           "dppix": "tab:purple", "dppix-m1": "tab:pink", "dpglow-paper-posterior": "tab:cyan",
           "dpglow-tight-posterior": "tab:olive", "dpglow-fitted": "tab:brown",
           "dpglow-fitted-posterior": "tab:orange"}
DPI = 110
SHAPES = ("o", "s", "^", "v", "D", "P", "X", "*", "h")


def _series(results: dict, mech: str) -> list[dict]:
    return [r for r in results["runs"] if r["mechanism"] == mech]


def _labels(runs: list[dict]) -> list[str]:
    return [Setting(float(r["e_px"]), bool(r["clip"])).label for r in runs]


def _figure(rows: int, cols: int, size: tuple[float, float], **kw) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=size)
    return fig, np.atleast_1d(fig.subplots(rows, cols, **kw))


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    return path


def _value(x: float | None) -> float:
    return math.nan if x is None else float(x)


def auc_plot(results: dict, path: Path) -> Path:
    """AUC (with 95% interval) against the budget, one panel per score."""
    fig, axes = _figure(1, 2, (11, 4), sharey=True)
    mechs = results["config"]["mechanisms"]
    for ax, kind in zip(axes, ScoreKind, strict=True):
        for j, mech in enumerate(mechs):
            runs = _series(results, mech)
            a = [r["auc"][kind.value] for r in runs]
            y = np.array([_value(v["auc"]) for v in a])
            lo = np.array([_value(v["ci95"][0]) for v in a])
            hi = np.array([_value(v["ci95"][1]) for v in a])
            x = np.arange(len(runs)) + (j - (len(mechs) - 1) / 2) * 0.08
            ax.errorbar(x, y, yerr=[y - lo, hi - y], marker="o", capsize=3,
                        color=COLOURS.get(mech), label=MECHANISMS[mech])
            ax.set_xticks(np.arange(len(runs)), _labels(runs))
        orig = _value(results["original"]["auc"][kind.value]["auc"])
        ax.axhline(orig, color="grey", ls="--", lw=1, label="original images")
        ax.axhline(0.5, color="black", ls=":", lw=1, label="chance")
        ax.set_title(f"AUC, score: {kind.label}")
        ax.set_xlabel("per-pixel budget e_px (total ε = e_px·H·W)")
    axes[0].set_ylabel("AUC (abnormal vs normal), 95% CI")
    axes[0].legend(fontsize=8)
    return _save(fig, path)


def reid_plot(results: dict, path: Path) -> Path:
    """Re-identification top-1 (solid) and top-5 (dashed) against the budget, per attacker."""
    fig, axes = _figure(1, 2, (11, 4), sharey=True)
    for ax, attacker in zip(axes, ("pixel", "latent"), strict=True):
        for mech in results["config"]["mechanisms"]:
            runs = _series(results, mech)
            x = np.arange(len(runs))
            for k, style in (("top1", "-"), ("top5", "--")):
                ax.plot(x, [r["reid"][attacker][k] for r in runs], style, marker="o",
                        color=COLOURS.get(mech), label=f"{MECHANISMS[mech]} {k}")
            ax.set_xticks(x, _labels(runs))
        first = results["runs"][0]["reid"][attacker]
        ax.axhline(first["chance_top1"], color="black", ls=":", lw=1, label="chance top-1")
        ax.axhline(first["chance_top5"], color="grey", ls=":", lw=1, label="chance top-5")
        ax.set_title(f"Re-identification, {attacker} attacker")
        ax.set_xlabel("per-pixel budget e_px")
        ax.set_ylim(-0.02, 1.02)
    axes[0].set_ylabel("share of images matched to their original")
    axes[0].legend(fontsize=7)
    return _save(fig, path)


def tradeoff_plot(results: dict, path: Path) -> Path:
    """AUC against the best attacker's top-1 re-identification rate: colour = mechanism,
    marker shape = budget (text labels would pile up where re-identification is 1)."""
    fig, axes = _figure(1, 2, (12.5, 4.8), sharex=True, sharey=True)
    shapes: dict[str, str] = {}
    for ax, kind in zip(axes, ScoreKind, strict=True):
        for mech in results["config"]["mechanisms"]:
            runs = _series(results, mech)
            x = [r["summary"]["reid_best_top1"] for r in runs]
            y = [_value(r["auc"][kind.value]["auc"]) for r in runs]
            ax.plot(x, y, color=COLOURS.get(mech), lw=1, alpha=0.6)
            for xi, yi, lab in zip(x, y, _labels(runs), strict=True):
                shape = shapes.setdefault(lab, SHAPES[len(shapes) % len(SHAPES)])
                ax.plot([xi], [yi], shape, color=COLOURS.get(mech), ms=7, mfc="none", mew=1.5)
        ax.axhline(0.5, color="black", ls=":", lw=1)
        ax.axvline(results["chance_top1"], color="grey", ls=":", lw=1)
        star = " (viewer)" if kind is DEFAULT_SCORE_KIND else ""
        ax.set_title(f"Utility vs re-identification, {kind.label}{star}", fontsize=10)
        ax.set_xlabel("re-identification top-1, better attacker (dotted: chance)")
    axes[0].set_ylabel("AUC")
    handles = [Line2D([], [], color=COLOURS.get(m), label=MECHANISMS[m])
               for m in results["config"]["mechanisms"]]
    handles += [Line2D([], [], ls="none", marker=sh, color="black", mfc="none",
                       label=f"e_px {lab}") for lab, sh in shapes.items()]
    axes[1].legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    return _save(fig, path)


def frontier_plot(results: dict, path: Path) -> Path:
    """Picture quality (median PSNR, mean SSIM) against the best attacker's top-1
    re-identification, one line per mechanism through its budgets: a variant is better where
    its line lies above another's at the same re-identification."""
    fig, axes = _figure(1, 2, (12.5, 4.8), sharex=True)
    measures = (("PSNR, median (dB)", "psnr_median"), ("SSIM, mean", "ssim"))
    for ax, (title, field) in zip(axes, measures, strict=True):
        for mech in results["config"]["mechanisms"]:
            runs = [r for r in _series(results, mech) if r["clip"]]
            x = [r["summary"]["reid_best_top1"] for r in runs]
            y = [r["summary"][field] for r in runs]
            ax.plot(x, y, "o-", color=COLOURS.get(mech), lw=1.2, ms=5, label=MECHANISMS[mech])
            for r, xi, yi in zip(runs, x, y, strict=True):
                ax.annotate(Setting(float(r["e_px"]), True).label, (xi, yi), fontsize=6,
                            xytext=(3, 3), textcoords="offset points")
        ax.axvline(results["chance_top1"], color="grey", ls=":", lw=1)
        ax.set_title(f"Picture quality vs re-identification: {title}", fontsize=10)
        ax.set_xlabel("re-identification top-1, best attacker (dotted: chance)")
        ax.set_ylabel(title)
    axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    return _save(fig, path)


def marker_flip_plot(results: dict, path: Path) -> Path:
    fig, axes = _figure(1, 2, (11, 4))
    for mech in results["config"]["mechanisms"]:
        runs = _series(results, mech)
        x = np.arange(len(runs))
        axes[0].plot(x, [r["marker"]["marker_kept_mean"] for r in runs], marker="o",
                     color=COLOURS.get(mech), label=MECHANISMS[mech])
        axes[1].plot(x, [r["flip"]["accuracy"] for r in runs], marker="o",
                     color=COLOURS.get(mech), label=MECHANISMS[mech])
        for ax in axes:
            ax.set_xticks(x, _labels(runs))
    axes[0].axhline(0, color="black", ls=":", lw=1)
    axes[0].set_title("Block marker: added contrast kept (1 = intact, 0 = erased)")
    axes[1].axhline(0.5, color="black", ls=":", lw=1)
    axes[1].set_title("Flip (situs inversus) detector accuracy (0.5 = chance)")
    for ax in axes:
        ax.set_xlabel("per-pixel budget e_px")
    axes[0].legend(fontsize=8)
    return _save(fig, path)


def example_grid(originals: np.ndarray, privatised: np.ndarray, settings: list[Setting],
                 title: str, path: Path, row_names: tuple[str, ...] = ROW_NAMES) -> Path:
    """originals (rows, R, R), privatised (rows, settings, R, R) -> one figure.

    Drawn as one mosaic image in one axes: a grid of subplots is ten times slower to render.
    """
    n_rows, n_cols = len(originals), len(settings) + 1
    r, gap = originals.shape[-1], max(2, originals.shape[-1] // 32)
    step = r + gap
    mosaic = np.ones((n_rows * step - gap, n_cols * step - gap), np.float32)
    for i in range(n_rows):
        for j, img in enumerate([originals[i], *privatised[i]]):
            mosaic[i * step:i * step + r, j * step:j * step + r] = img
    fig, (ax,) = _figure(1, 1, (1.6 * n_cols + 0.8, 1.6 * n_rows + 0.6))
    ax.imshow(mosaic, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([j * step + r / 2 for j in range(n_cols)],
                  ["original"] + [f"e_px {s.label}" for s in settings], fontsize=8)
    ax.set_yticks([i * step + r / 2 for i in range(n_rows)],
                  [row_names[i] if i < len(row_names) else "" for i in range(n_rows)],
                  fontsize=8)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def _errorbar(ax, x: np.ndarray, aucs: list[dict | None], **kw) -> None:
    y = np.array([_value(a["auc"]) if a else math.nan for a in aucs])
    lo = np.array([_value(a["ci95"][0]) if a else math.nan for a in aucs])
    hi = np.array([_value(a["ci95"][1]) if a else math.nan for a in aucs])
    ax.errorbar(x, y, yerr=[y - lo, hi - y], capsize=2, marker="o", ms=4, **kw)


def baselines_plot(results: dict, path: Path) -> Path:
    """Per mechanism: the viewer's score against the compressor baselines, by budget."""
    mechs = results["config"]["mechanisms"]
    fig, axes = _figure(1, len(mechs), (3.6 * len(mechs) + 1, 3.8), sharey=True)
    orig = results["original"]
    view = orig.get("baselines", {}).get("view")
    for ax, mech in zip(axes, mechs, strict=True):
        runs = _series(results, mech)
        x = np.arange(len(runs))
        _errorbar(ax, x - 0.1, [r["auc"]["bpd_mixture"] for r in runs],
                  color=COLOURS.get(mech), label="flow bits/dim (viewer)")
        for j, (name, style) in enumerate((("png", "--"), ("jpeg2000", ":"))):
            if name in orig.get("baselines", {}):
                _errorbar(ax, x + 0.1 * j, [r["baselines"][name]["all"] for r in runs],
                          color="grey", ls=style, label=f"{name.upper()} bits/pixel")
        if view:
            ax.axhline(_value(view["auc"]), color="black", ls="-.", lw=1,
                       label="view only (AP/PA)")
        ax.axhline(0.5, color="black", ls=":", lw=1)
        ax.set_xticks(x, _labels(runs), fontsize=7)
        ax.set_xlim(-0.5, len(runs) - 0.5)
        ax.set_title(MECHANISMS[mech], fontsize=10)
        ax.set_xlabel("per-pixel budget e_px")
    axes[0].set_ylabel("AUC (abnormal vs normal), 95% CI")
    axes[0].legend(fontsize=7)
    return _save(fig, path)


def learned_plot(results: dict, path: Path) -> Path:
    """Left: downstream classifier AUCs; right: verification AUC of the learned attacker
    (the better of its two variants) and of the better correlation attacker, by budget.
    Filled markers: the first measure, open: the second; colour = mechanism."""
    learned = results["learned"]
    mechs = results["config"]["mechanisms"]
    fig, axes = _figure(1, 2, (12, 5.6), sharey=True)
    measured = {(r["mechanism"], r["setting"]): r for r in results["runs"]}

    def best(candidates: list[dict]) -> dict:
        return max(candidates, key=lambda a: _value(a["auc"]))

    def correlation(r: dict) -> dict:
        reid = measured[(r["mechanism"], r["setting"])]["reid"]
        return best([reid[a]["verification"] for a in ("pixel", "latent")])

    panels = []
    if "downstream" in learned["original"]:
        panels.append((axes[0], (
            ("privatised → real", lambda r: r["downstream"]["private_to_real"]),
            ("real → privatised", lambda r: r["downstream"]["real_to_private"]))))
    if "attacker" in learned["original"]:
        panels.append((axes[1], (("siamese", lambda r: best(list(r["attacker"].values()))),
                                 ("better correlation", correlation))))
    slots = 2 * len(mechs)
    for ax, series in panels:
        for j, mech in enumerate(mechs):
            runs = [r for r in learned["runs"] if r["mechanism"] == mech]
            for k, (name, pick) in enumerate(series):
                x = np.arange(len(runs)) + (2 * j + k - (slots - 1) / 2) * 0.6 / slots
                _errorbar(ax, x, [pick(r) for r in runs], color=COLOURS.get(mech), ls="none",
                          mfc=None if k == 0 else "white", label=f"{MECHANISMS[mech]}: {name}")
            ax.set_xticks(np.arange(len(runs)), _labels(runs))
            ax.set_xlim(-0.5, len(runs) - 0.5)
    original = learned["original"]
    if "downstream" in original:
        axes[0].axhline(_value(original["downstream"]["real_to_real"]["auc"]), color="grey",
                        ls="-.", lw=1, label="real → real")
    if "attacker" in original:
        axes[1].axhline(_value(original["attacker"]["originals"]["auc"]), color="grey",
                        ls="-.", lw=1, label="siamese on originals")
    for ax, title in zip(axes, ("Downstream CNN: abnormal vs normal",
                                "Verification: same patient vs different"), strict=True):
        ax.axhline(0.5, color="black", ls=":", lw=1)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("per-pixel budget e_px")
        # below the axes: inside, it covers error bars whichever corner it takes
        ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)
    axes[0].set_ylabel("AUC, 95% CI")
    return _save(fig, path)
