"""What follows the log keeps its place here: one table of followers, their positions and failures.

Every follower of the log — a view, a reactor, the Kafka publisher — has one row in
`closedloop_followers`: how far it has read, the fingerprint of the rules it was built with,
and, when a stored fact made it fail, the error, that fact's id and its position. The row
moves in the same transaction as what the follower writes, so a crash neither loses nor
repeats a fact.

One failure stops only itself: a follower whose work raises on a fact is rolled back to a
savepoint, the facts before the bad one are kept, and the follower stops at the position
before it with the error on record. The log's appends and every other follower go on;
`resume` lets it try again after a fix.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Sequence, TypeVar

from closedloop.domain.facts import Fact
from closedloop.log.storage import Storage, Tx

FOLLOWERS_TABLE = "closedloop_followers"

# Where positions were kept before there was one table for them: moved on first open.
_LEGACY_TABLES = {
    "view": "closedloop_positions",
    "reactor": "closedloop_reactor_positions",
    "publisher": "closedloop_publisher_positions",
}
_ERROR_CHARS = 2000  # an error's text kept with the failure; the traceback's tail says where

T = TypeVar("T")


@dataclass(frozen=True)
class Place:
    """A follower's row as read inside a transaction."""

    position: int
    quiet_until: int
    failed: bool


@dataclass(frozen=True)
class FollowerStatus:
    """What `closedloop followers`, `/health` and `/metrics` say of one follower."""

    kind: str
    name: str
    position: int
    lag: int
    state: str  # "running" | "failed"
    error: str | None
    failed_position: int | None
    failed_fact: str | None
    failed_at: int | None  # when it failed, ms since the epoch

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "position": self.position, "lag": self.lag,
                "state": self.state, "error": self.error, "failed_position": self.failed_position,
                "failed_fact": self.failed_fact, "failed_at": self.failed_at}


@dataclass(frozen=True)
class Failure:
    """The fact a follower could not take, and why (no fact: the passing of time failed it)."""

    fact: Fact | None
    error: BaseException

    def describe(self) -> str:
        text = "".join(traceback.format_exception_only(type(self.error), self.error)).strip()
        return text[-_ERROR_CHARS:]


def ensure_table(storage: Storage) -> None:
    """Make the followers' table, and move in the positions of tables of earlier versions."""
    storage.create([
        f"CREATE TABLE IF NOT EXISTS {FOLLOWERS_TABLE} (kind TEXT NOT NULL, name TEXT NOT NULL, "
        "position {bigint} NOT NULL, quiet_until {bigint} NOT NULL DEFAULT 0, fingerprint TEXT NOT NULL, "
        "error TEXT, failed_position {bigint}, failed_fact TEXT, failed_at {bigint}, "
        "PRIMARY KEY (kind, name))"
    ])
    legacy = [(kind, table) for kind, table in _LEGACY_TABLES.items() if _table_exists(storage, table)]
    if not legacy:
        return
    with storage.writing() as tx:
        storage.lock_ddl(tx)
        for kind, table in legacy:
            if not _table_exists_tx(tx, storage, table):
                continue  # another process moved it meanwhile
            columns = {"view": "name, position, 0, fingerprint", "reactor": "name, position, quiet_until, fingerprint",
                       "publisher": "name, position, 0, ''"}[kind]
            tx.execute(f"INSERT INTO {FOLLOWERS_TABLE} (kind, name, position, quiet_until, fingerprint) "
                       f"SELECT {tx.q}, {columns} FROM {table} "
                       f"WHERE name NOT IN (SELECT name FROM {FOLLOWERS_TABLE} WHERE kind = {tx.q})", [kind, kind])
            tx.execute(f"DROP TABLE {table}")


def _table_exists(storage: Storage, table: str) -> bool:
    with storage.reading() as tx:
        return _table_exists_tx(tx, storage, table)


def _table_exists_tx(tx: Tx, storage: Storage, table: str) -> bool:
    if storage.dialect == "sqlite":
        return tx.one(f"SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = {tx.q}", [table]) is not None
    return tx.one(f"SELECT to_regclass({tx.q}) AS t", [table])["t"] is not None


class Followers:
    """The rows of one kind of follower (views, reactors or the publisher) kept by one process."""

    def __init__(self, storage: Storage, kind: str, names: Sequence[str]) -> None:
        self.storage = storage
        self.kind = kind
        self.names = list(names)
        # Several processes keeping the same followers (PostgreSQL): lock the rows read, so the
        # second waits for the first, or skips the followers another is working on
        # (`skip_busy`); SQLite's one writer at a time already serializes them.
        self._lock = " ORDER BY name FOR UPDATE" if storage.dialect == "postgresql" else ""
        ensure_table(storage)

    def skip_busy(self) -> None:
        """Pass over the followers another process is working on now (PostgreSQL SKIP LOCKED)."""
        if self._lock and "SKIP LOCKED" not in self._lock:
            self._lock += " SKIP LOCKED"

    def _mine(self, tx: Tx, names: Sequence[str] | None = None) -> tuple[str, list[Any]]:
        among, params = tx.in_list("name", list(self.names if names is None else names))
        return f"kind = {tx.q} AND {among}", [self.kind, *params]

    # -- reading ---------------------------------------------------------------------------------

    def read(self) -> dict[str, Place]:
        """Each follower's place, outside a transaction; one that has no row yet is at 0."""
        if not self.names:
            return {}
        with self.storage.reading() as tx:
            known = self.places(tx, lock=False)
        return {n: known.get(n, Place(0, 0, False)) for n in self.names}

    def positions(self) -> dict[str, int]:
        """Each follower's position; one that has no row yet is at 0."""
        return {n: p.position for n, p in self.read().items()}

    def running(self) -> list[str]:
        """The followers of this set that have not stopped on a failure."""
        return [n for n, p in self.read().items() if not p.failed]

    def places(self, tx: Tx, names: Sequence[str] | None = None, lock: bool = True) -> dict[str, Place]:
        """The rows of these followers inside a write transaction, locked against other
        processes (a follower another process holds is missing after `skip_busy`)."""
        where, params = self._mine(tx, names)
        rows = tx.all(f"SELECT name, position, quiet_until, error FROM {FOLLOWERS_TABLE} WHERE {where}"
                      f"{self._lock if lock else ''}", params)
        return {r["name"]: Place(r["position"], r["quiet_until"], r["error"] is not None) for r in rows}

    def fingerprint(self, tx: Tx, name: str) -> str | None:
        row = tx.one(f"SELECT fingerprint FROM {FOLLOWERS_TABLE} WHERE kind = {tx.q} AND name = {tx.q}",
                     [self.kind, name])
        return None if row is None else row["fingerprint"]

    # -- writing ---------------------------------------------------------------------------------

    def reset(self, tx: Tx, name: str, fingerprint: str, position: int = 0, quiet_until: int = 0) -> None:
        """Start a follower again (new, or built by other rules): its failure is forgotten."""
        tx.execute(f"DELETE FROM {FOLLOWERS_TABLE} WHERE kind = {tx.q} AND name = {tx.q}", [self.kind, name])
        tx.execute(f"INSERT INTO {FOLLOWERS_TABLE} (kind, name, position, quiet_until, fingerprint) "
                   f"VALUES ({tx.marks(5)})", [self.kind, name, position, quiet_until, fingerprint])

    def ensure(self, tx: Tx, name: str, position: int = 0, fingerprint: str = "") -> None:
        """A row for a follower that keeps no rules of its own (the publisher), if missing."""
        if self.fingerprint(tx, name) is None:
            self.reset(tx, name, fingerprint, position)

    def advance(self, tx: Tx, name: str, to: int, expected: int | None = None) -> bool:
        """Move a follower to `to`; with `expected`, only from there (False: another process
        moved it meanwhile)."""
        sql = f"UPDATE {FOLLOWERS_TABLE} SET position = {tx.q} WHERE kind = {tx.q} AND name = {tx.q}"
        params: list[Any] = [to, self.kind, name]
        if expected is not None:
            sql += f" AND position = {tx.q}"
            params.append(expected)
        tx.execute(sql, params)
        return tx.rowcount() == 1

    def fail(self, tx: Tx, name: str, failure: Failure) -> None:
        """Stop a follower at the fact it could not take, with the error on record."""
        tx.execute(f"UPDATE {FOLLOWERS_TABLE} SET error = {tx.q}, failed_position = {tx.q}, failed_fact = {tx.q}, "
                   f"failed_at = {tx.q} WHERE kind = {tx.q} AND name = {tx.q}",
                   [failure.describe(), failure.fact.position if failure.fact else None,
                    failure.fact.id if failure.fact else None, int(time.time() * 1000),
                    self.kind, name])


def take(tx: Tx, facts: Sequence[Fact], work: Callable[[Sequence[Fact]], T],
         savepoint: str = "closedloop_follower") -> tuple[list[T], int | None, Failure | None]:
    """Run `work` on `facts` inside a savepoint; when it raises, undo it and take the facts one
    at a time until the one that fails. Returns what each successful call gave, the position
    of the last fact taken (None: none) and the failure (None: all were taken).

    The follower's own rows are rolled back with the savepoint; what it keeps in memory is its
    own to keep consistent (the views and reactors here keep nothing between batches)."""
    tx.execute(f"SAVEPOINT {savepoint}")
    try:
        out = work(facts)
    except Exception:  # noqa: BLE001 - any error of one follower is that follower's failure
        tx.execute(f"ROLLBACK TO SAVEPOINT {savepoint}")
        tx.execute(f"RELEASE SAVEPOINT {savepoint}")
    else:
        tx.execute(f"RELEASE SAVEPOINT {savepoint}")
        return [out], facts[-1].position if facts else None, None
    results: list[T] = []
    last: int | None = None
    for fact in facts:
        tx.execute(f"SAVEPOINT {savepoint}")
        try:
            results.append(work([fact]))
        except Exception as exc:  # noqa: BLE001
            tx.execute(f"ROLLBACK TO SAVEPOINT {savepoint}")
            tx.execute(f"RELEASE SAVEPOINT {savepoint}")
            return results, last, Failure(fact, exc)
        tx.execute(f"RELEASE SAVEPOINT {savepoint}")
        last = fact.position
    # the batch failed as a whole but each fact alone went through (an error of the batch's
    # size or combination): what was taken one by one stands
    return results, last, None


def status(storage: Storage, head: Callable[[], int]) -> list[FollowerStatus]:
    """Every follower on record, with its lag behind the log's head.

    The head is read after the positions: read before, a follower that moved on meanwhile
    (its own decisions appended) would look current while the decisions wait for the others,
    and "every lag 0" would be said before the work is done. Only reads: /health asks this
    often, and making the table here would take the writer's lock at every call."""
    with storage.reading() as tx:
        if not _table_exists_tx(tx, storage, FOLLOWERS_TABLE):
            return []
        rows = tx.all(f"SELECT kind, name, position, error, failed_position, failed_fact, failed_at "
                      f"FROM {FOLLOWERS_TABLE} ORDER BY kind, name")
    at = head()
    return [FollowerStatus(r["kind"], r["name"], r["position"], max(0, at - r["position"]),
                           "failed" if r["error"] is not None else "running", r["error"], r["failed_position"],
                           r["failed_fact"], r["failed_at"]) for r in rows]


def position(storage: Storage, kind: str, name: str) -> int:
    """One follower's position, only reading (0: none on record, or no table yet)."""
    with storage.reading() as tx:
        if not _table_exists_tx(tx, storage, FOLLOWERS_TABLE):
            return 0
        row = tx.one(f"SELECT position FROM {FOLLOWERS_TABLE} WHERE kind = {tx.q} AND name = {tx.q}", [kind, name])
    return 0 if row is None else row["position"]


def resume(storage: Storage, name: str, kind: str | None = None) -> int:
    """Let failed followers named `name` try again from where they stopped; returns how many."""
    ensure_table(storage)
    with storage.writing() as tx:
        sql = (f"UPDATE {FOLLOWERS_TABLE} SET error = NULL, failed_position = NULL, failed_fact = NULL, "
               f"failed_at = NULL WHERE name = {tx.q} AND error IS NOT NULL")
        params: list[Any] = [name]
        if kind is not None:
            sql += f" AND kind = {tx.q}"
            params.append(kind)
        tx.execute(sql, params)
        return tx.rowcount()
