"""`irbook audit verify [PATH]`: check the run record's audit chain."""

from __future__ import annotations

import argparse
import sqlite3
from pathlib import Path

from irbook import audit
from irbook import db as database
from irbook.errors import IrbookError


def cmd_audit(args: argparse.Namespace) -> int:
    """`irbook audit verify [PATH] [--expect-head SEQ:HASH]...`: exit 0 when the chain holds,
    the runs and steps tables match it and every published head is still in it; else 1,
    naming the first disagreement."""
    try:
        anchors = tuple(audit.Anchor.parse(text) for text in args.expect_head)
        url = args.path or database.database_url()
        database.check_url(url, "PATH" if args.path else database.URL_ENV)
    except ValueError as exc:
        raise IrbookError(str(exc)) from None
    if database.dialect_of(url) == "postgresql":
        path: Path | str = database.redacted_url(url)
        try:
            verdict = audit.verify(database.open_database(url), anchors)
        except database.DatabaseUrlError as exc:
            raise IrbookError(str(exc)) from None
        except database.errors() as exc:
            why = database.first_line(exc)
            raise IrbookError(f"{path}: cannot read the run record ({why})") from None
    else:
        path = Path(database.sqlite_path(url))
        if not path.is_file():
            raise IrbookError(f"{path}: no such file (no run recorded yet?)")
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
            verdict = audit.verify(db, anchors)
        except sqlite3.DatabaseError as exc:
            raise IrbookError(f"{path}: not an irbook run record ({exc})") from None
    if not verdict.ok:
        what = {
            "chain": f"audit chain BROKEN after {verdict.records} good records",
            "tables": "run record does not match its audit chain",
            "anchor": "audit chain does not hold the published head",
        }[verdict.broken]
        print(f"{path}: {what}: {verdict.problem}")
        return 1
    noun = "record" if verdict.records == 1 else "records"
    runs = f"{verdict.runs} run{'s' * (verdict.runs != 1)}"
    steps = f"{verdict.steps} step{'s' * (verdict.steps != 1)}"
    print(f"{path}: audit chain intact, {verdict.records} {noun}; {runs} and {steps} match it")
    for anchor, newer in zip(anchors, verdict.after_anchor, strict=True):
        print(f"  published head {anchor} holds ({newer} newer records)")
    if verdict.head:
        print(f"  head {verdict.head} (publish it elsewhere; check later with --expect-head)")
    return 0


__all__ = ["cmd_audit"]
