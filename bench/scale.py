"""Call-center scale on one machine: a year of events, replayed, and queried under load.

Stages (each prints its figures; `--events` scales the whole run down for a quick look):
1. generate: a realistic year (the demo's outcome mix) as JSON lines, deterministic from a seed;
2. ingest: the first --ingest-events of the file into a fresh SQLite database through the
   engine, the reactors deciding and every view current after each batch (the ingest
   figure); then the first 10% and the whole file into two more as loads of history, the
   views left to the replay (`closedloop ingest --defer-views`), the reactors deciding on
   each batch (or, with --load-reactors off, validate and append only: 10 M events in
   minutes rather than an hour here);
3. replay: `closedloop replay` of the first 10% and of the whole log, each in its own
   process (and its workers): events/s and peak resident memory of them all, to show memory
   stays flat as the log grows; the whole log once more with --workers 1 (up to 2 M events);
   raw baselines: the whole log's rows fetched in order, and fetched and decoded into facts;
4. queries: `closedloop serve` on loopback, a load generator in another process firing
   /loop/summary, /loop/leaks and /controls from several connections for a fixed time;
   p50 and p99 per route, next to a raw baseline (/health, which touches no view).

Usage: python bench/scale.py [--events 10000000] [--workdir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing as mp
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson

EVENTS_PER_CALL = 7.7


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def generate(path: Path, events: int) -> int:
    from closedloop.simulation.workload import WorkloadSpec, generate as workload

    days = 365
    calls = max(50, int(events / EVENTS_PER_CALL / days))
    spec = WorkloadSpec(seed=2026, days=days, calls_per_day=calls, outlets=2000, regions=34,
                        end=datetime(2026, 11, 1, tzinfo=UTC))
    n = 0
    started = time.perf_counter()
    with path.open("wb") as fh:
        for event in workload(spec):
            fh.write(orjson.dumps(event) + b"\n")
            n += 1
            if n % 500_000 == 0:
                say(f"  generated {n:,} events ({n / (time.perf_counter() - started):,.0f}/s)")
    say(f"  {n:,} events, {calls:,} calls a day for a year, in {time.perf_counter() - started:.0f} s")
    return n


def ingest(path: Path, url: str, limit: int | None = None, defer_views: bool = False,
           reactors: bool = True) -> tuple[int, float]:
    from closedloop.consumers.files import read_events
    from closedloop.app.engine import Engine

    engine = Engine.open(url, **({} if reactors else {"reactors": []}))
    engine.defer_views = defer_views
    batch: list = []
    n = 0
    started = time.perf_counter()
    try:
        for event in read_events(path):
            batch.append(event)
            if len(batch) == 5000:
                engine.submit(batch, "bench")
                n += len(batch)
                batch.clear()
                if n % 250_000 == 0:
                    say(f"  ingested {n:,} ({n / (time.perf_counter() - started):,.0f}/s)")
                if limit and n >= limit:
                    break
        if batch and not (limit and n >= limit):
            engine.submit(batch, "bench")
            n += len(batch)
        if not defer_views:
            assert set(engine.projector.lag().values()) == {0}, engine.projector.lag()  # every view current
        return n, n / (time.perf_counter() - started)
    finally:
        engine.close()


def _tree(pid: int) -> list[int]:
    """A process and all its descendants (a parallel replay's workers)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def replay(url: str, workers: int | None = None, env_extra: dict | None = None) -> tuple[float, int, float]:
    """`closedloop replay` in its own process: events/s, events, and the peak of the resident
    memory of the replay and its workers together, in MiB (sampled every 0.2 s)."""
    env = {**os.environ, "CLOSEDLOOP_NO_PROGRESS": "1", "CLOSEDLOOP_DATABASE_URL": url, **(env_extra or {})}
    command = [sys.executable, "-m", "closedloop.cli", "replay"]
    if workers is not None:
        command += ["--workers", str(workers)]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, sum(_rss_kib(p) for p in _tree(proc.pid)))
        time.sleep(0.2)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"replay failed: {err}")
    line = next(l for l in err.splitlines() if l.startswith("rebuilt every view"))
    n = int(line.split(" from ")[1].split(" events")[0])
    rate = float(line.rsplit("(", 1)[1].split(" events/s")[0].replace(",", ""))
    return rate, n, peak / 1024


def read_baseline(url: str) -> tuple[float, float]:
    """The replay's raw baselines, one process: the log's rows fetched in order (sqlite3, no
    decoding), and fetched and decoded into facts as a replay worker reads them (batches of
    100,000). Each replay worker reads the whole log, so the second is a ceiling on its rate."""
    import sqlite3

    from closedloop.log.eventlog import EventLog
    from closedloop.log.storage import open_storage

    path = url.removeprefix("sqlite:///")
    conn = sqlite3.connect(path)
    started, n, after = time.perf_counter(), 0, 0
    while True:
        rows = conn.execute("SELECT rowid, topic, state FROM closedloop_events WHERE rowid > ? ORDER BY rowid "
                            "LIMIT 100000", [after]).fetchall()
        if not rows:
            break
        n += len(rows)
        after = rows[-1][0]
    fetched = n / (time.perf_counter() - started)
    conn.close()
    storage = open_storage(url)
    try:
        log = EventLog(storage)
        started, n = time.perf_counter(), 0
        for facts in log.follow(0, 100_000):
            n += len(facts)
        decoded = n / (time.perf_counter() - started)
    finally:
        storage.close()
    return fetched, decoded


def _load(port: int, key: str, paths: list[str], seconds: float, out: mp.Queue) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Authorization": f"Bearer {key}"}
    timings: dict[str, list[float]] = {p: [] for p in paths}
    stop = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < stop:
        path = paths[i % len(paths)]
        i += 1
        t0 = time.perf_counter()
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise SystemExit(f"{path}: HTTP {response.status}")
        timings[path].append(time.perf_counter() - t0)
    out.put(timings)


def queries(url: str, connections: int, seconds: float, env_extra: dict | None = None) -> dict[str, list[float]]:
    from closedloop.app.engine import Engine

    engine = Engine.open(url)
    key = engine.keys.add(f"bench-{time.time_ns()}", "analyst")
    with engine.storage.reading() as tx:
        cases = tx.one("SELECT n FROM loop_counts WHERE name = 'registered_cases'")["n"]
    engine.close()
    say(f"  {cases:,} cases in the store; {connections} connections for {seconds:.0f} s")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "closedloop.cli", "serve", "--port", str(port),
                               "--database", url], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, **(env_extra or {})})
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        paths = ["/loop/summary", "/loop/leaks?limit=50", "/controls?by=region", "/health"]
        q: mp.Queue = mp.Queue()
        workers = [mp.Process(target=_load, args=(port, key, paths, seconds, q)) for _ in range(connections)]
        for w in workers:
            w.start()
        merged: dict[str, list[float]] = {p: [] for p in paths}
        for _ in workers:
            for p, ts in q.get().items():
                merged[p] += ts
        for w in workers:
            w.join()
        return merged
    finally:
        server.terminate()
        server.wait(timeout=30)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--workdir", default=None, help="keep files here (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="reuse the workdir's files from an earlier run")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--ingest-events", type=int, default=250_000,
                        help="events ingested with every view current, for the ingest figure")
    parser.add_argument("--load-reactors", choices=["on", "off"], default="on",
                        help="off: the year's store is loaded without the engine's decisions (validate and append "
                        "only), to build 10 M events in minutes; replay and serve then run with CLOSEDLOOP_REACTORS=off")
    args = parser.parse_args()
    quiet = {} if args.load_reactors == "on" else {"CLOSEDLOOP_REACTORS": "off"}
    work = Path(args.workdir or tempfile.mkdtemp(prefix="closedloop-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    events_file = work / "year.jsonl"
    full = f"sqlite:///{work / 'year.db'}"
    tenth = f"sqlite:///{work / 'tenth.db'}"
    results: dict[str, str] = {}
    try:
        if not (args.keep and events_file.exists()):
            say("1. generating a year of events ...")
            total = generate(events_file, args.events)
        else:
            total = sum(1 for _ in events_file.open("rb"))
        if not (args.keep and (work / "year.db").exists()):
            say(f"2. ingesting into SQLite: the first {args.ingest_events:,} events with the views current ...")
            for f in work.glob("*.db*"):
                f.unlink()
            measured = f"sqlite:///{work / 'ingest.db'}"
            k, rate = ingest(events_file, measured, limit=args.ingest_events)
            results["ingest"] = (f"{k:,} events at {rate:,.0f} events/s (in-process submit, batches of 5,000, "
                                 "reactors deciding, every view current)")
            say("   ... then the first 10% and the whole year as loads of history (views deferred to the replay)")
            reactors = args.load_reactors == "on"
            n10, _ = ingest(events_file, tenth, limit=total // 10, defer_views=True, reactors=reactors)
            n, rate = ingest(events_file, full, defer_views=True, reactors=reactors)
            results["bulk_load"] = (f"{n:,} events at {rate:,.0f} events/s (views deferred; "
                                    + ("reactors deciding)" if reactors else
                                       "reactors off: validate and append only)"))
        say("3. replaying ...")
        r10, n10, m10 = replay(tenth, env_extra=quiet)
        r, n, m = replay(full, env_extra=quiet)
        r1 = m1 = None
        if n <= 2_000_000:  # the one-process comparison, where it takes minutes, not half an hour
            r1, _, m1 = replay(full, workers=1, env_extra=quiet)
        results["replay_small"] = f"{n10:,} events at {r10:,.0f} events/s, peak RSS {m10:,.0f} MiB (all processes)"
        results["replay_full"] = f"{n:,} events at {r:,.0f} events/s, peak RSS {m:,.0f} MiB (all processes)"
        fetched, decoded = read_baseline(full)
        results["replay_raw"] = (f"the whole log read in one process: rows fetched {fetched:,.0f} events/s, "
                                 f"fetched and decoded into facts {decoded:,.0f} events/s (replay {r / decoded:.2f} "
                                 "of the latter; every worker reads the whole log)")
        if r1 is not None:
            results["replay_1proc"] = f"{n:,} events at {r1:,.0f} events/s, peak RSS {m1:,.0f} MiB (--workers 1)"
        say("4. queries under load ...")
        timings = queries(full, args.connections, args.seconds, env_extra=quiet)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nclosedloop scale benchmark — {total:,} events generated")
    for name, text in results.items():
        print(f"  {name:<14} {text}")
    print(f"  query latency under {args.connections} concurrent connections ({args.seconds:.0f} s):")
    for path, ts in timings.items():
        print(f"    {path:<24} n={len(ts):>6}  p50 {pct(ts, 50):7.1f} ms  p99 {pct(ts, 99):7.1f} ms"
              + ("   (baseline: no view)" if path == "/health" else ""))


if __name__ == "__main__":
    main()
