"""Where the log and the views live: SQLite by default, PostgreSQL when configured.

The log's table, its notification sequence and the reads by position and by stream are the
`eventsourcing` library's recorders. What this module adds is one transaction shape for
both databases, so that an append, its idempotency receipts, and a view with its tracked
position can each be written atomically with the same code.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence
from urllib.parse import parse_qs, unquote, urlparse
from uuid import uuid4

from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.persistence import OperationalError as EsOperationalError
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteConnectionPool, SQLiteDatastore

EVENTS_TABLE = "closedloop_events"
DEFAULT_URL = "sqlite:///data/closedloop.db"


class ConfigurationError(ValueError):
    """The storage settings cannot be used as given."""


_IN_LIST = re.compile(r"(NOT\s+)?IN\s*\(\s*\?(?:\s*,\s*\?)+\s*\)|\?", re.I)


def _any_arrays(sql: str, params: Sequence[Any]) -> tuple[str, list[Any]]:
    out: list[Any] = []
    i = 0

    def swap(m: "re.Match[str]") -> str:
        nonlocal i
        text = m.group(0)
        if text == "?":
            out.append(params[i])
            i += 1
            return "%s"
        k = text.count("?")
        out.append(list(params[i : i + k]))
        i += k
        return "<> ALL(%b)" if m.group(1) else "= ANY(%b)"

    statement = _IN_LIST.sub(swap, sql)
    out.extend(params[i:])
    return statement, out


# table -> its columns' types, for the bulk inserts on PostgreSQL (the same in every schema)
_COLUMN_TYPES: dict[str, dict[str, str]] = {}


class Tx:
    """One transaction; the same calls and `?` placeholders on both databases."""

    __slots__ = ("_cur", "_pg", "append_locked")

    def __init__(self, cursor: Any, pg: bool) -> None:
        self._cur = cursor
        self._pg = pg
        self.append_locked = False

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self._pg else sql

    def _pg_query(self, sql: str, params: Sequence[Any]) -> tuple[str, Sequence[Any]]:
        """`?` placeholders as psycopg's; a long `IN (?, ?, ...)` as `= ANY(array)`: psycopg
        parses a statement in Python, and caches it only when short, so a batch's lookups of
        400 keys each were parsed anew every time."""
        if "IN (?," not in sql:
            return sql.replace("?", "%s"), params
        return _any_arrays(sql, params)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        if self._pg:
            self._cur.execute(*self._pg_query(sql, params))
        else:
            self._cur.execute(sql, params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        if self._pg:
            bulk = _bulk_insert(sql, rows, self._column_types)
            if bulk is not None:
                # psycopg spends ~100 µs of Python per row of an executemany; one INSERT
                # that unnests an array per column costs a fraction of that, and means the same
                self._cur.execute(self._sql(bulk[0]), bulk[1])
                return
        self._cur.executemany(self._sql(sql), rows)

    def _column_types(self, table: str) -> dict[str, str]:
        """A table's columns and their types, in order (PostgreSQL), asked once per process."""
        known = _COLUMN_TYPES.get(table)
        if known is None:
            self._cur.execute(
                "SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type FROM pg_attribute a "
                "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                [table])
            known = {r["name"]: r["type"] for r in self._cur.fetchall()}
            if known:
                _COLUMN_TYPES[table] = known
        return known

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        self.execute(sql, params)
        return list(self._cur.fetchall())

    def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        self.execute(sql, params)
        return self._cur.fetchone()

    def rowcount(self) -> int:
        return self._cur.rowcount if self._pg else self._cur.sqlite_cursor.rowcount

    @property
    def raw(self) -> Any:
        return self._cur


_INSERT_VALUES = re.compile(
    r"^\s*(INSERT\s+INTO\s+(\S+)\s*(?:\(([^)]*)\))?)\s*VALUES\s*\(((?:[^()']|'[^']*')*)\)(.*)$", re.S | re.I)
_UPSERT_TARGET = re.compile(r"ON\s+CONFLICT\s*\(([^)]*)\)\s*DO\s+UPDATE", re.I)
_VALUE_ITEMS = re.compile(r"\s*('[^']*'|[^,]+?)\s*(?:,|$)")


def _bulk_insert(sql: str, rows: Sequence[Sequence[Any]],
                 column_types: Callable[[str], dict[str, str]]) -> tuple[str, list[Any]] | None:
    """`INSERT ... VALUES (?, ...) [ON CONFLICT ...]` for many rows as ONE statement that
    unnests a typed array per column; None when that would not mean the same as one row at
    a time. (An upsert may not touch one row twice in a statement: rows sharing a conflict
    key go one at a time, as before.)"""
    m = _INSERT_VALUES.match(sql)
    if m is None or len(rows) < 2:
        return None
    head, table, columns, group, rest = m.groups()
    items = [x for x in _VALUE_ITEMS.findall(group.strip())]
    types = column_types(table)
    names = [c.strip() for c in columns.split(",")] if columns else list(types)
    if len(names) != len(items) or any(n not in types for n in names):
        return None
    upsert = _UPSERT_TARGET.search(rest)
    if upsert is not None:
        try:
            key = [names.index(c.strip()) for c in upsert.group(1).split(",")]
        except ValueError:
            return None
        places = [i for i, item in enumerate(items) if item == "?"]
        if any(items[k] != "?" for k in key):
            return None
        at = [places.index(k) for k in key]
        if len({tuple(r[i] for i in at) for r in rows}) != len(rows):
            return None
    select, arrays, aliases = [], [], []
    for name, item in zip(names, items):
        if item == "?":
            alias = f"c{len(arrays)}"
            # binary: psycopg's text format escapes every element with a regular expression
            arrays.append(f"%b::{types[name]}[]")
            aliases.append(alias)
            select.append(f"u.{alias}")
        else:
            select.append(item)
    if not arrays:
        return None
    params = [list(column) for column in zip(*rows)]
    if len(params) != len(arrays):
        return None
    statement = (f"{head} SELECT {', '.join(select)} FROM unnest({', '.join(arrays)}) "
                 f"AS u({', '.join(aliases)}){rest}")
    return statement, params


class Storage:
    """A database holding the log and the views."""

    dialect: str
    url: str
    recorder: Any

    # column types that differ between the two databases
    types: dict[str, str]

    def ddl(self, statement: str) -> str:
        return statement.format(**self.types)

    def create(self, statements: Sequence[str]) -> None:
        """Create tables if missing, one process at a time (see `lock_ddl`)."""
        with self.writing() as tx:
            self.lock_ddl(tx)
            for statement in statements:
                tx.execute(self.ddl(statement))

    def lock_ddl(self, tx: Tx) -> None:
        """Several processes starting at once on an empty database must not create the same
        tables at the same moment (PostgreSQL's IF NOT EXISTS is not safe against that)."""

    def lock_for_append(self, tx: Tx) -> None:
        """Order this transaction's appends with other processes' (see PostgreSQL's)."""

    @contextmanager
    def writing(self, append: bool = False) -> Iterator[Tx]:  # pragma: no cover - abstract
        """A write transaction; `append` when it adds to the log (serialized with other appends)."""
        raise NotImplementedError
        yield

    @contextmanager
    def reading(self) -> Iterator[Tx]:  # pragma: no cover - abstract
        raise NotImplementedError
        yield

    def insert_stored(self, tx: Tx, stored: Sequence[StoredEvent]) -> list[int]:  # pragma: no cover
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover
        raise NotImplementedError

    def compact(self) -> None:
        """Fold write-ahead logs into the database before a long read (SQLite only)."""

    def describe(self) -> str:
        parsed = urlparse(self.url)
        if parsed.password:
            return self.url.replace(parsed.password, "***")
        return self.url


class _TunedPool(SQLiteConnectionPool):
    """The library's pool, with the page cache sized for a log that grows to millions."""

    synchronous = "FULL"
    cache_kib = 131072

    def _create_connection(self) -> Any:
        conn = super()._create_connection()
        raw = conn._sqlite_conn  # noqa: SLF001 - the library gives no hook for pragmas
        raw.execute(f"PRAGMA cache_size=-{self.cache_kib}")
        raw.execute(f"PRAGMA synchronous={self.synchronous}")
        raw.execute("PRAGMA temp_store=MEMORY")
        return conn


class _Recorder(SQLiteApplicationRecorder):
    def _insert_events(self, c: Any, stored_events: Sequence[StoredEvent], **_: Any) -> None:
        # One executemany instead of the library's row-by-row inserts: the appender knows
        # the positions it gets, because it holds the write lock while it appends.
        c.executemany(
            self.insert_events_statement,
            [(s.originator_id, s.originator_version, s.topic, s.state) for s in stored_events],
        )


def _switch_to_wal(path: str) -> None:
    """Put a database file in WAL mode before the library's pool opens it. The switch takes a
    lock that does not wait; processes opening a new file at the same moment retry here,
    where a failure leaves nothing half-acquired behind."""
    for attempt in range(40):
        try:
            conn = sqlite3.connect(path, timeout=30)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
            finally:
                conn.close()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == 39:
                raise
            time.sleep(0.02 * (attempt + 1))


@contextmanager
def _immediate(conn: Any, cur: Any) -> Iterator[Tx]:
    """One SQLite write transaction on a connection: committed, or rolled back on error."""
    # IMMEDIATE takes the write lock up front, so a read-then-write cannot be overtaken by
    # another process's writer between the two.
    cur.execute("BEGIN IMMEDIATE")
    try:
        yield Tx(cur, pg=False)
    except sqlite3.IntegrityError as exc:
        conn.rollback()
        # the same error the library raises, whichever database: callers retry on it
        raise IntegrityError(str(exc)) from exc
    except BaseException:
        conn.rollback()
        raise
    else:
        conn.commit()


class SQLiteStorage(Storage):
    dialect = "sqlite"
    types = {"bigint": "INTEGER", "blob": "BLOB", "serial": "INTEGER PRIMARY KEY AUTOINCREMENT"}

    def __init__(self, url: str, path: str, synchronous: str | None = None, cache_kib: int | None = None) -> None:
        self.url = url
        self.path = path
        memory = path == ":memory:" or "mode=memory" in path
        if not memory:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            db_name = path
            _switch_to_wal(path)
        else:
            # each in-memory store is its own database, shared by the pool's connections
            db_name = path if path.startswith("file:") else f"file:closedloop-{uuid4().hex}?mode=memory&cache=shared"
        self.datastore = SQLiteDatastore(db_name, originator_id_type="text", pool_size=8, max_overflow=32,
                                         lock_timeout=30)
        self.datastore.pool.close()
        pool = _TunedPool(db_name=db_name, lock_timeout=30, pool_size=8, max_overflow=32)
        # FULL by default: an acknowledged event survives a power cut. Appends are
        # batched, so the fsync per commit costs little; NORMAL is there for benchmarks.
        pool.synchronous = (synchronous or os.environ.get("CLOSEDLOOP_SQLITE_SYNCHRONOUS", "FULL")).upper()
        if cache_kib is not None:
            pool.cache_kib = cache_kib
        if pool.synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ConfigurationError("CLOSEDLOOP_SQLITE_SYNCHRONOUS must be OFF, NORMAL, FULL or EXTRA")
        self.datastore.pool = pool
        self.recorder = _Recorder(self.datastore, events_table_name=EVENTS_TABLE)
        # Processes opening a new file at the same moment: switching it to WAL takes a lock that
        # does not wait, so the one that loses waits a moment and tries again.
        for attempt in range(20):
            try:
                self.recorder.create_table()
                break
            except (sqlite3.OperationalError, EsOperationalError) as exc:
                if "locked" not in str(exc) or attempt == 19:
                    raise
                time.sleep(0.05 * (attempt + 1))

    @contextmanager
    def writing(self, append: bool = False) -> Iterator[Tx]:
        with self.datastore.get_connection(commit=True) as conn:
            cur = conn.cursor()
            try:
                with _immediate(conn, cur) as tx:
                    yield tx
            finally:
                cur.sqlite_cursor.close()

    @contextmanager
    def reading(self) -> Iterator[Tx]:
        with self.datastore.get_connection(commit=False) as conn:
            cur = conn.cursor()
            cur.execute("BEGIN")
            try:
                yield Tx(cur, pg=False)
            finally:
                conn.rollback()
                cur.sqlite_cursor.close()

    @contextmanager
    def writing_attached(self, path: str, alias: str = "part") -> Iterator[Tx]:
        """A write transaction that also sees another database file as `alias.<table>`:
        copying a rebuild worker's tables in is one INSERT ... SELECT each, in C."""
        with self.datastore.get_connection(commit=True) as conn:
            cur = conn.cursor()
            cur.execute(f"ATTACH DATABASE ? AS {alias}", [path])
            try:
                with _immediate(conn, cur) as tx:
                    yield tx
            finally:
                cur.execute(f"DETACH DATABASE {alias}")
                cur.sqlite_cursor.close()

    @property
    def memory(self) -> bool:
        return self.path == ":memory:" or "mode=memory" in self.path

    def insert_stored(self, tx: Tx, stored: Sequence[StoredEvent]) -> list[int]:
        head = tx.one(f"SELECT MAX(rowid) AS head FROM {EVENTS_TABLE}")["head"] or 0
        self.recorder._insert_events(tx.raw, stored)  # noqa: SLF001
        return list(range(head + 1, head + 1 + len(stored)))

    def compact(self) -> None:
        # A replay reads the whole log: through a WAL of hundreds of megabytes that
        # costs a third of its speed, so fold the WAL into the database first.
        with self.datastore.get_connection(commit=True) as conn:
            conn._sqlite_conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # noqa: SLF001

    def close(self) -> None:
        self.datastore.close()


class PostgresStorage(Storage):
    dialect = "postgresql"
    types = {"bigint": "BIGINT", "blob": "BYTEA", "serial": "BIGSERIAL PRIMARY KEY"}

    def __init__(self, url: str, *, dbname: str, host: str, port: int, user: str, password: str,
                 schema: str) -> None:
        from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore

        self.url = url
        self.schema = schema
        search_path = f'SET search_path TO "{schema}"'

        class _Datastore(PostgresDatastore):
            def after_connect_func(self) -> Any:
                base = super().after_connect_func()

                def after_connect(conn: Any) -> None:
                    base(conn)
                    conn.cursor().execute(search_path)

                return after_connect

        import psycopg

        self._ddl_key = int.from_bytes(hashlib.sha256(f"closedloop-ddl:{schema}".encode()).digest()[:8],
                                       "big", signed=True)
        # the schema and the log's tables, made by one starting process at a time
        with psycopg.connect(dbname=dbname, host=host, port=port, user=user, password=password,
                             autocommit=True) as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", [self._ddl_key])
            try:
                if schema != "public":
                    conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
                self.datastore = _Datastore(dbname, host, port, user, password, schema=schema,
                                            originator_id_type="text", pool_size=4, max_overflow=8,
                                            lock_timeout=30)
                self.recorder = PostgresApplicationRecorder(self.datastore, events_table_name=EVENTS_TABLE)
                self.recorder.create_table()
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", [self._ddl_key])

    def lock_ddl(self, tx: Tx) -> None:
        tx.execute("SELECT pg_advisory_xact_lock(?)", [self._ddl_key])

    @contextmanager
    def writing(self, append: bool = False) -> Iterator[Tx]:
        with self.datastore.transaction(commit=True) as cur:
            tx = Tx(cur, pg=True)
            if append:
                self.lock_for_append(tx)
            yield tx

    def lock_for_append(self, tx: Tx) -> None:
        # The library's table lock: positions are handed out in commit order, so a follower
        # never skips a gap that a slower transaction fills in later. It is taken as late as
        # possible (just before the first insert) and held to the commit: what a transaction
        # works out before (a reactor's decisions, a batch's digests) runs beside other
        # processes' appends instead of queueing behind them.
        if not tx.append_locked:
            self.recorder._lock_table(tx.raw)  # noqa: SLF001
            tx.append_locked = True

    @contextmanager
    def reading(self) -> Iterator[Tx]:
        with self.datastore.transaction(commit=False) as cur:
            yield Tx(cur, pg=True)

    def insert_stored(self, tx: Tx, stored: Sequence[StoredEvent]) -> list[int]:
        if not stored:
            return []
        self.recorder._notify_channel(tx.raw)  # noqa: SLF001
        # The library inserts an array of a composite type, which psycopg writes out as text
        # in Python, escaping every state with a regular expression: ~50 µs of this process's
        # CPU per event, all of it under the append lock. Four arrays in binary say the same
        # (the same table, the same unnest, positions handed out in the array's order) for
        # a fifteenth of that.
        tx.raw.execute(_INSERT_EVENTS, [[e.originator_id for e in stored], [e.originator_version for e in stored],
                                        [e.topic for e in stored], [e.state for e in stored]])
        return [row["notification_id"] for row in tx.raw.fetchall()]

    def close(self) -> None:
        self.datastore.close()


_INSERT_EVENTS = (f"INSERT INTO {EVENTS_TABLE} (originator_id, originator_version, topic, state) "
                  "SELECT * FROM unnest(%b::text[], %b::bigint[], %b::text[], %b::bytea[]) RETURNING notification_id")


def open_storage(url: str | None = None) -> Storage:
    """`sqlite:///relative.db`, `sqlite:////abs/path.db`, `sqlite://:memory:` or
    `postgresql://user:pass@host:port/db?schema=name`."""
    url = url or os.environ.get("CLOSEDLOOP_DATABASE_URL") or DEFAULT_URL
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        path = unquote(parsed.path[1:] if parsed.path.startswith("/") else parsed.path)
        if parsed.netloc == ":memory:" or path == ":memory:":
            path = ":memory:"
        if not path:
            raise ConfigurationError(f"no file in {url!r}: try sqlite:///data/closedloop.db")
        try:
            return SQLiteStorage(url, path)
        except sqlite3.Error as exc:
            raise ConfigurationError(f"cannot open SQLite database {path!r}: {exc}") from exc
    if parsed.scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        query = parse_qs(parsed.query)
        dbname = parsed.path.lstrip("/")
        if not dbname:
            raise ConfigurationError(f"no database name in {url!r}: try postgresql://user@127.0.0.1:5432/test")
        return PostgresStorage(
            url,
            dbname=dbname,
            host=parsed.hostname or "127.0.0.1",
            port=parsed.port or 5432,
            user=unquote(parsed.username or os.environ.get("PGUSER", "postgres")),
            password=unquote(parsed.password or os.environ.get("PGPASSWORD", "")),
            schema=(query.get("schema") or ["public"])[0],
        )
    raise ConfigurationError(
        f"CLOSEDLOOP_DATABASE_URL {url!r} is not understood: use sqlite:///path/to/file.db "
        "or postgresql://user@host:port/db"
    )
