"""The one log: every fact, appended once, never changed.

Appending is idempotent on the contract's key (`source`, `id`): the receipt of each key is
written in the same transaction as the fact, so a resend is a no-op even across restarts
and processes. A resend whose content differs from the original is not silently accepted
either: it is reported as a conflict (the caller quarantines it).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from itertools import islice
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

import orjson
from eventsourcing.persistence import IntegrityError, StoredEvent

from closedloop.log import chain
from closedloop.domain.facts import Fact, stored_fact
from closedloop.log.storage import EVENTS_TABLE, Storage, Tx

RECEIPTS_TABLE = "closedloop_receipts"
_CHUNK = 400


def now_ms() -> int:
    return int(time.time() * 1000)


def digest(fact: Fact) -> str:
    """What a resend must match to be the same event."""
    body = orjson.dumps(
        [fact.type, fact.subject, fact.time_ms, fact.data], option=orjson.OPT_SORT_KEYS
    )
    return hashlib.blake2b(body, digest_size=12).hexdigest()


def encode(fact: Fact, recorded_ms: int) -> bytes:
    return orjson.dumps(
        {"source": fact.source, "id": fact.id, "subject": fact.subject, "time": fact.time_ms,
         "recorded": recorded_ms, "data": fact.data}
    )


def decode(position: int, topic: str, state: bytes) -> Fact:
    body = orjson.loads(state)
    return stored_fact(topic, body["subject"], body["source"], body["id"], body["time"], body["data"],
                       body["recorded"], position)


@dataclass
class Appended:
    """What an append did with each fact it was given."""

    stored: list[Fact] = field(default_factory=list)
    duplicates: list[Fact] = field(default_factory=list)
    # (fact, position of the original) where a resend's content differs from the original
    conflicts: list[tuple[Fact, int]] = field(default_factory=list)

    @property
    def head(self) -> int | None:
        return self.stored[-1].position if self.stored else None


class EventLog:
    def __init__(self, storage: Storage, clock: Callable[[], int] = now_ms, cache_size: int = 200_000,
                 recent_size: int = 30_000):
        self.storage = storage
        self.clock = clock
        storage.create([
            f"CREATE TABLE IF NOT EXISTS {RECEIPTS_TABLE} (source TEXT NOT NULL, event_id TEXT NOT NULL, "
            "position {bigint} NOT NULL, digest TEXT NOT NULL, PRIMARY KEY (source, event_id))",
            *chain.create_statements(),
        ])
        chain.seal_unchained(storage)
        # Last version of each stream this process wrote; another writer makes it stale,
        # which the log's unique (stream, version) key detects, and the append retries.
        self._versions: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()
        self._cache_size = cache_size
        # The facts this process has just appended or read, by position. After an append the
        # same facts are read back by every view and reactor that another process's appends
        # put out of step (consumers sharing a topic), and by each of them separately: the row
        # is fetched again, but not decoded again. The log is append-only, so a position once
        # committed never holds another fact; facts enter only after their commit.
        self._recent: dict[int, Fact] = {}
        self._recent_size = recent_size
        self._recent_lock = threading.Lock()

    # --- writing ---------------------------------------------------------------------------
    def append(self, facts: Sequence[Fact], also: Callable[[Tx, Appended], None] | None = None) -> Appended:
        """Append what is new of `facts`. `also` runs in the same transaction, after the facts
        are in: what must commit with them or not at all (a consumer's offsets, a process
        manager's position) goes there."""
        def work(session: "AppendSession") -> Appended:
            result = session.append(facts)
            if also is not None:
                also(session.tx, result)
            return result

        return self.transaction(work)

    def transaction(self, work: Callable[["AppendSession"], Any]) -> Any:
        """Run `work` in one append transaction, retried whole if another writer got in first."""
        for attempt in range(5):
            session = AppendSession(self)
            try:
                with self._lock:  # one append at a time per process; the database orders processes
                    # the append lock is taken by the session's first append, not here
                    with self.storage.writing() as tx:
                        session.tx = tx
                        out = work(session)
                    self._remember(session.stored)
                    # Only once committed does this process trust the versions it wrote.
                    for stream, version in session.versions.items():
                        self._versions[stream] = version
                        self._versions.move_to_end(stream)
                    while len(self._versions) > self._cache_size:
                        self._versions.popitem(last=False)
                    return out
            except IntegrityError:
                self._versions.clear()
                if attempt == 4:
                    raise
        raise AssertionError("unreachable")

    def _receipts(self, tx, keys: set[tuple[str, str]]) -> dict[tuple[str, str], tuple[int, str]]:
        found: dict[tuple[str, str], tuple[int, str]] = {}
        keys_list = list(keys)
        for i in range(0, len(keys_list), _CHUNK):
            chunk = keys_list[i : i + _CHUNK]
            values = ",".join([f"({tx.q},{tx.q})"] * len(chunk))
            params = [v for key in chunk for v in key]
            # a join from the keys, so that both databases look each one up by primary key
            # (SQLite scans the whole table for a row-value IN)
            rows = tx.all(
                f"WITH k(s, i) AS (VALUES {values}) SELECT r.source, r.event_id, r.position, r.digest "
                f"FROM k JOIN {RECEIPTS_TABLE} r ON r.source = k.s AND r.event_id = k.i",
                params,
            )
            for row in rows:
                found[(row["source"], row["event_id"])] = (row["position"], row["digest"])
        return found

    def _stream_versions(self, tx, streams: set[str]) -> dict[str, int]:
        versions: dict[str, int] = {}
        missing = []
        for s in streams:
            v = self._versions.get(s)
            if v is None:
                missing.append(s)
            else:
                versions[s] = v
        for i in range(0, len(missing), _CHUNK):
            among, params = tx.in_list("originator_id", missing[i : i + _CHUNK])
            rows = tx.all(
                f"SELECT originator_id AS stream, MAX(originator_version) AS version FROM {EVENTS_TABLE} "
                f"WHERE {among} GROUP BY originator_id",
                params,
            )
            for row in rows:
                versions[row["stream"]] = row["version"]
        return versions

    # --- reading ---------------------------------------------------------------------------
    def head(self) -> int:
        return self.storage.recorder.max_notification_id() or 0

    def read(self, after: int = 0, limit: int = 1000, upto: int | None = None) -> list[Fact]:
        """Facts in log order after position `after` (and not beyond `upto`)."""
        # The recorder's select_notifications builds an object per row that is thrown away
        # at once; reading its table straight into facts makes a replay a third faster.
        col = "rowid" if self.storage.dialect == "sqlite" else "notification_id"
        q = self.storage.q
        bound = f" AND {col} <= {q}" if upto is not None else ""
        params = [after] + ([upto] if upto is not None else []) + [limit]
        with self.storage.reading() as tx:
            rows = tx.all(
                f"SELECT {col} AS position, topic, state FROM {EVENTS_TABLE} WHERE {col} > {q}{bound} "
                f"ORDER BY {col} LIMIT {q}",
                params,
            )
        recent = self._recent
        if self.storage.dialect == "sqlite":
            facts = [recent.get(r[0]) or decode(r[0], r[1], r[2]) for r in rows]
        else:
            facts = [recent.get(r["position"]) or decode(r["position"], r["topic"], bytes(r["state"])) for r in rows]
        self._remember(facts)
        return facts

    def _remember(self, facts: list[Fact]) -> None:
        if not self._recent_size or not facts:
            return
        with self._recent_lock:
            recent = self._recent
            for fact in facts:
                recent[fact.position] = fact  # type: ignore[index]
            over = len(recent) - self._recent_size
            if over > 0:  # the oldest remembered go first (a dict keeps insertion order)
                for position in list(islice(recent, over)):
                    del recent[position]

    def follow(self, after: int = 0, batch: int = 2000, upto: int | None = None) -> Iterator[list[Fact]]:
        """Batches of facts from `after` to the head (or `upto`) as it stands now."""
        while True:
            facts = self.read(after, batch, upto)
            if not facts:
                return
            yield facts
            after = facts[-1].position or after

    def stream(self, stream: str) -> list[Fact]:
        """One entity's history, in the order it was recorded."""
        # not the recorder's select_events: a fact carries its position, which that does not give
        col = "rowid" if self.storage.dialect == "sqlite" else "notification_id"
        with self.storage.reading() as tx:
            rows = tx.all(
                f"SELECT {col} AS position, topic, state FROM {EVENTS_TABLE} "
                f"WHERE originator_id = {tx.q} ORDER BY originator_version",
                [stream],
            )
        return [decode(r["position"], r["topic"], bytes(r["state"])) for r in rows]

    def stream_in(self, tx: Tx, stream: str) -> list[Fact]:
        """One entity's history, read inside a transaction already open (a reactor's)."""
        col = "rowid" if self.storage.dialect == "sqlite" else "notification_id"
        rows = tx.all(f"SELECT {col} AS position, topic, state FROM {EVENTS_TABLE} WHERE originator_id = {tx.q} "
                      "ORDER BY originator_version", [stream])
        return [decode(r["position"], r["topic"], bytes(r["state"])) for r in rows]

    def receipt(self, source: str, event_id: str) -> int | None:
        with self.storage.reading() as tx:
            row = tx.one(f"SELECT position FROM {RECEIPTS_TABLE} WHERE source = {tx.q} AND event_id = {tx.q}",
                         [source, event_id])
        return row["position"] if row else None


class AppendSession:
    """Appends inside one transaction of the log; see `EventLog.transaction`."""

    def __init__(self, log: EventLog) -> None:
        self.log = log
        self.tx: Tx = None  # type: ignore[assignment]  # set when the transaction opens
        self.versions: dict[str, int] = {}
        self.tip: str | None = None  # the chain's last hash, once read in this transaction
        self.stored: list[Fact] = []  # every fact this transaction appended, in log order

    def append(self, facts: Sequence[Fact]) -> Appended:
        log, tx = self.log, self.tx
        result = Appended()
        if not facts:
            return result
        known = log._receipts(tx, {f.key for f in facts})
        fresh: list[tuple[Fact, str]] = []
        seen: dict[tuple[str, str], str] = {}
        for fact in facts:
            d = digest(fact)
            prior = known.get(fact.key)
            if prior is None and fact.key in seen:
                prior = (0, seen[fact.key])
            if prior is not None:
                if prior[1] == d:
                    result.duplicates.append(fact)
                else:
                    result.conflicts.append((fact, prior[0]))
                continue
            seen[fact.key] = d
            fresh.append((fact, d))
        if not fresh:
            return result
        recorded = log.clock()
        encoded = [encode(fact, recorded) for fact, _ in fresh]
        # from here to the commit, other processes' appends wait (PostgreSQL): only what
        # needs the log's order is done under the lock
        log.storage.lock_for_append(tx)
        missing = {f.stream for f, _ in fresh} - set(self.versions)
        self.versions.update(log._stream_versions(tx, missing))
        stored_events = []
        for (fact, _), state in zip(fresh, encoded):
            stream = fact.stream
            version = self.versions.get(stream, 0) + 1
            self.versions[stream] = version
            stored_events.append(StoredEvent(stream, version, fact.type, state))
        positions = log.storage.insert_stored(tx, stored_events)
        if self.tip is None:
            self.tip = chain.last_link(tx)[1]
        self.tip = chain.extend(tx, self.tip, stored_events, positions)
        tx.insert_many(RECEIPTS_TABLE, ("source", "event_id", "position", "digest"),
                       [(f.source, f.id, pos, d) for (f, d), pos in zip(fresh, positions)])
        result.stored = [
            Fact(f.type, f.subject, f.source, f.id, f.time_ms, f.data, recorded, pos)
            for (f, _), pos in zip(fresh, positions)
        ]
        self.stored += result.stored
        return result


def batched(items: Iterable, size: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
