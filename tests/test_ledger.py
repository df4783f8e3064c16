"""The SQLite privacy ledger and `dpglow ledger`."""

from __future__ import annotations

import argparse
import json
import math
import sqlite3
import threading
from pathlib import Path

import pytest

from glow_engine.commands import ledger as ledger_cmd
from glow_engine.release import ledger as ledger_module
from glow_engine.release.ledger import (
    SCHEMA_VERSION,
    BudgetExceeded,
    Ledger,
    LedgerError,
    LedgerTampered,
    Release,
    default_ledger_path,
)


def release(image: str = "a" * 64, patient: str | None = "PAT-001", total: float = 100.0,
            output: str = "out.png") -> Release:
    return Release(image, patient, "dpglow", "tight", total / 1024, total, "f" * 64, output)


@pytest.fixture()
def ledger(tmp_path: Path) -> Ledger:
    with Ledger(tmp_path / "ledger.sqlite") as led:
        yield led


def test_schema_wal_and_no_plain_patient_ids(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    with Ledger(path) as led:
        led.confirm(led.reserve(release(patient="SECRET-PATIENT-77")).id)
        assert led.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert led.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        key = led.patient_key("SECRET-PATIENT-77")
    for file in tmp_path.iterdir():
        assert b"SECRET-PATIENT-77" not in file.read_bytes()
    with Ledger(path) as again:  # the salt persists: same key on reopening
        assert again.patient_key("SECRET-PATIENT-77") == key
        assert again.spent_on_patient("SECRET-PATIENT-77", "x") == 100
    with Ledger(tmp_path / "other.sqlite") as other:  # and differs between ledgers
        assert other.patient_key("SECRET-PATIENT-77") != key


def test_totals_per_image_and_patient(ledger: Ledger) -> None:
    for image, total in (("a" * 64, 100), ("a" * 64, 50), ("b" * 64, 10)):
        ledger.confirm(ledger.reserve(release(image=image, total=total)).id)
    ledger.reserve(release(image="c" * 64, patient=None, total=7))  # reserved: counts
    ledger.cancel(ledger.reserve(release(image="d" * 64, total=1000)).id)  # cancelled: not
    ledger.fail(ledger.reserve(release(image="e" * 64, patient=None, total=3)).id, "disk full")
    assert ledger.spent_on_image("a" * 64) == 150
    assert ledger.spent_on_patient("PAT-001", "zzz") == 160
    patients = {r["budget_key"].split(":")[0]: r for r in ledger.patient_totals()}
    assert patients["patient"]["images"] == 2 and patients["patient"]["releases"] == 3
    assert sorted(r["total_epsilon"] for r in ledger.patient_totals()
                  if r["budget_key"].startswith("image:")) == [3, 7]
    images = {r["image_sha256"]: r["total_epsilon"] for r in ledger.image_totals()}
    assert images == {"a" * 64: 150, "b" * 64: 10, "c" * 64: 7, "e" * 64: 3}  # failed counts
    assert [r["status"] for r in ledger.releases()] == ["written"] * 3 + [
        "reserved", "cancelled", "failed"]
    assert ledger.releases()[-1]["note"] == "not written: disk full"


def test_patient_budget_refuses_unless_forced(ledger: Ledger) -> None:
    ledger.set_patient_budget(120)
    assert ledger.patient_budget == 120
    ledger.confirm(ledger.reserve(release(total=100)).id)
    with pytest.raises(BudgetExceeded, match="per-patient budget 120"):
        ledger.reserve(release(image="b" * 64, total=30))
    ledger.reserve(release(image="b" * 64, patient="OTHER", total=30))  # another patient
    forced = ledger.reserve(release(image="b" * 64, total=30), force=True)
    row = next(r for r in ledger.releases() if r["id"] == forced.id)
    assert forced.forced and row["forced"] == 1 and "forced past" in row["note"]
    assert ledger.patient_totals()[0]["forced"] == 1
    assert [r["id"] for r in ledger.releases(forced_only=True)] == [forced.id]
    with pytest.raises(BudgetExceeded):  # a run's own lower limit applies too
        ledger.reserve(release(patient="NEW", total=30), run_limit=20)
    with pytest.raises(BudgetExceeded):  # ... even with force: it bounds the forced run
        ledger.reserve(release(patient="NEW", total=30), run_limit=20, force=True)
    with pytest.raises(BudgetExceeded):  # inf never fits a budget
        ledger.reserve(release(patient="NEW2", total=math.inf))
    ledger.set_patient_budget(None, force=True)
    ledger.reserve(release(patient="NEW2", total=math.inf))
    assert ledger.spent_on_patient("NEW2", "") == math.inf


def test_image_without_patient_is_its_own_budget(ledger: Ledger) -> None:
    ledger.set_patient_budget(150)
    ledger.reserve(release(image="a" * 64, patient=None, total=100))
    ledger.reserve(release(image="b" * 64, patient=None, total=100))
    with pytest.raises(BudgetExceeded):
        ledger.reserve(release(image="a" * 64, patient=None, total=100))


def test_two_connections_cannot_both_pass_the_check(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite"
    with Ledger(path) as a, Ledger(path) as b:
        a.set_patient_budget(250)
        passed = 0
        for led in (a, b, a, b):
            try:
                led.reserve(release(total=100))
                passed += 1
            except BudgetExceeded:
                pass
        assert passed == 2 and a.spent_on_patient("PAT-001", "") == 200


class _SecondRankOpensMidRead(sqlite3.Connection):
    """A connection that lets a second rank open (and so create) the ledger right after this
    one has read the schema version of the still empty file, and gives it 2 s to do so."""

    path: Path
    second: threading.Thread | None = None
    seen: int | Exception  # the second rank's chain entries, or its error

    def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
        cursor = super().execute(sql, *args)
        if sql == "PRAGMA user_version" and self.second is None:
            self.second = threading.Thread(target=self._second_rank_opens)
            self.second.start()
            self.second.join(timeout=2)  # a reader holding its snapshot makes it wait
        return cursor

    def _second_rank_opens(self) -> None:
        try:
            with Ledger(self.path) as led:
                self.seen = led.verify()
        except LedgerError as e:
            self.seen = e


def test_a_ledger_created_while_another_rank_reads_its_layout_is_not_foreign(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two torchrun ranks open one new ledger: one read its version (0) before the other's
    creation committed and its tables after, and refused the ledger as a foreign database."""
    connect = sqlite3.connect
    first: list[_SecondRankOpensMidRead] = []

    def connect_first_hooked(database: Path, **kwargs: object) -> sqlite3.Connection:
        if first:  # the second rank's connection is a plain one
            return connect(database, **kwargs)
        db = connect(database, factory=_SecondRankOpensMidRead, **kwargs)
        db.path = database
        first.append(db)
        return db

    monkeypatch.setattr(ledger_module.sqlite3, "connect", connect_first_hooked)
    with Ledger(tmp_path / "l.sqlite") as led:
        second = first[0].second
        assert second is not None
        second.join(timeout=60)
        assert first[0].seen == led.verify() == 1  # one ledger, created once: one entry


def test_newer_or_damaged_ledger_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite"
    Ledger(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(LedgerError, match="newer version"):
        Ledger(path)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(LedgerError):
        Ledger(junk)
    with pytest.raises(LedgerError, match="there is no ledger"):
        Ledger(tmp_path / "typo.sqlite", create=False)
    assert not (tmp_path / "typo.sqlite").exists()
    with Ledger(tmp_path / "x.sqlite") as led:
        for bad in (0, -1, math.nan, math.inf):
            with pytest.raises(LedgerError, match="positive finite"):
                led.set_patient_budget(bad)


def test_default_path_honours_the_environment(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    monkeypatch.setenv("DPGLOW_LEDGER", str(tmp_path / "env.sqlite"))
    assert default_ledger_path() == tmp_path / "env.sqlite"
    monkeypatch.delenv("DPGLOW_LEDGER")
    assert default_ledger_path().name == "ledger.sqlite"


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    ledger_cmd.add_arguments(parser)
    return ledger_cmd.run(parser.parse_args(list(argv)))


def test_ledger_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "cli.sqlite"
    with Ledger(path) as led:
        led.set_patient_budget(1)
        led.confirm(led.reserve(release(total=102400), force=True).id)
        led.reserve(release(image="b" * 64, total=102400), force=True)
    with pytest.raises(LedgerError, match="needs --force"):
        run_cli(str(path), "--set-patient-budget", "300000")
    assert run_cli(str(path), "--set-patient-budget", "300000", "--force", "--note",
                   "approved by the IG office") == 0
    out = capsys.readouterr().out
    assert "per-patient budget: 300000" in out and "204800" in out and "--force" in out
    assert "1 -> 300000  (raised with --force)  approved by the IG office" in out
    assert "FORCED past the per-patient budget: 2 release(s)" in out
    assert run_cli(str(path), "--json", "--releases") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["patient_budget"] == 300000 and len(report["releases"]) == 2
    assert report["images"][0]["total_epsilon"] == 102400
    assert run_cli(str(path), "--set-patient-budget", "1000") == 0  # lowering: no --force
    assert run_cli(str(path), "--clear-patient-budget", "--force") == 0
    assert "per-patient budget: none" in capsys.readouterr().out


def test_budget_run_limit_may_only_lower_the_stored_one(ledger: Ledger) -> None:
    ledger.check_run_limit(1e12)  # no stored limit: any limit is lower
    ledger.set_patient_budget(2e6)
    ledger.check_run_limit(1e6)
    with pytest.raises(LedgerError, match="may only lower"):
        ledger.check_run_limit(1e12)
    ledger.check_run_limit(1e12, force=True)
    for bad in (math.nan, -1.0, 0.0, math.inf):
        with pytest.raises(LedgerError, match="positive finite"):
            ledger.check_run_limit(bad, force=True)
    assert [(c["old"], c["new"], c["forced"]) for c in ledger.budget_changes()] == [
        (None, 2e6, 0)]


def test_version_1_ledger_is_migrated_with_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "v1.sqlite"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE releases (id INTEGER PRIMARY KEY, time TEXT NOT NULL,
            image_sha256 TEXT NOT NULL, patient_key TEXT, budget_key TEXT NOT NULL,
            mechanism TEXT NOT NULL, mode TEXT NOT NULL, e_px REAL NOT NULL,
            total_epsilon REAL NOT NULL, model_sha256 TEXT NOT NULL, output TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('reserved', 'written', 'cancelled')),
            forced INTEGER NOT NULL DEFAULT 0, note TEXT NOT NULL DEFAULT '');
        CREATE INDEX releases_image ON releases (image_sha256);
        CREATE INDEX releases_budget ON releases (budget_key);
        INSERT INTO meta VALUES ('salt', 'ab');
        INSERT INTO releases VALUES (1, 't', 'img', NULL, 'image:img', 'dpglow', 'paper', 1.0,
            16384.0, 'm', 'out.png', 'written', 0, '');
        PRAGMA user_version = 1;""")
    db.close()
    with Ledger(path) as led:
        assert led.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert led.spent_on_image("img") == 16384
        led.fail(led.reserve(release(image="img", patient=None)).id, "after the draw")
        assert led.spent_on_image("img") == 16484 and led.budget_changes() == []


# --------------------------------------------------------------------------- tamper evidence
# Each edit an operator could make with a SQL tool to get a release past the per-patient limit
# (or to hide one); every one must be refused on opening and by `dpglow ledger --verify`.

def _last(table: str) -> str:
    return f"(SELECT MAX(id) FROM {table})"


EDITS = {
    "spent-set-to-0": "UPDATE releases SET total_epsilon = 0 WHERE id = 1",
    "spent-negative": "UPDATE releases SET total_epsilon = -100 WHERE id = 1",
    "e-px-lowered": "UPDATE releases SET e_px = 0, total_epsilon = 1 WHERE id = 2",
    "row-deleted": "DELETE FROM releases WHERE id = 1",
    "all-rows-deleted": "DELETE FROM releases",
    "row-cancelled": "UPDATE releases SET status = 'cancelled' WHERE id = 2",
    "budget-key-changed": "UPDATE releases SET budget_key = 'patient:0' WHERE id = 1",
    "patient-key-changed": "UPDATE releases SET patient_key = NULL, budget_key = 'image:x' "
                           "WHERE id = 2",
    "budget-raised-without-history": "UPDATE meta SET value = '1e9' WHERE key = "
                                     "'patient_budget'",
    "budget-removed": "DELETE FROM meta WHERE key = 'patient_budget'",
    "salt-changed": "UPDATE meta SET value = '" + "ab" * 32 + "' WHERE key = 'salt'",
    "budget-history-edited": "UPDATE budget_changes SET new = 1e9",
    "trigger-deleting-rows": "CREATE TRIGGER hide AFTER INSERT ON releases BEGIN "
                             "DELETE FROM releases WHERE id = NEW.id; END",
    "journal-entry-edited": "UPDATE journal SET entry = replace(entry, '100.0', '0.0')",
    "journal-and-row-cut-off": f"DELETE FROM journal WHERE id = {_last('journal')}; "
                               f"DELETE FROM releases WHERE id = {_last('releases')}",
    "journal-row-forged": "INSERT INTO journal (entry, mac) VALUES ('{}', '00')",
    "journal-dropped-and-downgraded": "DROP TABLE journal; PRAGMA user_version = 2",
    "tables-dropped": "DROP TABLE releases",
    "row-added": "INSERT INTO releases SELECT 99, time, image_sha256, patient_key, budget_key, "
                 "mechanism, mode, e_px, total_epsilon, model_sha256, 'x.png', status, forced, "
                 "note FROM releases WHERE id = 1",
}


def _ledger_with_history(path: Path) -> None:
    with Ledger(path) as led:
        led.set_patient_budget(300)
        led.confirm(led.reserve(release(total=100)).id)
        led.confirm(led.reserve(release(image="b" * 64, total=100)).id)
        led.fail(led.reserve(release(image="c" * 64, patient="OTHER", total=100)).id, "disk")


@pytest.mark.parametrize("edit", list(EDITS), ids=list(EDITS))
def test_a_sql_edit_of_the_ledger_is_refused(edit: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ledger.sqlite"
    _ledger_with_history(path)
    assert run_cli(str(path), "--verify") == 0
    assert "verified" in capsys.readouterr().out
    db = sqlite3.connect(path)
    db.executescript(EDITS[edit])
    db.close()
    with pytest.raises(LedgerTampered, match="does not verify"):
        Ledger(path)
    with pytest.raises(LedgerTampered, match="does not verify"):
        run_cli(str(path), "--verify")


def test_verify_sees_what_other_connections_chained(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    with Ledger(path) as first, Ledger(path) as second:
        second.reserve(release(total=1))
        second.set_patient_budget(5)
        assert first.verify() == 3 and first.patient_budget == 5


def test_a_missing_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    _ledger_with_history(path)
    (tmp_path / "ledger.key.json").unlink()
    with pytest.raises(LedgerTampered, match=r"key file .* is missing"):
        Ledger(path)
    path.unlink()  # the ledger deleted but not its key: refused too
    _ledger_with_history(tmp_path / "other.sqlite")
    (tmp_path / "other.sqlite").unlink()
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"other.sqlite{suffix}").unlink(missing_ok=True)
    with pytest.raises(LedgerTampered, match="tables are gone"):
        Ledger(tmp_path / "other.sqlite")


def test_an_edit_while_the_ledger_is_open_is_found_at_the_next_reservation(
        tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    _ledger_with_history(path)
    with Ledger(path) as led:
        db = sqlite3.connect(path)
        db.execute("UPDATE releases SET total_epsilon = 0 WHERE id = 1")
        db.commit()
        db.close()
        with pytest.raises(LedgerTampered, match="journal"):
            led.reserve(release(image="d" * 64, total=150))
        assert led.spent_on_patient("PAT-001", "") == 100  # nothing was reserved


def test_the_chain_survives_other_writers_and_a_crash_before_commit(tmp_path: Path,
                                                                    monkeypatch) -> None:
    path = tmp_path / "ledger.sqlite"
    with Ledger(path) as a, Ledger(path) as b:
        a.reserve(release(total=1))
        b.reserve(release(total=1))  # b replays a's entry before chaining its own
        a.set_patient_budget(10)

        def commit_fails(sql: str, *args: object) -> object:
            if sql == "COMMIT":
                raise sqlite3.OperationalError("disk I/O error")
            return real(sql, *args)

        real = b.db.execute
        monkeypatch.setattr(b, "db", type("Db", (), {"execute": staticmethod(commit_fails)})())
        with pytest.raises(sqlite3.OperationalError):
            b.reserve(release(total=1))  # the key file moved on, the database did not
        monkeypatch.setattr(b, "db", real.__self__)
    with Ledger(path) as again:
        assert again.verify() == 4 and again.spent_on_patient("PAT-001", "") == 2


def test_a_foreign_or_damaged_database_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.sqlite"
    db = sqlite3.connect(foreign)
    db.execute("CREATE TABLE patients (name TEXT)")
    db.execute("INSERT INTO patients VALUES ('Smith')")
    db.commit()
    db.close()
    before = foreign.read_bytes()
    with pytest.raises(LedgerError, match="not a privacy ledger"):
        Ledger(foreign)
    assert foreign.read_bytes() == before and not (tmp_path / "foreign.key.json").exists()


def _v2(path: Path, *, salt: str = "ab" * 32, budget: str | None = None,
        meta: bool = True, tables: bool = True) -> Path:
    """A schema-2 ledger as the previous version wrote it, or a damaged one."""
    db = sqlite3.connect(path)
    if tables:
        db.executescript(
            ("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);" if meta else "")
            + ledger_module._RELEASES + ledger_module._BUDGET_CHANGES)
    if meta and tables:
        db.execute("INSERT INTO meta VALUES ('salt', ?)", (salt,))
        if budget is not None:
            db.execute("INSERT INTO meta VALUES ('patient_budget', ?)", (budget,))
        db.execute("INSERT INTO releases (time, image_sha256, patient_key, budget_key, "
                   "mechanism, mode, e_px, total_epsilon, model_sha256, output, status) VALUES "
                   "('t', 'img', NULL, 'image:img', 'dpglow', 'paper', 1, 1024, 'm', 'o.png', "
                   "'written')")
    db.execute("PRAGMA user_version = 2")
    db.commit()
    db.close()
    return path


@pytest.mark.parametrize("damage, message", [
    ({"salt": "not hex!"}, "salt is missing or not hexadecimal"),
    ({"budget": "lots"}, "is not a positive number"),
    ({"budget": "-5"}, "is not a positive number"),
    ({"meta": False}, "'meta' missing"),
    ({"tables": False}, "'releases' missing"),
])
def test_a_damaged_schema_2_ledger_is_refused(tmp_path: Path, damage: dict,
                                              message: str) -> None:
    with pytest.raises(LedgerError, match=message):
        Ledger(_v2(tmp_path / "v2.sqlite", **damage))


def test_a_schema_2_ledger_is_migrated_into_the_chain(tmp_path: Path) -> None:
    path = _v2(tmp_path / "v2.sqlite", budget="5000")
    with Ledger(path) as led:
        assert led.spent_on_image("img") == 1024 and led.patient_budget == 5000
        led.reserve(release(image="img", patient=None, total=100))
    db = sqlite3.connect(path)
    db.execute("UPDATE releases SET total_epsilon = 0 WHERE id = 1")  # a row from before
    db.commit()
    db.close()
    with pytest.raises(LedgerTampered, match="release 1 was changed"):
        Ledger(path)


def test_malformed_pages_are_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    _ledger_with_history(path)
    data = bytearray(path.read_bytes())
    data[4096:8192] = b"\xa5" * 4096  # the second page
    path.write_bytes(bytes(data))
    with pytest.raises(LedgerError, match="ledger"):
        Ledger(path)
