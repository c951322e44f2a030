"""Exactly-once effect under crashes: a real `closedloop consume` process is killed with
SIGKILL again and again while a producer keeps sending; after a last run to the end, the
log, the quarantine and the views hold exactly what was produced, once."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kafka import KafkaProducer

from closedloop.contract import kafka as wire
from closedloop.consumers import kafka as binding
from closedloop.consumers.kafka_consumer import lag_report
from closedloop.app.engine import Engine
from closedloop.reactors.process import ENGINE_SOURCE
from closedloop.projections import leaks as leaks_view
from closedloop.simulation.workload import WorkloadSpec, generate

# its own budget: up to a minute per killed consumer to make progress, then a last run to the end
pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(600)]

POISON_EVERY = 97


def key_of(e: dict) -> str:
    """Producers key by subject (the case id for case events), so that each entity's events
    stay on one partition, in order."""
    return e["subject"]


def consumer_process(database_url: str, bootstrap: str, topic: str, dlq: str, tmp: Path) -> subprocess.Popen:
    env = {**os.environ, "CLOSEDLOOP_NO_PROGRESS": "1", "CLOSEDLOOP_LEAK_ALERTS": "0"}
    return subprocess.Popen(
        [sys.executable, "-m", "closedloop.cli", "consume", "--database", database_url, "--bootstrap", bootstrap,
         "--topic", topic, "--dlq-topic", dlq, "--batch", "150"],
        cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=(tmp / "consume.log").open("ab"))


def test_a_consumer_killed_repeatedly_loses_nothing_and_duplicates_nothing(
        database_url: str, kafka_bootstrap: str, tmp_path: Path):
    rng = random.Random(5)
    topic, dlq = f"crash-{uuid.uuid4().hex[:8]}", f"crash-dlq-{uuid.uuid4().hex[:8]}"
    binding.ensure_topics([kafka_bootstrap], [topic, dlq], 3)
    spec = WorkloadSpec(seed=3, days=2, calls_per_day=220, outlets=12, regions=4,
                        end=datetime(2026, 11, 1, tzinfo=UTC))
    events = list(generate(spec))
    assert len(events) > 2500
    produced_poison = 0
    done = threading.Event()

    def producer() -> None:
        nonlocal produced_poison
        p = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", linger_ms=2)
        for i, e in enumerate(events):
            value, headers = wire.encode(e, "binary" if i % 3 == 0 else "structured")
            p.send(topic, value=value, key=key_of(e).encode(), headers=headers)
            if i % POISON_EVERY == 0:
                p.send(topic, value=f"garbage {i}".encode(), key=key_of(e).encode())
                produced_poison += 1
            if i % 100 == 0:
                p.flush()
                time.sleep(0.25)  # a producer that keeps sending while the consumer dies
        p.flush()
        p.close()
        done.set()

    sending = threading.Thread(target=producer)
    sending.start()
    url = database_url
    Engine.open(url).close()  # the schema exists before the first consumer races to create it
    kills = 0
    heads = []
    watcher = Engine.open(url, reactors=[])
    try:
        while not done.is_set() or kills < 5:
            before = watcher.log.head()
            proc = consumer_process(url, kafka_bootstrap, topic, dlq, tmp_path)
            started = time.monotonic()
            # kill it while it is appending: once it has made progress, at a random moment
            while watcher.log.head() == before and time.monotonic() - started < (20 if done.is_set() else 60):
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.5))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            kills += 1
            heads.append(watcher.log.head())
    finally:
        sending.join(timeout=120)
        watcher.close()
    # the killed processes did real work, and were killed while there was more to do
    assert len(set(heads)) >= 3 and heads[0] > 0, heads
    last = subprocess.run(
        [sys.executable, "-m", "closedloop.cli", "consume", "--database", url, "--bootstrap", kafka_bootstrap,
         "--topic", topic, "--dlq-topic", dlq, "--until-idle"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "CLOSEDLOOP_NO_PROGRESS": "1", "CLOSEDLOOP_LEAK_ALERTS": "0"})
    assert last.returncode == 0, last.stderr
    # the last killed process was killed while there was still more to do
    assert heads[-2] < Engine.open(url, reactors=[]).log.head(), heads

    engine = Engine.open(url, reactors=[])
    # (the engine's own decisions, e.g. feedback routing, are in the log too; they are not produced)
    logged = [f for batch in engine.log.follow(0, 5000) for f in batch if not f.source.startswith(ENGINE_SOURCE)]
    assert sorted((f.source, f.id) for f in logged) == sorted((e["source"], e["id"]) for e in events)
    # poison is kept once per message: a batch read twice would have quarantined it twice
    channels = [q["channel"] for q in engine.quarantine.list(limit=1000)["items"]]
    assert len(channels) == produced_poison and len(set(channels)) == produced_poison
    assert lag_report(engine.storage, [kafka_bootstrap], [topic])["total_lag"] == 0
    # each case's facts are in the log in the order they were produced
    order = {(e["source"], e["id"]): i for i, e in enumerate(events)}
    by_case: dict[str, list[int]] = {}
    for f in logged:
        by_case.setdefault(f.stream, []).append(order[f.key])
    assert all(seq == sorted(seq) for seq in by_case.values())
    # and the views agree with the same events fed in one go
    reference = Engine.open(f"sqlite:///{tmp_path}/reference.db")  # the same reactors as the consumers
    reference.submit(events)
    for moment in ("2026-10-31T00:00:00Z", "2026-11-01T00:00:00Z"):
        at = int(datetime.fromisoformat(moment).timestamp() * 1000)
        assert leaks_view.summary(engine.storage, at) == leaks_view.summary(reference.storage, at)
    engine.close()
    reference.close()
