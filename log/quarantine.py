"""Rejected events, kept where an operator can see, correct and re-submit them.

Nothing a producer sends is dropped: what fails the contract (or reuses an event id with
other content) is stored here with the reasons, as it was received.
"""

from __future__ import annotations

from typing import Any

import orjson

from closedloop.contract.events import Rejection
from closedloop.domain.facts import iso
from closedloop.log.eventlog import now_ms
from closedloop.log.storage import Storage, Tx

TABLE = "closedloop_quarantine"


class Quarantine:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        storage.create([
            f"CREATE TABLE IF NOT EXISTS {TABLE} (qid {{serial}}, received {{bigint}} NOT NULL, "
            "channel TEXT NOT NULL, source TEXT, event_id TEXT, type TEXT, errors TEXT NOT NULL, "
            "body TEXT NOT NULL, status TEXT NOT NULL, resolved {bigint}, resolution TEXT)",
            f"CREATE INDEX IF NOT EXISTS {TABLE}_status ON {TABLE} (status, qid)",
        ])

    def keep(self, rejections: list[Rejection], channel: str) -> list[int]:
        if not rejections:
            return []
        with self.storage.writing() as tx:
            return self.keep_in(tx, rejections, [channel] * len(rejections))

    def keep_in(self, tx: Tx, rejections: list[Rejection], channels: list[str]) -> list[int]:
        """Keep rejections inside the caller's transaction: a Kafka consumer quarantines a
        poison message in the same commit as the offset that moves past it."""
        received = now_ms()
        ids = []
        for r, channel in zip(rejections, channels, strict=True):
            body = _as_text(r.raw)
            row = tx.one(
                f"INSERT INTO {TABLE} (received, channel, source, event_id, type, errors, body, status) "
                f"VALUES ({tx.marks(7)}, 'open') RETURNING qid",
                [received, channel, r.source, r.id, r.type, orjson.dumps(r.errors).decode(), body],
            )
            ids.append(row["qid"])
        return ids

    def list(self, status: str | None = "open", limit: int = 100, offset: int = 0) -> dict[str, Any]:
        q = self.storage.q
        where, params = (f"WHERE status = {q}", [status]) if status else ("", [])
        with self.storage.reading() as tx:
            total = tx.one(f"SELECT COUNT(*) AS n FROM {TABLE} {where}", params)["n"]
            rows = tx.all(f"SELECT * FROM {TABLE} {where} ORDER BY qid LIMIT {q} OFFSET {q}",
                          params + [limit, offset])
        return {"total": int(total), "limit": limit, "offset": offset, "items": [_entry(r) for r in rows]}

    def get(self, qid: int) -> dict[str, Any] | None:
        with self.storage.reading() as tx:
            row = tx.one(f"SELECT * FROM {TABLE} WHERE qid = {tx.q}", [qid])
        return _entry(row) if row else None

    def resolve(self, qid: int, status: str, resolution: str) -> None:
        with self.storage.writing() as tx:
            q = tx.q
            tx.execute(f"UPDATE {TABLE} SET status = {q}, resolved = {q}, resolution = {q} WHERE qid = {q}",
                       [status, now_ms(), resolution, qid])


def _as_text(raw: Any) -> str:
    if isinstance(raw, bytes):
        return raw.decode("utf-8", errors="replace")
    if isinstance(raw, str):
        return raw
    try:
        return orjson.dumps(raw).decode()
    except TypeError:
        return repr(raw)


def _entry(row: Any) -> dict[str, Any]:
    body: Any = row["body"]
    try:
        body = orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    return {
        "qid": row["qid"],
        "received": iso(row["received"]),
        "channel": row["channel"],
        "source": row["source"],
        "id": row["event_id"],
        "type": row["type"],
        "errors": orjson.loads(row["errors"]),
        "status": row["status"],
        "resolved": iso(row["resolved"]),
        "resolution": row["resolution"],
        "event": body,
    }
