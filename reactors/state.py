"""The little state a reactor keeps between batches: JSON documents by key, in one table.

A reactor folds a batch into the documents it touches, loaded once and written back once,
inside the transaction that also records its decisions and its position in the log.
"""

from __future__ import annotations

from typing import Any, Iterable

import orjson

from closedloop.log.storage import Tx


class Documents:
    """`key -> dict` in table `name`; `get` loads lazily, `flush` writes what changed."""

    def __init__(self, table: str) -> None:
        self.table = table

    def create_statement(self) -> str:
        return f"CREATE TABLE {self.table} (key TEXT PRIMARY KEY, doc TEXT NOT NULL)"

    def session(self, tx: Tx) -> "DocumentSession":
        return DocumentSession(self.table, tx)


class DocumentSession:
    """The documents one batch touches, inside the reactor's transaction (`tx`)."""

    def __init__(self, table: str, tx: Tx) -> None:
        self.table = table
        self.tx = tx
        self.docs: dict[str, dict[str, Any] | None] = {}
        self.dirty: set[str] = set()

    def load(self, keys: Iterable[str]) -> None:
        need = sorted({k for k in keys if k not in self.docs})
        for i in range(0, len(need), 400):
            among, params = self.tx.in_list("key", need[i : i + 400])
            rows = self.tx.all(f"SELECT key, doc FROM {self.table} WHERE {among}", params)
            for row in rows:
                self.docs[row["key"]] = orjson.loads(row["doc"])
        for k in need:
            self.docs.setdefault(k, None)

    def peek(self, key: str) -> dict[str, Any] | None:
        if key not in self.docs:
            self.load([key])
        return self.docs[key]

    def get(self, key: str) -> dict[str, Any]:
        """The document, created empty if there is none; marked as changed."""
        doc = self.peek(key)
        if doc is None:
            doc = self.docs[key] = {}
        self.dirty.add(key)
        return doc

    def flush(self) -> None:
        rows = [(k, orjson.dumps(self.docs[k]).decode()) for k in sorted(self.dirty) if self.docs.get(k) is not None]
        self.tx.insert_many(self.table, ("key", "doc"), rows, conflict=("key",), update=("doc",))
        self.dirty.clear()
