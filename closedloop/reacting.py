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
from closedloop.process import ENGINE_SOURCE, POSITIONS_TABLE
from closedloop.storage import Tx

CHUNK = 400


def replaying(tx: Tx, name: str, facts: Sequence[Fact]) -> bool:
    """True when these facts are being folded to rebuild state, not decided on."""
    row = tx.one(f"SELECT quiet_until FROM {POSITIONS_TABLE} WHERE name = ?", [name])
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


def rows_by(tx: Tx, sql: str, keys: Iterable[Any]) -> list[Any]:
    """Run `sql` (with one `{marks}` for an IN list) over the keys, in chunks."""
    out: list[Any] = []
    for chunk in chunked(keys):
        out.extend(tx.all(sql.format(marks=",".join("?" * len(chunk))), chunk))
    return out


def rows_by_pairs(tx: Tx, sql: str, pairs: Iterable[tuple[Any, Any]]) -> list[Any]:
    """Run `sql` (joining `k(a, b)`, given as `{pairs}`) over pairs of keys, in chunks.

    A join from a VALUES list, so both databases look each pair up by index (SQLite scans
    the whole table for a row-value IN)."""
    out: list[Any] = []
    items = sorted(set(pairs))
    for i in range(0, len(items), CHUNK):
        chunk = items[i : i + CHUNK]
        values = ",".join(["(?,?)"] * len(chunk))
        out.extend(tx.all(sql.format(pairs=f"k(a, b) AS (VALUES {values})"), [v for p in chunk for v in p]))
    return out
