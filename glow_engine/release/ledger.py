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

Every change is also journalled in a MAC chain whose key is kept in a second file beside the
ledger (glow_engine.release.ledger_chain); a ledger whose tables, journal or schema differ
from what the chain proves is refused when it is opened and at each reservation. A file that
is not a ledger (another program's SQLite database) is refused and left as it was. Ledgers of
schema 1 and 2 (before the chain) are migrated: their rows as found become the chain's first
entry, and everything after that is chained.
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
from glow_engine.reading import ReadError, check_file
from glow_engine.release import ledger_chain as chain

SCHEMA_VERSION = 3
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
_V1 = {("table", "meta"), ("table", "releases"), ("index", "releases_image"),
       ("index", "releases_budget")}
LAYOUTS = {1: _V1, 2: _V1 | {("table", "budget_changes")},
           3: _V1 | {("table", "budget_changes"), ("table", "journal")}}  # schema -> objects
_SHOWN_DIFFERENCES = 4


class LedgerError(UserError):
    """A ledger that cannot be used."""


class LedgerTampered(LedgerError):
    """The ledger's tables, journal or schema differ from what its MAC chain proves."""


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
        a new, empty ledger (reports must not invent one at a mistyped path). LedgerTampered
        if it does not verify, LedgerError if it cannot be used."""
        self.path = Path(path)
        if not create and not os.path.lexists(self.path):
            raise LedgerError(f"there is no ledger at {self.path}")
        try:
            if os.path.lexists(self.path):  # SQLite would open a named pipe and wait
                check_file(self.path, what="privacy ledger")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # autocommit mode: transactions are explicit (BEGIN IMMEDIATE) where they matter
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except (sqlite3.Error, OSError, ReadError) as e:
            reason = e.reason if isinstance(e, ReadError) else getattr(e, 'strerror', None) or e
            raise LedgerError(f"cannot use the privacy ledger {self.path}: {reason}") from None
        self.journal: chain.Journal | None = None
        try:
            self._check_layout()  # before WAL mode: a file we refuse is left as it was
            self.db.execute("PRAGMA journal_mode=WAL")
            self._open()
        except (sqlite3.Error, OSError, LedgerError, chain.ChainBroken) as e:
            self.db.close()
            raise self._error(e) from None
        self._salt = bytes.fromhex(self._meta("salt") or "")

    def _error(self, e: Exception) -> LedgerError:
        if isinstance(e, chain.ChainBroken):
            return LedgerTampered(
                f"the privacy ledger {self.path} does not verify: {e}. It was changed outside "
                "dpglow or damaged, so no release is made with it; restore it from a backup "
                "(keep this copy as evidence)")
        if isinstance(e, LedgerError):
            return e
        return LedgerError(f"cannot use the privacy ledger {self.path}: "
                           f"{getattr(e, 'strerror', None) or e}")

    def _check_layout(self) -> int:
        """Refuse, before changing anything, a newer ledger, another program's database and
        a ledger whose tables were dropped or that has objects of its own (a trigger); the
        schema version."""
        version, objects = self._layout()
        if version > SCHEMA_VERSION:
            raise LedgerError(f"the ledger {self.path} was written by a newer version "
                              f"(schema {version}); please update the program")
        if version == 0 and objects:
            raise LedgerError(f"{self.path} is not a privacy ledger (it is another program's "
                              "database); it was left as it was")
        if version and objects != LAYOUTS.get(version):
            expected = LAYOUTS.get(version, set())
            odd = [f"{kind} {name!r} missing" for kind, name in sorted(expected - objects)]
            odd += [f"a {kind} {name!r} added" for kind, name in sorted(objects - expected)]
            raise chain.ChainBroken(f"its tables are not a ledger's ({'; '.join(odd)})")
        return version

    def _layout(self) -> tuple[int, set[tuple[str, str]]]:
        """The schema version and the objects, read in one transaction: another rank creating
        the ledger between two separate reads made a new ledger look like a foreign database
        (version 0, with tables)."""
        own = not self.db.in_transaction
        if own:
            self.db.execute("BEGIN")
        try:
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            objects = set(self.db.execute("SELECT type, name FROM sqlite_master "
                                          "WHERE name NOT LIKE 'sqlite_%'").fetchall())
        finally:
            if own:
                self.db.execute("COMMIT")
        return version, objects

    def _open(self) -> None:
        """Create, migrate or verify, under the write lock."""
        keys = chain.key_path(self.path)
        self.db.execute("BEGIN IMMEDIATE")
        had_keys = keys.exists()  # under the lock: another rank may just have created both
        try:
            version = self._check_layout()  # again, now under the lock
            if version == SCHEMA_VERSION:
                self.journal = chain.Journal(self.db, chain.KeyFile.load(keys))
                self._verify()
            else:
                if keys.exists():  # a chained ledger was dropped or downgraded
                    raise chain.ChainBroken(
                        f"its key file {keys} exists, so it was a chained ledger whose "
                        f"{'tables are gone' if version == 0 else 'schema was downgraded'}")
                self.journal = chain.Journal(self.db, chain.KeyFile.create(keys))
                self._create() if version == 0 else self._migrate(version)
                self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                self.journal.seal()
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            if not had_keys:  # a key file for tables that were never committed
                keys.unlink(missing_ok=True)
            raise

    def _verify(self) -> None:
        assert self.journal is not None
        # read again: other connections may have moved the chain's head since this one opened
        self.journal.keys = chain.KeyFile.load(chain.key_path(self.path))
        self.journal.sync()
        self.journal.check_head()
        _check_meta(dict(self.db.execute("SELECT key, value FROM meta").fetchall()))
        found = self.journal.differences()
        if found:
            more = len(found) - _SHOWN_DIFFERENCES
            raise chain.ChainBroken("; ".join(found[:_SHOWN_DIFFERENCES])
                                    + (f" and {more} more" if more > 0 else ""))

    def verify(self) -> int:
        """Check the whole chain again (`dpglow ledger --verify`); the number of entries."""
        with self._transaction():
            self._verify()
        assert self.journal is not None
        return self.journal.state.head[0]

    def _create(self) -> None:
        self._script("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                     + _RELEASES + _BUDGET_CHANGES + chain.JOURNAL)
        meta = {"salt": secrets.token_hex(32), "created": _now()}
        self.db.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
        self._journal().append({"op": "create", "meta": meta})

    def _migrate(self, version: int) -> None:
        """Schema 1 or 2 to 3: their rows as found become the chain's first entry."""
        meta = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
        _check_meta(meta)
        if version == 1:  # v2 added the 'failed' status and the budget history
            self._script("ALTER TABLE releases RENAME TO releases_v1;"
                         "DROP INDEX releases_image; DROP INDEX releases_budget;"
                         + _RELEASES + "INSERT INTO releases SELECT * FROM releases_v1;"
                         "DROP TABLE releases_v1;" + _BUDGET_CHANGES)
        self._script(chain.JOURNAL)
        self._journal().append({"op": "migrate", "from": version, "meta": meta,
                                "releases": chain.all_rows(self.db, "releases"),
                                "budget_changes": chain.all_rows(self.db, "budget_changes")})

    def _journal(self) -> chain.Journal:
        assert self.journal is not None
        return self.journal

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """A write transaction: the entries other processes chained meanwhile are checked
        first, and the key file records this one's entries before it commits."""
        journal = self._journal()
        self.db.execute("BEGIN IMMEDIATE")
        try:
            journal.sync()
            yield
            journal.seal()
        except BaseException as e:
            self.db.execute("ROLLBACK")
            journal.rollback()
            if isinstance(e, chain.ChainBroken):
                raise self._error(e) from None
            raise
        self.db.execute("COMMIT")

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the ledger's write lock: what runs inside is serialised with every other
        process using this ledger (the release records are appended under it)."""
        with self._transaction():
            yield

    def _script(self, sql: str) -> None:
        for statement in sql.split(";"):
            if statement.strip():
                self.db.execute(statement)

    def _meta(self, key: str) -> str | None:
        row = self._query("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _query(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        """A read; a database damaged where the opening checks did not look is one error."""
        try:
            return self.db.execute(sql, args)
        except sqlite3.Error as e:
            raise self._error(e) from None

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
            cur = self.db.execute("INSERT INTO budget_changes (time, old, new, forced, note) "
                                  "VALUES (?, ?, ?, ?, ?)",
                                  (_now(), old, budget, int(raising), note))
            self._journal().append({
                "op": "budget", "budget": None if budget is None else repr(budget),
                "change": chain.row(self.db, "budget_changes", int(cur.lastrowid))})

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
        row = self._query(f"SELECT SUM(total_epsilon) FROM releases WHERE budget_key = ? "
                          f"AND {COUNTED}", (budget_key,)).fetchone()
        return float(row[0] or 0.0)

    def spent_on_image(self, image_sha256: str) -> float:
        row = self._query(f"SELECT SUM(total_epsilon) FROM releases WHERE image_sha256 = ? "
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
            stored, spent = self.patient_budget, self._checked_spent(key)
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
            self._journal().append({"op": "reserve",
                                    "row": chain.row(self.db, "releases", int(cur.lastrowid))})
            return Reservation(int(cur.lastrowid), over_stored, note)

    def _checked_spent(self, budget_key: str) -> float:
        """What the patient has spent, from the table, which must agree with the chain."""
        spent = self.spent(budget_key)
        proven = self._journal().state.spent(budget_key)
        if not math.isclose(spent, proven, rel_tol=1e-9, abs_tol=1e-9):
            raise chain.ChainBroken(f"the epsilon spent by one patient reads {spent:g} in its "
                                    f"table but {proven:g} in its journal")
        return spent

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
            self._journal_status(release_id)

    def _set_status(self, release_id: int, status: str) -> None:
        with self._transaction():
            self.db.execute("UPDATE releases SET status = ? WHERE id = ?", (status, release_id))
            self._journal_status(release_id)

    def _journal_status(self, release_id: int) -> None:
        row = chain.row(self.db, "releases", release_id)
        self._journal().append({"op": "status", "id": release_id, "status": row["status"],
                                "note": row["note"]})

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
        cur = self._query(sql)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _check_meta(meta: dict[str, str]) -> None:
    """A ledger's settings as this version reads them: a hex salt, a numeric budget."""
    try:
        if not bytes.fromhex(meta["salt"]):
            raise ValueError
    except (KeyError, ValueError):
        raise chain.ChainBroken("its secret salt is missing or not hexadecimal") from None
    if "patient_budget" in meta:
        try:
            check_budget_value(float(meta["patient_budget"]))
        except (ValueError, LedgerError):
            raise chain.ChainBroken(f"its stored per-patient budget "
                                    f"{meta['patient_budget']!r} is not a positive number"
                                    ) from None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
