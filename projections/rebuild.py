"""Rebuilds every view from the log on several cores at once.

Views are independent folds of the same log, so groups of them can be folded at the same
time by separate processes (Python runs one thread at a time per process). On PostgreSQL
each worker writes its views straight into the database: they are different tables, and a
worker locks only its own views' position rows. SQLite lets one writer at a time into a
file, so each worker folds into a scratch file beside the database, and the tables are
copied in at the end, with the positions, in one transaction: one INSERT ... SELECT per
table runs in SQLite's C code, a fraction of what folding the log costs.

Until the copy commits, the views stand reset at position zero: a crash in between leaves
them empty and consistent, and the next start folds them again.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_module
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

from closedloop.log.storage import SQLiteStorage, Storage

# what a view costs to fold relative to the others (measured on the demo's mix): the
# planner puts the heavy ones alone so that the workers finish together
DEFAULT_WEIGHT = 1.0


DEFAULT_BATCH = 100_000


def batch_size(configured: int | None = None) -> int:
    """Facts a rebuild worker folds per transaction (CLOSEDLOOP_REPLAY_BATCH, read by the
    settings). Larger than a live batch on purpose: a case's facts spread over days of the log,
    and each batch that touches a case walks it again; at a call center's volume (~30,000
    events a day) 20,000 facts are under a day, 100,000 are three or four. The cost is memory
    for the facts in hand (~150 MB), the same however long the log."""
    return max(1000, configured or DEFAULT_BATCH)


def default_workers(configured: int | None = None) -> int:
    """Processes folding views at once: the configured number (CLOSEDLOOP_REPLAY_WORKERS),
    else one per core."""
    if configured:
        return max(1, configured)
    return os.cpu_count() or 1


def plan(views: Sequence[Any], workers: int) -> list[list[Any]]:
    """Split the views into at most `workers` groups of about equal weight (heaviest first,
    each onto the lightest group so far)."""
    groups: list[list[Any]] = [[] for _ in range(max(1, min(workers, len(views))))]
    load = [0.0] * len(groups)
    for view in sorted(views, key=lambda v: -getattr(v, "weight", DEFAULT_WEIGHT)):
        i = load.index(min(load))
        groups[i].append(view)
        load[i] += getattr(view, "weight", DEFAULT_WEIGHT)
    return [g for g in groups if g]


def parallel_possible(storage: Storage) -> bool:
    return not (isinstance(storage, SQLiteStorage) and storage.memory)


def rebuild_in_parallel(projector: Any, groups: list[list[Any]], upto: int,
                        progress: Callable[[int], None] | None = None) -> int:
    """Fold the log up to `upto` into each group of views in its own process; the views must
    have been reset (empty, at position zero) by the caller. Returns how many facts each folded."""
    storage: Storage = projector.storage
    sqlite = isinstance(storage, SQLiteStorage)
    scratch: list[str | None] = []
    for i in range(len(groups)):
        if sqlite:
            path = f"{storage.path}.rebuild-{i}"
            _remove(path)
            scratch.append(path)
        else:
            scratch.append(None)
    ctx = mp.get_context("spawn")
    messages = ctx.Queue()
    workers = [
        ctx.Process(target=_fold, name=f"closedloop-rebuild-{i}", daemon=True,
                    args=(storage.url, group, scratch[i], upto, batch_size(projector.rebuild_batch),
                          messages, i))
        for i, group in enumerate(groups)
    ]
    for w in workers:
        w.start()
    try:
        folded = _watch(workers, messages, progress)
        if sqlite:
            for group, path in zip(groups, scratch):
                _adopt(storage, group, path)  # type: ignore[arg-type]
        return folded
    finally:
        for w in workers:
            if w.is_alive():
                w.terminate()
            w.join()
        for path in scratch:
            if path:
                _remove(path)


def _watch(workers: list[Any], messages: Any, progress: Callable[[int], None] | None) -> int:
    """Wait for every worker; the progress shown is the slowest worker's."""
    done: set[int] = set()
    counts = [0] * len(workers)
    shown = 0
    while len(done) < len(workers):
        try:
            kind, index, value = messages.get(timeout=1.0)
        except queue_module.Empty:
            for i, w in enumerate(workers):
                if i not in done and not w.is_alive():
                    raise RuntimeError(f"rebuild worker {i} stopped (exit code {w.exitcode}) before it finished")
            continue
        if kind == "error":
            raise RuntimeError(f"rebuild worker {index} failed:\n{value}")
        if kind == "progress":
            counts[index] += value
        elif kind == "done":
            done.add(index)
        slowest = min(counts)
        if progress and slowest > shown:
            progress(slowest - shown)
            shown = slowest
    return max(counts)


def _fold(url: str, views: list[Any], scratch: str | None, upto: int, batch_size: int, messages: Any,
          index: int) -> None:
    # imported here: a spawned worker starts from a fresh interpreter
    from closedloop.log.eventlog import EventLog
    from closedloop.projections.runner import Projector, rebuilding
    from closedloop.log.storage import open_storage

    try:
        log_storage = open_storage(url)
        target = None
        if scratch is not None:
            # a throw-away file: nothing to make durable, and a small page cache keeps the
            # worker's memory flat however long the log
            target = SQLiteStorage(f"sqlite:///{scratch}", scratch, synchronous="OFF", cache_kib=32768)
        try:
            log = EventLog(log_storage, recent_size=0)  # reads each fact once: nothing to remember
            # a new scratch file: the views are made there without the indexes the main
            # database builds once at the end
            projector = Projector(log, views, batch_size, storage=target, defer_indexes=True)
            with rebuilding(views):  # upkeep such as running totals is done once, at the end
                projector.catch_up(lambda n: messages.put(("progress", index, n)), upto=upto)
        finally:
            log_storage.close()
            if target is not None:
                target.close()
        messages.put(("done", index, 0))
    except BaseException:
        messages.put(("error", index, traceback.format_exc()))
        raise


def _adopt(storage: SQLiteStorage, views: list[Any], path: str) -> None:
    """Copy a worker's folded views into the database, with their positions, at once."""
    from closedloop.log.followers import FOLLOWERS_TABLE
    from closedloop.projections.runner import KIND

    with storage.writing_attached(path) as tx:
        for view in views:
            for table in view.tables():
                tx.execute(f"DELETE FROM main.{table}")
                tx.execute(f"INSERT INTO main.{table} SELECT * FROM part.{table}")
            # the worker's place for the view, a failure on a fact included
            row = tx.one(f"SELECT position, error, failed_position, failed_fact, failed_at FROM part.{FOLLOWERS_TABLE} "
                         f"WHERE kind = {tx.q} AND name = {tx.q}", [KIND, view.name])
            row = row or {"position": 0, "error": None, "failed_position": None, "failed_fact": None, "failed_at": None}
            tx.execute(f"UPDATE main.{FOLLOWERS_TABLE} SET position = {tx.q}, error = {tx.q}, failed_position = {tx.q}, "
                       f"failed_fact = {tx.q}, failed_at = {tx.q} WHERE kind = {tx.q} AND name = {tx.q}",
                       [row["position"], row["error"], row["failed_position"], row["failed_fact"], row["failed_at"],
                        KIND, view.name])


def _remove(path: str) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(path + suffix).unlink(missing_ok=True)
