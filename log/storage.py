"""Where the log and the views live: SQLite by default, PostgreSQL when configured.

The log's table, its notification sequence and its head are the `eventsourcing` library's
recorders, used through their public API. What this module adds is one transaction shape for
both databases, so that an append, its idempotency receipts, and a view with its tracked
position can each be written atomically with the same code. A statement says its dialect
when it is built (`Tx.q`, `Tx.in_list`, `Tx.insert_many`); nothing rewrites SQL afterwards.
The few statements on the library's table that closedloop writes itself each say why.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import time
import weakref
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence
from urllib.parse import parse_qs, unquote, urlparse
from uuid import uuid4

from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.persistence import OperationalError as EsOperationalError
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore

_log = logging.getLogger("closedloop.storage")

EVENTS_TABLE = "closedloop_events"
DEFAULT_URL = "sqlite:///data/closedloop.db"


class ConfigurationError(ValueError):
    """The storage settings cannot be used as given."""


class Params:
    """How a statement is given its parameters on one database, chosen when it is built:
    `q` is the placeholder (`?` on SQLite, `%s` on PostgreSQL), `marks(n)` n of them, and
    `in_list` a list of values as one condition. Nothing rewrites a statement afterwards."""

    __slots__ = ()
    q: str
    pg: bool

    def marks(self, n: int) -> str:
        """`n` placeholders, comma-separated (a VALUES row, an IN list)."""
        return ",".join([self.q] * n)

    def in_list(self, column: str, values: Sequence[Any], *, negate: bool = False) -> tuple[str, list[Any]]:
        """`column IN (?, ...)` on SQLite, `column = ANY(array)` on PostgreSQL, with the
        parameters that go with it. psycopg parses a statement in Python and caches only
        short ones, so a batch's lookups of 400 keys each were parsed anew every time; one
        array parameter keeps the statement the same whatever the count (binary: psycopg's
        text format escapes every element in Python)."""
        if self.pg:
            return f"{column} {'<> ALL' if negate else '= ANY'}(%b)", [list(values)]
        return f"{column} {'NOT IN' if negate else 'IN'} ({self.marks(len(values))})", list(values)


# table -> its columns' types, for the many-row inserts on PostgreSQL (the same in every schema)
_COLUMN_TYPES: dict[str, dict[str, str]] = {}
# (dialect, table, columns, conflict, update) -> the statements insert_many sends
_INSERTS: dict[tuple[Any, ...], tuple[str, str | None]] = {}


def _conflict_clause(conflict: Sequence[str] | None, update: Sequence[str] | str | None) -> str:
    if conflict is None:
        if update is not None:
            raise ValueError("update= needs conflict= (the key whose rows are updated)")
        return ""
    target = f" ({', '.join(conflict)})" if conflict else ""
    if update is None:
        return f" ON CONFLICT{target} DO NOTHING"
    if not conflict:
        raise ValueError("update= needs the conflict key's columns")
    sets = update if isinstance(update, str) else ", ".join(f"{c} = excluded.{c}" for c in update)
    return f" ON CONFLICT{target} DO UPDATE SET {sets}"


class Tx(Params):
    """One transaction. Statements are written for the dialect by their caller, with
    `tx.q`, `tx.marks(n)` and `tx.in_list(...)`; many rows go in with `insert_many`."""

    __slots__ = ("_cur", "pg", "q", "append_locked")

    def __init__(self, cursor: Any, pg: bool) -> None:
        self._cur = cursor
        self.pg = pg
        self.q = "%s" if pg else "?"
        self.append_locked = False

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._cur.execute(sql, params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """One statement for each row (UPDATEs, DELETEs); rows to insert go to `insert_many`."""
        if rows:
            self._cur.executemany(sql, rows)

    def insert_many(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], *,
                    conflict: Sequence[str] | None = None, update: Sequence[str] | str | None = None) -> None:
        """`INSERT INTO table (columns) VALUES (...)` for each row, the same as one at a time.

        `conflict`: the key of ON CONFLICT (`()` for any conflict); with no `update` the row
        is skipped (DO NOTHING), else `update` is the columns set from the new row
        (`c = excluded.c`) or a SET clause as written (`n = t.n + excluded.n`).

        SQLite: one executemany (its loop is in C). PostgreSQL: psycopg spends ~100 µs of
        Python per row of an executemany, so two rows or more go as ONE statement that
        unnests a typed array per column, in binary; an upsert may not touch a row twice
        in one statement, so rows sharing a conflict key go one at a time, as before."""
        if not rows:
            return
        columns = tuple(columns)
        key = (self.pg, table, columns, None if conflict is None else tuple(conflict),
               update if update is None or isinstance(update, str) else tuple(update))
        built = _INSERTS.get(key)
        if built is None:
            built = self._build_insert(table, columns, conflict, update)
            if built[1] is not None or not self.pg:
                if len(_INSERTS) > 1000:
                    _INSERTS.clear()
                _INSERTS[key] = built
        each, unnested = built
        if unnested is None or len(rows) < 2:
            self._cur.executemany(each, rows)
            return
        if update is not None and conflict:
            at = [columns.index(c) for c in conflict]
            if len(at) == 1:
                k = at[0]
                shared = len({r[k] for r in rows}) != len(rows)
            else:
                shared = len({tuple(r[i] for i in at) for r in rows}) != len(rows)
            if shared:
                self._cur.executemany(each, rows)
                return
        self._cur.execute(unnested, [list(column) for column in zip(*rows)])

    def _build_insert(self, table: str, columns: tuple[str, ...], conflict: Sequence[str] | None,
                      update: Sequence[str] | str | None) -> tuple[str, str | None]:
        """The statement for one row and, on PostgreSQL, the unnest one (None when the
        table's column types are not found)."""
        tail = _conflict_clause(conflict, update)
        each = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({self.marks(len(columns))}){tail}"
        if not self.pg:
            return each, None
        types = self._column_types(table)
        if any(c not in types for c in columns):
            return each, None
        arrays = ", ".join(f"%b::{types[c]}[]" for c in columns)
        return each, f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM unnest({arrays}){tail}"

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
        self._cur.execute(sql, params)
        return list(self._cur.fetchall())

    def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        self._cur.execute(sql, params)
        return self._cur.fetchone()

    def rowcount(self) -> int:
        return self._cur.rowcount if self.pg else self._cur.sqlite_cursor.rowcount


class Storage(Params):
    """A database holding the log and the views. As `Params`, it gives a statement built
    before a transaction opens (a query's WHERE list) the dialect's placeholders."""

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

    def refresh_statistics(self, tables: Sequence[str] | None = None) -> None:  # pragma: no cover
        """Let the planner count `tables` again (None: every table of the store), as after a
        rebuild filled them: without it, it plans on guesses made when they were empty."""
        raise NotImplementedError

    def describe(self) -> str:
        parsed = urlparse(self.url)
        if parsed.password:
            return self.url.replace(parsed.password, "***")
        return self.url


# The log's own statements. An append shares its transaction with the receipts, the hash
# chain and a consumer's offsets, and the recorders' public insert_events commits on its own
# connection; so closedloop writes these rows itself, into the library's table and columns.
_SQLITE_INSERT_EVENTS = (f"INSERT INTO {EVENTS_TABLE} (originator_id, originator_version, topic, state) "
                         "VALUES (?,?,?,?)")


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
    pg = False
    q = "?"
    # the page cache sized for a log that grows to millions
    cache_kib = 131072
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
        # FULL by default: an acknowledged event survives a power cut. Appends are
        # batched, so the fsync per commit costs little; NORMAL is there for benchmarks.
        self.synchronous = (synchronous or "FULL").upper()
        if cache_kib is not None:
            self.cache_kib = cache_kib
        if self.synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ConfigurationError("CLOSEDLOOP_SQLITE_SYNCHRONOUS must be OFF, NORMAL, FULL or EXTRA")
        # the pool's connections this store has set its pragmas on (see `_connection`)
        self._tuned: weakref.WeakSet[Any] = weakref.WeakSet()
        self._wrote = False  # whether to leave the planner fresh statistics at `close`
        self.recorder = SQLiteApplicationRecorder(self.datastore, events_table_name=EVENTS_TABLE)
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
    def _connection(self, commit: bool) -> Iterator[Any]:
        """A connection from the library's pool, with this store's pragmas set the first time
        it is lent (the pool has no hook for them, and they hold for the connection's life)."""
        with self.datastore.get_connection(commit=commit) as conn:
            if conn not in self._tuned:
                with conn.cursor() as c:
                    c.execute(f"PRAGMA cache_size=-{self.cache_kib}")
                    c.execute(f"PRAGMA synchronous={self.synchronous}")
                    c.execute("PRAGMA temp_store=MEMORY")
                self._tuned.add(conn)
            yield conn

    @contextmanager
    def writing(self, append: bool = False) -> Iterator[Tx]:
        self._wrote = True
        with self._connection(commit=True) as conn:
            cur = conn.cursor()
            try:
                with _immediate(conn, cur) as tx:
                    yield tx
            finally:
                cur.sqlite_cursor.close()

    @contextmanager
    def reading(self) -> Iterator[Tx]:
        with self._connection(commit=False) as conn:
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
        with self._connection(commit=True) as conn:
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
        # The write lock is held (BEGIN IMMEDIATE) from before the head is read to the commit,
        # so the rows get the rowids that follow it, in the order given.
        head = tx.one(f"SELECT MAX(rowid) AS head FROM {EVENTS_TABLE}")["head"] or 0
        tx.executemany(_SQLITE_INSERT_EVENTS,
                       [(s.originator_id, s.originator_version, s.topic, s.state) for s in stored])
        return list(range(head + 1, head + 1 + len(stored)))

    def compact(self) -> None:
        # A replay reads the whole log: through a WAL of hundreds of megabytes that
        # costs a third of its speed, so fold the WAL into the database first.
        with self._connection(commit=True) as conn, conn.cursor() as c:
            c.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def refresh_statistics(self, tables: Sequence[str] | None = None) -> None:
        # ANALYZE reads each table's indexes whole (sqlite_stat1): after a rebuild, once
        with self.writing() as tx:
            for table in (["main"] if tables is None else [f"main.{t}" for t in tables]):
                tx.execute(f"ANALYZE {table}")
            tx.execute("PRAGMA optimize")

    def close(self) -> None:
        if self._wrote and not self.memory:
            self._optimize()
        self.datastore.close()

    def _optimize(self) -> None:
        """SQLite's advice for a connection that wrote, before it closes: `PRAGMA optimize`
        counts again the tables whose statistics are missing or stale, reading at most a few
        hundred rows of each index (analysis_limit). Never more than a moment: a database
        another process is writing is left as it is."""
        try:
            with self._connection(commit=True) as conn, conn.cursor() as c:
                c.execute("PRAGMA busy_timeout")
                waits = c.fetchone()[0]
                c.execute("PRAGMA busy_timeout=200")
                try:
                    c.execute("PRAGMA analysis_limit=400")
                    c.execute("PRAGMA optimize")
                finally:
                    c.execute(f"PRAGMA busy_timeout={int(waits)}")
        except (sqlite3.Error, EsOperationalError):
            pass


class PostgresStorage(Storage):
    dialect = "postgresql"
    pg = True
    q = "%s"
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
                # With autovacuum off (as some servers run) nothing counts the tables for the
                # planner: with no statistics a lookup of a batch's 400 keys by a column that is
                # not unique is planned as a read of the whole table (the log's own, for the
                # streams' versions, at every append). Then the store counts them itself each time
                # the log has doubled since it last did (`_analyze_at`, None: autovacuum does).
                autovacuum = conn.execute("SHOW autovacuum").fetchone()[0] == "on"
                counted = conn.execute("SELECT reltuples FROM pg_class WHERE oid = to_regclass(%s)",
                                       [f'"{schema}".{EVENTS_TABLE}']).fetchone()
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", [self._ddl_key])
        self._analyze_at: int | None = None if autovacuum else _next_analysis(counted[0] if counted else -1)
        self._analyze_due = False
        # Appends are ordered by a table lock, as the library's recorder orders its own: positions
        # are handed out in commit order, so a follower never skips a gap that a slower
        # transaction fills in later (EXCLUSIVE does not block readers). A waiter gives up after
        # the datastore's lock timeout. NOTIFY wakes the library's subscribers at the commit.
        self._lock_statements = (f"SET LOCAL lock_timeout = '{int(self.datastore.lock_timeout)}s'",
                                 f'LOCK TABLE "{schema}".{EVENTS_TABLE} IN EXCLUSIVE MODE')
        self._notify_statement = f'NOTIFY "{self.recorder.channel_name}"'

    def lock_ddl(self, tx: Tx) -> None:
        tx.execute("SELECT pg_advisory_xact_lock(%s)", [self._ddl_key])

    @contextmanager
    def writing(self, append: bool = False) -> Iterator[Tx]:
        with self.datastore.transaction(commit=True) as cur:
            tx = Tx(cur, pg=True)
            if append:
                self.lock_for_append(tx)
            yield tx
        if self._analyze_due:  # committed an append that doubled the log: see `__init__`
            self._analyze_due = False
            try:
                self.refresh_statistics()
            except Exception:  # noqa: BLE001 - the append stands; the counting waits for the next doubling
                _log.warning("could not refresh the planner's statistics / 无法更新查询规划器的统计信息",
                             exc_info=True)
                self._analyze_at = 2 * (self._analyze_at or 1000)

    def lock_for_append(self, tx: Tx) -> None:
        # The append lock (see `_lock_statements`) is taken as late as possible (just before
        # the first insert) and held to the commit: what a transaction works out before (a
        # reactor's decisions, a batch's digests) runs beside other processes' appends
        # instead of queueing behind them.
        if not tx.append_locked:
            for statement in self._lock_statements:
                tx.execute(statement)
            tx.append_locked = True

    @contextmanager
    def reading(self) -> Iterator[Tx]:
        with self.datastore.transaction(commit=False) as cur:
            yield Tx(cur, pg=True)

    def refresh_statistics(self, tables: Sequence[str] | None = None) -> None:
        # autovacuum, when on, gets to them only after enough rows changed and a nap between
        # rounds: until then the first batches after a rebuild were planned on empty tables.
        # One transaction per table: ANALYZE holds its lock to the commit, and the log's (which
        # appends lock) is held only while the log is counted.
        if tables is None:
            with self.reading() as tx:
                tables = [r["tablename"] for r in tx.all(
                    "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename")]
        for table in tables:
            with self.datastore.transaction(commit=True) as cur:
                cur.execute(f"ANALYZE {table}")
        if self._analyze_at is not None and EVENTS_TABLE in tables:
            with self.reading() as tx:
                row = tx.one("SELECT reltuples FROM pg_class WHERE oid = to_regclass(%s)", [EVENTS_TABLE])
            self._analyze_at = _next_analysis(row["reltuples"] if row else -1)

    def insert_stored(self, tx: Tx, stored: Sequence[StoredEvent]) -> list[int]:
        if not stored:
            return []
        tx.execute(self._notify_statement)
        # The library inserts an array of a composite type, which psycopg writes out as text
        # in Python, escaping every state with a regular expression: ~50 µs of this process's
        # CPU per event, all of it under the append lock. Four arrays in binary say the same
        # (the same table, the same unnest, positions handed out in the array's order) for
        # a fifteenth of that.
        rows = tx.all(_PG_INSERT_EVENTS, [[e.originator_id for e in stored], [e.originator_version for e in stored],
                                          [e.topic for e in stored], [e.state for e in stored]])
        if self._analyze_at is not None and rows[-1]["notification_id"] >= self._analyze_at:
            self._analyze_due = True  # counted once this append commits (`writing`)
        return [row["notification_id"] for row in rows]

    def close(self) -> None:
        self.datastore.close()


def _next_analysis(counted: float) -> int:
    """The log's size at which to count the tables again: double what was counted last time
    (-1: never counted, as a new store)."""
    return max(1000, 2 * int(counted))


_PG_INSERT_EVENTS = (f"INSERT INTO {EVENTS_TABLE} (originator_id, originator_version, topic, state) "
                     "SELECT * FROM unnest(%b::text[], %b::bigint[], %b::text[], %b::bytea[]) "
                     "RETURNING notification_id")


def open_storage(url: str | None = None, synchronous: str | None = None) -> Storage:
    """`sqlite:///relative.db`, `sqlite:////abs/path.db`, `sqlite://:memory:` or
    `postgresql://user:pass@host:port/db?schema=name` (None: DEFAULT_URL); `synchronous` is
    SQLite's durability (OFF, NORMAL, FULL, the default, or EXTRA)."""
    url = url or DEFAULT_URL
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        path = unquote(parsed.path[1:] if parsed.path.startswith("/") else parsed.path)
        if parsed.netloc == ":memory:" or path == ":memory:":
            path = ":memory:"
        if not path:
            raise ConfigurationError(f"no file in {url!r}: try sqlite:///data/closedloop.db")
        try:
            return SQLiteStorage(url, path, synchronous=synchronous)
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


def database_exists(url: str) -> bool:
    """Whether a closedloop database is already at `url`, found without creating anything:
    SQLite, its file; PostgreSQL, the log's table in the URL's schema. A command that only
    reads asks this first, so that a mistyped URL is said, not answered with a new empty one."""
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        path = unquote(parsed.path[1:] if parsed.path.startswith("/") else parsed.path)
        if parsed.netloc == ":memory:" or path in ("", ":memory:") or "mode=memory" in path:
            return False  # nothing outlives the process that made it
        return Path(path).is_file()
    if parsed.scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        import psycopg

        schema = (parse_qs(parsed.query).get("schema") or ["public"])[0]
        with psycopg.connect(dbname=parsed.path.lstrip("/"), host=parsed.hostname or "127.0.0.1",
                             port=parsed.port or 5432,
                             user=unquote(parsed.username or os.environ.get("PGUSER", "postgres")),
                             password=unquote(parsed.password or os.environ.get("PGPASSWORD", "")),
                             connect_timeout=10) as conn:
            found = conn.execute("SELECT to_regclass(%s)", [f'"{schema}".{EVENTS_TABLE}']).fetchone()
        return found is not None and found[0] is not None
    return True  # not a URL open_storage knows: let it say so
