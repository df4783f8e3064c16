"""Release: the window's export of the open image and the batch window's folder release,
both through the release path shared with `dpglow privatize` (glow_engine.release.batch):
fresh noise from the OS CSPRNG (never a preview's draw), reserved in the ledger before it is
drawn, a random file name in the release folder, a row in its manifest and in the operator's
record, and the run's release report."""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from pathlib import Path

import torch

from app.core.jobs import JobControl
from app.core.messages import BatchDone, BatchRequest, Exported, ExportRequest
from app.engine.inputs import Inputs
from glow_engine.errors import UserError
from glow_engine.privacy_statement import scientific
from glow_engine.release.batch import (
    ReleaseInput,
    ReleaseOptions,
    Summary,
    release_folder,
    release_one,
)
from glow_engine.release.ledger import Ledger
from glow_engine.release.records import check_private_locations, manifest_path, record_path
from glow_engine.release.report import report_run

# One image per batch: the release path asks whether to stop before each batch, so the
# window's Cancel is honoured between images (what that costs against `dpglow privatize`'s 8
# per batch: docs/benchmarks.md).
WINDOW_BATCH = 1


class Releases:
    def __init__(self, inputs: Inputs, control: JobControl) -> None:
        self._inputs, self._control = inputs, control

    def folder(self, request: BatchRequest) -> BatchDone:
        """The batch window's release: `dpglow privatize`'s path and its release report;
        progress and Cancel through the lane's JobControl, image by image."""
        job, rid = request.release, request.id
        p = job.params
        mech = self._inputs.mechanism(job.mechanism, p)
        opts = ReleaseOptions(e_px=p.e_px, out_dir=job.out_dir, fmt=job.fmt,
                              keep_aspect=job.keep_aspect, force_budget=job.force_budget,
                              allow_burned_in=job.allow_burned_in, batch_size=WINDOW_BATCH,
                              patient_id_pattern=job.patient_id_pattern,
                              one_patient_per_image=job.one_patient_per_image)
        check_private_locations(job.out_dir, job.ledger_path)  # before the ledger is made
        with Ledger(job.ledger_path) as ledger:
            summary = release_folder(
                list(job.inputs), mech, ledger, opts,
                on_progress=lambda done, total: self._control.progress(rid, done, total),
                should_stop=lambda: self._control.cancelled(rid))
            report = report_run(mech, p.e_px, summary, ledger)
        return batch_done(rid, summary, report)

    @torch.inference_mode()
    def export(self, request: ExportRequest) -> Exported:
        """Release the current input (glow_engine.release.batch.release_one), reusing the
        preview's noise-free encoding but never its noise."""
        p, src = request.params, request.source
        prep = self._inputs.prepare(src, request.markers, request.flip)
        mech = self._inputs.mechanism(request.mechanism, p)
        image = src.image
        sha = image.content_sha256 if image else hashlib.sha256(src.pixels.tobytes()).hexdigest()
        item = ReleaseInput(
            str(image.path) if image else "synthetic sample", sha, prep.frame, prep.placement,
            image.dataset if image else None,
            request.patient_id or (image.patient_id if image else None),
            image.burned_in_annotation if image else None,
            self._inputs.encoding(prep, mech.name, p))
        notes = ["exported from the DP-GLOW viewer"]
        if request.markers or request.flip:
            notes.append("input altered by the user before privatisation (block markers or "
                         "left-right flip)")
        opts = ReleaseOptions(e_px=p.e_px, out_dir=request.out_dir, fmt=request.fmt,
                              keep_aspect=request.keep_aspect,
                              force_budget=request.force_budget,
                              allow_burned_in=request.allow_burned_in, note="; ".join(notes),
                              # a synthetic sample is nobody's: it counts for itself
                              one_patient_per_image=request.one_patient_per_image
                              or image is None)
        check_private_locations(request.out_dir, request.ledger_path)
        with Ledger(request.ledger_path) as ledger:
            outcome = release_one(item, mech, ledger, opts)
            if outcome.status != "written" or outcome.file is None:
                raise UserError(outcome.message)
            on_image = ledger.spent_on_image(sha)
            on_patient = ledger.spent_on_patient(item.patient_id, sha)
            done = Summary([outcome], manifest_path(request.out_dir),
                           record_path(request.ledger_path))
            report = report_run(mech, p.e_px, done, ledger)
        who = "patient" if item.patient_id else "image"
        place, (h, w) = prep.placement, src.pixels.shape
        size = (f"{place.width} × {place.height}" if request.keep_aspect
                else f"{mech.resolution} × {mech.resolution}")
        drawn = ("no noise (ε = ∞): no privacy" if math.isinf(p.e_px)
                 else "a new draw with fresh secure noise")
        return Exported(request.id, outcome.file,
                        f"Exported {outcome.file.name}, {size} pixels from a {w} × {h} source: "
                        f"{drawn} ({mech.describe(p.e_px)}). Ledger: total ε spent on this "
                        f"image {scientific(on_image)}; on this {who} {scientific(on_patient)}.",
                        report)


def batch_done(request_id: int, summary: Summary, report: Path | None) -> BatchDone:
    """The window's account of a release_folder run (the batch and the PACS windows')."""
    problems = tuple(f"{Path(o.source).name}: {o.status} — {o.message}"
                     for o in summary.outcomes if o.status not in ("written",))
    return BatchDone(request_id, dict(Counter(o.status for o in summary.outcomes)), problems,
                     summary.manifest, summary.record, report, summary.error or "")
