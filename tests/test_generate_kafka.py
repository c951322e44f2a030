"""`closedloop generate --kafka-topic`: the synthetic workload produced to a real broker
(tansu), keyed by subject, then read with `closedloop consume`, gives the same log as the
same workload ingested from a file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition

from closedloop.app.engine import Engine

pytestmark = pytest.mark.kafka

EXE = [sys.executable, "-m", "closedloop.cli"]
WORKLOAD = ["--days", "2", "--calls-per-day", "60", "--seed", "11", "--end", "2026-11-01T00:00:00Z"]


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(EXE + args, cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "CLOSEDLOOP_NO_PROGRESS": "1"})
    assert done.returncode == 0, done.stderr
    return done


def the_log(url: str) -> tuple[dict, dict[str, list[tuple]]]:
    """Every fact by its key, and each stream's facts in order (the order a case's reader sees)."""
    engine = Engine.open(url)
    try:
        facts = [f for batch in engine.log.follow() for f in batch]
        streams: dict[str, list[tuple]] = {}
        for f in facts:
            streams.setdefault(f.stream, []).append(f.key)
        content = {f.key: (f.type, f.subject, f.time_ms, orjson.dumps(dict(f.data), option=orjson.OPT_SORT_KEYS))
                   for f in facts}
        assert len(content) == len(facts)
        return content, streams
    finally:
        engine.close()


def topic_messages(bootstrap: str, topic: str, expect: int) -> dict[int, list[tuple[bytes, bytes]]]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    consumer.assign(tps)
    consumer.seek_to_beginning()
    out: dict[int, list[tuple[bytes, bytes]]] = {tp.partition: [] for tp in tps}
    for _ in range(100):
        for tp, messages in consumer.poll(timeout_ms=200).items():
            out[tp.partition] += [(m.key, m.value) for m in messages]
        if sum(len(v) for v in out.values()) >= expect:  # (tansu's ListOffsets is no true end)
            break
    consumer.close()
    return out


@pytest.mark.parametrize("mode", ["structured", "binary"])
def test_a_generated_workload_through_kafka_gives_the_log_a_file_gives(kafka_bootstrap: str, tmp_path: Path,
                                                                      mode: str):
    events = tmp_path / "events.jsonl"
    run(["generate", *WORKLOAD, "-o", str(events)], tmp_path)
    topic = f"gen-{uuid.uuid4().hex[:8]}"
    sent = run(["generate", *WORKLOAD, "--kafka-topic", topic, "--bootstrap", kafka_bootstrap,
                "--mode", mode, "--partitions", "4"], tmp_path)
    n = sum(1 for _ in events.open())
    assert f"{n} events sent to {topic}" in sent.stderr

    # keyed by subject: each subject on one partition, in the generator's order
    by_partition = topic_messages(kafka_bootstrap, topic, n)
    assert sum(len(v) for v in by_partition.values()) == n
    assert sum(1 for v in by_partition.values() if v) > 1
    home: dict[bytes, int] = {}
    for p, messages in by_partition.items():
        for key, _ in messages:
            assert home.setdefault(key, p) == p, f"subject {key!r} on two partitions"
    if mode == "structured":
        order = {}
        for line in events.open("rb"):
            e = orjson.loads(line)
            order.setdefault(e["subject"].encode(), []).append(e["id"])
        for messages in by_partition.values():
            seen: dict[bytes, list[str]] = {}
            for key, value in messages:
                seen.setdefault(key, []).append(orjson.loads(value)["id"])
            for key, ids in seen.items():
                assert ids == order[key]

    from_file = f"sqlite:///{tmp_path}/file.db"
    from_kafka = f"sqlite:///{tmp_path}/kafka.db"
    run(["ingest", str(events), "--database", from_file], tmp_path)
    consumed = run(["consume", "--database", from_kafka, "--bootstrap", kafka_bootstrap, "--topic", topic,
                    "--until-idle", "--no-dlq"], tmp_path)
    assert f"{n} message(s) read: {n} recorded" in consumed.stderr

    file_log, file_streams = the_log(from_file)
    kafka_log, kafka_streams = the_log(from_kafka)
    # The producers' facts are the same, and each entity's history is in the same order.
    # (The engine's own decisions may differ with the order partitions interleave, as they
    # should: a part request read before its warehouse's stock is held, not approved; a case
    # whose completion is read after headquarters routed it is not routed twice.)
    ours = "/closedloop/engine/"
    producers = {k: v for k, v in file_log.items() if not k[0].startswith(ours)}
    assert {k: v for k, v in kafka_log.items() if not k[0].startswith(ours)} == producers
    assert len(producers) == n
    for s, keys in file_streams.items():
        theirs = [k for k in keys if not k[0].startswith(ours)]
        if theirs:
            assert [k for k in kafka_streams[s] if not k[0].startswith(ours)] == theirs, s

    status = [json.loads(run(["status", "--database", url], tmp_path).stdout) for url in (from_file, from_kafka)]
    assert all(set(s["view_lag"].values()) == {0} for s in status)
    assert [{k: v for k, v in s["loop"].items() if k != "as_of"} for s in status][0] == \
        {k: v for k, v in status[1]["loop"].items() if k != "as_of"}  # the loop the views show
