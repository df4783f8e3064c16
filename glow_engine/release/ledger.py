"""The privacy ledger: every release's epsilon, summed per source image and per patient.

Releasing several versions of one image adds their epsilons (sequential composition), and
one patient has many images, so a per-patient budget is what bounds what can be learned about
a person. One SQLite file (WAL mode, schema version in PRAGMA user_version).

A release is written in two steps: `reserve` (checks the budget and inserts the row in one
IMMEDIATE transaction, so concurrent ranks cannot both pass the check) before the noise is
drawn, then `confirm` once the file is on disk or `cancel` if nothing left the process. A
crash in between leaves the row reserved, which counts: the ledger errs towards "spent".

Patient ids are never stored: only HMAC-SHA256(per-ledger secret salt, PatientID). An image
without a patient id (PNG, or DICOM without PatientID) is its own patient for the budget.
"""

from __future__ import annotations

import hashlib
import hmac
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

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
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
    status TEXT NOT NULL CHECK (status IN ('reserved', 'written', 'cancelled')),
    forced INTEGER NOT NULL DEFAULT 0,
    note TEXT NOT NULL DEFAULT ''
);
CREATE INDEX releases_image ON releases (image_sha256);
CREATE INDEX releases_budget ON releases (budget_key);
"""
COUNTED = "status != 'cancelled'"


class LedgerError(UserError):
    """A ledger that cannot be used."""


class BudgetExceeded(UserError):
    """A release would take a patient past the ledger's per-patient budget."""


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
    output: str


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


class Ledger:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # autocommit mode: transactions are explicit (BEGIN IMMEDIATE) where they matter
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self._migrate()
        except sqlite3.DatabaseError as e:
            raise LedgerError(f"cannot use the privacy ledger {self.path}: {e}") from None
        self._salt = bytes.fromhex(self._meta("salt"))

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

    def _migrate(self) -> None:
        with self._transaction():
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise LedgerError(f"the ledger {self.path} was written by a newer version "
                                  f"(schema {version}); please update the program")
            if version == 0:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                self.db.execute("INSERT INTO meta VALUES ('salt', ?)", (secrets.token_hex(32),))
                self.db.execute("INSERT INTO meta VALUES ('created', ?)", (_now(),))
                self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    # ----------------------------------------------------------------- budget

    @property
    def patient_budget(self) -> float | None:
        """Largest total epsilon one patient may accumulate; None: no limit."""
        value = self._meta("patient_budget")
        return None if value is None else float(value)

    def set_patient_budget(self, budget: float | None) -> None:
        if budget is not None and not budget > 0:
            raise LedgerError(f"the per-patient budget must be positive, got {budget}")
        with self._transaction():
            self.db.execute("DELETE FROM meta WHERE key = 'patient_budget'")
            if budget is not None:
                self.db.execute("INSERT INTO meta VALUES ('patient_budget', ?)", (repr(budget),))

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
                budget: float | None = None) -> int:
        """Check the per-patient budget (`budget` overrides the ledger's) and record the
        release as reserved; BudgetExceeded unless force, in which case the row says so."""
        key = self._budget_key(release.patient_id, release.image_sha256)
        with self._transaction():
            limit = self.patient_budget if budget is None else budget
            spent = self.spent(key)
            over = limit is not None and spent + release.total_epsilon > limit
            if over and not force:
                raise BudgetExceeded(
                    f"this release (total epsilon {release.total_epsilon:g}) would take the "
                    f"patient to {spent + release.total_epsilon:g}, over the per-patient budget "
                    f"{limit:g} (already spent {spent:g}); use --force to release anyway")
            note = (f"forced past per-patient budget {limit:g} (spent {spent:g} before)"
                    if over else "")
            cur = self.db.execute(
                "INSERT INTO releases (time, image_sha256, patient_key, budget_key, mechanism, "
                "mode, e_px, total_epsilon, model_sha256, output, status, forced, note) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'reserved', ?, ?)",
                (_now(), release.image_sha256, self.patient_key(release.patient_id), key,
                 release.mechanism, release.mode, release.e_px, release.total_epsilon,
                 release.model_sha256, release.output, int(over), note))
            return int(cur.lastrowid)

    def confirm(self, release_id: int) -> None:
        self._set_status(release_id, "written")

    def cancel(self, release_id: int) -> None:
        """Nothing was written: the noisy image never left the process, so it costs nothing."""
        self._set_status(release_id, "cancelled")

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

    def releases(self) -> list[dict]:
        return self._rows("SELECT * FROM releases ORDER BY id")

    def _rows(self, sql: str) -> list[dict]:
        cur = self.db.execute(sql)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
