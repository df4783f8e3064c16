"""Batch release (`dpglow privatize`): load -> model frame -> ledger -> mechanism -> file.

Each input is independent: one that fails (unreadable, refused by the budget or by its
BurnedInAnnotation, unwritable) is reported in the manifest and the run goes on. Outputs are
written atomically and never replace an existing file, so a re-run skips what is done and
spends no budget on it. Images are privatised in batches (useful on a GPU); the noise is
drawn per batch by the mechanism's release path (OS CSPRNG).
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from glow_engine.choices import RELEASE_FORMATS
from glow_engine.errors import UserError
from glow_engine.imaging import LoadedImage, load_image
from glow_engine.imaging.frame import Placement, from_square, to_square
from glow_engine.imaging.pixels import to_uint8
from glow_engine.mechanisms import Mechanism, total_epsilon
from glow_engine.release.deid import DicomExporter, check_burned_in
from glow_engine.release.inputs import Job, collect_sources, plan_jobs
from glow_engine.release.ledger import Ledger, Release
from glow_engine.release.manifest import (
    manifest_name,
    merge_rank_manifests,
    previous_rows,
    write_manifest,
)
from glow_engine.release.output import write_release


@dataclass
class ReleaseOptions:
    e_px: float
    out_dir: Path
    fmt: str = "png"
    size: int | None = None  # long side of the output, aspect kept (post-processing)
    model_sha256: str = ""
    force_budget: bool = False
    patient_budget: float | None = None  # overrides the ledger's own
    allow_burned_in: bool = False
    batch_size: int = 8
    rank: int = 0
    world: int = 1
    progress: bool = True
    run_secret: str | None = None  # seeds DICOM pseudonyms; shared by all ranks of a run


@dataclass
class _Item:
    job: Job
    image: LoadedImage
    frame: np.ndarray  # the square model frame, padding included
    placement: Placement  # where the image sits in it: outputs are cropped back to this
    release_id: int = 0


@dataclass
class Summary:
    rows: list[dict] = field(default_factory=list)
    manifest: Path | None = None

    def count(self, status: str) -> int:
        return sum(r["status"] == status for r in self.rows)


def privatize(inputs: list[str | Path], mech: Mechanism, ledger: Ledger,
              opts: ReleaseOptions) -> Summary:
    """Privatise this rank's share of `inputs`; writes files and this rank's manifest."""
    if opts.fmt not in RELEASE_FORMATS:
        raise UserError(f"format must be one of {', '.join(RELEASE_FORMATS)}, got {opts.fmt!r}")
    if opts.size is not None and opts.size < mech.resolution:
        raise UserError(f"--size {opts.size} is below the model resolution {mech.resolution}")
    opts.out_dir.mkdir(parents=True, exist_ok=True)
    tag = mech.file_tag(opts.e_px) + (f".up{opts.size}" if opts.size else "")
    out = opts.out_dir.resolve()
    # outputs of earlier runs are never inputs, even when OUT lies inside an input folder
    sources = [(s, r) for s, r in collect_sources(inputs) if not s.resolve().is_relative_to(out)]
    jobs = plan_jobs(sources, opts.out_dir, tag, RELEASE_FORMATS[opts.fmt].suffix)
    opts = replace(opts, model_sha256=opts.model_sha256 or mech.model_sha256)
    run = _Run(mech, ledger, opts)
    earlier = previous_rows(opts.out_dir)
    todo = []
    for job in jobs[opts.rank::opts.world]:
        if job.output.exists():  # atomic writes: an existing output is a complete one
            run.done_earlier(job, earlier.get(str(job.output)))
        else:
            todo.append(job)
    with tqdm(total=len(todo), unit="img", desc="privatising", disable=not opts.progress,
              position=opts.rank) as bar:
        for chunk in _chunks(todo, opts.batch_size):
            run.batch(chunk)
            bar.update(len(chunk))
    order = {str(job.output): i for i, job in enumerate(jobs)}
    summary = Summary(sorted(run.rows, key=lambda row: order[row["output"]]))
    summary.manifest = write_manifest(summary.rows, opts.out_dir, manifest_name(opts.rank,
                                                                            opts.world))
    return summary


def shared_run_secret(world: int) -> str:
    """A fresh random secret, the same on every rank (rank 0's, broadcast under torchrun)."""
    secret = [secrets.token_hex(32)]
    if world > 1:
        _process_group().broadcast_object_list(secret, src=0)
    return secret[0]


def finish_shards(opts: ReleaseOptions) -> Path | None:
    """Under torchrun: wait for every rank, then rank 0 merges the rank manifests."""
    if opts.world <= 1:
        return None
    dist = _process_group()
    dist.barrier()
    merged = merge_rank_manifests(opts.out_dir, opts.world) if opts.rank == 0 else None
    dist.destroy_process_group()
    return merged


def _process_group() -> ModuleType:
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")  # CPU collectives: work with or without GPUs
    return dist


class _Run:
    def __init__(self, mech: Mechanism, ledger: Ledger, opts: ReleaseOptions) -> None:
        self.mech, self.ledger, self.opts = mech, ledger, opts
        self.rows: list[dict] = []
        self.exporter = DicomExporter(opts.run_secret) if opts.fmt == "dicom" else None
        self.total = total_epsilon(opts.e_px, mech.resolution)

    def batch(self, jobs: list[Job]) -> None:
        items = [item for job in jobs if (item := self._guard(job, self._prepare, job))]
        items = [item for item in items if self._guard(item.job, self._reserve, item)]
        if not items:
            return
        try:
            enc = self.mech.encode(np.stack([item.frame for item in items]))
            released = self.mech.release(enc, self.opts.e_px)
        except Exception as e:  # the whole batch failed: nothing was written, nothing spent
            for item in items:
                self.ledger.cancel(item.release_id)
                self._fail(item.job, e)
            return
        for item, pixels in zip(items, released, strict=True):
            if self._guard(item.job, self._write, item, pixels) is None:
                self.ledger.cancel(item.release_id)

    def _guard(self, job: Job, step: Callable[..., Any], *args: Any) -> Any:
        """Run one step for one input; a failure becomes that input's row and gives None."""
        try:
            return step(*args)
        except Exception as e:
            self._fail(job, e)
            return None

    def _prepare(self, job: Job) -> _Item:
        image = load_image(job.source)
        if image.dataset is not None:
            check_burned_in(image.dataset, self.opts.allow_burned_in)
        frame, placement = to_square(image.pixels, self.mech.resolution)
        return _Item(job, image, frame, placement)

    def _reserve(self, item: _Item) -> _Item:
        release = Release(item.image.content_sha256, item.image.patient_id, self.mech.name,
                          self.mech.mode, self.opts.e_px, self.total, self.opts.model_sha256,
                          str(item.job.output))
        item.release_id = self.ledger.reserve(release, force=self.opts.force_budget,
                                              budget=self.opts.patient_budget)
        return item

    def _write(self, item: _Item, pixels: np.ndarray) -> bool:
        # The padding is cropped off, as the viewer shows and exports it: the released image
        # keeps the source's aspect ratio (cropping is post-processing: no privacy cost).
        pixels, note = self._resize(from_square(pixels, item.placement))
        description = self.mech.describe(self.opts.e_px)
        write_release(item.job.output, pixels, self.exporter, item.image.dataset, description,
                      force_burned_in=self.opts.allow_burned_in, derivation=note)
        self.ledger.confirm(item.release_id)
        self.rows.append(self._row(item.job, "written", "", item.image.content_sha256,
                                   description, note))
        return True

    def _resize(self, pixels: np.ndarray) -> tuple[np.ndarray, str]:
        """--size: the long side to SIZE pixels, aspect kept (bicubic, post-processing)."""
        size, (h, w) = self.opts.size, pixels.shape
        if not size or size == max(h, w):
            return pixels, ""
        new_w, new_h = (max(1, round(side * size / max(h, w))) for side in (w, h))
        img = Image.fromarray(to_uint8(pixels)).resize((new_w, new_h), Image.Resampling.BICUBIC)
        note = f"resized from {w}x{h} to {new_w}x{new_h} (bicubic, post-processing)"
        return np.asarray(img, dtype=np.float32) / 255, note

    def done_earlier(self, job: Job, previous: dict | None) -> None:
        row = dict(previous or self._row(job, "", "", "", "", ""))
        row.update(status="done-earlier", message="output exists; not privatised again",
                   rank=self.opts.rank)
        self.rows.append(row)

    def _fail(self, job: Job, error: Exception) -> None:
        message = str(error) if isinstance(error, UserError | OSError | ValueError) else (
            f"{type(error).__name__}: {error}")
        self.rows.append(self._row(job, "failed", message, "", "", ""))

    def _row(self, job: Job, status: str, message: str, sha: str, description: str,
             post: str) -> dict:
        e_px = self.opts.e_px
        return {"input": str(job.source), "output": str(job.output), "status": status,
                "message": message, "mechanism": self.mech.name, "mode": self.mech.mode,
                "e_px": "inf" if math.isinf(e_px) else e_px,
                "total_epsilon": "inf" if math.isinf(self.total) else self.total,
                "description": description, "post_processing": post,
                "model_sha256": self.opts.model_sha256, "image_sha256": sha,
                "rank": self.opts.rank, "time": datetime.now(UTC).isoformat(timespec="seconds")}


def _chunks(items: list[Job], size: int) -> Iterator[list[Job]]:
    for start in range(0, len(items), max(1, size)):
        yield items[start:start + size]
