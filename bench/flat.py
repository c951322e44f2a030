"""Does ingest stay as fast as the store grows? ("Followers that keep pace")

The engine ingests a generated workload from an empty store to --events, in batches, in this
process, as `closedloop serve` does: each batch validated, appended, decided on by the
reactors and folded into every view before the next, and time let pass after each batch
(`tick`, which serve's follow thread calls every second). The engine's clock follows the
workload's (the latest event time sent), so deadlines fall due as they would live.

Printed for each tenth of the ingest: events/s (wall), CPU ms per batch (this process's
time, which the machine's noise touches less), the store's size at its end, and the same
rows written by a raw baseline measured in the same run: plain `sqlite3` executemany of the
same serialized events into a table shaped like the log (primary key on stream and version),
one transaction per batch, same durability. Then the flatness: the last tenth's rate over
the second tenth's (the first is the warm-up of an empty store), target >= 0.9.

--keep DIR keeps copies of the store (SQLite) in DIR: at the end, and with --snapshot N after the
first N events too. --resume DIR --at N copies the store kept after N events and ingests the
next --more batches of the same workload into the copy, printing each one's CPU ms: one batch's
cost at that size of the store, which can be measured again and again, and by another version
of the engine (a store kept by an older version has none of the indexes it did not make).

The workload (hundreds of thousands of dicts) is held by this process, which the engine does
not do in production; it is frozen out of the garbage collector's rounds (`gc.freeze`), so
that the collector's cost is the engine's own.

--plans: afterwards, every distinct statement the engine runs for one more batch (and its
tick) is recorded with its parameters and planned by the database (EXPLAIN QUERY PLAN on
SQLite, EXPLAIN on PostgreSQL); the plans that read a table whole (SQLite `SCAN t`, PostgreSQL
`Seq Scan on t`) are printed with the statement's time and the table's row count.

Usage: python bench/flat.py [--events 300000] [--batch 2000] [--synchronous FULL]
       [--database sqlite|postgres] [--postgres URL] [--no-auto-dispatch] [--plans] [--keep DIR]
       [--snapshot N ...]
       python bench/flat.py --resume DIR [--at N] [--more 5] [--plans]
The default run (300,000 events, SQLite) takes about 2 to 3 minutes here.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


from closedloop.app.engine import Engine
from closedloop.app.settings import default_settings
from closedloop.domain.facts import parse_ms
from closedloop.simulation.workload import WorkloadSpec, generate

from baselines import RAW_LOG_TABLE, raw_log_insert  # bench/ (the script's own folder)

EVENTS_PER_CALL = 7.0  # about what the workload yields; the generator is asked for enough
DAYS = 30


def make_workload(target: int) -> list[dict]:
    """At least `target` events (the same generator and mix as bench/ingest.py)."""
    spec = WorkloadSpec(seed=99, days=DAYS, calls_per_day=int(target / EVENTS_PER_CALL / DAYS) + 50, outlets=400,
                        regions=34, end=datetime(2026, 11, 1, tzinfo=UTC))
    return list(generate(spec))


@dataclass
class Tenth:
    events: int = 0
    wall: float = 0.0
    cpu: float = 0.0
    batches: int = 0
    stored: int = 0  # the log's head at the end of the tenth (facts and the engine's decisions)

    @property
    def rate(self) -> float:
        return self.events / self.wall if self.wall else 0.0

    @property
    def cpu_rate(self) -> float:
        return self.events / self.cpu if self.cpu else 0.0


def tenths_of(n: int, batch: int) -> list[list[int]]:
    """The batches' start offsets, in ten groups of (about) equal size."""
    starts = list(range(0, n, batch))
    return [starts[len(starts) * i // 10 : len(starts) * (i + 1) // 10] for i in range(10)]


def raw_baseline(events: list[dict], batch: int, path: Path, synchronous: str) -> list[Tenth]:
    """Plain executemany of the same serialized events, one transaction per batch."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute(RAW_LOG_TABLE)
    versions: dict[str, int] = {}
    out = []
    for starts in tenths_of(len(events), batch):
        t = Tenth()
        for start in starts:
            chunk = events[start : start + batch]
            w0, c0 = time.perf_counter(), time.process_time()
            raw_log_insert(conn, chunk, versions)
            t.wall += time.perf_counter() - w0
            t.cpu += time.process_time() - c0
            t.events += len(chunk)
            t.batches += 1
        t.stored = sum(x.events for x in out) + t.events
        out.append(t)
    conn.close()
    return out


class WorkloadClock:
    """The engine's clock: the latest event time sent so far (ms)."""

    def __init__(self) -> None:
        self.now = 0

    def advance(self, events: list[dict]) -> None:
        self.now = max([self.now, *(parse_ms(e["time"]) for e in events)])

    def __call__(self) -> int:
        return self.now


def open_engine(url: str, synchronous: str, auto_dispatch: bool, clock: WorkloadClock) -> Engine:
    settings = default_settings().model_copy(update={"sqlite_synchronous": synchronous,
                                                     "auto_dispatch": auto_dispatch})
    return Engine.open(url, settings=settings, clock=clock)


def snapshot(engine: Engine, to: Path) -> None:
    """A consistent copy of the SQLite store, taken between two batches."""
    to.unlink(missing_ok=True)
    source = sqlite3.connect(engine.storage.path)  # type: ignore[attr-defined]
    target = sqlite3.connect(to)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()


def ingest(engine: Engine, clock: WorkloadClock, events: list[dict], batch: int,
           snapshots: dict[int, Path] | None = None) -> list[Tenth]:
    out = []
    done = 0
    snapshots = snapshots or {}
    for starts in tenths_of(len(events), batch):
        t = Tenth()
        for start in starts:
            if start in snapshots:
                snapshot(engine, snapshots[start])
            chunk = events[start : start + batch]
            clock.advance(chunk)
            w0, c0 = time.perf_counter(), time.process_time()
            result = engine.submit(chunk, "file")
            engine.tick()
            t.wall += time.perf_counter() - w0
            t.cpu += time.process_time() - c0
            if result.rejected:
                raise SystemExit(f"the engine rejected {len(result.rejected)} events: "
                                 f"{result.rejected[0].to_json()}")
            t.events += len(chunk)
            t.batches += 1
        done += t.events
        t.stored = engine.log.head()
        out.append(t)
        print(f"\r  engine: {done:,} events sent, {t.stored:,} in the log", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return out


# --- --plans: what one more batch runs, and how the database plans it ----------------------------
def _shape(sql: str) -> str:
    """One key per statement whatever its number of keys: `?,?,?` and `(?,?),(?,?)` folded."""
    sql = re.sub(r"(\?|%s)(\s*,\s*(\?|%s))+", "?…", sql)
    return re.sub(r"\((\?…|\?|%s)\)(\s*,\s*\((\?…|\?|%s)\))+", "(…)…", sql)


def trace_plans(engine: Engine, clock: WorkloadClock, chunk: list[dict]) -> None:
    from closedloop.log.storage import Tx

    seen: dict[str, tuple[str, Any]] = {}
    spent: dict[str, float] = {}
    originals = {name: getattr(Tx, name) for name in ("execute", "all", "one", "executemany")}

    def recording(name: str):
        original = originals[name]

        def run(self: Tx, sql: str, params: Any = ()) -> Any:
            key = _shape(sql)
            seen.setdefault(key, (sql, (params[0] if params else ()) if name == "executemany" else params))
            t0 = time.perf_counter()
            try:
                return original(self, sql, params)
            finally:
                spent[key] = spent.get(key, 0.0) + time.perf_counter() - t0

        return run

    for name in originals:
        setattr(Tx, name, recording(name))
    try:
        clock.advance(chunk)
        engine.submit(chunk, "file")
        engine.tick()
    finally:
        for name, original in originals.items():
            setattr(Tx, name, original)

    storage = engine.storage
    pg = storage.dialect == "postgresql"
    whole = []
    with storage.reading() as tx:
        tables = {r["name"] for r in tx.all(
            "SELECT tablename AS name FROM pg_tables WHERE schemaname = current_schema()" if pg
            else "SELECT name FROM sqlite_master WHERE type = 'table'")}
        for key, (sql, params) in seen.items():
            if not re.match(r"\s*(SELECT|WITH|UPDATE|DELETE)", sql, re.I):
                continue
            rows = tx.all(("EXPLAIN " if pg else "EXPLAIN QUERY PLAN ") + sql, params)
            lines = [str(next(iter(r.values()))) if pg else r["detail"] for r in rows]
            pattern = r"Seq Scan on (\w+)" if pg else r"^SCAN (\w+)$"
            for table in {m for line in lines for m in re.findall(pattern, line.strip())} & tables:
                n = tx.one(f"SELECT COUNT(*) AS n FROM {table}")["n"]
                whole.append((spent.get(key, 0.0), table, n, key))
    total = sum(spent.values())
    print(f"\nplans of one more batch: {len(seen)} distinct statements, {total * 1000:,.0f} ms in the database "
          "(what goes through Tx.execute, all, one and executemany; insert_many's rows are not counted)")
    if not whole:
        print("  none reads a table whole")
    for took, table, n, key in sorted(whole, reverse=True):
        print(f"  {took * 1000:7.1f} ms  reads {table} whole ({n:,} rows): {key[:110]}")
    print("  the costliest statements:")
    for key, took in sorted(spent.items(), key=lambda kv: -kv[1])[:8]:
        print(f"  {took * 1000:7.1f} ms  {key[:120]}")


# --- the run ---------------------------------------------------------------------------------------
def resume(args: argparse.Namespace) -> None:
    """One batch's cost on a store kept by an earlier run, measured on a copy of it."""
    kept = Path(args.resume)
    meta = json.loads((kept / "flat.json").read_text())
    at = args.at if args.at is not None else max(meta["kept"])
    if at not in meta["kept"]:
        raise SystemExit(f"no store kept after {at:,} events in {kept}: {', '.join(map(str, meta['kept']))}")
    workload = make_workload(meta["events"])
    gc.freeze()
    sent, batch = workload[:at], meta["batch"]
    more = workload[at : at + batch * (args.more + (1 if args.plans else 0))]
    if len(more) < batch * args.more:
        raise SystemExit(f"the workload has {len(more):,} events after {at:,}, not {batch * args.more:,}")
    with tempfile.TemporaryDirectory(prefix="closedloop-flat-") as tmp:
        shutil.copy(kept / f"engine-{at}.db", Path(tmp) / "engine.db")
        clock = WorkloadClock()
        clock.advance(sent)
        engine = open_engine(f"sqlite:///{Path(tmp) / 'engine.db'}", meta["synchronous"], meta["auto_dispatch"],
                             clock)
        try:
            head = engine.log.head()
            costs = []
            for i in range(args.more):
                chunk = more[i * batch : (i + 1) * batch]
                clock.advance(chunk)
                c0 = time.process_time()
                engine.submit(chunk, "file")
                engine.tick()
                costs.append(time.process_time() - c0)
            if args.plans:
                trace_plans(engine, clock, more[args.more * batch :])
        finally:
            engine.close()
    print(f"\none batch of {batch} after {at:,} of {meta['events']:,} events ({head:,} in the log), "
          f"SQLite synchronous={meta['synchronous']}: CPU ms per batch "
          f"{' '.join(f'{c * 1000:.0f}' for c in costs)}   median {statistics.median(costs) * 1000:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--synchronous", default="FULL", choices=["OFF", "NORMAL", "FULL"])
    parser.add_argument("--no-auto-dispatch", dest="auto_dispatch", action="store_false",
                        help="the engine does not dispatch (serve's default is to dispatch)")
    parser.add_argument("--database", default="sqlite", choices=["sqlite", "postgres"])
    parser.add_argument("--postgres", default=os.environ.get("CLOSEDLOOP_TEST_POSTGRES_URL",
                                                             "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--plans", action="store_true", help="then plan every statement of one more batch")
    parser.add_argument("--keep", metavar="DIR", help="keep copies of the store in DIR (PostgreSQL: the schema)")
    parser.add_argument("--snapshot", type=int, action="append", default=[], metavar="N",
                        help="with --keep: a copy after the first N events too (a multiple of --batch)")
    parser.add_argument("--resume", metavar="DIR", help="measure the next batches on a copy of a kept store")
    parser.add_argument("--at", type=int, help="with --resume: the store kept after this many events")
    parser.add_argument("--more", type=int, default=5, help="with --resume: how many batches")
    args = parser.parse_args()
    if args.resume:
        resume(args)
        return
    if args.events < 10 * args.batch:
        raise SystemExit("--events must be at least ten batches (--batch): the ingest is measured by tenths")

    print(f"generating a workload of at least {args.events:,} events ...", file=sys.stderr)
    t0 = time.perf_counter()
    workload = make_workload(args.events)
    gc.freeze()  # see the module's docstring
    events, extra = workload[: args.events], workload[args.events : args.events + args.batch]
    if any(n % args.batch or not 0 < n < args.events for n in args.snapshot):
        raise SystemExit("--snapshot takes a multiple of --batch, below --events")
    print(f"  {len(events):,} events in {time.perf_counter() - t0:.1f} s", file=sys.stderr)

    pg = args.database == "postgres"
    schema = f"bench_flat_{int(time.time())}"
    tmp = tempfile.TemporaryDirectory(prefix="closedloop-flat-") if not args.keep else None
    where = Path(args.keep or tmp.name)  # type: ignore[union-attr]
    where.mkdir(parents=True, exist_ok=True)
    if pg:
        url = f"{args.postgres}{'&' if '?' in args.postgres else '?'}schema={schema}"
    else:
        url = f"sqlite:///{where / 'engine.db'}"
        for leftover in where.glob("engine*.db*"):
            leftover.unlink()
    snapshots = {n: where / f"engine-{n}.db" for n in args.snapshot} if args.keep and not pg else {}
    try:
        print("raw baseline: sqlite3 executemany ...", file=sys.stderr)
        (where / "raw.db").unlink(missing_ok=True)
        raw = raw_baseline(events, args.batch, where / "raw.db", args.synchronous)
        (where / "raw.db").unlink()
        print("engine: submit + tick, batch by batch, every view current ...", file=sys.stderr)
        clock = WorkloadClock()
        engine = open_engine(url, args.synchronous, args.auto_dispatch, clock)
        try:
            tenths = ingest(engine, clock, events, args.batch, snapshots)
            if args.keep and not pg:
                snapshot(engine, where / f"engine-{args.events}.db")
                (where / "flat.json").write_text(json.dumps({
                    "events": args.events, "batch": args.batch, "synchronous": args.synchronous,
                    "auto_dispatch": args.auto_dispatch, "kept": sorted([*snapshots, args.events])}))
            if args.plans:
                trace_plans(engine, clock, extra)
        finally:
            engine.close()
            if args.keep and not pg:
                for f in where.glob("engine.db*"):
                    f.unlink()
    finally:
        if pg and not args.keep:
            import psycopg

            with psycopg.connect(args.postgres.split("?")[0], autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        if tmp is not None:
            tmp.cleanup()

    db = "PostgreSQL" if pg else f"SQLite synchronous={args.synchronous}"
    print(f"\nclosedloop flatness — {len(events):,} events from an empty store, batches of {args.batch}, {db}, "
          f"automatic dispatch {'on' if args.auto_dispatch else 'off'}, a tick after each batch")
    if pg:
        print("  (CPU: this process's, the client's; PostgreSQL's own work shows in events/s only)")
    print(f"  {'tenth':>5} {'in the log':>11} {'events/s':>9} {'CPU ms/batch':>13} {'CPU µs/event':>13} "
          f"{'raw events/s':>13} {'engine/raw':>10}")
    for i, (t, r) in enumerate(zip(tenths, raw), start=1):
        print(f"  {i:>5} {t.stored:>11,} {t.rate:>9,.0f} {t.cpu / t.batches * 1000:>13,.0f} "
              f"{t.cpu / t.events * 1e6:>13,.1f} {r.rate:>13,.0f} {t.rate / r.rate:>10.3f}")
    engine_all = sum(t.events for t in tenths) / sum(t.wall for t in tenths)
    raw_all = sum(r.events for r in raw) / sum(r.wall for r in raw)
    print(f"  whole run: engine {engine_all:,.0f} events/s, raw {raw_all:,.0f} events/s, "
          f"ratio to raw {engine_all / raw_all:.3f}")
    print(f"  flatness, last tenth / second tenth: events/s {tenths[9].rate / tenths[1].rate:.2f}, "
          f"events per CPU second {tenths[9].cpu_rate / tenths[1].cpu_rate:.2f}, "
          f"raw {raw[9].rate / raw[1].rate:.2f}   (target >= 0.9)")


if __name__ == "__main__":
    main()
