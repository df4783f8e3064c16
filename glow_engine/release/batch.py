"""Releasing privatised images: one code path for `dpglow privatize`, the viewer's export and
its batch window.

Public API::

    opts = ReleaseOptions(e_px=100, out_dir=Path("released"))
    summary = release_folder(["scans/"], mech, ledger, opts,
                             on_progress=lambda done, total: ..., should_stop=lambda: False)
    summary.count("written"); summary.outcomes  # one Outcome per input: status + message

    item = ReleaseInput.from_image(load_image(path), mech.resolution)
    outcome = release_one(item, mech, ledger, opts)  # the viewer: one image, maybe encoded

Every release takes the same steps (`_release`, for a batch of one or many):
burned-in policy -> ledger reservation (per-patient budget) -> a "reserved" row in the
operator's record -> the mechanism's release path (exact discrete Laplace from the OS CSPRNG)
-> the file, under a random name, atomically -> ledger confirmation -> a row in the published
manifest and the final row in the operator's record (glow_engine.release.records). A
reservation is cancelled only if the noise was never drawn; once it may have been, a failure
keeps counting ("failed" in the ledger). A run killed between these steps is settled by the
next run into the same folder before it does anything new (glow_engine.release.settle).

Statuses of an Outcome: "written"; "done-earlier" (released into this folder with the same
settings before, the file checked by its hash: nothing spent); "skipped" (not a regular
file: never opened); "refused" (budget or burned-in policy: nothing drawn, nothing spent);
"failed" (the message says whether the budget was counted); "not-started" (the run was
stopped by `should_stop`, or by a record that could not be written).

Inputs are processed in an order keyed by a secret of the run (the same on every torchrun
rank), not in the order of their names, so neither the published manifest nor the DICOM
instance numbers follow the source's file or folder names.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import math
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import numpy as np
from pydicom.dataset import Dataset

from glow_engine.budget import total_epsilon
from glow_engine.choices import RELEASE_FORMATS
from glow_engine.device import rendezvous_timeout
from glow_engine.errors import UserError
from glow_engine.imaging import LoadedImage, load_image
from glow_engine.imaging.errors import MIN_SIDE
from glow_engine.imaging.frame import Placement, to_square
from glow_engine.mechanisms import Encoded, Mechanism
from glow_engine.release import records, runs
from glow_engine.release.deid import (
    DEFAULT_LINKAGE,
    LINKAGES,
    BurnedInAnnotationError,
    DicomExporter,
    burned_in_text,
    check_burned_in,
    link_key,
)
from glow_engine.release.inputs import Source, Sources, collect_sources
from glow_engine.release.ledger import BudgetExceeded, Ledger, Release, Reservation
from glow_engine.release.output import new_release_name, shape_release, write_release
from glow_engine.release.settle import PENDING, settle

MAX_SIDE = 4096  # --size cap: far above a radiograph, far below a memory error
NO_PATIENT = ("no patient id (none in its list, none matched by the pattern, no DICOM "
              "PatientID), so its epsilon cannot be counted for its patient; it is released "
              "only once it is confirmed that each image without a patient id is a patient of "
              "its own. Nothing was spent")
MAX_BATCH = 1024
StopCheck = Callable[[], bool]
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ReleaseOptions:
    e_px: float
    out_dir: Path
    fmt: str = "png"  # a key of glow_engine.choices.RELEASE_FORMATS
    size: int | None = None  # side of the released square (long side with keep_aspect)
    keep_aspect: bool = False  # crop the padding: publishes the aspect ratio unprotected
    force_budget: bool = False  # release past the ledger's per-patient budget (recorded)
    patient_budget: float | None = None  # this run's own, lower per-patient limit
    allow_burned_in: bool = False  # release sources declaring BurnedInAnnotation = YES
    allow_unknown_burned_in: bool = False  # release DICOM sources that do not declare it
    patient_id_pattern: str | None = None  # regex, group 1 the patient id (release.inputs)
    # An image without a patient id is refused unless the officer confirmed that each such
    # image is a patient of its own (its budget is then counted for it alone).
    one_patient_per_image: bool = False
    batch_size: int = 8
    rank: int = 0
    world: int = 1
    run_secret: str | None = None  # seeds the order and DICOM series; shared by all ranks
    linkage: str = DEFAULT_LINKAGE  # a key of deid.LINKAGES (DICOM outputs only)
    note: str = ""  # added to every output's derivation (the viewer: markers, flip)


@dataclass(frozen=True, eq=False)
class ReleaseInput:
    """One image as the release path takes it."""

    source: str  # the operator's name for it (a path): only in the operator's record
    image_sha256: str  # the ledger counts budgets per source image (and patient)
    frame: np.ndarray  # (R, R) in [0, 1]: the model frame, padding included
    placement: Placement  # where the image sits in the frame
    dataset: Dataset | None  # the DICOM header (no pixel data); None for PNG/JPEG/TIFF
    patient_id: str | None
    burned_in: bool | None  # the source's BurnedInAnnotation: None when it does not say
    encoding: Encoded | None = None  # the mechanism's encoding of `frame`, if already made

    @classmethod
    def from_image(cls, image: LoadedImage, resolution: int,
                   patient_id: str | None = None) -> ReleaseInput:
        """`patient_id` comes from a list (a CSV's patient_id column); it must agree with a
        DICOM's own PatientID."""
        own = image.patient_id
        if patient_id and own and patient_id != own:
            raise UserError(f"{image.path.name}: the patient_id given in the list differs "
                            "from the file's PatientID; correct the list")
        frame, placement = to_square(image.pixels, resolution)
        return cls(str(image.path), image.content_sha256, frame, placement, image.dataset,
                   patient_id or own, image.burned_in_annotation)


@dataclass(frozen=True)
class Outcome:
    source: str  # the operator's name for the input (never published)
    status: str  # see the module docstring
    message: str = ""
    file: Path | None = None  # the released file, when written or done earlier


@dataclass
class Summary:
    outcomes: list[Outcome] = field(default_factory=list)
    manifest: Path | None = None  # the published manifest, OUT/manifest.csv
    record: Path | None = None  # the operator's record beside the ledger
    other_files: int = 0  # files in the input folders that are not images
    error: str | None = None  # why the run stopped early (a record could not be written)
    settled: int = 0  # unfinished releases of interrupted runs settled before this one

    own_patients: int = 0  # released without a patient id, each its own patient (confirmed)

    @property
    def without_patient(self) -> int:
        """Inputs refused for want of a patient id."""
        return sum(o.status == "refused" and o.message == NO_PATIENT for o in self.outcomes)
    linkage: str = "none"  # what links the released images (deid.LINKAGES; none for PNG)

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    def add(self, recorded: tuple[list[Outcome], str | None]) -> None:
        outcomes, error = recorded
        self.outcomes += outcomes
        self.error = self.error or error

    @property
    def complete(self) -> bool:
        """Every input released (now or earlier) and every record written."""
        return self.error is None and all(o.status in ("written", "done-earlier")
                                          for o in self.outcomes)


@dataclass
class _Done:
    """An outcome with what its records need."""

    outcome: Outcome
    item: ReleaseInput | None = None
    ledger_id: int | str = ""
    forced: int | str = ""
    shape: tuple[int, int] = (0, 0)  # (height, width) of the released image


# --------------------------------------------------------------------------- public API


def release_folder(inputs: list[str | Path], mech: Mechanism, ledger: Ledger,
                   opts: ReleaseOptions, *, on_progress: Progress | None = None,
                   should_stop: StopCheck | None = None) -> Summary:
    """Release this rank's share of `inputs` (files, folders, CSV lists) into opts.out_dir.

    UserError (before anything is read or spent) for unusable options, budgets or output
    folders, and for inputs that hold no image. `on_progress(done, total)` is called after
    each batch; `should_stop()` is asked before each batch."""
    # before OUT is made: it may be an input
    found = collect_sources(inputs, opts.out_dir, opts.patient_id_pattern)
    if not found.sources and not found.skipped:
        raise UserError(f"no images found in {', '.join(map(str, inputs))}"
                        + (f" ({found.other_files} other files)" if found.other_files else ""))
    run = _Run(mech, ledger, opts)
    try:
        return _release_sources(run, found, on_progress, should_stop)
    finally:
        run.finish()


def _release_sources(run: _Run, found: Sources, on_progress: Progress | None,
                     should_stop: StopCheck | None) -> Summary:
    opts = run.opts
    summary = Summary(manifest=run.manifest, record=run.record_file,
                      other_files=found.other_files, linkage=run.linkage, settled=run.settled)
    if opts.rank == 0 and found.skipped:  # every rank scans the same folders: rank 0 says it
        summary.add(run.record([_Done(Outcome(str(path), "skipped", why))
                                for path, why in found.skipped]))
    mine = _ordered(found.sources, run.secret)[opts.rank::opts.world]
    for done, chunk in _chunks(mine, opts.batch_size):
        if summary.error or (should_stop and should_stop()):
            summary.outcomes += [Outcome(str(s.path), "not-started") for s in chunk]
            continue
        summary.add(run.record(run.batch(chunk)))
        if on_progress:
            on_progress(done, len(mine))
    summary.own_patients = run.own_patients
    return summary


def release_one(item: ReleaseInput, mech: Mechanism, ledger: Ledger,
                opts: ReleaseOptions) -> Outcome:
    """Release one prepared image (the viewer's export) into opts.out_dir. UserError for
    unusable options, budgets or output folders, and RecordError if the records cannot be
    written (the file then exists and the ledger counts it)."""
    run = _Run(mech, ledger, opts)
    try:
        [outcome], error = run.record(run.release([item]))
    finally:
        run.finish()
    if error:
        raise records.RecordError(error)
    return outcome


def shared_run_secret(world: int) -> str:
    """A fresh random secret, the same on every rank (rank 0's, broadcast under torchrun)."""
    secret = [secrets.token_hex(32)]
    if world > 1:
        _process_group().broadcast_object_list(secret, src=0)
    return secret[0]


def finish_shards(opts: ReleaseOptions) -> None:
    """Under torchrun: wait until every rank is done (each appended its own records)."""
    if opts.world > 1:
        dist = _process_group()
        dist.barrier()
        dist.destroy_process_group()


def _process_group() -> ModuleType:
    import torch.distributed as dist

    if not dist.is_initialized():
        timeout = rendezvous_timeout()
        try:  # CPU collectives: work with or without GPUs
            dist.init_process_group("gloo", timeout=timeout)
        except Exception as e:  # a rank that never came, an address nobody listens on
            raise UserError(f"the torchrun ranks did not all join within "
                            f"{timeout.total_seconds():g} s (DPGLOW_RENDEZVOUS_TIMEOUT): "
                            f"{_text(e)}") from None
    return dist


# --------------------------------------------------------------------------- one run


class _Run:
    """What one run needs: checked options, the output folder, earlier releases, records."""

    def __init__(self, mech: Mechanism, ledger: Ledger, opts: ReleaseOptions) -> None:
        _check_options(mech, opts)
        ledger.check_run_limit(opts.patient_budget, force=opts.force_budget)
        self.mech, self.ledger, self.opts = mech, ledger, opts
        records.check_private_locations(opts.out_dir, ledger.path)
        self.out, self.created = _prepare_out(opts.out_dir)
        self.locks: runs.RunLocks | None = None
        self.own_patients = 0  # images released without a patient id
        try:
            self._start(ledger)
        except BaseException:
            self.finish()
            raise

    def _start(self, ledger: Ledger) -> None:
        mech, opts = self.mech, self.opts
        self.manifest = records.manifest_path(self.out)
        self.record_file = records.record_path(ledger.path)
        records.check_appendable(self.manifest, records.MANIFEST_FIELDS, "published manifest")
        records.check_appendable(self.record_file, records.RECORD_FIELDS, "operator's record")
        self.secret = opts.run_secret or secrets.token_hex(32)
        self.run_id = hmac.new(self.secret.encode(), b"run", hashlib.sha256).hexdigest()[:12]
        self.locks = runs.hold(ledger.path, self.run_id, opts.rank)
        # first finish what interrupted runs left in OUT
        self.settled = settle(self.out, ledger, self.record_file, self.manifest, _sha256)
        self.linkage = opts.linkage if opts.fmt == "dicom" else "none"  # a PNG has no header
        self.exporter = DicomExporter(
            link_key(ledger.patient_key, self.out) if self.linkage == "patient" else None,
            self.secret) if opts.fmt == "dicom" else None
        self.total = total_epsilon(opts.e_px, mech.resolution)
        self.description = mech.describe(opts.e_px)
        self.frame = "source aspect" if opts.keep_aspect else "square"
        self.settings = (f"{self.description} | {opts.fmt} | {self.frame} | "
                         f"size {opts.size or mech.resolution}"
                         + (f" | linkage {self.linkage}" if opts.fmt == "dicom" else ""))
        self.earlier = self._released_before()

    def finish(self) -> None:
        """The run is over: its lock files go (what it left unfinished is settled later),
        and so do the folders it made for OUT if it put nothing in them."""
        if self.locks is not None:
            self.locks.release(remove=True)
        if self.opts.world == 1:  # another rank may still be writing into a shared OUT
            for folder in self.created:
                try:
                    folder.rmdir()  # only an empty one
                except OSError:
                    break

    def _released_before(self) -> dict[str, Path]:
        """Source sha256 -> its release in this folder with these settings, if the file is
        still there with the content that was recorded (a truncated file does not count)."""
        found: dict[str, Path] = {}
        for row in records.read_rows(self.record_file):
            if (row["status"] == "written" and row["out_dir"] == str(self.out)
                    and row["settings"] == self.settings and row["source_sha256"] not in found):
                path = self.out / Path(row["file"]).name
                if _sha256(path) == row["sha256"]:
                    found[row["source_sha256"]] = path
        return found

    # ----------------------------------------------------------------- a batch of inputs

    def batch(self, sources: list[Source]) -> list[_Done]:
        done: list[_Done] = []
        items: list[ReleaseInput] = []
        for source in sources:
            try:
                item = ReleaseInput.from_image(load_image(source.path), self.mech.resolution,
                                               source.patient_id)
            except UserError as e:
                done.append(_Done(Outcome(str(source.path), "failed", str(e))))
                continue
            if item.image_sha256 in self.earlier:
                done.append(_Done(Outcome(item.source, "done-earlier", "released into this "
                                          "folder before with the same settings; nothing "
                                          "spent", self.earlier[item.image_sha256]), item))
            else:
                items.append(item)
        return done + self.release(items)

    def release(self, items: list[ReleaseInput]) -> list[_Done]:
        """The steps of every release, for a batch (see the module docstring)."""
        done: list[_Done] = []
        reserved: list[tuple[ReleaseInput, str, Reservation]] = []
        for item in items:
            if item.patient_id is None and not self.opts.one_patient_per_image:
                done.append(_Done(Outcome(item.source, "refused", NO_PATIENT), item))
                continue
            try:
                check_burned_in(item.burned_in, item.dataset is not None,
                                allow=self.opts.allow_burned_in,
                                allow_unknown=self.opts.allow_unknown_burned_in)
                name = new_release_name(self.out, self.opts.fmt)
                reservation = self.ledger.reserve(self._ledger_row(item, name),
                                                  force=self.opts.force_budget,
                                                  run_limit=self.opts.patient_budget)
            except (BurnedInAnnotationError, BudgetExceeded) as e:
                done.append(_Done(Outcome(item.source, "refused", str(e)), item))
            except UserError as e:
                done.append(_Done(Outcome(item.source, "failed", str(e)), item))
            else:
                reserved.append((item, name, reservation))
        if reserved and (error := self._record_pending(reserved)):
            for _, _, reservation in reserved:  # nothing was drawn: nothing is spent
                self.ledger.cancel(reservation.id)
            return done + [_Done(Outcome(item.source, "failed", f"{error}; nothing was spent"),
                                 item, r.id) for item, _, r in reserved]
        return done + (self._draw_and_write(reserved) if reserved else [])

    def _record_pending(self, reserved: list[tuple[ReleaseInput, str, Reservation]]
                        ) -> str | None:
        """Before the noise is drawn, the operator's record says what is about to be
        released, with its planned manifest row, so an interrupted run can be settled."""
        rows = [self._private(_Done(Outcome(item.source, PENDING, json.dumps(self._planned(item)),
                                            self.out / name), item, reservation.id,
                                    int(reservation.forced)))
                for item, name, reservation in reserved]
        try:
            with self.ledger.exclusive():
                records.append_rows(self.record_file, records.RECORD_FIELDS, rows,
                                    "operator's record")
        except records.RecordError as e:
            return str(e)
        return None

    def _draw_and_write(self, reserved: list[tuple[ReleaseInput, str, Reservation]]
                        ) -> list[_Done]:
        items = [item for item, _, _ in reserved]
        try:
            enc = _encoding(self.mech, items)
        except Exception as e:  # nothing was drawn: the reservations cost nothing
            for _, _, reservation in reserved:
                self.ledger.cancel(reservation.id)
            return [_Done(Outcome(i.source, "failed", f"{_text(e)}; nothing was spent"), i, r.id)
                    for i, _, r in reserved]
        try:
            noisy = self.mech.release(enc, self.opts.e_px)
        except Exception as e:  # the noise may have been drawn: it keeps counting
            for _, _, reservation in reserved:
                self.ledger.fail(reservation.id, _text(e))
            return [_Done(Outcome(i.source, "failed", f"{_text(e)}; the budget is counted"), i,
                          r.id) for i, _, r in reserved]
        frames = noisy if enc.batched else noisy[None]
        return [self._write(item, name, reservation, frame)
                for (item, name, reservation), frame in zip(reserved, frames, strict=True)]

    def _write(self, item: ReleaseInput, name: str, reservation: Reservation,
               frame: np.ndarray) -> _Done:
        path = self.out / name
        pixels, note = shape_release(frame, item.placement, keep_aspect=self.opts.keep_aspect,
                                     size=self.opts.size)
        try:
            write_release(path, pixels, self.exporter, item.dataset, self.description,
                          burned_in=item.burned_in,
                          derivation="; ".join(n for n in (note, self.opts.note) if n))
        except Exception as e:  # the noise was drawn: it keeps counting
            self.ledger.fail(reservation.id, _text(e))
            return _Done(Outcome(item.source, "failed", f"cannot write {path}: {_text(e)}; the "
                                 "budget is counted (the noise was drawn)"), item, reservation.id)
        self.ledger.confirm(reservation.id)
        self.own_patients += item.patient_id is None
        return _Done(Outcome(item.source, "written", reservation.note, path), item,
                     reservation.id, int(reservation.forced), pixels.shape)

    def _ledger_row(self, item: ReleaseInput, name: str) -> Release:
        return Release(item.image_sha256, item.patient_id, self.mech.name, self.mech.mode,
                       self.opts.e_px, self.total, self.mech.model_sha256, name)

    # ----------------------------------------------------------------- records

    def record(self, done: list[_Done]) -> tuple[list[Outcome], str | None]:
        """Append `done` to the records; its outcomes, and the error if that failed."""
        published = [self._published(d) for d in done if d.outcome.status == "written"]
        try:
            with self.ledger.exclusive():
                records.append_rows(self.manifest, records.MANIFEST_FIELDS, published,
                                    "published manifest")
                records.append_rows(self.record_file, records.RECORD_FIELDS,
                                    map(self._private, done), "operator's record")
        except records.RecordError as e:
            return [d.outcome for d in done], (f"{e} ({len(published)} image(s) of this batch "
                                               "were written and are counted in the ledger)")
        return [d.outcome for d in done], None

    def _published(self, done: _Done) -> dict:
        file = done.outcome.file
        assert file is not None and done.item is not None
        return {**self._planned(done.item), "file": file.name, "sha256": _sha256(file),
                "width": done.shape[1], "height": done.shape[0]}

    def _planned(self, item: ReleaseInput) -> dict:
        """The manifest row of `item`'s release, less what only its file tells."""
        mech = self.mech
        return {"format": self.opts.fmt, "frame": self.frame, "mechanism": mech.name,
                "mode": mech.mode, "e_px": _number(self.opts.e_px),
                "total_epsilon": _number(self.total), "description": self.description,
                "model_sha256": mech.model_sha256,
                "source_burned_in": burned_in_text(item.burned_in), "linkage": self.linkage}

    def _private(self, done: _Done) -> dict:
        item, file, o = done.item, done.outcome.file, done.outcome
        return {"time": datetime.now(UTC).isoformat(timespec="seconds"), "run": self.run_id,
                "status": o.status, "message": o.message, "source": o.source,
                "source_sha256": item.image_sha256 if item else "",
                "patient_key": (self.ledger.patient_key(item.patient_id) or "") if item else "",
                "out_dir": str(self.out), "file": file.name if file else "",
                "sha256": _sha256(file) if file else "", "settings": self.settings,
                "ledger_id": done.ledger_id, "total_epsilon": _number(self.total),
                "forced": done.forced,
                "source_burned_in": burned_in_text(item.burned_in) if item else ""}


# --------------------------------------------------------------------------- helpers


def _check_options(mech: Mechanism, opts: ReleaseOptions) -> None:
    if opts.fmt not in RELEASE_FORMATS:
        raise UserError(f"format must be one of {', '.join(RELEASE_FORMATS)}, got {opts.fmt!r}")
    if opts.linkage not in LINKAGES:
        raise UserError(f"linkage must be one of {', '.join(LINKAGES)}, got {opts.linkage!r}")
    if opts.size is not None and not MIN_SIDE <= opts.size <= MAX_SIDE:
        raise UserError(f"--size must be between {MIN_SIDE} and {MAX_SIDE}, got {opts.size}")
    if not 1 <= opts.batch_size <= MAX_BATCH:
        raise UserError(f"--batch-size must be between 1 and {MAX_BATCH}, got "
                        f"{opts.batch_size}")
    mech.check_budget(opts.e_px)


def _prepare_out(out_dir: Path) -> tuple[Path, list[Path]]:
    """Create the output folder and check that files can be written into it; the folder and
    the folders that were made for it (deepest first)."""
    made = [folder for folder in (out_dir, *out_dir.parents) if not folder.exists()]
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        if not out_dir.is_dir():
            raise NotADirectoryError(0, "it exists and is not a folder")
        probe = out_dir / f".dpglow-write-test-{secrets.token_hex(4)}"
        probe.touch(exist_ok=False)
        probe.unlink()
    except OSError as e:
        for folder in made:  # leave nothing behind
            with contextlib.suppress(OSError):
                folder.rmdir()
        if isinstance(e, FileExistsError):
            raise UserError(f"cannot use {out_dir} as the output folder: it exists and is "
                            "not a folder") from None
        raise UserError(f"cannot write into the output folder {out_dir}: "
                        f"{e.strerror or e}") from None
    return out_dir.resolve(), [folder.resolve() for folder in made]


def _ordered(sources: list[Source], secret: str) -> list[Source]:
    """A secret, deterministic order: the same on every rank, unrelated to the names."""
    def key(source: Source) -> str:
        # fsencode: a name need not be valid UTF-8 (any bytes on POSIX)
        return hmac.new(secret.encode(), os.fsencode(source.path), hashlib.sha256).hexdigest()
    return sorted(sources, key=key)


def _encoding(mech: Mechanism, items: list[ReleaseInput]) -> Encoded:
    if len(items) == 1 and items[0].encoding is not None:
        return items[0].encoding
    return mech.encode(np.stack([item.frame for item in items]))


def _chunks(items: list[Source], size: int) -> Iterator[tuple[int, list[Source]]]:
    """(how many are done after this chunk, the chunk)."""
    for start in range(0, len(items), size):
        yield min(start + size, len(items)), items[start:start + size]


def _sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def _number(x: float) -> str:
    return "inf" if math.isinf(x) else repr(float(x))


def _text(error: Exception) -> str:
    return str(error) if isinstance(error, UserError | OSError | ValueError) else (
        f"{type(error).__name__}: {error}")
