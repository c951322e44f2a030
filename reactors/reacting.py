"""What the network's reactors share: bulk lookups by key, short ids, and knowing a replay.

A reactor whose rules changed is rebuilt by folding the log "quietly": its decisions are
thrown away, because the log already holds what was decided under the old rules. A reactor
that remembers its own decisions (a permit ledger, a dispatch) must then take them from the
log as they were, not derive them again under the new rules: `replaying` tells it which
mode it is in.
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterable, Iterator, Sequence

from closedloop.domain.facts import Fact
from closedloop.log.followers import FOLLOWERS_TABLE
from closedloop.log.storage import Tx
from closedloop.reactors.process import ENGINE_SOURCE, KIND

CHUNK = 400


def replaying(tx: Tx, name: str, facts: Sequence[Fact]) -> bool:
    """True when these facts are being folded to rebuild state, not decided on."""
    row = tx.one(f"SELECT quiet_until FROM {FOLLOWERS_TABLE} WHERE kind = {tx.q} AND name = {tx.q}", [KIND, name])
    return bool(row) and bool(facts) and (facts[-1].position or 0) <= row["quiet_until"]


def source_of(reactor: str) -> str:
    return f"{ENGINE_SOURCE}/{reactor}"


def digest(*parts: str) -> str:
    """A short, stable id fragment for a decision's cause."""
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).hexdigest()


def chunked(keys: Iterable[Any], size: int = CHUNK) -> Iterator[list[Any]]:
    items = sorted({k for k in keys if k is not None})
    for i in range(0, len(items), size):
        yield items[i : i + size]


def rows_by(tx: Tx, sql: str, column: str, keys: Iterable[Any]) -> list[Any]:
    """Run `sql` over the keys, in chunks: its one slot `{among}` is filled with `column`
    among a chunk of them (`Tx.in_list`), and its parameters are the chunk's."""
    out: list[Any] = []
    for chunk in chunked(keys):
        among, params = tx.in_list(column, chunk)
        out.extend(tx.all(sql.format(among=among), params))
    return out


def rows_by_pairs(tx: Tx, sql: str, pairs: Iterable[tuple[Any, Any]]) -> list[Any]:
    """Run `sql` (joining `k(a, b)`, given as `{pairs}`) over pairs of keys, in chunks.

    A join from a VALUES list, so both databases look each pair up by index (SQLite scans
    the whole table for a row-value IN)."""
    out: list[Any] = []
    items = sorted(set(pairs))
    for i in range(0, len(items), CHUNK):
        chunk = items[i : i + CHUNK]
        values = ",".join([f"({tx.q},{tx.q})"] * len(chunk))
        out.extend(tx.all(sql.format(pairs=f"k(a, b) AS (VALUES {values})"), [v for p in chunk for v in p]))
    return out


# --- the world's time as the log has told it ---------------------------------------------------
def watermark_table(name: str) -> str:
    """DDL for a reactor's watermark: the newest world time it has seen, and when that was recorded."""
    return f"CREATE TABLE {name} (id INTEGER PRIMARY KEY, world {{bigint}} NOT NULL, recorded {{bigint}} NOT NULL)"


def advance_watermark(tx: Tx, table: str, facts: Sequence[Fact], own_source: str) -> None:
    newest = max((f for f in facts if f.source != own_source), key=lambda f: f.time_ms, default=None)
    if newest is None:
        return
    row = tx.one(f"SELECT world FROM {table} WHERE id = 1")
    if row is not None and row["world"] >= newest.time_ms:
        return
    recorded = newest.recorded_ms if newest.recorded_ms is not None else newest.time_ms
    tx.execute(f"DELETE FROM {table} WHERE id = 1")
    tx.execute(f"INSERT INTO {table} (id, world, recorded) VALUES (1, {tx.q}, {tx.q})", [newest.time_ms, recorded])


def horizon(tx: Tx, table: str, now: int, behind: int) -> int:
    """Up to when time may decide (deadlines judged missed): now, unless the stream is behind.

    When the newest fact was recorded more than `behind` after it happened, the producers are
    sending history (a backfill, a demo, a producer catching up): facts about the minutes
    after it are still on their way, so deadlines are judged at the stream's world time plus
    the wall-clock time that has passed since, not at now. Otherwise a job whose acceptance
    sits in the next batch would be alarmed and escalated in between.
    """
    row = tx.one(f"SELECT world, recorded FROM {table} WHERE id = 1")
    if row is None or row["recorded"] - row["world"] <= behind:
        return now
    return min(now, row["world"] + max(now - row["recorded"], 0))
