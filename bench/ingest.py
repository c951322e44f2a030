"""Ingest and replay benchmark, on the embedded default (SQLite file) or on PostgreSQL.

1. Generates a realistic workload (at least 200,000 contract events by default).
2. Raw baseline: plain `sqlite3` executemany (SQLite) or psycopg COPY (PostgreSQL) of the
   same serialized events into a table shaped like the log (primary key on stream and
   version), one transaction per batch, same journal and sync settings.
3. The engine end to end: `closedloop serve` in its own process; this process POSTs the
   events to /events/batch (application/cloudevents-batch+json) over loopback. Each request
   returns once every view is current (serve's default, CLOSEDLOOP_FOLLOW=inline), or once
   its events are durable (CLOSEDLOOP_FOLLOW=background, its follower bringing the views up
   behind); the rate is taken until every view and reactor is current.
4. Replay: every view dropped and rebuilt from the log.

Prints events/s for each, the ratio to the raw baseline, and batch latency percentiles.
Usage: python bench/ingest.py [--events 200000] [--batch 2000] [--synchronous FULL]
       [--database sqlite|postgres] [--postgres postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import orjson

from closedloop.simulation.workload import WorkloadSpec, generate

from baselines import RAW_LOG_TABLE, raw_log_insert  # bench/ (the script's own folder)

EVENTS_PER_CALL = 7.0  # about what the workload yields; the generator is asked for enough


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_workload(target: int) -> list[dict]:
    days = 30
    calls = int(target / EVENTS_PER_CALL / days) + 50
    spec = WorkloadSpec(seed=99, days=days, calls_per_day=calls, outlets=400, regions=34,
                        end=datetime(2026, 11, 1, tzinfo=UTC))
    events = []
    for e in generate(spec):
        events.append(e)
    return events


def raw_baseline(batches: list[bytes], path: Path, synchronous: str) -> float:
    """Plain executemany of the same serialized events, one transaction per batch."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute(RAW_LOG_TABLE)
    versions: dict[str, int] = {}
    started = time.perf_counter()
    n = 0
    for body in batches:
        n += raw_log_insert(conn, orjson.loads(body), versions)
    took = time.perf_counter() - started
    conn.close()
    return n / took


def raw_baseline_postgres(batches: list[bytes], url: str) -> float:
    """psycopg COPY of the same serialized events, one transaction per batch."""
    import psycopg

    schema = f"bench_raw_{int(time.time())}"
    with psycopg.connect(url.split("?")[0]) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(f'CREATE TABLE "{schema}".log (stream TEXT, version BIGINT, topic TEXT, state BYTEA, '
                     "PRIMARY KEY (stream, version))")
        conn.commit()
        try:
            versions: dict[str, int] = {}
            started = time.perf_counter()
            n = 0
            for body in batches:
                with conn.cursor() as cur, cur.copy(f'COPY "{schema}".log (stream, version, topic, state) '
                                                    "FROM STDIN") as copy:
                    for e in orjson.loads(body):
                        stream = e["subject"]
                        v = versions.get(stream, 0) + 1
                        versions[stream] = v
                        copy.write_row((stream, v, e["type"], orjson.dumps(e)))
                        n += 1
                conn.commit()
            took = time.perf_counter() - started
        finally:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
            conn.commit()
    return n / took


def engine_over_http(batches: list[bytes], url: str, synchronous: str,
                     auto_dispatch: bool = False) -> tuple[float, list[float], int]:
    from closedloop.app.engine import Engine

    port = free_port()
    env = {**os.environ, "CLOSEDLOOP_SQLITE_SYNCHRONOUS": synchronous, "CLOSEDLOOP_LOG_LEVEL": "WARNING"}
    # the producers' key, as a real deployment would hand it out
    setup = Engine.open(url)
    key = setup.keys.add("bench-producers", "producer", ["/"])
    operator = setup.keys.add("bench-operator", "operator")
    setup.close()
    auth = {"authorization": f"Bearer {key}"}
    server = subprocess.Popen([sys.executable, "-m", "closedloop.cli", "serve", "--port", str(port),
                               "--database", url,
                               "--auto-dispatch" if auto_dispatch else "--no-auto-dispatch"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(urllib.request.Request(
                    f"http://127.0.0.1:{port}/health", headers={"authorization": f"Bearer {operator}"}),
                    timeout=1).read()
                break
            except OSError:
                time.sleep(0.05)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        latencies = []
        accepted = 0
        started = time.perf_counter()
        for i, body in enumerate(batches):
            t0 = time.perf_counter()
            conn.request("POST", "/events/batch", body=body,
                         headers={"content-type": "application/cloudevents-batch+json", **auth})
            answer = json.loads(conn.getresponse().read())
            latencies.append(time.perf_counter() - t0)
            accepted += answer["accepted"]
            if i % 10 == 0:
                print(f"\r  engine: {accepted:,} events recorded", end="", file=sys.stderr, flush=True)
        took = time.perf_counter() - started
        print(file=sys.stderr)
        # with CLOSEDLOOP_FOLLOW=background the answers came once the events were durable: wait
        # until every view and reactor is current, and say how long after the last answer
        for _ in range(6000):
            health = json.loads(urllib.request.urlopen(urllib.request.Request(
                f"http://127.0.0.1:{port}/health", headers={"authorization": f"Bearer {operator}"})).read())
            if set(health["view_lag"].values()) == {0} and all(f["lag"] == 0 for f in health["followers"]):
                break
            time.sleep(0.02)
        assert set(health["view_lag"].values()) == {0}, health
        current = time.perf_counter() - started
        print(f"  answers at {accepted / took:,.0f} events/s; views and reactors current "
              f"{current - took:.2f} s after the last answer", file=sys.stderr)
        return accepted / current, latencies, accepted
    finally:
        server.terminate()
        server.wait(timeout=30)


def replay(url: str) -> tuple[float, int]:
    """`closedloop replay` as an operator runs it, in its own process."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "closedloop.cli", "replay", "--database", url],
                          capture_output=True, text=True, env={**os.environ, "CLOSEDLOOP_NO_PROGRESS": "1"})
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"replay failed: {done.stderr}")
    # "rebuilt every view from N events in S s (R events/s)"
    line = next(l for l in done.stderr.splitlines() if l.startswith("rebuilt every view"))
    n = int(line.split(" from ")[1].split(" events")[0])
    rate = float(line.rsplit("(", 1)[1].split(" events/s")[0].replace(",", ""))
    print(f"  replay process took {took:.1f} s in all (start-up and checkpoint included)", file=sys.stderr)
    return rate, n


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--synchronous", default="FULL", choices=["OFF", "NORMAL", "FULL"])
    parser.add_argument("--auto-dispatch", action="store_true",
                        help="let the engine dispatch too (the workload's call center already dispatches every "
                        "case, so by default the engine does not)")
    parser.add_argument("--database", default="sqlite", choices=["sqlite", "postgres"])
    parser.add_argument("--postgres", default=os.environ.get("CLOSEDLOOP_TEST_POSTGRES_URL",
                                                             "postgresql://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args()

    print(f"generating a workload of at least {args.events:,} events ...", file=sys.stderr)
    t0 = time.perf_counter()
    events = make_workload(args.events)
    print(f"  {len(events):,} events in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    batches = [orjson.dumps(events[i : i + args.batch]) for i in range(0, len(events), args.batch)]
    pg = args.database == "postgres"
    schema = f"bench_{int(time.time())}"
    with tempfile.TemporaryDirectory(prefix="closedloop-bench-") as tmp:
        if pg:
            print("raw baseline: psycopg COPY ...", file=sys.stderr)
            raw = raw_baseline_postgres(batches, args.postgres)
            sep = "&" if "?" in args.postgres else "?"
            url = f"{args.postgres}{sep}schema={schema}"
        else:
            print("raw baseline: sqlite3 executemany ...", file=sys.stderr)
            raw = raw_baseline(batches, Path(tmp) / "raw.db", args.synchronous)
            url = f"sqlite:///{Path(tmp) / 'engine.db'}"
        try:
            print("engine: POST /events/batch with every view current ...", file=sys.stderr)
            rate, latencies, accepted = engine_over_http(batches, url, args.synchronous, args.auto_dispatch)
            print("replay: every view rebuilt from the log ...", file=sys.stderr)
            replay_rate, replayed = replay(url)
        finally:
            if pg:
                import psycopg

                with psycopg.connect(args.postgres.split("?")[0], autocommit=True) as conn:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    print()
    where = "PostgreSQL" if pg else f"SQLite synchronous={args.synchronous}"
    baseline = "raw psycopg COPY (baseline)     " if pg else "raw sqlite3 executemany (baseline)"
    print(f"closedloop ingest benchmark — {len(events):,} events, batches of {args.batch}, "
          f"{where}, automatic dispatch {'on' if args.auto_dispatch else 'off'}")
    print(f"  {baseline} {raw:>12,.0f} events/s")
    print(f"  engine via POST /events/batch      {rate:>12,.0f} events/s   "
          f"ratio to raw {rate / raw:.2f}   ({accepted:,} recorded, views current)")
    print(f"  batch latency                      p50 {pct(latencies, 50) * 1000:,.0f} ms   "
          f"p99 {pct(latencies, 99) * 1000:,.0f} ms   mean {statistics.mean(latencies) * 1000:,.0f} ms")
    print(f"  replay (rebuild every view)        {replay_rate:>12,.0f} events/s   ({replayed:,} events)")


if __name__ == "__main__":
    main()
