"""Scale-out on Kafka's own mechanism: `closedloop consume --group` processes share a topic's
partitions as one consumer group; one is killed with SIGKILL mid-stream, the group gives its
partitions to the survivor, and the log holds every produced event exactly once, the stored
offsets at the partitions' ends."""

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
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from closedloop.app.engine import Engine
from closedloop.consumers import kafka as binding
from closedloop.consumers.kafka_consumer import KafkaIngest, lag_report, parse_group, stored_offsets
from closedloop.contract import kafka as wire
from closedloop.reactors.process import ENGINE_SOURCE
from closedloop.simulation.workload import WorkloadSpec, generate

from test_cli import run

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(150)]

PARTITIONS = 4
POISON_EVERY = 89
SESSION_TIMEOUT = 6  # seconds: Kafka's least by default; tansu also takes half of it to answer a join


def member_process(url: str, bootstrap: str, topic: str, dlq: str, group: str, tmp: Path,
                   name: str) -> subprocess.Popen:
    env = {**os.environ, "CLOSEDLOOP_NO_PROGRESS": "1", "CLOSEDLOOP_LEAK_ALERTS": "0",
           "CLOSEDLOOP_LOG_LEVEL": "INFO"}
    return subprocess.Popen(
        [sys.executable, "-m", "closedloop.cli", "consume", "--database", url, "--bootstrap", bootstrap,
         "--topic", topic, "--dlq-topic", dlq, "--group", group, "--session-timeout", str(SESSION_TIMEOUT),
         "--batch", "100"],
        cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=(tmp / f"consume-{name}.log").open("ab"))


def wait_for(what: str, check, seconds: float, procs: list[subprocess.Popen], tmp: Path) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        for p in procs:
            assert p.poll() is None, f"a member exited with {p.returncode} while waiting for {what}: " + logs(tmp)
        assert time.monotonic() < deadline, f"no {what} within {seconds} s: " + logs(tmp)
        time.sleep(0.05)


def logs(tmp: Path) -> str:
    return "\n".join(f"--- {f.name}\n{f.read_text(errors='replace')[-3000:]}"
                     for f in sorted(tmp.glob("consume-*.log")))


def owners(storage, topic: str) -> dict[int, str]:
    return {o["partition"]: o["member"] for o in stored_offsets(storage, [topic])}


def test_a_group_member_killed_mid_stream_has_its_partitions_taken_over_with_nothing_lost_or_doubled(
        database_url: str, kafka_bootstrap: str, tmp_path: Path):
    rng = random.Random(11)
    topic, dlq, group = (f"group-{uuid.uuid4().hex[:8]}", f"group-dlq-{uuid.uuid4().hex[:8]}",
                         f"closedloop-test-{uuid.uuid4().hex[:8]}")
    binding.ensure_topics([kafka_bootstrap], [topic, dlq], PARTITIONS)
    spec = WorkloadSpec(seed=4, days=2, calls_per_day=250, outlets=12, regions=4,
                        end=datetime(2026, 11, 1, tzinfo=UTC))
    events = list(generate(spec))
    assert len(events) > 2500
    Engine.open(database_url).close()  # the schema exists before the members race to make it
    watcher = Engine.open(database_url, reactors=[])
    poison: list[int] = []
    killed = threading.Event()
    sent = threading.Event()

    def producer() -> None:
        """Keyed by subject, so each case stays on one partition in order. A steady stream
        (a few hundred events a second) that outlasts the members' start and join; the last part
        only once a member is dead, so that the survivor has the dead one's partitions to take."""
        p = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", linger_ms=2)
        for i, e in enumerate(events):
            if i == len(events) * 4 // 5:
                p.flush()
                killed.wait(timeout=60)
            value, headers = wire.encode(e, "binary" if i % 3 == 0 else "structured")
            p.send(topic, value=value, key=e["subject"].encode(), headers=headers)
            if i % POISON_EVERY == 0:
                p.send(topic, value=f"garbage {i}".encode(), key=e["subject"].encode())
                poison.append(i)
            if i % 40 == 0:
                p.flush()
                time.sleep(0.1)
        p.flush()
        p.close()
        sent.set()

    members = {name: member_process(database_url, kafka_bootstrap, topic, dlq, group, tmp_path, name)
               for name in ("a", "b")}
    procs = list(members.values())
    sending = threading.Thread(target=producer, daemon=True)
    sending.start()
    try:
        # the group shares the partitions out: both members append, each to its own
        def both_appending() -> bool:
            names = set(owners(watcher.storage, topic).values())
            return any(f"-{members['a'].pid}-" in n for n in names) and any(f"-{members['b'].pid}-" in n for n in names)
        wait_for("offsets stored by both members", both_appending, 45, procs, tmp_path)
        mine = owners(watcher.storage, topic)
        assert all(n.startswith(f"{group}:") for n in mine.values()), mine
        # kill b while it appends: just after one of its transactions, at a random moment
        b_name = next(n for n in mine.values() if f"-{members['b'].pid}-" in n)
        b_parts = {p for p, n in mine.items() if n == b_name}
        last = {o["partition"]: o["updated"] for o in stored_offsets(watcher.storage, [topic])}
        wait_for("an append by b", lambda: any(
            o["updated"] != last.get(o["partition"]) and o["partition"] in b_parts
            for o in stored_offsets(watcher.storage, [topic])), 20, procs, tmp_path)
        time.sleep(rng.uniform(0.0, 0.3))
        os.kill(members["b"].pid, signal.SIGKILL)
        members["b"].wait(timeout=10)
        at_kill = {o["partition"]: o["next_offset"] for o in stored_offsets(watcher.storage, [topic])}
        killed.set()
        sending.join(timeout=90)
        assert sent.is_set(), "the producer did not finish"

        # the survivor takes b's partitions after the session timeout and reads them to the end
        def all_read() -> bool:
            report = lag_report(watcher.storage, [kafka_bootstrap], [topic])
            return report["total_lag"] == 0 and len(report["partitions"]) == PARTITIONS
        wait_for("every partition read to its end by the survivor", all_read, 60, [members["a"]], tmp_path)
        # the group's offsets in Kafka follow the stored ones (for the group tools), though
        # nothing reads them back
        ends = {p["partition"]: p["end"] for p in lag_report(watcher.storage, [kafka_bootstrap], [topic])["partitions"]}
        looker = KafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False)
        try:
            wait_for("the group's offsets committed to Kafka", lambda: {
                p: looker.committed(TopicPartition(topic, p)) for p in range(PARTITIONS)} == ends,
                15, [members["a"]], tmp_path)
        finally:
            looker.close(autocommit=False)
        members["a"].send_signal(signal.SIGTERM)
        assert members["a"].wait(timeout=30) == 0, logs(tmp_path)
    finally:
        killed.set()
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        watcher.close()

    engine = Engine.open(database_url, reactors=[])
    try:
        final = stored_offsets(engine.storage, [topic])
        a_pid = f"-{members['a'].pid}-"
        # b's partitions moved on after b died, and were moved by a
        assert all(a_pid in o["member"] for o in final), final
        assert any(o["next_offset"] > at_kill.get(o["partition"], 0) for o in final if o["partition"] in b_parts)
        # the stored offsets are the partitions' ends
        report = lag_report(engine.storage, [kafka_bootstrap], [topic])
        assert {p["partition"]: p["position"] for p in report["partitions"]} == \
            {p["partition"]: p["end"] for p in report["partitions"]}
        # (kafka-lag and GET /kafka/lag name the group member that moved each partition last)
        assert {p["member"] for p in report["partitions"]} == {o["member"] for o in final}
        assert sum(p["end"] for p in report["partitions"]) == len(events) + len(poison)
        # every produced event is in the log exactly once (the engine's own decisions aside)
        logged = [f for batch in engine.log.follow(0, 5000) for f in batch if not f.source.startswith(ENGINE_SOURCE)]
        assert len(logged) == len(events)
        assert sorted((f.source, f.id) for f in logged) == sorted((e["source"], e["id"]) for e in events)
        # each poison message is quarantined once: no batch was committed twice
        channels = [q["channel"] for q in engine.quarantine.list(limit=1000)["items"]]
        assert len(channels) == len(poison) and len(set(channels)) == len(poison)
        # and each case's facts are in the order they were produced, whichever member read them
        order = {(e["source"], e["id"]): i for i, e in enumerate(events)}
        by_case: dict[str, list[int]] = {}
        for f in logged:
            by_case.setdefault(f.stream, []).append(order[f.key])
        assert all(seq == sorted(seq) for seq in by_case.values())
    finally:
        engine.close()


@pytest.mark.fast
def test_a_group_name_is_one_word():
    assert parse_group("closedloop-consumers.v1") == "closedloop-consumers.v1"
    for bad in ("", " g", "two words", "tab\there"):
        with pytest.raises(ValueError, match="consumer group name"):
            parse_group(bad)


def test_group_and_a_member_split_together_are_a_usage_error(tmp_path: Path):
    r = run(["consume", "--bootstrap", "127.0.0.1:9", "--group", "g", "--member", "1/2"], tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    [line] = r.stderr.strip().splitlines()
    assert "--group and --member 1/2 together" in line and "不能同时使用" in line
    r = run(["consume", "--bootstrap", "127.0.0.1:9", "--member", "1/2"], tmp_path, CLOSEDLOOP_KAFKA_GROUP="g")
    assert r.returncode == 2 and "--group and --member 1/2 together" in r.stderr


def test_a_member_whose_partition_another_moved_on_rolls_back_and_reads_again_from_the_stored_offset(
        database_url: str, kafka_bootstrap: str):
    """Two processes holding one partition for a moment (a member the group has given up on
    that is still running, beside the one that took its partitions): the one whose batch
    starts from an offset no longer stored rolls back whole and seeks, without crashing."""
    from test_kafka_consume import new_topic, produce, produce_raw, story

    topic = new_topic(kafka_bootstrap, 1)
    produce(kafka_bootstrap, topic, story("CASE-1", "CALL-1"))
    engine = Engine.open(database_url)
    ahead = KafkaIngest(engine, [kafka_bootstrap], [topic], dlq_topic=None, poll_ms=100)
    try:
        ahead.run(until_idle=True, wait_for_topics=5)  # stores offset 6
        produce_raw(kafka_bootstrap, topic, b"poison in the disputed stretch")
        produce(kafka_bootstrap, topic, story("CASE-2", "CALL-2"))
        behind = KafkaIngest(engine, [kafka_bootstrap], [topic], dlq_topic=None, poll_ms=100,
                             group=f"closedloop-test-{uuid.uuid4().hex[:8]}", session_timeout=SESSION_TIMEOUT)
        try:
            behind.assign()
            in_hand: dict = {}
            deadline = time.monotonic() + 30
            while sum(len(m) for m in in_hand.values()) < 7 and time.monotonic() < deadline:
                for tp, messages in behind.consumer.poll(timeout_ms=200).items():
                    in_hand.setdefault(tp, []).extend(messages)
            [(tp, messages)] = in_hand.items()
            assert behind._positions[tp] == 6 and [m.offset for m in messages] == list(range(6, 13))
            # meanwhile the other process takes the same stretch and stores offset 13
            ahead.run(until_idle=True, wait_for_topics=5)
            assert ahead.totals.messages == 13 and ahead.totals.quarantined == 1
            head = engine.log.head()
            # the batch in hand is stale: nothing of it is appended or quarantined, and the
            # member seeks to the stored offset instead of raising
            assert behind.handle(in_hand) == 0
            assert engine.log.head() == head and behind.totals.messages == 0
            assert behind._positions[tp] == 13 and behind.consumer.position(tp) == 13
            assert len(engine.quarantine.list()["items"]) == 1
            produce(kafka_bootstrap, topic, story("CASE-3", "CALL-3"))
            behind.run(until_idle=True, wait_for_topics=5)
            assert (behind.totals.messages, behind.totals.accepted, behind.totals.duplicates) == (6, 6, 0)
            [row] = stored_offsets(engine.storage, [topic])
            assert row["next_offset"] == 19 and row["member"].startswith(behind.group + ":")
        finally:
            behind.close()
    finally:
        ahead.close()
        engine.close()


def test_a_batch_in_hand_when_the_group_rebalances_is_dropped_whole_and_read_again(
        database_url: str, kafka_bootstrap: str):
    """A second member joins while the first is gathering a batch: the group takes the first
    member's partitions away in the middle; the batch in hand is not committed, the first
    member reads again from the stored offsets of what it is given, and between the two
    every event is recorded once."""
    from test_kafka_consume import new_topic, produce, produce_raw, story

    topic = new_topic(kafka_bootstrap, 2)
    group = f"closedloop-test-{uuid.uuid4().hex[:8]}"
    cases = [e for i in range(8) for e in story(f"CASE-{i}", f"CALL-{i}")]
    engines = [Engine.open(database_url), Engine.open(database_url)]
    first, second = (KafkaIngest(e, [kafka_bootstrap], [topic], dlq_topic=None, poll_ms=100, group=group,
                                 session_timeout=SESSION_TIMEOUT) for e in engines)
    stop = threading.Event()
    joining = threading.Thread(target=second.run, kwargs={"stop": stop, "wait_for_topics": 5}, daemon=True)
    real_poll = first.consumer.poll
    gathered: list[int] = []

    def poll(timeout_ms: int = 0, max_records: int | None = None):
        """The real poll; only, once the first poll of a batch has brought records, the second
        member joins and the brokers tell the first one to rejoin (a real rebalance, waited
        for) before the poll that gathers more."""
        if gathered and not joining.ident:
            joining.start()
            deadline = time.monotonic() + 30
            while not first.consumer._coordinator.need_rejoin() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert first.consumer._coordinator.need_rejoin(), "the group never asked the first member to rejoin"
        out = real_poll(timeout_ms=timeout_ms, max_records=max_records)
        if out:
            gathered.append(sum(len(m) for m in out.values()))
        return out

    try:
        first.assign()
        deadline = time.monotonic() + 30
        while not first._joined:
            assert first.poll_once() == 0 and time.monotonic() < deadline
        assert {tp.partition for tp in first._assigned} == {0, 1}
        produce(kafka_bootstrap, topic, cases)
        produce_raw(kafka_bootstrap, topic, b"poison", partition=1)
        first.consumer.poll = poll
        rebalances = first._rebalances
        deadline = time.monotonic() + 30
        while not gathered:
            # the batch gathered before the rebalance is dropped, nothing of it committed
            assert first.poll_once() == 0 and time.monotonic() < deadline
        assert first._rebalances > rebalances and first.totals.messages == 0
        assert not any(o["member"] == first.member_name for o in stored_offsets(engines[0].storage, [topic]))
        first.consumer.poll = real_poll
        first.run(until_idle=True, wait_for_topics=5)
        deadline = time.monotonic() + 30
        while lag_report(engines[0].storage, [kafka_bootstrap], [topic])["total_lag"] != 0:
            assert time.monotonic() < deadline, "the two members did not read the topic to its end"
            time.sleep(0.1)
    finally:
        stop.set()
        if joining.ident:
            joining.join(timeout=30)
        for ingest in (first, second):
            ingest.close()
    try:
        # what each member committed adds up to the topic, once: nothing was committed twice
        assert first.totals.messages + second.totals.messages == len(cases) + 1
        assert first.totals.duplicates == second.totals.duplicates == 0
        logged = [f for batch in engines[0].log.follow(0, 1000) for f in batch
                  if not f.source.startswith(ENGINE_SOURCE)]
        assert sorted((f.source, f.id) for f in logged) == sorted((e["source"], e["id"]) for e in cases)
        [poisoned] = engines[0].quarantine.list()["items"]
        assert poisoned["channel"].startswith(f"kafka:{topic}/1@")
    finally:
        for e in engines:
            e.close()
