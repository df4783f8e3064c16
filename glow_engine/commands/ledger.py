"""`dpglow ledger [FILE]`: what was spent, per patient and per image; the per-patient budget,
its history, and every release forced past it. `--verify` checks the ledger's MAC chain
(glow_engine.release.ledger_chain) and says so; every opening checks it too."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from glow_engine.budget import format_number
from glow_engine.release.ledger import Ledger, default_ledger_path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("ledger", nargs="?", type=Path, default=None,
                   help=f"ledger file (default {default_ledger_path()})")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--set-patient-budget", type=float, metavar="EPSILON",
                        help="refuse releases that take a patient past this total epsilon "
                             "(creates the ledger if there is none)")
    budget.add_argument("--clear-patient-budget", action="store_true",
                        help="no per-patient limit (needs --force)")
    p.add_argument("--force", action="store_true",
                   help="allow raising or clearing the budget (recorded in the ledger)")
    p.add_argument("--note", default="", help="why the budget changed (recorded)")
    p.add_argument("--verify", action="store_true",
                   help="check that the ledger was not changed outside dpglow (its journal's "
                        "MAC chain and its tables agree) and say so")
    p.add_argument("--releases", action="store_true", help="also list every release")
    p.add_argument("--limit", type=int, default=50, help="rows per table (0: all)")
    p.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    path = args.ledger or default_ledger_path()
    with Ledger(path, create=args.set_patient_budget is not None) as ledger:
        if args.verify:  # a ledger that does not verify was refused on opening
            print(f"ledger {path}: verified ({ledger.verify()} journal entries; its tables "
                  "agree with its MAC chain)")
            return 0
        if args.set_patient_budget is not None or args.clear_patient_budget:
            ledger.set_patient_budget(args.set_patient_budget, force=args.force,
                                      note=args.note)
        report = {"ledger": str(path), "patient_budget": ledger.patient_budget,
                  "budget_changes": ledger.budget_changes(),
                  "patients": ledger.patient_totals(), "images": ledger.image_totals(),
                  "forced": ledger.releases(forced_only=True)}
        if args.releases:
            report["releases"] = ledger.releases()
    print(json.dumps(report, indent=1, default=str) if args.json else text(report, args.limit))
    return 0


def text(report: dict, limit: int) -> str:
    budget = report["patient_budget"]
    lines = [f"ledger {report['ledger']}",
             f"per-patient budget: {'none' if budget is None else format_number(budget)}"]
    for change in report["budget_changes"]:
        lines.append(f"  {change['time']} {_limit(change['old'])} -> {_limit(change['new'])}"
                     f"{'  (raised with --force)' if change['forced'] else ''}"
                     f"{'  ' + change['note'] if change['note'] else ''}")
    lines += ["", f"{'patient (or image without one)':34} {'images':>6} {'releases':>8} "
                  f"{'total epsilon':>14}"]
    for row in _cut(report["patients"], limit):
        lines.append(f"{_short(row['budget_key']):34} {row['images']:>6} {row['releases']:>8} "
                     f"{format_number(row['total_epsilon']):>14}{_forced(row)}")
    lines += ["", f"{'image (sha256)':34} {'releases':>8} {'total epsilon':>14}"]
    for row in _cut(report["images"], limit):
        lines.append(f"{_short('image:' + row['image_sha256']):34} {row['releases']:>8} "
                     f"{format_number(row['total_epsilon']):>14}{_forced(row)}")
    if report["forced"]:
        lines += ["", f"FORCED past the per-patient budget: {len(report['forced'])} release(s)"]
        lines += [_release(row) for row in _cut(report["forced"], limit)]
    if "releases" in report:
        lines += ["", "releases"] + [_release(row) for row in report["releases"]]
    return "\n".join(lines)


def _release(row: dict) -> str:
    return (f"{row['time']} {row['status']:9} {row['mechanism']} {row['mode']} "
            f"e_px={format_number(row['e_px'])} {row['output']}"
            f"{'  FORCED: ' if row['forced'] else '  '}{row['note']}").rstrip()


def _limit(value: float | None) -> str:
    return "none" if value is None else format_number(value)


def _cut(rows: list[dict], limit: int) -> list[dict]:
    return rows if limit <= 0 else rows[:limit]


def _short(key: str) -> str:
    kind, _, digest = key.partition(":")
    return f"{kind}:{digest[:16]}"


def _forced(row: dict) -> str:
    return "  (budget overridden with --force)" if row["forced"] else ""
