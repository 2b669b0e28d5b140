"""`irbook db status|upgrade [URL]`: where the database's schema stands, and bringing it
up to date (irbook.migrations). Every store also upgrades the database it opens; the
command is for an operator who wants it done (and seen) before the processes start."""

from __future__ import annotations

import argparse
import importlib
import os
from typing import TYPE_CHECKING

from irbook.errors import IrbookError

if TYPE_CHECKING:
    from irbook.db import AnyDatabase
    from irbook.migrations import Component

# The modules that own tables; importing them registers their components.
OWNERS = ("irbook.runs", "irbook.triggers.queue", "irbook.triggers.limits")


def components() -> list[Component]:
    from irbook import migrations

    for name in OWNERS:
        importlib.import_module(name)
    return list(migrations.components())


def schema_state(database: AnyDatabase) -> tuple[bool, list[str]]:
    """(current, one phrase per component): "runs 2" or "runs 1 (expected 2)"."""
    from irbook import migrations

    have = migrations.versions(database)
    ok, said = True, []
    for component in migrations.components():
        now = have.get(component.name, 0)
        if now == component.version:
            said.append(f"{component.name} {now}")
        else:
            ok = False
            what = "none" if now == 0 else str(now)
            said.append(f"{component.name} {what} (expected {component.version})")
    return ok, said


def open_url(url: str | None, *, create: bool) -> tuple[AnyDatabase, str]:
    """The database at `url` (default: the resolved one), and how to name it in output."""
    from irbook import db

    try:
        target = url or db.database_url()
        db.check_url(target, "URL" if url else db.URL_ENV)
    except ValueError as exc:
        raise IrbookError(str(exc)) from None
    shown = db.redacted_url(target)
    if db.dialect_of(target) == "sqlite" and not create:
        path = db.sqlite_path(target)
        if not os.path.isfile(path):
            raise IrbookError(
                f"{path}: no such file (irbook db upgrade, or the first run, creates it)"
            )
    try:
        return db.open_database(target), shown
    except db.DatabaseUrlError as exc:
        raise IrbookError(str(exc)) from None


def cmd_db(args: argparse.Namespace) -> int:
    from irbook import db, migrations

    components()
    database, shown = open_url(args.url, create=args.verb == "upgrade")
    try:
        if args.verb == "status":
            ok, said = schema_state(database)
            hint = "" if ok else ": run irbook db upgrade"
            print(f"{shown}: schema {', '.join(said)}{' (current)' if ok else hint}")
            return 0 if ok else 1
        for component in migrations.components():
            before, after = migrations.ensure(database, component)
            if before == after:
                print(f"{shown}: {component.name} tables at schema version {after} already")
            elif before == 0:
                print(f"{shown}: {component.name} tables at schema version {after}")
            else:
                print(f"{shown}: {component.name} tables upgraded {before} -> {after}")
        return 0
    except migrations.SchemaError as exc:
        raise IrbookError(str(exc)) from None
    except db.errors() as exc:
        raise IrbookError(f"{shown}: {db.first_line(exc)}") from None
