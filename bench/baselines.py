"""Raw baselines the benchmarks print beside the engine, measured in the same run."""

from __future__ import annotations

import time

import orjson
from kafka import KafkaConsumer, TopicPartition


def raw_consume(bootstrap: str, topic: str, expect: int, batch: int = 5000) -> float:
    """kafka-python alone: explicit assignment, each value decoded, nothing kept; events/s."""
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
