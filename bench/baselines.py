"""Raw baselines the benchmarks print beside the engine, measured in the same run."""

from __future__ import annotations

import time

import orjson

# the raw SQLite baseline's table: shaped like the log (a primary key on stream and version)
RAW_LOG_TABLE = ("CREATE TABLE log (stream TEXT, version INTEGER, topic TEXT, state BLOB, "
                 "PRIMARY KEY (stream, version))")


def raw_log_insert(conn, events, versions: dict[str, int]) -> int:
    """One batch of events into the raw table, one transaction, versions counted per stream:
    what the log's append does, without the engine."""
    rows = []
    for e in events:
        stream = e["subject"]
        v = versions.get(stream, 0) + 1
        versions[stream] = v
        rows.append((stream, v, e["type"], orjson.dumps(e)))
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO log VALUES (?,?,?,?)", rows)
    conn.execute("COMMIT")
    return len(rows)


def raw_consume(bootstrap: str, topic: str, expect: int, batch: int = 5000) -> float:
    """kafka-python alone: explicit assignment, each value decoded, nothing kept; events/s."""
    # here, not at the top: run from bench/, `kafka` would be bench/kafka.py for scripts that need no broker
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             max_poll_records=batch, max_partition_fetch_bytes=8 * 1024 * 1024,
                             fetch_max_bytes=64 * 1024 * 1024)
    tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    consumer.assign(tps)
    consumer.seek_to_beginning()
    n = 0
    started = time.perf_counter()
    while n < expect:
        for messages in consumer.poll(timeout_ms=500, max_records=batch).values():
            for m in messages:
                orjson.loads(m.value)
            n += len(messages)
    took = time.perf_counter() - started
    consumer.close()
    return n / took
