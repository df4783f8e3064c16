"""The privacy ledger: every release's epsilon, summed per source image and per patient.

Releasing several versions of one image adds their epsilons (sequential composition), and
one patient has many images, so a per-patient budget is what bounds what can be learned about
a person. One SQLite file (WAL mode, schema version in PRAGMA user_version).

A release is recorded in steps (glow_engine.release.batch drives them): `reserve` checks the
budget and inserts the row in one IMMEDIATE transaction, so concurrent ranks cannot both pass
the check, before any noise is drawn. Then `confirm` once the file is on disk; `cancel` only
if the noise was never drawn; `fail` if it was drawn but no file was written (the row keeps
counting: the draw happened). A crash in between leaves the row reserved, which counts too:
the ledger errs towards "spent".

The stored per-patient budget can be lowered freely; raising it (or clearing it) needs
`force` and is kept in the `budget_changes` table. A run may add a *lower* limit of its own.

Patient ids are never stored: only HMAC-SHA256(per-ledger secret salt, patient id). An image
without a patient id (a PNG not listed with one, or a DICOM without PatientID) is its own
patient for the budget. The ledger holds no path: a release's `output` is its file name,
which carries nothing of the source (glow_engine.release.output).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import secrets
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from glow_engine.errors import UserError

SCHEMA_VERSION = 2
_RELEASES = """
CREATE TABLE releases (
    id INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    image_sha256 TEXT NOT NULL,
    patient_key TEXT,
    budget_key TEXT NOT NULL,
    mechanism TEXT NOT NULL,
    mode TEXT NOT NULL,
    e_px REAL NOT NULL,
    total_epsilon REAL NOT NULL,
    model_sha256 TEXT NOT NULL,
    output TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('reserved', 'written', 'failed', 'cancelled')),
    forced INTEGER NOT NULL DEFAULT 0,
    note TEXT NOT NULL DEFAULT ''
);
CREATE INDEX releases_image ON releases (image_sha256);
CREATE INDEX releases_budget ON releases (budget_key);
"""
_BUDGET_CHANGES = """
CREATE TABLE budget_changes (
    id INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    old REAL,
    new REAL,
    forced INTEGER NOT NULL,
    note TEXT NOT NULL DEFAULT ''
);
"""
COUNTED = "status != 'cancelled'"


class LedgerError(UserError):
    """A ledger that cannot be used."""


class BudgetExceeded(UserError):
    """A release would take a patient past the per-patient budget."""


@dataclass(frozen=True)
class Release:
    """What is about to be released (one output file)."""

    image_sha256: str
    patient_id: str | None
    mechanism: str
    mode: str  # "tight" | "paper" | "" (mechanisms without modes)
    e_px: float
    total_epsilon: float
    model_sha256: str
    output: str  # the released file's name (never a path)


@dataclass(frozen=True)
class Reservation:
    """A reserved release: its row id, and whether it goes past the stored budget (forced)."""

    id: int
    forced: bool
    note: str


def default_ledger_path() -> Path:
    """$DPGLOW_LEDGER, else the per-user data folder: one ledger for every release a user
    makes, wherever the files go, so that composition is counted across runs."""
    if env := os.environ.get("DPGLOW_LEDGER"):
        return Path(env)
    if sys.platform == "win32":
        base = Path(os.environ.get("APPDATA", Path.home()))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    return base / "dp-glow" / "ledger.sqlite"


def check_budget_value(value: float, what: str = "the per-patient budget") -> float:
    """A usable budget limit: a finite positive number (nan, inf, 0 and negatives refused)."""
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise LedgerError(f"{what} must be a positive finite number, got {value!r}")
    return value


class Ledger:
    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        """Open the ledger at `path`; with create=False a missing file is an error instead of
        a new, empty ledger (reports must not invent one at a mistyped path)."""
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise LedgerError(f"there is no ledger at {self.path}" + (
                " (it is a folder)" if self.path.is_dir() else ""))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # autocommit mode: transactions are explicit (BEGIN IMMEDIATE) where they matter
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except (sqlite3.Error, OSError) as e:
            raise LedgerError(f"cannot use the privacy ledger {self.path}: "
                              f"{getattr(e, 'strerror', None) or e}") from None
        try:
            self._check_version()  # before WAL mode: a file we refuse is left as it was
            self.db.execute("PRAGMA journal_mode=WAL")
            self._migrate()
        except (sqlite3.Error, LedgerError) as e:
            self.db.close()
            if isinstance(e, LedgerError):
                raise
            raise LedgerError(f"cannot use the privacy ledger {self.path}: {e}") from None
        self._salt = bytes.fromhex(self._meta("salt") or "")

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the ledger's write lock: what runs inside is serialised with every other
        process using this ledger (the release records are appended under it)."""
        with self._transaction():
            yield

    def _check_version(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise LedgerError(f"the ledger {self.path} was written by a newer version "
                              f"(schema {version}); please update the program")

    def _migrate(self) -> None:
        with self._transaction():
            self._check_version()  # again, now under the lock
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                self._script("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                             + _RELEASES + _BUDGET_CHANGES)
                self.db.execute("INSERT INTO meta VALUES ('salt', ?)", (secrets.token_hex(32),))
                self.db.execute("INSERT INTO meta VALUES ('created', ?)", (_now(),))
            elif version == 1:  # v2 adds the 'failed' status and the budget history
                self._script("ALTER TABLE releases RENAME TO releases_v1;"
                             "DROP INDEX releases_image; DROP INDEX releases_budget;"
                             + _RELEASES + "INSERT INTO releases SELECT * FROM releases_v1;"
                             "DROP TABLE releases_v1;" + _BUDGET_CHANGES)
            self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _script(self, sql: str) -> None:
        for statement in sql.split(";"):
            if statement.strip():
                self.db.execute(statement)

    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    # ----------------------------------------------------------------- budget

    @property
    def patient_budget(self) -> float | None:
        """Largest total epsilon one patient may accumulate; None: no limit."""
        value = self._meta("patient_budget")
        return None if value is None else float(value)

    def set_patient_budget(self, budget: float | None, *, force: bool = False,
                           note: str = "") -> None:
        """Store a new per-patient budget (None: no limit). Lowering is always allowed;
        raising or clearing it needs `force`. Every change is kept in `budget_changes`."""
        if budget is not None:
            budget = check_budget_value(budget)
        with self._transaction():
            old = self.patient_budget
            raising = old is not None and (budget is None or budget > old)
            if raising and not force:
                raise LedgerError(
                    f"raising the per-patient budget from {old:g} to "
                    f"{'no limit' if budget is None else f'{budget:g}'} needs --force "
                    "(it is recorded in the ledger)")
            self.db.execute("DELETE FROM meta WHERE key = 'patient_budget'")
            if budget is not None:
                self.db.execute("INSERT INTO meta VALUES ('patient_budget', ?)", (repr(budget),))
            self.db.execute("INSERT INTO budget_changes (time, old, new, forced, note) "
                            "VALUES (?, ?, ?, ?, ?)", (_now(), old, budget, int(raising), note))

    def check_run_limit(self, run_limit: float | None, *, force: bool = False) -> None:
        """A run's own per-patient limit (`--patient-budget`) may only lower the stored one;
        a higher one needs `force`. Raises LedgerError otherwise."""
        if run_limit is None:
            return
        check_budget_value(run_limit, "--patient-budget")
        stored = self.patient_budget
        if stored is not None and run_limit > stored and not force:
            raise LedgerError(
                f"--patient-budget {run_limit:g} is above the ledger's per-patient budget "
                f"{stored:g}: a run may only lower it. Use --force to release past the "
                "ledger's budget (those releases are recorded as forced)")

    def patient_key(self, patient_id: str | None) -> str | None:
        if not patient_id:
            return None
        return hmac.new(self._salt, patient_id.encode(), hashlib.sha256).hexdigest()

    def spent(self, budget_key: str) -> float:
        row = self.db.execute(f"SELECT SUM(total_epsilon) FROM releases WHERE budget_key = ? "
                              f"AND {COUNTED}", (budget_key,)).fetchone()
        return float(row[0] or 0.0)

    def spent_on_image(self, image_sha256: str) -> float:
        row = self.db.execute(f"SELECT SUM(total_epsilon) FROM releases WHERE image_sha256 = ? "
                              f"AND {COUNTED}", (image_sha256,)).fetchone()
        return float(row[0] or 0.0)

    def spent_on_patient(self, patient_id: str | None, image_sha256: str) -> float:
        return self.spent(self._budget_key(patient_id, image_sha256))

    def _budget_key(self, patient_id: str | None, image_sha256: str) -> str:
        key = self.patient_key(patient_id)
        return f"patient:{key}" if key else f"image:{image_sha256}"

    # ----------------------------------------------------------------- recording

    def reserve(self, release: Release, *, force: bool = False,
                run_limit: float | None = None) -> Reservation:
        """Check the per-patient budget and record the release as reserved.

        BudgetExceeded when the release would take the patient past `run_limit` (always), or
        past the ledger's stored budget unless `force`; a forced row says so in its note."""
        key = self._budget_key(release.patient_id, release.image_sha256)
        with self._transaction():
            stored, spent = self.patient_budget, self.spent(key)
            after = spent + release.total_epsilon
            over_stored = stored is not None and after > stored
            over_run = run_limit is not None and after > run_limit
            if over_run or (over_stored and not force):
                limit = run_limit if over_run else stored
                raise BudgetExceeded(
                    f"this release (total epsilon {release.total_epsilon:g}) would take the "
                    f"patient to {after:g}, over the per-patient budget {limit:g} (already "
                    f"spent {spent:g})" + ("" if over_run else "; use --force to release "
                                           "anyway (recorded as forced)"))
            note = ""
            if over_stored:
                note = f"forced past the per-patient budget {stored:g} (spent {spent:g} before)"
                if run_limit is not None:
                    note += f"; this run's limit {run_limit:g}"
            cur = self.db.execute(
                "INSERT INTO releases (time, image_sha256, patient_key, budget_key, mechanism, "
                "mode, e_px, total_epsilon, model_sha256, output, status, forced, note) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'reserved', ?, ?)",
                (_now(), release.image_sha256, self.patient_key(release.patient_id), key,
                 release.mechanism, release.mode, release.e_px, release.total_epsilon,
                 release.model_sha256, release.output, int(over_stored), note))
            return Reservation(int(cur.lastrowid), over_stored, note)

    def confirm(self, release_id: int) -> None:
        """The file is on disk."""
        self._set_status(release_id, "written")

    def cancel(self, release_id: int) -> None:
        """The noise was never drawn: nothing about the image left the mechanism, so the
        reservation costs nothing. Never call this once the noise has been drawn."""
        self._set_status(release_id, "cancelled")

    def fail(self, release_id: int, reason: str) -> None:
        """The noise was drawn but no file was written: the row keeps counting."""
        with self._transaction():
            self.db.execute("UPDATE releases SET status = 'failed', note = TRIM(note || ' ' || ?)"
                            " WHERE id = ?", (f"not written: {reason}", release_id))

    def _set_status(self, release_id: int, status: str) -> None:
        with self._transaction():
            self.db.execute("UPDATE releases SET status = ? WHERE id = ?", (status, release_id))

    # ----------------------------------------------------------------- reports

    def image_totals(self) -> list[dict]:
        return self._rows(
            "SELECT image_sha256, COALESCE(patient_key, '') AS patient_key, COUNT(*) AS releases, "
            "SUM(total_epsilon) AS total_epsilon, MAX(forced) AS forced FROM releases "
            f"WHERE {COUNTED} GROUP BY image_sha256, patient_key "
            "ORDER BY total_epsilon DESC, image_sha256")

    def patient_totals(self) -> list[dict]:
        return self._rows(
            "SELECT budget_key, COUNT(DISTINCT image_sha256) AS images, COUNT(*) AS releases, "
            "SUM(total_epsilon) AS total_epsilon, MAX(forced) AS forced FROM releases "
            f"WHERE {COUNTED} GROUP BY budget_key ORDER BY total_epsilon DESC, budget_key")

    def releases(self, *, forced_only: bool = False) -> list[dict]:
        where = " WHERE forced = 1" if forced_only else ""
        return self._rows(f"SELECT * FROM releases{where} ORDER BY id")

    def budget_changes(self) -> list[dict]:
        return self._rows("SELECT * FROM budget_changes ORDER BY id")

    def _rows(self, sql: str) -> list[dict]:
        cur = self.db.execute(sql)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
