"""The ledger's tamper evidence: a journal of every change, chained by a MAC, replayed and
compared with the ledger's tables.

Every change the ledger makes (a reservation, a status, a budget change, and at the start its
creation or its migration from an older schema) is also appended to the `journal` table as
one canonical JSON entry with `mac_i = HMAC-SHA256(key, i | mac_{i-1} | entry_i)`. The key and
the chain's head (its last entry number and MAC, and the one before the last transaction, so
that a crash between the two files is not mistaken for tampering) live in a second file beside
the ledger, `<ledger name>.key.json`, never in the database.

`verify` walks the chain and replays it: the tables must hold exactly what the journal says
(every release row with its epsilon, keys, status and note; the stored budget; the budget
history; the salt), and the journal must end where the key file says. So an edit of the
database with a SQL tool (a spent epsilon set to 0, a row deleted or cancelled, a patient key
changed, the budget raised without a history row, a trigger added, the journal's tail cut
off) is found. This makes tampering evident, not impossible: whoever can read the key file
(the operator owns the machine) can recompute the chain, and deleting both files together
starts a new, empty ledger. What it protects against is an edit made with database tools
alone, and a change that went unnoticed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from glow_engine.atomic import write_text_atomic
from glow_engine.reading import MiB, ReadError, read_text

JOURNAL = "CREATE TABLE journal (id INTEGER PRIMARY KEY, entry TEXT NOT NULL, mac TEXT NOT NULL)"
GENESIS = "0" * 64  # the MAC "before" the first entry
Head = tuple[int, str]  # (last entry number, its MAC)


class ChainBroken(Exception):
    """The ledger's tables or journal differ from what the chain proves; str() says how."""


def key_path(ledger_path: Path) -> Path:
    """ledger.sqlite -> ledger.key.json, beside it."""
    return ledger_path.with_name(f"{ledger_path.stem}.key.json")


@dataclass
class KeyFile:
    path: Path
    key: bytes
    head: Head = (0, GENESIS)
    before: Head = (0, GENESIS)  # the head before the last transaction (it may not commit)

    @classmethod
    def create(cls, path: Path) -> KeyFile:
        return cls(path, secrets.token_bytes(32))

    @classmethod
    def load(cls, path: Path) -> KeyFile:
        if not os.path.lexists(path):
            raise ChainBroken(f"its key file {path} is missing, so its history cannot be "
                              "verified")
        try:
            data = json.loads(read_text(path, what="ledger key file", limit=MiB))
            return cls(path, bytes.fromhex(data["key"]), tuple(data["head"]),  # type: ignore[arg-type]
                       tuple(data["before"]))  # type: ignore[arg-type]
        except ReadError as e:
            raise ChainBroken(f"its key file {path} cannot be read ({e.reason})") from None
        except (ValueError, KeyError, TypeError) as e:
            raise ChainBroken(f"its key file {path} is damaged ({e})") from None

    def save(self, head: Head, before: Head) -> None:
        self.head, self.before = head, before
        write_text_atomic(self.path, json.dumps({"key": self.key.hex(), "head": list(head),
                                                 "before": list(before)}), overwrite=True)


def _mac(key: bytes, number: int, previous: str, entry: str) -> str:
    message = f"{number}|{previous}|{entry}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


@dataclass
class State:
    """What the journal says the tables hold, replayed entry by entry."""

    head: Head = (0, GENESIS)
    meta: dict[str, str] = field(default_factory=dict)
    releases: dict[int, dict] = field(default_factory=dict)
    changes: list[dict] = field(default_factory=list)

    def apply(self, entry: dict) -> None:
        op = entry["op"]
        if op == "create":
            self.meta = dict(entry["meta"])
        elif op == "migrate":
            self.meta = dict(entry["meta"])
            self.releases = {row["id"]: row for row in entry["releases"]}
            self.changes = list(entry["budget_changes"])
        elif op == "reserve":
            self.releases[entry["row"]["id"]] = entry["row"]
        elif op == "status":
            self.releases[entry["id"]].update(status=entry["status"], note=entry["note"])
        elif op == "budget":
            self.changes.append(entry["change"])
            if entry["budget"] is None:
                self.meta.pop("patient_budget", None)
            else:
                self.meta["patient_budget"] = entry["budget"]
        else:
            raise ChainBroken(f"its journal holds an unknown entry {op!r}")

    def spent(self, budget_key: str) -> float:
        return sum(r["total_epsilon"] for r in self.releases.values()
                   if r["budget_key"] == budget_key and r["status"] != "cancelled")


class Journal:
    """The chain of one open ledger: appends entries, reads and checks those of others."""

    def __init__(self, db: sqlite3.Connection, keys: KeyFile) -> None:
        self.db, self.keys, self.state = db, keys, State()
        self._pending: Head | None = None  # the head before this transaction's entries

    def append(self, entry: dict) -> None:
        """Inside the caller's write transaction, after `sync`."""
        text = json.dumps(entry, sort_keys=True, separators=(",", ":"))
        number, previous = self.state.head
        mac = _mac(self.keys.key, number + 1, previous, text)
        self.db.execute("INSERT INTO journal (id, entry, mac) VALUES (?, ?, ?)",
                        (number + 1, text, mac))
        if self._pending is None:
            self._pending = self.state.head
        self.state.apply(entry)
        self.state.head = (number + 1, mac)

    def seal(self) -> None:
        """Before the caller commits: the key file records the new head (and the old one,
        should the commit not happen)."""
        if self._pending is not None:
            self.keys.save(self.state.head, self._pending)
            self._pending = None

    def rollback(self) -> None:
        """The transaction did not commit: forget its entries (the next `sync` replays the
        journal from the start)."""
        if self._pending is not None:
            self.state, self._pending = State(), None

    def sync(self) -> None:
        """Replay the entries appended since this connection last looked (other processes'),
        checking each link of the chain."""
        number, previous = self.state.head
        rows = self.db.execute("SELECT id, entry, mac FROM journal WHERE id > ? ORDER BY id",
                               (number,)).fetchall()
        for row_id, text, mac in rows:
            if row_id != number + 1:
                raise ChainBroken(f"journal entry {number + 1} is missing")
            if not hmac.compare_digest(_mac(self.keys.key, row_id, previous, text), mac):
                raise ChainBroken(f"journal entry {row_id} does not verify (it was changed, or "
                                  "the key file belongs to another ledger)")
            try:
                self.state.apply(json.loads(text))
            except (ValueError, KeyError, TypeError) as e:
                raise ChainBroken(f"journal entry {row_id} is malformed ({e})") from None
            number, previous = row_id, mac
        self.state.head = (number, previous)

    def check_head(self) -> None:
        """The journal ends where the key file says (or where it was before a transaction
        that did not commit): no entry was cut off the end."""
        if self.state.head not in (tuple(self.keys.head), tuple(self.keys.before)):
            raise ChainBroken(f"its journal ends at entry {self.state.head[0]} but its key "
                              f"file says {self.keys.head[0]}: entries were removed")

    def differences(self) -> list[str]:
        """How the tables differ from the replayed journal (empty: they agree)."""
        found = []
        meta = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
        for key in sorted(set(meta) | set(self.state.meta)):
            if meta.get(key) != self.state.meta.get(key):
                found.append(f"the stored {key.replace('_', ' ')} differs from its history")
        rows = {r["id"]: r for r in all_rows(self.db, "releases")}
        for row_id in sorted(set(rows) | set(self.state.releases)):
            if row_id not in rows:
                found.append(f"release {row_id} was deleted")
            elif row_id not in self.state.releases:
                found.append(f"release {row_id} was added outside dpglow")
            elif rows[row_id] != self.state.releases[row_id]:
                changed = sorted(k for k in rows[row_id]
                                 if rows[row_id][k] != self.state.releases[row_id].get(k))
                found.append(f"release {row_id} was changed ({', '.join(changed)})")
        if all_rows(self.db, "budget_changes") != self.state.changes:
            found.append("the budget history was changed")
        return found


def _rows(db: sqlite3.Connection, sql: str, args: tuple = ()) -> list[dict]:
    cur = db.execute(sql, args)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def row(db: sqlite3.Connection, table: str, row_id: int) -> dict:
    """One row as the journal records it."""
    return _rows(db, f"SELECT * FROM {table} WHERE id = ?", (row_id,))[0]


def all_rows(db: sqlite3.Connection, table: str) -> list[dict]:
    return _rows(db, f"SELECT * FROM {table} ORDER BY id")
