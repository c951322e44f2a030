"""Keeps views current with the log, exactly once, and rebuilds them from scratch.

Each view records the log position it has reached in the same transaction as its rows (its
row in the log's followers table, `closedloop.log.followers`), so a crash between two batches
neither loses nor repeats an event, and a view can be dropped and rebuilt at any time. A view
also records the fingerprint of the rules it was built with (its schema version and the loop
policy): when those change, it is rebuilt. A view that fails on a stored fact stops there
alone, with the error on record; the others go on.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, Protocol, Sequence

from closedloop.domain.facts import Fact
from closedloop.log.eventlog import EventLog
from closedloop.log.followers import Followers, take
from closedloop.log.storage import Storage, Tx

KIND = "view"


class View(Protocol):
    name: str

    def fingerprint(self) -> str: ...
    def create_statements(self) -> list[str]: ...
    def tables(self) -> list[str]: ...
    def apply(self, tx: Tx, facts: Sequence[Fact]) -> None: ...


class StaleViewError(RuntimeError):
    """Another process moved the view on while this one was computing a batch."""


class Projector:
    def __init__(self, log: EventLog, views: Iterable[View], batch_size: int = 20_000,
                 storage: Storage | None = None, defer_indexes: bool = False, rebuild_batch: int | None = None):
        self.log = log
        # facts a parallel rebuild's worker folds per transaction (None: rebuild.DEFAULT_BATCH)
        self.rebuild_batch = rebuild_batch
        # where the views live: the log's database, or a scratch file a rebuild worker fills
        self.storage: Storage = storage or log.storage
        self.views = list(views)
        self.batch_size = batch_size
        self._lock = threading.Lock()
        # each view's position, rules and failure; several processes keeping the same views
        # (PostgreSQL) wait for one another, or skip the views another is folding now
        self.followers = Followers(self.storage, KIND, [v.name for v in self.views])
        for view in self.views:
            self._prepare(view, defer_indexes)

    def _prepare(self, view: View, defer_indexes: bool = False) -> None:
        with self.storage.writing() as tx:
            self.storage.lock_ddl(tx)
            if self.followers.fingerprint(tx, view.name) == view.fingerprint():
                _ensure(view, tx, self.storage)  # indexes added since it was made, no rebuild
                _settle(view, tx)  # a rebuild cut off before its end left upkeep undone
                return
            # New, or built by other rules: start it again from the beginning of the log.
            self._reset(tx, view, defer_indexes)

    def _reset(self, tx: Tx, view: View, defer_indexes: bool = False) -> None:
        for table in view.tables():
            tx.execute(f"DROP TABLE IF EXISTS {table}")
        for statement in view.create_statements():
            tx.execute(self.storage.ddl(statement))
        _ensure(view, tx, self.storage)  # its folding needs them, a rebuild too
        if not defer_indexes:
            for statement in _index_statements(view):
                tx.execute(self.storage.ddl(statement))
        self.followers.reset(tx, view.name, view.fingerprint())

    def positions(self) -> dict[str, int]:
        return self.followers.positions()

    def lag(self) -> dict[str, int]:
        positions = self.positions()
        head = self.log.head()  # after the positions: read before, a view that moved on meanwhile looks current
        return {name: head - pos for name, pos in positions.items()}

    def catch_up(self, progress: Callable[[int], None] | None = None, upto: int | None = None,
                 fresh: Sequence[Fact] = ()) -> int:
        """Apply every fact not yet in the views; returns how many facts were applied.

        `fresh` are facts this process has just appended: when they are the next ones the
        views need, they are applied as they are instead of being read back from the log.
        """
        applied = 0
        if not self.views:
            return 0  # a member whose share holds no view
        with self._lock:
            # a view stopped on a failure waits where it stopped; the others go on without it
            running = [p.position for p in self.followers.read().values() if not p.failed]
            if not running:
                return 0
            start = min(running)
            if fresh and fresh[0].position == start + 1 and fresh[-1].position == start + len(fresh):
                self._apply(list(fresh))
                applied += len(fresh)
                start = fresh[-1].position
            for facts in self.log.follow(start, self.batch_size, upto):
                self._apply(facts)
                applied += len(facts)
                if progress:
                    progress(len(facts))
        return applied

    def _apply(self, facts: list[Fact]) -> None:
        last = facts[-1].position
        with self.storage.writing() as tx:
            # Several processes (consumers sharing a topic's partitions) project the same log:
            # on PostgreSQL each takes the views' position rows first, so the second waits for
            # the first to commit and then skips what it applied (SQLite's BEGIN IMMEDIATE
            # already serializes writers). Without the lock both read the same position, and
            # the slower one's update found it moved: StaleViewError, and the consumer died.
            # Only this projector's views: a rebuild's workers each hold their own views' rows.
            at = self.followers.places(tx)
            for view in self.views:
                place = at.get(view.name)
                if place is None or place.failed:
                    continue  # being folded by another process now (skip_busy_views), or stopped
                pos = place.position
                todo = [f for f in facts if f.position > pos] if facts[0].position <= pos else facts
                if not todo:
                    continue
                # one view's failure on a fact stops that view alone, at the fact before it
                _, taken, failure = take(tx, todo, lambda batch, view=view: view.apply(tx, batch))
                moved_to = last if failure is None else taken
                if moved_to is not None and not self.followers.advance(tx, view.name, moved_to, expected=pos):
                    raise StaleViewError(f"view {view.name} moved on under this batch")
                if failure is not None:
                    self.followers.fail(tx, view.name, failure)

    def skip_busy_views(self) -> None:
        """Several processes keeping the same views: one that finds a view being folded by
        another goes on to the next instead of waiting (PostgreSQL's SKIP LOCKED); the other
        folds it to the log's head as it read it, and what is appended after is folded at the
        next turn of whichever process is free. (SQLite has one writer at a time anyway.)"""
        self.followers.skip_busy()

    def rebuild(self, progress: Callable[[int], None] | None = None, workers: int = 1) -> int:
        """Drop every view and build it again from the first event of the log; with
        `workers` > 1, groups of views are folded by that many processes at once."""
        from closedloop.projections import rebuild as parallel

        with self._lock:
            self.storage.compact()
            with self.storage.writing() as tx:
                for view in self.views:
                    self._reset(tx, view, defer_indexes=True)
            groups = parallel.plan(self.views, workers)
            n = 0
            if len(groups) > 1 and parallel.parallel_possible(self.storage):
                n = parallel.rebuild_in_parallel(self, groups, self.log.head(), progress)
        # what was appended meanwhile, or everything when folded here
        with rebuilding(self.views):
            n += self.catch_up(progress)
        # an index built once over all rows costs less than one kept up row by row, and so
        # do totals counted once
        with self._lock, self.storage.writing() as tx:
            for view in self.views:
                for statement in _index_statements(view):
                    tx.execute(self.storage.ddl(statement))
                _settle(view, tx)
        # the planner's statistics were of empty tables: count them again, now that they are full
        self.storage.refresh_statistics([table for view in self.views for table in view.tables()])
        return n


@contextmanager
def rebuilding(views: Sequence[View]) -> Iterator[None]:
    """While folding from the first event, views may leave upkeep that can be counted once at
    the end (a view says so with a `rebuilding` attribute, and does it in `settle(tx)`)."""
    marked = [v for v in views if hasattr(v, "rebuilding")]
    for view in marked:
        view.rebuilding = True  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for view in marked:
            view.rebuilding = False  # type: ignore[attr-defined]


def _settle(view: View, tx: Tx) -> None:
    settle = getattr(view, "settle", None)
    if settle is not None:
        settle(tx)


def _ensure(view: View, tx: Tx, storage: Storage) -> None:
    """A view's statements safe to run again (CREATE INDEX IF NOT EXISTS), optional: what a
    later version added that changes none of its rows, so an existing view needs no rebuild."""
    for statement in getattr(view, "ensure_statements", lambda: [])():
        tx.execute(storage.ddl(statement))


def _index_statements(view: View) -> list[str]:
    """A view's indexes that serve questions rather than its own folding (optional)."""
    return list(getattr(view, "index_statements", lambda: [])())
