"""The audit chain: every run event, hash-chained, so a changed record shows.

Each row of the run record's `events` table (run started, each step's transitions with
the API calls it made, approvals with who decided, compensations, the run's end) gets a
link in `audit`: hash(n) = SHA-256(hash(n-1) + the event's canonical JSON), from a fixed
genesis at seq 1. The link is written in the event's own transaction.

One chain per database, whatever the back-end and however many processes append: an
append first moves the one `audit_head` row (the newest seq and its link) forward, and
takes its seq from it. Moving that row locks it until the transaction ends (SQLite's
write lock, which BEGIN IMMEDIATE takes first; a row lock on PostgreSQL, where irbook's
write transactions also hold one advisory lock), so appends from any number of threads
and processes queue on it: each link is computed from the one committed before it, and
a transaction that rolls back gives its seq back (a PostgreSQL sequence would not, and
leave a gap verify could not tell from a removed record). The head row also tells how
many records were written, so removing the newest ones shows.

Every write to the `runs` and `steps` rows is such an event, carrying the columns it set
(see irbook.runs), so `irbook audit verify` checks two things: the chain itself (seqs
1..N, no gap, no record outside it, every link recomputed), then the tables against the
chain (each row replayed from its events), and names the first disagreement.

The chain has no key: whoever can write the file can rebuild all of it. What catches that,
and the removal of the newest records with their rows, is the head published elsewhere
(`--expect-head SEQ:HASH`): a later chain must still hold that link at that seq.
Event details are stored already redacted; the chain adds no data.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from irbook.db import AnyDatabase

# Columns stored as JSON text; an event's "set" holds their decoded values.
JSON_COLUMNS = {
    "runs": frozenset({"inputs", "outputs"}),
    "steps": frozenset(
        {"params", "planned_calls", "real_calls", "outputs", "compensation", "approval"}
    ),
}
KEY_COLUMNS = {"runs": ("id",), "steps": ("run_id", "step_id", "item")}


def dumps(value: Any) -> str | None:
    """How a JSON column's value is spelled in the tables (verify compares them so)."""
    return None if value is None else json.dumps(value, sort_keys=True, default=str)


def step_label(step_id: Any, item: Any) -> str:
    """A step as people read it: `tag`, or `tag[2]` for a for_each item after the first."""
    return str(step_id) + (f"[{item}]" if item else "")


SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,          -- the event's seq
    hash TEXT NOT NULL
);
"""

# Schema version 2 (irbook.migrations): the chain's head, one row.
HEAD_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,             -- the newest record's seq: how many were written
    hash TEXT NOT NULL                -- its link
);
"""

GENESIS = "0" * 64


def _canonical(row: Any) -> bytes:
    record = [row["seq"], repr(float(row["at"])), row["run_id"], row["kind"], row["step_id"]]
    record.append(row["detail"])
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()


def link(prev: str, row: Any) -> str:
    return hashlib.sha256(prev.encode() + b"\n" + _canonical(row)).hexdigest()


def append(
    db: Any, run_id: str, at: float, kind: str, step_id: str | None, detail: str | None
) -> int:
    """Insert one event and its link, inside the caller's write transaction; its seq."""
    head = db.execute(
        "UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash"
    ).fetchall()
    if not head:  # the head row was removed: start it again from the chain as it is
        start_head(db)
        head = db.execute(
            "UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash"
        ).fetchall()
    seq, prev = int(head[0][0]), str(head[0][1])
    db.execute(
        "INSERT INTO events (seq, run_id, at, kind, step_id, detail) VALUES (?, ?, ?, ?, ?, ?)",
        (seq, run_id, at, kind, step_id, detail),
    )
    row = {"seq": seq, "at": at, "run_id": run_id, "kind": kind, "step_id": step_id}
    new = link(prev, {**row, "detail": detail})
    db.execute("INSERT INTO audit (seq, hash) VALUES (?, ?)", (seq, new))
    db.execute("UPDATE audit_head SET hash = ? WHERE id = 1", (new,))
    return seq


def start_head(db: Any) -> None:
    """Create the head row from the chain a database holds (schema version 2 adopts an
    older file so): its newest seq, or more if SQLite's counter says more were written."""
    top = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    seq, head = (int(top[0]), str(top[1])) if top is not None else (0, GENESIS)
    events = db.execute("SELECT MAX(seq) FROM events").fetchone()
    seq = max(seq, int(events[0] or 0))
    if getattr(db, "dialect", "sqlite") == "sqlite":
        written = (
            db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
            if _sqlite_has(db, "sqlite_sequence")
            else None
        )
        seq = max(seq, int(written[0]) if written is not None else 0)
    db.execute("INSERT OR IGNORE INTO audit_head (id, seq, hash) VALUES (1, ?, ?)", (seq, head))


def _sqlite_has(db: Any, table: str) -> bool:
    found = db.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (table,)).fetchone()
    return found is not None


def _row(row: Any) -> dict[str, Any]:
    keys = ("seq", "at", "run_id", "kind", "step_id", "detail")
    return dict(zip(keys, tuple(row), strict=True))


@dataclass(frozen=True)
class Anchor:
    """A head published earlier: `SEQ:HASH` as verify prints it, or the bare hash."""

    hash: str
    seq: int | None = None

    @classmethod
    def parse(cls, text: str) -> Anchor:
        match = re.fullmatch(r"(?:([1-9]\d*):)?([0-9a-f]{64})", text.strip().lower())
        if match is None:
            raise ValueError(
                f"--expect-head: {text[:80]!r} is not SEQ:HASH as `irbook audit verify` prints it"
            )
        return cls(match.group(2), int(match.group(1)) if match.group(1) else None)

    def __str__(self) -> str:
        return (f"{self.seq}:" if self.seq is not None else "") + self.hash[:16] + "…"


@dataclass
class Verdict:
    ok: bool
    records: int  # chained records checked
    head: str  # "seq:hash" of the newest link, to anchor elsewhere
    problem: str = ""
    broken: str = ""  # what failed: "chain" | "tables" | "anchor"
    runs: int = 0  # run rows checked against the chain
    steps: int = 0  # step rows checked against the chain
    after_anchor: list[int] = field(default_factory=list)  # records newer than each anchor


def verify(db: sqlite3.Connection | AnyDatabase, anchors: tuple[Anchor, ...] = ()) -> Verdict:
    """Check the chain, then the tables against it, then the published heads, in a
    SQLite connection (read-only will do) or an irbook database of either kind.

    All in one read transaction: a run writing meanwhile is seen wholly before or after
    each of its writes (a row and its event commit together), never half.
    """
    with _snapshot(db) as conn:
        tables = _tables(conn)
        if "audit" not in tables:
            return Verdict(False, 0, "", "no audit chain in this database", "chain")
        return _verify(conn, anchors, tables)


@contextmanager
def _snapshot(db: Any) -> Iterator[Any]:
    if isinstance(db, sqlite3.Connection):
        db.execute("BEGIN")
        try:
            yield db
        finally:
            db.execute("ROLLBACK")
        return
    with db.snapshot() as conn:
        yield conn


def _tables(db: Any) -> set[str]:
    if getattr(db, "dialect", "sqlite") == "postgresql":
        rows = db.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        ).fetchall()
    else:
        rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {str(r[0]) for r in rows}


# A row as the chain says it is: column -> (value, seq of the event that set it).
_Replayed = dict[str, tuple[Any, int]]


def _verify(db: Any, anchors: tuple[Anchor, ...], tables: set[str]) -> Verdict:
    rows = db.execute(
        "SELECT e.seq, e.at, e.run_id, e.kind, e.step_id, e.detail, a.seq AS aseq, a.hash"
        " FROM events e LEFT JOIN audit a ON a.seq = e.seq"
        " UNION ALL"
        " SELECT a.seq, NULL, NULL, NULL, NULL, NULL, a.seq, a.hash"
        " FROM audit a LEFT JOIN events e ON e.seq = a.seq WHERE e.seq IS NULL"
        " ORDER BY 1"
    )
    runs: dict[str, _Replayed] = {}
    steps: dict[tuple[str, str, int], _Replayed] = {}
    at_seq = {a.seq for a in anchors if a.seq is not None}
    bare = {a.hash for a in anchors if a.seq is None}
    links: dict[int, str] = {}  # the anchored seqs' links
    seq_of: dict[str, int] = {}  # where the anchored bare hashes are
    prev, count, head = GENESIS, 0, ""

    def broken(problem: str) -> Verdict:
        return Verdict(False, count, head, problem, "chain")

    for row in rows:
        seq = row[0]
        if seq != count + 1:
            if seq < 1:
                return broken(
                    f"record {seq} (run {_id(row[2])}, {_id(row[3])}) is before the chain's"
                    " first record 1: added outside irbook"
                )
            gap = f"record {count + 1}" + (f" to {seq - 1}" if seq - 1 > count + 1 else "")
            return broken(f"{gap} removed (from the events and the chain both)")
        if row[6] is None:
            return broken(
                f"record {seq} is not in the chain (run {_id(row[2])}, {_id(row[3])}):"
                " added outside irbook"
            )
        if row[1] is None:
            return broken(f"record {seq} was removed (its link remains)")
        if link(prev, _row(row[:6])) != row[7]:
            return broken(
                f"record {seq} (run {_id(row[2])}, {_id(row[3])}) does not match its link: "
                "it, or a record before it, was changed or removed"
            )
        prev, count, head = row[7], count + 1, f"{seq}:{row[7]}"
        if seq in at_seq:
            links[seq] = row[7]
        if row[7] in bare:
            seq_of[row[7]] = seq
        detail = row[5]
        if detail and '"set": {' in detail:  # cheap test before parsing
            _replay(runs, steps, seq, row[2], row[4], json.loads(detail))
    if "audit_head" in tables:
        written = db.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
    elif "sqlite_sequence" in tables:  # a file from before schema version 2, read-only
        written = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
    else:
        written = None
    if written is not None and int(written[0]) > count:
        gap = f"record {count + 1}" + (f" to {written[0]}" if written[0] > count + 1 else "")
        return broken(f"{gap} removed: the chain ends at {count} but {written[0]} were written")
    if written is not None and len(written) > 1 and count and written[1] != prev:
        return broken(
            f"the chain's head says record {written[0]} has link {str(written[1])[:16]}…,"
            f" but record {count} has {prev[:16]}…: the head or the newest records were"
            " changed outside irbook"
        )

    verdict = Verdict(True, count, head, runs=len(runs), steps=len(steps))
    # a rewritten chain first: comparing the tables with it would say nothing
    for anchor in anchors:
        problem = _anchored(anchor, links, seq_of, count)
        if problem:
            verdict.ok, verdict.problem, verdict.broken = False, problem, "anchor"
            return verdict
        seq = anchor.seq if anchor.seq is not None else seq_of[anchor.hash]
        verdict.after_anchor.append(count - seq)
    problem = _compare(db, runs, steps)
    if problem:
        verdict.ok, verdict.problem, verdict.broken = False, problem, "tables"
    return verdict


def _replay(
    runs: dict[str, _Replayed],
    steps: dict[tuple[str, str, int], _Replayed],
    seq: int,
    run_id: str,
    step_id: str | None,
    detail: Any,
) -> None:
    """Apply one event's written columns to the row it wrote; JSON columns are kept as
    the text the table holds for them (compared as text, and small)."""

    if not isinstance(detail, dict) or not isinstance(detail.get("set"), dict):
        return
    if step_id is None:
        target, json_columns = runs.setdefault(run_id, {}), JSON_COLUMNS["runs"]
    else:
        key = (run_id, step_id, int(detail.get("item") or 0))
        target, json_columns = steps.setdefault(key, {}), JSON_COLUMNS["steps"]
    for column, value in detail["set"].items():
        target[column] = (dumps(value) if column in json_columns else value, seq)


def _compare(
    db: Any,
    runs: dict[str, _Replayed],
    steps: dict[tuple[str, str, int], _Replayed],
) -> str:
    """The earliest disagreement between the tables and the replayed chain, or ""."""

    found: list[tuple[float, str]] = []  # (audit seq, problem); rows unknown to it last
    tables: tuple[tuple[str, dict[Any, _Replayed]], ...] = (("runs", runs), ("steps", steps))
    for table, chained in tables:
        keys = KEY_COLUMNS[table]
        cursor = db.execute(f"SELECT * FROM {table}")  # noqa: S608 - names are ours
        names = [d[0] for d in cursor.description]
        at = [names.index(k) for k in keys]
        columns = [(i, n) for i, n in enumerate(names) if n not in keys]
        seen: set[Any] = set()
        for values in cursor:
            key = values[at[0]] if table == "runs" else tuple(values[i] for i in at)
            replayed = chained.get(key)
            if replayed is None:
                found.append(
                    (
                        math.inf,
                        f"{_what(table, key)} is in the {table} table but not in the"
                        " audit chain: added outside irbook",
                    )
                )
                continue
            seen.add(key)
            for i, column in columns:
                stored = values[i]
                value, seq = replayed.get(column) or (None, 0)
                if stored == value:
                    continue
                seq = seq or min(s for _, s in replayed.values())
                if column in JSON_COLUMNS[table]:  # compare values, not their spelling
                    stored, value = _decoded(stored), _decoded(value)
                    if stored == value:
                        continue
                path, stored, value = _first_difference(column, stored, value)
                found.append(
                    (
                        seq,
                        f"{_what(table, key, path)} is {_show(stored)} in the table"
                        f" but {_show(value)} in the chain (audit seq {seq})",
                    )
                )
        for key, replayed in chained.items():
            if key not in seen:
                first = min(seq for _, seq in replayed.values())
                found.append(
                    (
                        first,
                        f"{_what(table, key)} is missing from the {table} table"
                        f" (chained at audit seq {first})",
                    )
                )
    if not found:
        return ""
    found.sort(key=lambda f: f[0])
    more = len(found) - 1
    return found[0][1] + (f" (and {more} more disagreement{'s' * (more > 1)})" if more else "")


def _decoded(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:  # not JSON any more: compared as the text it is
        return text


def _what(table: str, key: Any, column: str = "") -> str:
    """'run X' or "step 'Y' of run X"; with a column "run X: steps.state of step 'Y'"."""
    if table == "runs":
        return f"run {_id(key)}" + (f": runs.{column}" if column else "")
    run_id, step_id, item = key

    label = step_label(step_id, item)
    step = f"'{label}'" if _id(label) == label else _id(label)
    if column:
        return f"run {_id(run_id)}: steps.{column} of step {step}"
    return f"step {step} of run {_id(run_id)}"


def _anchored(anchor: Anchor, links: dict[int, str], seq_of: dict[str, int], count: int) -> str:
    if anchor.seq is None:
        if anchor.hash in seq_of:
            return ""
        return f"the published head {anchor} is not in the chain: it was rewritten or cut short"
    if anchor.seq > count:
        return (
            f"the chain ends at seq {count}, before the published head {anchor}:"
            " the newest records were removed"
        )
    if links.get(anchor.seq) != anchor.hash:
        return (
            f"the link at seq {anchor.seq} is {links.get(anchor.seq, '')[:16]}…, not the"
            f" published head {anchor}: the chain was rewritten"
        )
    return ""


_ABSENT: Any = object()  # a key one side of a JSON column lacks


def _first_difference(path: str, stored: Any, value: Any) -> tuple[str, Any, Any]:
    """Down a JSON column to the first key or index that differs: `approval.by`."""
    while True:
        step: Any = None
        if isinstance(stored, dict) and isinstance(value, dict):
            names = sorted(set(stored) | set(value), key=str)
            step = next((n for n in names if stored.get(n, _ABSENT) != value.get(n, _ABSENT)), None)
            if step is not None:
                path, stored, value = (
                    f"{path}.{step}",
                    stored.get(step, _ABSENT),
                    value.get(step, _ABSENT),
                )
        elif isinstance(stored, list) and isinstance(value, list) and len(stored) == len(value):
            pairs = zip(stored, value, strict=True)
            step = next((i for i, (a, b) in enumerate(pairs) if a != b), None)
            if step is not None:
                path, stored, value = f"{path}[{step}]", stored[step], value[step]
        if step is None:
            return path, stored, value


def _id(value: Any) -> str:
    """A run id, step id or kind for a one-line message (they may have been tampered with)."""
    text = str(value)
    return text if text.isprintable() and len(text) <= 80 else json.dumps(text[:80])


def _show(value: Any) -> str:
    if value is _ABSENT:
        return "absent"
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 80 else text[:79] + "…"
