"""Release throughput from PACS to PACS on this machine, and where the time goes.

    .venv/bin/python benchmarks/bench_pacs.py [--images 24] [--size 1024] [--patients 6]

Two local Orthanc servers (tests/orthanc/harness.py: DPGLOW_ORTHANC if set, else started
here; needs Debian's orthanc and orthanc-dicomweb). Synthetic 16-bit chest radiographs
(--size square, CR) are uploaded to the source; then `release_from_pacs` (the path of
`dpglow pacs release`, shipped model, DP-GLOW e_px 100) runs twice: C-GET -> C-STORE (DIMSE to
DIMSE) and C-MOVE -> STOW-RS (DIMSE to DICOMweb), each into a fresh ledger. The phases are
timed from the progress callbacks: query + retrieve (until the last image is staged),
privatise (model loading, reading, encoding, noise, decoding, writing, ledger and records),
send (the destination's presence check and the transfer).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from orthanc import harness
from pacs_helpers import chest_dicom, to_bytes, write_nodes

from glow_engine.mechanisms import create_mechanism
from glow_engine.modelfile import load_model
from glow_engine.pacs.nodes import load_nodes
from glow_engine.pacs.query import StudyQuery
from glow_engine.pacs.release import PacsProgress, PacsReleaseRequest, release_from_pacs
from glow_engine.release.ledger import Ledger
from glow_engine.resources import default_model_dir


def nodes_file(s: harness.Servers, folder: Path) -> Path:
    return write_nodes(folder / "nodes.toml", f"""
[local]
ae_title = "{s.our_aet}"
port = {s.our_port}
[nodes.get]
kind = "dimse"
ae_title = "{s.a_aet}"
host = "127.0.0.1"
port = {s.a_dicom}
[nodes.move]
kind = "dimse"
ae_title = "{s.a_aet}"
host = "127.0.0.1"
port = {s.a_dicom}
retrieve = "move"
[nodes.dimse]
kind = "dimse"
ae_title = "{s.b_aet}"
host = "127.0.0.1"
port = {s.b_dicom}
[nodes.web]
kind = "dicomweb"
url = "http://127.0.0.1:{s.b_http}/dicom-web"
username = "{harness.USER}"
password = "{harness.PASSWORD}"
""")


def upload(s: harness.Servers, images: int, patients: int, size: int) -> str:
    accession = f"BENCH{uuid.uuid4().hex[:8]}"
    studies = {p: None for p in range(patients)}
    for i in range(images):
        p = i % patients
        ds = chest_dicom(f"BENCH-{accession}-{p}", accession=accession, size=size, seed=i,
                         study_uid=studies[p])
        studies[p] = ds.StudyInstanceUID
        requests.post(f"http://127.0.0.1:{s.a_http}/instances", data=to_bytes(ds),
                      auth=(harness.USER, harness.PASSWORD), timeout=60).raise_for_status()
    return accession


def timed_release(nodes: Path, source: str, to: str, accession: str, folder: Path,
                  mech: object) -> dict:
    marks: dict[str, float] = {}

    def progress(p: PacsProgress) -> None:
        marks[p.phase] = time.perf_counter()

    request = PacsReleaseRequest(source=source, query=StudyQuery(accessions=(accession,)),
                                 e_px=100, to_node=to, linkage="patient")
    start = time.perf_counter()
    with Ledger(folder / f"{source}-{to}" / "ledger.sqlite") as ledger:
        summary = release_from_pacs(request, load_nodes(nodes), lambda: mech, ledger,
                                    on_progress=progress)
    end = time.perf_counter()
    assert summary.complete, summary
    n = summary.release.count("written")
    return {"images": n, "total": end - start, "retrieve": marks["retrieving"] - start,
            "privatise": marks["privatising"] - marks["retrieving"],
            "send": end - marks["privatising"], "sent": summary.sent}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--patients", type=int, default=6)
    ap.add_argument("--size", type=int, default=1024)
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="dpglow-orthanc-"))
    env = os.environ.get("DPGLOW_ORTHANC")
    servers = harness.load(Path(env)) if env else harness.start(folder / "orthanc")
    try:
        nodes = nodes_file(servers, folder)
        t = time.perf_counter()
        mech = create_mechanism("dpglow", load_model(default_model_dir("mixture")))
        print(f"model loaded in {time.perf_counter() - t:.1f} s (not counted below)")
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
              f"load average {os.getloadavg()[0]:.1f} at start; {args.images} images "
              f"{args.size}x{args.size} 16-bit CR, {args.patients} patients")
        for source, to in (("get", "dimse"), ("move", "web")):
            accession = upload(servers, args.images, args.patients, args.size)
            r = timed_release(nodes, source, to, accession, folder, mech)
            n = r["images"]
            print(f"C-{source.upper()} -> {'C-STORE' if to == 'dimse' else 'STOW-RS'}: "
                  f"{n} images in {r['total']:.1f} s = {n / r['total']:.2f} images/s; "
                  f"retrieve {r['retrieve']:.1f} s ({r['retrieve'] / n * 1000:.0f} ms/image), "
                  f"privatise {r['privatise']:.1f} s ({r['privatise'] / n * 1000:.0f} ms/image),"
                  f" send {r['send']:.1f} s ({r['send'] / n * 1000:.0f} ms/image)")
        print(f"load average {os.getloadavg()[0]:.1f} at the end")
    finally:
        if not env:
            harness.stop(folder / "orthanc")
        shutil.rmtree(folder, ignore_errors=True)  # ledgers, outboxes, the servers' storage


if __name__ == "__main__":
    main()
