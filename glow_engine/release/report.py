"""The release report: one self-contained HTML page saying what a release is and what it risks.

What was released (count, mechanism, mode, clip box or block, e_px, total epsilon per image and
per patient, forced releases), what that epsilon means formally, in plain words, and the risk
and utility the evaluation measured at that setting for the same two models (the model pair's
risk card, glow_engine.risk_card: the nearest measured budgets, marked as such), with the
utility-vs-re-identification plot and this release's operating point on it (a PNG embedded as
base64: the file needs nothing beside it).

It holds no patient data: no file names, no patient ids or keys, no pixels; per-patient figures
are distributions (how many patients, the largest and the median), never rows.
"""

from __future__ import annotations

import base64
import html
import io
import math
import secrets
import statistics
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from matplotlib.figure import Figure

from glow_engine.atomic import write_text_atomic
from glow_engine.budget import format_number, total_epsilon
from glow_engine.mechanisms import DPGlow, Mechanism
from glow_engine.model_pair import find_risk_card
from glow_engine.privacy_statement import formal_meaning
from glow_engine.release.batch import Summary
from glow_engine.release.deid import LINKAGES
from glow_engine.release.ledger import Ledger
from glow_engine.risk_card import RiskCard

__all__ = ["ReleaseFacts", "facts_of", "release_report", "report_run", "write_release_report"]

# The risk card's fields shown for the release, with their words and chance key.
SHOWN = (("reid_top1", "re-identified: own original ranked first", "reid_top1"),
         ("reid_top5", "own original in the first five", "reid_top5"),
         ("same_patient_top1", "another image of the patient ranked first", "same_patient_top1"),
         ("verification_auc", "same-patient verification AUC (best attacker)",
          "verification_auc"),
         ("marker_kept", "block marker kept (0 erased, 1 intact)", None),
         ("flip_detected", "left-right flip detected (accuracy)", "flip_detected"),
         ("auc_bpd", "pneumonia AUC of the anomaly score", None),
         ("auc_png", "pneumonia AUC of PNG size (baseline)", None),
         ("downstream_private_to_real", "AUC of a CNN trained on such releases", None))


@dataclass(frozen=True)
class ReleaseFacts:
    """What one release was: numbers and settings only."""

    mechanism: str  # registry name, as the ledger records it
    mode: str
    label: str  # the mechanism with its parameters ("DP-GLOW (tight, α=0.4)")
    alpha: float | None  # DP-GLOW's clip width (None for the others)
    e_px: float
    resolution: int
    model_sha256: str
    written: int  # images released by this run
    done_earlier: int  # skipped: released by an earlier run into the same folder
    not_released: int  # refused, failed, skipped or not started
    forced: int  # releases past the per-patient budget (recorded as forced)
    images_per_patient: tuple[int, ...]  # this run's releases per patient (no keys)
    spent_per_patient: tuple[float, ...]  # the ledger's total for each of those patients
    patient_budget: float | None
    created: str
    linkage: str = "none"  # what links the released images (release.deid.LINKAGES)
    box: str = ""  # DP-GLOW's fitted clip box in words (FittedBox.describe); "": published

    @property
    def total_epsilon(self) -> float:
        return total_epsilon(self.e_px, self.resolution)


def facts_of(mech: Mechanism, e_px: float, summary: Summary, ledger: Ledger) -> ReleaseFacts:
    """The facts of a finished run from its summary and the ledger's rows of its files."""
    files = {o.file.name for o in summary.outcomes if o.status == "written" and o.file}
    rows = [r for r in ledger.releases() if Path(r["output"]).name in files]
    per_patient = Counter(r["budget_key"] for r in rows)
    totals = {r["budget_key"]: r["total_epsilon"] for r in ledger.patient_totals()}
    box = mech.fitted_box(e_px) if isinstance(mech, DPGlow) else None
    return ReleaseFacts(  # a fitted box has no alpha
        mech.name, mech.mode, mech.label, None if box else getattr(mech, "alpha", None), e_px,
        mech.resolution, mech.model_sha256, box="" if box is None else box.describe(),
        written=len(files), done_earlier=summary.count("done-earlier"),
        not_released=len(summary.outcomes) - len(files) - summary.count("done-earlier"),
        forced=sum(int(r["forced"]) for r in rows),
        images_per_patient=tuple(sorted(per_patient.values(), reverse=True)),
        spent_per_patient=tuple(sorted((totals[k] for k in per_patient), reverse=True)),
        patient_budget=ledger.patient_budget,
        created=datetime.now(UTC).isoformat(timespec="seconds"), linkage=summary.linkage)


# --------------------------------------------------------------------------- words


def _eps(x: float) -> str:
    if math.isinf(x):
        return "∞"
    return format_number(x) if x < 1e5 else f"{x:.3g}"


def _value(row: dict, field: str) -> str:
    v = row.get(field)
    if v is None or isinstance(v, str):
        return "not measured" if v is None else v
    ci = row.get(f"{field}_ci95")
    interval = f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci and None not in ci else ""
    return f"{v:.2f}{interval}"


def _where(budget: float, e_px: float) -> str:
    if math.isclose(budget, e_px, rel_tol=1e-9) or (math.isinf(budget) and math.isinf(e_px)):
        return f"measured at this budget (e<sub>px</sub> {_eps(budget)})"
    side = "below" if budget < e_px else "above"
    return (f"<strong>nearest measured budget {side}</strong>: e<sub>px</sub> {_eps(budget)} "
            f"(this release: {_eps(e_px)}; not measured there)")


# --------------------------------------------------------------------------- figure


def _number(v: object) -> float:
    return float(v) if isinstance(v, int | float) else math.nan


def tradeoff_png(card: RiskCard, key: str, points: list[tuple[float, dict]],
                 e_px: float) -> bytes:
    """AUC of the anomaly score against re-identification for every measured mechanism and
    budget of the card, this release's mechanism highlighted, its measured point(s) starred."""
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.subplots()
    for other in card.body["mechanisms"]:
        budgets = card.budgets(other)
        if not budgets:
            continue
        x = [_number(r.get("reid_top1")) for r in budgets.values()]
        y = [_number(r.get("auc_bpd")) for r in budgets.values()]
        mine = other == key
        ax.plot(x, y, "o-" if mine else ".-", lw=2 if mine else 0.8, alpha=1 if mine else 0.45,
                label=card.label(other), zorder=3 if mine else 2)
        if mine:
            for b, xi, yi in zip(budgets, x, y, strict=True):
                ax.annotate(f"{_eps(b)}", (xi, yi), fontsize=7, xytext=(4, 3),
                            textcoords="offset points")
    for budget, row in points:
        ax.plot([_number(row.get("reid_top1"))], [_number(row.get("auc_bpd"))], "*", ms=18,
                color="black", zorder=4,
                label=f"this release, e_px {_eps(e_px)}: measured at {_eps(budget)}")
    chance = card.body["chance"]["reid_top1"]
    ax.axvline(chance, color="grey", ls=":", lw=1)
    ax.axhline(0.5, color="grey", ls=":", lw=1)
    ax.set_xlabel(f"re-identification top-1, better attacker (dotted: chance {chance:.3f})")
    ax.set_ylabel("pneumonia AUC, anomaly score (0.5 = chance)")
    ax.set_title("Utility vs re-identification, measured (labels: e_px)", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


# --------------------------------------------------------------------------- page


def _released(f: ReleaseFacts) -> list[tuple[str, str]]:
    per_image = f.total_epsilon
    k = f.images_per_patient
    rows = [("released by this run", f"{f.written} image(s)"),
            ("already released earlier into this folder", str(f.done_earlier)),
            ("not released (refused, failed or skipped)", str(f.not_released)),
            ("mechanism", html.escape(f.label)),
            ("mode", html.escape(f.mode or "—")),
            ("clip width α", "—" if f.alpha is None else f"{f.alpha:g}"),
            *([("clip box", html.escape(f.box))] if f.box else []),
            ("model (sha256)", html.escape(f.model_sha256 or "none: works on pixels")),
            ("linkage between images", html.escape(LINKAGES[f.linkage])),
            ("per-pixel budget e<sub>px</sub>", _eps(f.e_px)),
            ("total ε per image (e<sub>px</sub> · R · R)",
             f"{_eps(per_image)} at {f.resolution} × {f.resolution}")]
    if k:
        rows += [("patients in this release", str(len(k))),
                 ("total ε per patient, this release",
                  f"largest {_eps(k[0] * per_image)} ({k[0]} image(s)), median "
                  f"{_eps(statistics.median(k) * per_image)}"),
                 ("total ε per patient, all releases in the ledger",
                  f"largest {_eps(f.spent_per_patient[0])}, median "
                  f"{_eps(statistics.median(f.spent_per_patient))}")]
    rows += [("per-patient budget", "none set" if f.patient_budget is None
              else _eps(f.patient_budget)),
             ("forced past the per-patient budget", f"{f.forced} release(s)")]
    return rows


def _measured(f: ReleaseFacts, card: RiskCard | None) -> tuple[str, list[tuple[float, dict]]]:
    """The measured section's HTML and the card rows it shows."""
    if card is not None and card.body["resolution"] != f.resolution:
        card = None  # measured at another resolution: none of its numbers apply
    key = card.key_of(f.mechanism, f.mode) if card else None
    alpha = card.body["config"].get("alpha") if card else None
    same_alpha = f.alpha is None or alpha is None or math.isclose(f.alpha, alpha)
    points = card.nearest(key, f.e_px) if key and same_alpha else []
    if not points:
        why = ("no risk card was measured with this model pair" if card is None else
               f"the risk card of these models has no measurement of {html.escape(f.label)}")
        return f"<p>Not measured: {why}. The formal statement above is all there is.</p>", []
    chance = card.body["chance"]
    head = "".join(f"<th>{_where(b, f.e_px)}</th>" for b, _ in points)
    body = []
    for field, words, chance_key in SHOWN:
        cells = "".join(f"<td>{_value(row, field)}</td>" for _, row in points)
        c = chance.get(chance_key) if chance_key else None
        chance_cell = f"{c:.3f}" if isinstance(c, int | float) else "—"
        body.append(f"<tr><th>{words}</th>{cells}<td>{chance_cell}</td></tr>")
    orig = card.body["original"]
    text = (f"<p>Measured by <code>dpglow evaluate</code> on {card.body['images']} validation "
            f"X-rays of {card.body['patients']} patients with the same two models (the "
            f"attackers hold every original: the worst case). A low rate is evidence against "
            f"the attacks tried, not a guarantee. On the original images the anomaly score's "
            f"AUC is {_value(orig, 'auc_bpd')}.</p>"
            f"<table><tr><th></th>{head}<th>chance</th></tr>{''.join(body)}</table>")
    return text, points


STYLE = """body{font-family:sans-serif;max-width:60em;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.3em .6em;
text-align:left;vertical-align:top}th{background:#f4f4f4;font-weight:normal}
.warn{background:#fff3cd;padding:.6em;border-left:4px solid #e0a800}"""


def release_report(f: ReleaseFacts, card: RiskCard | None) -> str:
    """The whole page (HTML, images inline)."""
    measured, points = _measured(f, card)
    figure = ""
    if points:
        key = card.key_of(f.mechanism, f.mode)
        png = base64.b64encode(tradeoff_png(card, key, points, f.e_px)).decode()
        figure = (f'<p><img alt="utility vs re-identification" '
                  f'src="data:image/png;base64,{png}"></p>')
    released = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in _released(f))
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>DP-GLOW release report</title><style>{STYLE}</style></head><body>"
            f"<h1>Release report</h1><p>Made {html.escape(f.created)} by dpglow. It holds no "
            f"patient data: no file names, identifiers or pixels.</p>"
            f"<h2>What was released</h2><table>{released}</table>"
            f"<h2>What the budget means</h2><p class=\"warn\">{formal_meaning(f.total_epsilon)}"
            f"</p><h2>What was measured at this setting</h2>{measured}{figure}</body></html>\n")


def write_release_report(path: str | Path, f: ReleaseFacts, card: RiskCard | None) -> Path:
    path = Path(path)
    write_text_atomic(path, release_report(f, card), overwrite=True)
    return path


def report_run(mech: Mechanism, e_px: float, summary: Summary, ledger: Ledger) -> Path | None:
    """`dpglow privatize`'s report of a finished run, beside the operator's record (its
    per-patient totals come from the ledger: it is the operator's, like the record), with the
    risk card of the mechanism's model (glow_engine.model_pair's rule: the same card the
    viewer quotes for these models). None without a record (nothing was attempted)."""
    if summary.record is None:
        return None
    card = find_risk_card(mech.model)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = summary.record.with_name(f"release-report-{stamp}-{secrets.token_hex(3)}.html")
    return write_release_report(path, facts_of(mech, e_px, summary, ledger), card)
