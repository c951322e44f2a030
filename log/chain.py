"""Tamper evidence: every stored event is chained by hash to the one before it.

hash(n) = sha256(hash(n-1) | position | stream | version | type | stored bytes). The chain
lives beside the log and is written in the same transaction as the events, so an event
changed, removed, inserted or moved in the database afterwards no longer matches it.
`verify` walks the log and names the first position where it does not. Checkpoints
(position, chain hash, time) exported to a third party prove later that the log up to them
was not rewritten, even by someone who rewrote the chain too.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from eventsourcing.persistence import StoredEvent

from closedloop.log.storage import EVENTS_TABLE, Storage, Tx

CHAIN_TABLE = "closedloop_chain"
CHECKPOINTS_TABLE = "closedloop_checkpoints"
GENESIS = "0" * 64


def link(previous: str, position: int, stream: str, version: int, topic: str, state: bytes) -> str:
    h = hashlib.sha256()
    h.update(f"{previous}\x1f{position}\x1f{stream}\x1f{version}\x1f{topic}\x1f".encode())
    h.update(state)
    return h.hexdigest()


def create_statements() -> list[str]:
    return [
        f"CREATE TABLE IF NOT EXISTS {CHAIN_TABLE} (position {{bigint}} PRIMARY KEY, hash TEXT NOT NULL)",
        f"CREATE TABLE IF NOT EXISTS {CHECKPOINTS_TABLE} (position {{bigint}} PRIMARY KEY, hash TEXT NOT NULL, "
        "taken {bigint} NOT NULL)",
    ]


def last_link(tx: Tx) -> tuple[int, str]:
    row = tx.one(f"SELECT position, hash FROM {CHAIN_TABLE} ORDER BY position DESC LIMIT 1")
    return (row["position"], row["hash"]) if row else (0, GENESIS)


def extend(tx: Tx, previous: str, stored: Sequence[StoredEvent], positions: Sequence[int]) -> str:
    """Chain newly appended events (inside the append's transaction); returns the new tip."""
    rows = []
    for s, pos in zip(stored, positions):
        previous = link(previous, pos, s.originator_id, s.originator_version, s.topic, s.state)
        rows.append((pos, previous))
    tx.insert_many(CHAIN_TABLE, ("position", "hash"), rows)
    return previous


def _position_column(storage: Storage) -> str:
    return "rowid" if storage.dialect == "sqlite" else "notification_id"


def seal_unchained(storage: Storage) -> int:
    """Chain a log written before the chain existed (only when the chain is empty)."""
    col = _position_column(storage)
    with storage.writing(append=True) as tx:
        if tx.one(f"SELECT COUNT(*) AS n FROM {CHAIN_TABLE}")["n"]:
            return 0
        rows = tx.all(f"SELECT {col} AS position, originator_id, originator_version, topic, state "
                      f"FROM {EVENTS_TABLE} ORDER BY {col}")
        previous = GENESIS
        out = []
        for r in rows:
            previous = link(previous, r["position"], r["originator_id"], r["originator_version"], r["topic"],
                            bytes(r["state"]))
            out.append((r["position"], previous))
        tx.insert_many(CHAIN_TABLE, ("position", "hash"), out)
        return len(out)


@dataclass
class Verdict:
    ok: bool
    checked: int
    head: int
    tip: str
    problem: str | None = None
    position: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "checked": self.checked, "head": self.head, "tip": self.tip,
                "problem": self.problem, "position": self.position}


def _walk(storage: Storage, batch: int) -> Iterator[tuple[int | None, Any, int | None, str | None]]:
    """Events and chain links side by side in position order (a full outer merge)."""
    col = _position_column(storage)
    after_e = after_c = 0
    events: list[Any] = []
    links: list[Any] = []
    ei = ci = 0
    done_e = done_c = False
    while True:
        if ei == len(events) and not done_e:
            with storage.reading() as tx:
                events = tx.all(f"SELECT {col} AS position, originator_id, originator_version, topic, state "
                                f"FROM {EVENTS_TABLE} WHERE {col} > {tx.q} ORDER BY {col} LIMIT {tx.q}", [after_e, batch])
            ei = 0
            done_e = not events
            if events:
                after_e = events[-1]["position"]
        if ci == len(links) and not done_c:
            with storage.reading() as tx:
                links = tx.all(f"SELECT position, hash FROM {CHAIN_TABLE} WHERE position > {tx.q} ORDER BY position "
                               f"LIMIT {tx.q}", [after_c, batch])
            ci = 0
            done_c = not links
            if links:
                after_c = links[-1]["position"]
        e = events[ei] if ei < len(events) else None
        c = links[ci] if ci < len(links) else None
        if e is None and c is None:
            return
        ep = e["position"] if e is not None else None
        cp = c["position"] if c is not None else None
        if cp is None or (ep is not None and ep < cp):
            ei += 1
            yield ep, e, None, None
        elif ep is None or cp < ep:
            ci += 1
            yield None, None, cp, c["hash"]
        else:
            ei += 1
            ci += 1
            yield ep, e, cp, c["hash"]


def verify(storage: Storage, progress: Callable[[int], None] | None = None, batch: int = 20_000,
           against: Sequence[dict[str, Any]] = ()) -> Verdict:
    """Walk the whole log against its chain; stop at the first position that does not hold.

    `against`: checkpoints exported earlier; the hash recomputed from the events must equal
    each one's at its position, which holds even if the chain table itself was rewritten.
    """
    expected_at = {int(c["position"]): c["hash"] for c in against}
    previous = GENESIS
    checked = 0
    head = 0
    for ep, e, cp, stored_hash in _walk(storage, batch):
        if e is None:
            return Verdict(False, checked, head, previous,
                           f"the event at position {cp} was removed from the log (its chain link remains)", cp)
        if stored_hash is None:
            return Verdict(False, checked, head, previous,
                           f"an event was inserted at position {ep}: it has no link in the chain", ep)
        expected = link(previous, ep, e["originator_id"], e["originator_version"], e["topic"], bytes(e["state"]))
        if expected != stored_hash:
            return Verdict(False, checked, head, previous,
                           f"the event at position {ep} was altered or moved: its content does not match "
                           "the chain", ep)
        if ep in expected_at and expected_at.pop(ep) != expected:
            return Verdict(False, checked, head, previous,
                           f"the log up to position {ep} was rewritten since a checkpoint was taken there "
                           "(events and chain agree with each other, not with the checkpoint)", ep)
        previous = stored_hash
        head = ep
        checked += 1
        if progress and checked % 10_000 == 0:
            progress(10_000)
    if expected_at:
        position = min(expected_at)
        return Verdict(False, checked, head, previous,
                       f"a checkpoint names position {position}, which the log no longer reaches", position)
    return Verdict(True, checked, head, previous)


def take_checkpoint(storage: Storage, now: int) -> dict[str, Any]:
    with storage.writing() as tx:
        position, tip = last_link(tx)
        if position:
            tx.execute(f"INSERT INTO {CHECKPOINTS_TABLE} (position, hash, taken) VALUES ({tx.marks(3)}) "
                       "ON CONFLICT (position) DO NOTHING", [position, tip, now])
    return {"position": position, "hash": tip, "taken": now}


def checkpoints(storage: Storage) -> list[dict[str, Any]]:
    with storage.reading() as tx:
        rows = tx.all(f"SELECT position, hash, taken FROM {CHECKPOINTS_TABLE} ORDER BY position")
    return [{"position": r["position"], "hash": r["hash"], "taken": r["taken"]} for r in rows]
