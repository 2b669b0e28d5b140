"""The audit chain: every run event, hash-chained, so a changed record shows.

Each row of the run record's `events` table (run started, each step's transitions with
the API calls it made, approvals with who decided, compensations, the run's end) gets a
link in `audit`: hash(n) = SHA-256(hash(n-1) + the event's canonical JSON). The link is
written in the event's own transaction, and writes are serialized (BEGIN IMMEDIATE), so
the chain has one order across threads and processes.

`irbook audit verify` recomputes the chain and names the first record that was changed,
removed or slipped in. Removing the newest records leaves a shorter chain that still
verifies: anchor the head it prints (in the incident ticket, say) and compare later.
Event details are stored already redacted; the chain adds no data.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,          -- the event's seq
    hash TEXT NOT NULL
);
"""

GENESIS = "0" * 64


def _canonical(row: Any) -> bytes:
    record = [row["seq"], repr(float(row["at"])), row["run_id"], row["kind"], row["step_id"]]
    record.append(row["detail"])
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()


def link(prev: str, row: Any) -> str:
    return hashlib.sha256(prev.encode() + b"\n" + _canonical(row)).hexdigest()


def append(db: sqlite3.Connection, seq: int) -> None:
    """Chain the event `seq`; call inside the transaction that inserted it."""
    row = db.execute(
        "SELECT seq, at, run_id, kind, step_id, detail FROM events WHERE seq = ?", (seq,)
    ).fetchone()
    last = db.execute("SELECT hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    prev = last[0] if last is not None else GENESIS
    db.execute("INSERT INTO audit (seq, hash) VALUES (?, ?)", (seq, link(prev, _row(row))))


def _row(row: Any) -> dict[str, Any]:
    keys = ("seq", "at", "run_id", "kind", "step_id", "detail")
    return dict(zip(keys, tuple(row), strict=True))


@dataclass
class Verdict:
    ok: bool
    records: int  # chained records checked
    unchained: int  # records older than the chain (written before it existed)
    head: str  # "seq:hash" of the newest link, to anchor elsewhere
    problem: str = ""


def verify(db: sqlite3.Connection) -> Verdict:
    """Walk the chain oldest first; stop at the first break."""
    has_audit = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit'"
    ).fetchone()
    if has_audit is None:
        return Verdict(False, 0, 0, "", "no audit chain in this file")
    first = db.execute("SELECT MIN(seq) FROM audit").fetchone()[0]
    if first is None:
        return Verdict(True, 0, _count(db, None), "", "")
    unchained = _count(db, first)
    rows = db.execute(
        "SELECT e.seq, e.at, e.run_id, e.kind, e.step_id, e.detail, a.seq AS aseq, a.hash"
        " FROM events e LEFT JOIN audit a ON a.seq = e.seq WHERE e.seq >= ?"
        " UNION ALL"
        " SELECT a.seq, NULL, NULL, NULL, NULL, NULL, a.seq, a.hash"
        " FROM audit a LEFT JOIN events e ON e.seq = a.seq WHERE e.seq IS NULL"
        " ORDER BY 1",
        (first,),
    )
    prev, count, head = GENESIS, 0, ""
    for row in rows:
        seq = row[0]
        if row[6] is None:
            return Verdict(
                False,
                count,
                unchained,
                head,
                f"record {seq} is not in the chain (run {row[2]}, {row[3]}): added outside irbook",
            )
        if row[1] is None:
            return Verdict(
                False, count, unchained, head, f"record {seq} was removed (its link remains)"
            )
        expected = link(prev, _row(row[:6]))
        if expected != row[7]:
            return Verdict(
                False,
                count,
                unchained,
                head,
                f"record {seq} (run {row[2]}, {row[3]}) does not match its link: "
                "it, or a record before it, was changed or removed",
            )
        prev, count, head = row[7], count + 1, f"{seq}:{row[7]}"
    return Verdict(True, count, unchained, head)


def _count(db: sqlite3.Connection, before: int | None) -> int:
    if before is None:
        return int(db.execute("SELECT COUNT(*) FROM events").fetchone()[0])
    return int(db.execute("SELECT COUNT(*) FROM events WHERE seq < ?", (before,)).fetchone()[0])
