"""`dpglow pacs echo|find|release`: a PACS as the source (and destination) of a release. The
work is in glow_engine.pacs; this module parses and prints."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from glow_engine.commands import argument_type
from glow_engine.commands.privatize import add_release_arguments, mechanism_of, report_summary
from glow_engine.mechanisms import Mechanism
from glow_engine.pacs.client import open_client
from glow_engine.pacs.errors import PacsError
from glow_engine.pacs.nodes import Nodes, default_nodes_path, load_nodes
from glow_engine.pacs.query import StudyQuery, check_date_range, parse_modalities
from glow_engine.pacs.release import (
    PacsProgress,
    PacsReleaseRequest,
    PacsSummary,
    outbox_for,
    release_from_pacs,
)
from glow_engine.release.ledger import Ledger, default_ledger_path
from glow_engine.release.records import check_private_locations
from glow_engine.release.report import report_run


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    echo = sub.add_parser("echo", help="check that a node answers (C-ECHO, or a QIDO-RS query)")
    _common(echo)
    find = sub.add_parser("find", help="list the studies a node holds")
    _common(find)
    _selection(find, exclusive=False)
    find.add_argument("--study-date", default="", type=argument_type(_date),
                      help="YYYYMMDD or YYYYMMDD-YYYYMMDD")
    find.add_argument("--modality", default="", type=argument_type(parse_modalities),
                      help="modalities in the study, e.g. CR,DX")
    find.add_argument("--json", action="store_true", help="print a JSON list of studies")
    release = sub.add_parser(
        "release", help="retrieve studies, privatise their chest radiographs, send them "
                        "to a node or write them to a folder")
    _common(release)
    _selection(release, exclusive=True)
    where = release.add_mutually_exclusive_group(required=True)
    where.add_argument("--to", metavar="NODE", help="destination node (C-STORE or STOW-RS)")
    where.add_argument("--out", type=Path, help="destination folder")
    release.add_argument("--outbox", type=Path, default=None,
                         help="with --to: where the released files are kept for resuming "
                              "(default: beside the ledger, <ledger>.outbox-NODE)")
    release.add_argument("--staging", type=Path, default=None,
                         help="where the private staging folder for retrieved originals is "
                              "made (default: the ledger's folder)")
    release.add_argument("--keep-retrieved", type=Path, default=None, metavar="DIR",
                         help="keep the retrieved originals in DIR (default: deleted)")
    add_release_arguments(release)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("node", metavar="NODE", help="a node of the nodes file")
    p.add_argument("--nodes", type=Path, default=None,
                   help=f"nodes file (default {default_nodes_path()})")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds to wait for the node (connection, association, each "
                        "message); default: the node's timeout, else 30")


def _selection(p: argparse.ArgumentParser, *, exclusive: bool) -> None:
    group = p.add_mutually_exclusive_group(required=True) if exclusive else p
    group.add_argument("--patient-id", default="", help="the patient's ID at the PACS")
    group.add_argument("--accession", nargs="+", default=[], metavar="A",
                       help="accession numbers")
    if exclusive:
        group.add_argument("--study-uid", nargs="+", default=[], metavar="UID")


def _date(text: str) -> str:
    check_date_range(text)
    return text


def run(args: argparse.Namespace) -> int:
    if args.timeout is not None and not 0 < args.timeout < 1e5:  # NaN fails too
        raise PacsError(f"--timeout must be a number of seconds above 0, not {args.timeout}")
    nodes = load_nodes(args.nodes)
    return {"echo": _echo, "find": _find, "release": _release}[args.action](args, nodes)


def _echo(args: argparse.Namespace, nodes: Nodes) -> int:
    node = nodes.get(args.node)
    open_client(node, nodes.local, args.timeout).echo()
    print(f"{args.node} ({node.address}) answers")
    return 0


def _find(args: argparse.Namespace, nodes: Nodes) -> int:
    query = StudyQuery(patient_id=args.patient_id, accessions=tuple(args.accession),
                       study_date=args.study_date, modalities=args.modality)
    studies = open_client(nodes.get(args.node), nodes.local, args.timeout).find_studies(query)
    if args.json:
        print(json.dumps([s.as_json() for s in studies], indent=1))
        return 0
    for s in studies:
        images = "?" if s.images is None else s.images
        print(f"{s.study_uid}  patient {s.patient_id}  date {s.date or '-'}  accession "
              f"{s.accession or '-'}  {','.join(s.modalities) or '-'}  {images} image(s)")
    print(f"{len(studies)} stud{'y' if len(studies) == 1 else 'ies'}", file=sys.stderr)
    return 0


def _release(args: argparse.Namespace, nodes: Nodes) -> int:
    ledger_path = args.ledger or default_ledger_path()
    out = args.out or args.outbox or outbox_for(ledger_path, args.to)
    check_private_locations(out, ledger_path)  # before the ledger file is made
    request = PacsReleaseRequest(
        source=args.node, query=StudyQuery(patient_id=args.patient_id,
                                           accessions=tuple(args.accession),
                                           study_uids=tuple(args.study_uid)),
        e_px=args.e_px, to_node=args.to, out_dir=args.out, outbox=args.outbox,
        staging=args.staging, keep_retrieved=args.keep_retrieved, linkage=args.linkage,
        timeout=args.timeout, size=args.size, keep_aspect=args.keep_aspect,
        force_budget=args.force, patient_budget=args.patient_budget,
        allow_burned_in=args.allow_burned_in,
        allow_unknown_burned_in=args.allow_unknown_burned_in, batch_size=args.batch_size)
    mechs: list[Mechanism] = []

    def mechanism() -> Mechanism:
        mechs.append(mechanism_of(args, 1))
        return mechs[0]

    with Ledger(ledger_path) as ledger, tqdm(disable=args.no_progress, unit="img") as bar:
        phase = [""]

        def progress(p: PacsProgress) -> None:
            if phase[0] != p.phase:
                phase[0] = p.phase
                bar.reset()
                bar.set_description(p.phase)
            bar.total, bar.n = p.total, p.done
            bar.refresh()

        summary = release_from_pacs(request, nodes, mechanism, ledger, on_progress=progress)
        report = report_run(mechs[0], args.e_px, summary.release, ledger) \
            if summary.release is not None else None
    _print(summary, mechs[0].describe(args.e_px) if mechs else "", ledger.path, args.to)
    if report is not None:
        print(f"release report:     {report} (no patient data; the operator's)")
    return 0 if summary.complete else 1


def _print(summary: PacsSummary, description: str, ledger: Path, to: str | None) -> None:
    for line in summary.skipped:
        print(f"skipped: {line}", file=sys.stderr)
    print(f"studies: {summary.studies}, images retrieved: {summary.retrieved}, skipped (not "
          f"a chest radiograph): {len(summary.skipped)}")
    if summary.release is not None:
        report_summary(summary.release, description, ledger)
        print(f"linkage:            {summary.release.linkage}")
    if to is not None:
        print(f"sent to {to}: {summary.sent}, already there: {summary.already_there}"
              + (f", NOT sent (stopped): {summary.not_sent}" if summary.not_sent else ""))
    print(f"staging:            {summary.staging}")
