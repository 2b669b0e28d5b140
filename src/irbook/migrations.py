"""A versioned schema: which version of its tables the database holds, and the upgrade.

irbook's tables belong to components (`runs`: runs, steps, the event log, the audit
chain and run owners; the receiver registers its own). `irbook_schema` holds one row per
component with the version its tables are at. Each component lists its upgrade steps
in code, step N taking version N-1 to N; every step is written so that running it on
tables that already have what it adds changes nothing (CREATE ... IF NOT EXISTS,
`add_columns`), which is how files written before this table existed are adopted.

Whoever opens the database first brings it up to date (`ensure`): one read when it is
current, else the missing steps and the new version in one serialized write transaction,
so two processes starting at once upgrade it once. `irbook db upgrade` does the same on
demand, `irbook db status` and `irbook doctor` say where it stands. A database whose
version is newer than this irbook knows is refused with a message naming both (an older
irbook could write rows a newer one does not expect).

Why not alembic: irbook's schema is small, spans SQLite and PostgreSQL through one SQL
dialect (irbook.db), and must be created by any process that opens a store, with no
extra command and no migration files shipped beside the package; alembic would add
SQLAlchemy and its own version table to learn the same single integer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from irbook.db import AnyDatabase, DatabaseUrlError, split_script

SCHEMA = """
CREATE TABLE IF NOT EXISTS irbook_schema (
    component TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    upgraded_at REAL NOT NULL
)
"""

#: One upgrade step: a SQL script or a function given the transaction's connection.
Step = str | Callable[[Any], None]


@dataclass(frozen=True)
class Component:
    name: str
    steps: tuple[Step, ...]  # steps[0] creates version 1

    @property
    def version(self) -> int:
        return len(self.steps)


class SchemaError(DatabaseUrlError):
    """The database's schema is newer than this irbook, or cannot be read."""


_components: dict[str, Component] = {}


def register(component: Component) -> Component:
    """Make a component known to `irbook db status|upgrade` and `irbook doctor`."""
    _components[component.name] = component
    return component


def components() -> list[Component]:
    """The components registered so far: the modules that own them register them when
    imported (irbook.runs: "runs"), so `irbook db` imports those first."""
    return [_components[name] for name in sorted(_components)]


def run_script(db: Any, script: str) -> None:
    """Run several statements on one connection, inside the caller's transaction
    (sqlite3's executescript would commit it first)."""
    for statement in split_script(script):
        db.execute(statement)


def versions(database: AnyDatabase) -> dict[str, int]:
    """{component: version} as the database holds them; {} for a new database."""
    db = database.conn()
    if not has_table(database, "irbook_schema"):
        return {}
    rows = db.execute("SELECT component, version FROM irbook_schema").fetchall()
    return {str(r[0]): int(r[1]) for r in rows}


def has_table(database: AnyDatabase, name: str) -> bool:
    db = database.conn()
    if database.dialect == "postgresql":
        row = db.execute("SELECT to_regclass(?)", (name,)).fetchone()
        return row is not None and row[0] is not None
    row = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    ).fetchone()
    return row is not None


def ensure(database: AnyDatabase, component: Component) -> tuple[int, int]:
    """Bring `component`'s tables to its version; (version before, version now)."""
    have = versions(database).get(component.name, 0)
    _check_not_newer(database, component, have)
    if have == component.version:
        return have, have
    with database.tx() as db:
        run_script(db, SCHEMA)
        row = db.execute(
            "SELECT version FROM irbook_schema WHERE component = ?", (component.name,)
        ).fetchone()
        have = int(row[0]) if row is not None else 0
        _check_not_newer(database, component, have)
        for step in component.steps[have:]:
            if isinstance(step, str):
                run_script(db, step)
            else:
                step(db)
        if have != component.version:
            db.execute(
                "INSERT INTO irbook_schema (component, version, upgraded_at) VALUES (?, ?, ?)"
                " ON CONFLICT (component) DO UPDATE SET version = excluded.version,"
                " upgraded_at = excluded.upgraded_at",
                (component.name, component.version, time.time()),
            )
    return have, component.version


def _check_not_newer(database: AnyDatabase, component: Component, have: int) -> None:
    if have > component.version:
        from irbook.db import redacted_url

        raise SchemaError(
            f"{redacted_url(str(database.url))}: the {component.name} tables are at schema"
            f" version {have}, newer than this irbook's {component.version}: upgrade irbook"
        )


__all__ = [
    "Component",
    "SchemaError",
    "components",
    "ensure",
    "has_table",
    "register",
    "run_script",
    "versions",
]
