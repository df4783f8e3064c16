"""The SQLite privacy ledger and `dpglow ledger`."""

from __future__ import annotations

import argparse
import json
import math
import sqlite3
from pathlib import Path

import pytest

from glow_engine.commands import ledger as ledger_cmd
from glow_engine.release.ledger import (
    SCHEMA_VERSION,
    BudgetExceeded,
    Ledger,
    LedgerError,
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
        led.confirm(led.reserve(release(patient="SECRET-PATIENT-77")))
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
        ledger.confirm(ledger.reserve(release(image=image, total=total)))
    ledger.reserve(release(image="c" * 64, patient=None, total=7))  # reserved: counts
    ledger.cancel(ledger.reserve(release(image="d" * 64, total=1000)))  # cancelled: does not
    assert ledger.spent_on_image("a" * 64) == 150
    assert ledger.spent_on_patient("PAT-001", "zzz") == 160
    patients = {r["budget_key"].split(":")[0]: r for r in ledger.patient_totals()}
    assert patients["patient"]["images"] == 2 and patients["patient"]["releases"] == 3
    assert patients["image"]["total_epsilon"] == 7
    images = {r["image_sha256"]: r["total_epsilon"] for r in ledger.image_totals()}
    assert images == {"a" * 64: 150, "b" * 64: 10, "c" * 64: 7}
    assert [r["status"] for r in ledger.releases()] == ["written"] * 3 + ["reserved",
                                                                          "cancelled"]


def test_patient_budget_refuses_unless_forced(ledger: Ledger) -> None:
    ledger.set_patient_budget(120)
    assert ledger.patient_budget == 120
    ledger.confirm(ledger.reserve(release(total=100)))
    with pytest.raises(BudgetExceeded, match="per-patient budget 120"):
        ledger.reserve(release(image="b" * 64, total=30))
    ledger.reserve(release(image="b" * 64, patient="OTHER", total=30))  # another patient
    forced = ledger.reserve(release(image="b" * 64, total=30), force=True)
    row = next(r for r in ledger.releases() if r["id"] == forced)
    assert row["forced"] == 1 and "forced past" in row["note"]
    assert ledger.patient_totals()[0]["forced"] == 1
    with pytest.raises(BudgetExceeded):  # a run's own budget overrides the ledger's
        ledger.reserve(release(patient="NEW", total=30), budget=20)
    with pytest.raises(BudgetExceeded):  # inf never fits a budget
        ledger.reserve(release(patient="NEW2", total=math.inf))
    ledger.set_patient_budget(None)
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
    with pytest.raises(LedgerError):
        Ledger(tmp_path / "x.sqlite").set_patient_budget(0)


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
        led.confirm(led.reserve(release(total=102400)))
        led.reserve(release(image="b" * 64, total=102400), force=True, budget=1)
    assert run_cli(str(path), "--set-patient-budget", "300000") == 0
    out = capsys.readouterr().out
    assert "per-patient budget: 300000" in out and "204800" in out and "--force" in out
    assert run_cli(str(path), "--json", "--releases") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["patient_budget"] == 300000 and len(report["releases"]) == 2
    assert report["images"][0]["total_epsilon"] == 102400
    assert run_cli(str(path), "--clear-patient-budget") == 0
    assert "per-patient budget: none" in capsys.readouterr().out
