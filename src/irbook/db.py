"""irbook's database: one SQLite file (the default) or one PostgreSQL database.

Everything irbook keeps (runs and steps, the audit chain, the alert queue and dedup
keys, the replay guard, dead letters, approvals) lives in one database, named by a URL:

- `sqlite:///PATH` or a plain path: one file, WAL mode, one connection per thread,
  short write transactions that take the write lock first (`BEGIN IMMEDIATE`);
- `postgresql://user@host:port/db`: psycopg 3 with its connection pool, shared by every
  receiver, worker and CLI that has the URL.

`IRBOOK_DATABASE_URL` names it (the receiver's `database_url:` is the fallback the caller
passes); without either, `$IRBOOK_HOME/irbook.db`.

Callers write SQLite's SQL with `?` placeholders. On PostgreSQL the statements are
translated once (placeholders, `INSERT OR IGNORE`, column types in DDL) and a write
transaction takes one advisory lock, which serializes writers the way `BEGIN IMMEDIATE`
does on SQLite: the audit chain keeps one order, and read-then-write transactions see
no interleaving. A transaction that must not wait for other writers (a dispatcher
claiming rows with `FOR UPDATE SKIP LOCKED`) asks for `tx(serialize=False)`.
"""

from __future__ import annotations

import os
import re
import sqlite3
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

URL_ENV = "IRBOOK_DATABASE_URL"

#: The advisory lock key every serialized PostgreSQL write transaction takes ("irbk").
WRITE_LOCK = 0x6972626B

Dialect = Literal["sqlite", "postgresql"]


class DatabaseUrlError(ValueError):
    """A database URL irbook cannot use; the message names the setting at fault."""


def database_url(configured: str | None = None, default_path: str | None = None) -> str:
    """The database irbook uses: IRBOOK_DATABASE_URL, else `configured` (the receiver's
    `database_url:`), else `default_path` (a SQLite file, `$IRBOOK_HOME/irbook.db`)."""
    url = os.environ.get(URL_ENV) or configured
    if url:
        check_url(url, URL_ENV if os.environ.get(URL_ENV) else "database_url")
        return url
    if default_path is None:
        from irbook.cache import home

        default_path = str(home() / "irbook.db")
    return default_path


def check_url(url: str, setting: str = URL_ENV) -> None:
    """Raise DatabaseUrlError naming `setting` when `url` is neither SQLite nor PostgreSQL."""
    if dialect_of(url) == "postgresql":
        return
    if "://" in url and not url.startswith("sqlite:///"):
        scheme = url.split("://", 1)[0]
        raise DatabaseUrlError(
            f"{setting}: unsupported database {scheme!r}: use sqlite:///PATH or "
            "postgresql://user@host:port/dbname"
        )


def dialect_of(url: str) -> Dialect:
    return "postgresql" if url.startswith(("postgresql://", "postgres://")) else "sqlite"


def sqlite_path(url: str) -> str:
    """The file of a SQLite URL (`sqlite:///PATH`) or plain path."""
    return url[len("sqlite:///") :] if url.startswith("sqlite:///") else url


def redacted_url(url: str) -> str:
    """The URL without its password, for messages and `irbook doctor`: the one after the
    user name (up to the last "@", since a password may hold an unencoded "@") and a
    libpq `password=` parameter."""
    url = re.sub(r"(://[^:/@]+):.*@(?=[^@]*$)", r"\1:***@", url)
    return re.sub(r"([?&]password=)[^&]*", r"\1***", url, flags=re.IGNORECASE)


def _loaded_psycopg(name: str) -> tuple[type[Exception], ...]:
    """psycopg's exception class `name` when psycopg is loaded: a process that never
    opened PostgreSQL has not imported it, and none of its errors can be raised."""
    psycopg = sys.modules.get("psycopg")
    return () if psycopg is None else (getattr(psycopg, name),)


def _both(name: str) -> tuple[type[Exception], ...]:
    """The exception class `name` of sqlite3 and (when loaded) of psycopg: both follow
    DB-API 2's names."""
    return (getattr(sqlite3, name), *_loaded_psycopg(name))


def errors() -> tuple[type[Exception], ...]:
    """The exceptions a database call may raise, for `except db.errors():`."""
    return _both("Error")


def integrity_errors() -> tuple[type[Exception], ...]:
    """A unique or foreign key violated, on either back-end."""
    return _both("IntegrityError")


def busy_errors() -> tuple[type[Exception], ...]:
    """The database was locked, unreachable or interrupted: the call may work again."""
    return _both("OperationalError")


def unreachable_errors() -> tuple[type[Exception], ...]:
    """A database irbook cannot use or reach (the URL, the server, the schema): one line
    for the operator, not a traceback."""
    return (DatabaseUrlError, *_loaded_psycopg("OperationalError"))


class Row(tuple):  # type: ignore[type-arg]
    """A result row readable by index and by column name, like sqlite3.Row."""

    __slots__ = ()
    _index: dict[str, int]

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


def _row_class(names: Sequence[str]) -> type[Row]:
    return type("Row", (Row,), {"__slots__": (), "_index": {n: i for i, n in enumerate(names)}})


class Result:
    """What a PostgreSQL statement returned, read in full (the cursor is gone)."""

    def __init__(
        self, rows: list[Any], rowcount: int, description: list[tuple[str]] | None = None
    ) -> None:
        self._rows = rows
        self._at = 0
        self.rowcount = rowcount
        #: (name,) per column, as sqlite3's cursor.description gives them first
        self.description = description

    def fetchone(self) -> Any:
        if self._at >= len(self._rows):
            return None
        self._at += 1
        return self._rows[self._at - 1]

    def fetchall(self) -> list[Any]:
        rows, self._at = self._rows[self._at :], len(self._rows)
        return rows

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


_PLACEHOLDER = re.compile(r"'(?:[^']|'')*'|\?|%")
_OR_IGNORE = re.compile(r"^\s*INSERT\s+OR\s+IGNORE\s+INTO", re.IGNORECASE)
_RETURNING = re.compile(r"\sRETURNING\s", re.IGNORECASE)
_DDL_TYPES = [
    (re.compile(r"\bINTEGER\s+PRIMARY\s+KEY\s+AUTOINCREMENT\b", re.I), "BIGSERIAL PRIMARY KEY"),
    (re.compile(r"\bINTEGER\b", re.I), "BIGINT"),
    (re.compile(r"\bREAL\b", re.I), "DOUBLE PRECISION"),
    (re.compile(r"\bBLOB\b", re.I), "BYTEA"),
]
_translated: dict[str, str] = {}


def to_postgres(sql: str) -> str:
    """SQLite's dialect, as irbook writes it, in PostgreSQL's (cached per statement)."""
    done = _translated.get(sql)
    if done is not None:
        return done

    def mark(match: re.Match[str]) -> str:
        text = match.group(0)  # a quoted literal keeps its "?" but not a bare "%"
        return "%s" if text == "?" else text.replace("%", "%%")

    out = _PLACEHOLDER.sub(mark, sql)
    if _OR_IGNORE.match(out):
        out = _OR_IGNORE.sub("INSERT INTO", out, count=1)
        returning = _RETURNING.search(out)
        if returning:
            at = returning.start()
            out = out[:at] + " ON CONFLICT DO NOTHING" + out[at:]
        else:
            out = out.rstrip().rstrip(";") + " ON CONFLICT DO NOTHING"
    if re.match(r"^\s*(CREATE|ALTER)\s", out, re.IGNORECASE):
        for pattern, replacement in _DDL_TYPES:
            out = pattern.sub(replacement, out)
    _translated[sql] = out
    return out


def split_script(script: str) -> list[str]:
    """A script's statements, comments dropped first: a comment may hold a ";"."""
    _QUOTED_OR_COMMENT = r"'(?:[^']|'')*'|--[^\n]*"
    bare = re.sub(
        _QUOTED_OR_COMMENT, lambda m: "" if m.group(0).startswith("--") else m.group(0), script
    )
    statements = []
    for part in _statements(bare):
        text = "\n".join(line.rstrip() for line in part.splitlines() if line.strip()).strip()
        if text:
            statements.append(text)
    return statements


def _statements(script: str) -> list[str]:
    """Split at the semicolons outside quoted literals."""
    parts, start = [], 0
    for match in re.finditer(r"'(?:[^']|'')*'|;", script):
        if match.group(0) == ";":
            parts.append(script[start : match.start()])
            start = match.end()
    parts.append(script[start:])
    return parts


def _params(params: Iterable[Any]) -> tuple[Any, ...]:
    # SQLite keeps booleans as integers; so do irbook's tables on PostgreSQL
    return tuple(int(p) if isinstance(p, bool) else p for p in params)


class PgConnection:
    """sqlite3.Connection's calls irbook uses, on PostgreSQL. Bound to one pooled
    connection inside a transaction; outside one, each call borrows a connection."""

    dialect: Dialect = "postgresql"

    def __init__(self, database: PostgresDatabase, conn: Any = None) -> None:
        self._database = database
        self._conn = conn

    def _run(self, conn: Any, sql: str, params: Iterable[Any]) -> Result:
        with conn.cursor() as cursor:
            cursor.execute(to_postgres(sql), _params(params))
            rows: list[Any] = []
            if cursor.description is None:
                return Result(rows, cursor.rowcount)
            names = [d.name for d in cursor.description]
            cls = _row_class(names)
            rows = [cls(r) for r in cursor.fetchall()]
            return Result(rows, cursor.rowcount, [(n,) for n in names])

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        """The transaction's connection when bound to one, else one borrowed from the
        pool for this call (and given back after it)."""
        if self._conn is not None:
            yield self._conn
            return
        with self._database.pool.connection() as conn:
            yield conn

    def execute(self, sql: str, params: Iterable[Any] = ()) -> Result:
        if sql.lstrip().upper().startswith("PRAGMA"):
            return Result([], -1)
        with self._connection() as conn:
            return self._run(conn, sql, params)

    def executemany(self, sql: str, seq: Iterable[Iterable[Any]]) -> Result:
        rows = [_params(p) for p in seq]
        with self._connection() as conn, conn.cursor() as cursor:
            cursor.executemany(to_postgres(sql), rows)
            return Result([], cursor.rowcount)

    def executescript(self, script: str) -> None:
        """DDL, several statements: run in one serialized transaction, since processes
        creating the same tables at once would otherwise collide in the catalog."""
        if self._conn is not None:
            for statement in split_script(script):
                self._run(self._conn, statement, ())
            return
        with self._database.tx() as db:
            db.executescript(script)


class PostgresDatabase:
    """A PostgreSQL database through psycopg 3's connection pool."""

    dialect: Dialect = "postgresql"

    def __init__(
        self, url: str, *, max_size: int = 10, timeout: float = 30.0, setting: str = URL_ENV
    ) -> None:
        """Connect, or raise DatabaseUrlError naming `setting` (where the URL came from)
        with the server's reason."""
        try:
            import psycopg
            from psycopg_pool import ConnectionPool
        except ImportError as exc:  # pragma: no cover - a dependency
            raise DatabaseUrlError(
                f"{setting}: PostgreSQL needs psycopg 3 and psycopg_pool ({exc})"
            ) from exc
        self.url = url
        self.path = url
        self.timeout = timeout
        conninfo = "postgresql://" + url.split("://", 1)[1]
        # One plain connection first: a server that is down or a database that does not
        # exist is said at once, in libpq's words, instead of after the pool's timeout
        # with its retries logged on the way.
        try:
            psycopg.connect(conninfo, connect_timeout=max(1, int(timeout))).close()
        except psycopg.Error as exc:
            raise DatabaseUrlError(
                f"{setting}: cannot connect to {redacted_url(url)}: {_connect_reason(exc)}"
            ) from None
        self.pool = ConnectionPool(
            conninfo,
            min_size=1,
            max_size=max_size,
            kwargs={"autocommit": True},
            timeout=timeout,
            open=False,
            name="irbook",
        )
        try:
            self.pool.open(wait=True, timeout=timeout)
        except Exception as exc:
            self.pool.close()
            raise DatabaseUrlError(
                f"{setting}: cannot connect to {redacted_url(url)}: {first_line(exc)}"
            ) from exc
        self._local = threading.local()

    def conn(self) -> PgConnection:
        """This thread's connection: the open transaction's, else one borrowing per call."""
        bound: PgConnection | None = getattr(self._local, "tx", None)
        return bound if bound is not None else PgConnection(self)

    @contextmanager
    def tx(self, *, serialize: bool = True) -> Iterator[PgConnection]:
        """A write transaction; `serialize` takes the one write lock first (as SQLite's
        BEGIN IMMEDIATE does), so writers never interleave."""
        outer: PgConnection | None = getattr(self._local, "tx", None)
        if outer is not None:  # nested: part of the open transaction
            yield outer
            return
        with self.pool.connection() as conn, conn.transaction():
            bound = PgConnection(self, conn)
            if serialize:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            self._local.tx = bound
            try:
                yield bound
            finally:
                self._local.tx = None

    @contextmanager
    def snapshot(self) -> Iterator[PgConnection]:
        """A read-only transaction that sees one consistent state of the database."""
        with self.pool.connection() as conn:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                yield PgConnection(self, conn)
            finally:
                conn.execute("ROLLBACK")

    def close(self) -> None:
        self.pool.close()


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _connect_reason(exc: BaseException) -> str:
    """libpq's reason a connection failed, without psycopg's "connection failed: " in
    front (the message around it already says so)."""
    line = first_line(exc)
    return line.split(": ", 1)[-1] if "connection failed" in str(exc) else line


class Database:
    """irbook's SQLite file: one connection per thread, WAL mode, short write transactions.

    `open_database(url)` picks this or PostgresDatabase by the URL.
    """

    dialect: Dialect = "sqlite"

    def __init__(
        self,
        path: str,
        *,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        timeout: float = 30.0,
    ) -> None:
        self.path = sqlite_path(path)
        self.url = path
        self.synchronous = synchronous
        self.timeout = timeout
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []

    def conn(self) -> sqlite3.Connection:
        """This thread's connection (autocommit; writes go through `tx`)."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(
                self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self.synchronous}")
            db.row_factory = sqlite3.Row
            self._local.db = db
            with self._lock:
                self._connections.append(db)
        return db

    @contextmanager
    def tx(self, *, serialize: bool = True) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the lock first (no upgrade deadlocks). SQLite
        has one writer at a time whatever `serialize` says."""
        db = self.conn()
        if db.in_transaction:  # nested: part of the open transaction
            yield db
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction that sees one consistent state of the file."""
        db = self.conn()
        db.execute("BEGIN")
        try:
            yield db
        finally:
            db.execute("ROLLBACK")

    def close(self) -> None:
        """Close every thread's connection (once the threads using them are done)."""
        with self._lock:
            connections, self._connections = self._connections, []
        for db in connections:
            db.close()
        self._local = threading.local()


AnyDatabase = Database | PostgresDatabase

_shared: dict[str, PostgresDatabase] = {}
_shared_lock = threading.Lock()


def open_database(
    url: str,
    *,
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
    timeout: float = 30.0,
    setting: str = URL_ENV,
) -> AnyDatabase:
    """The database at `url` (a SQLite path or URL, or a PostgreSQL URL). PostgreSQL pools
    are shared by every store of this process that names the same URL, and connect at
    once: a server that is down or refuses is a DatabaseUrlError naming `setting` (the
    variable or configuration field the URL came from) and the server's reason."""
    check_url(url, setting)
    if dialect_of(url) == "sqlite":
        return Database(url, synchronous=synchronous, timeout=timeout)
    with _shared_lock:
        found = _shared.get(url)
        if found is None or found.pool.closed:
            found = _shared[url] = PostgresDatabase(url, timeout=timeout, setting=setting)
        return found


def shared_database(url: str) -> PostgresDatabase | None:
    """The open PostgreSQL pool of this process for `url`, if there is one."""
    with _shared_lock:
        found = _shared.get(url)
    return found if found is not None and not found.pool.closed else None


def add_columns(db: Any, table: str, columns: dict[str, str]) -> None:
    """Add the columns a newer irbook keeps to a table an older one wrote (name -> type).

    Several processes may open an old database at once: a column another one added
    first is not an error.
    """
    if getattr(db, "dialect", "sqlite") == "postgresql":
        for name, kind in columns.items():
            db.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {name} {kind}")
        return
    have = {row[1] for row in db.execute(f"PRAGMA table_info({table})").fetchall()}
    for name, kind in columns.items():
        if name in have:
            continue
        try:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
        except sqlite3.OperationalError as exc:
            if "duplicate column" not in str(exc):
                raise
