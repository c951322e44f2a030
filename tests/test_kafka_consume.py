"""Producers' topics in: contract events from a real Kafka-protocol broker into the log,
exactly once in effect, poison quarantined and dead-lettered, partitions shared."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from closedloop.contract.events import validate
from closedloop.contract import kafka as wire
from closedloop.consumers import kafka as binding
from closedloop.consumers.kafka_consumer import KafkaIngest, lag_report, parse_member, stored_offsets
from closedloop.app.engine import Engine
from closedloop.projections import leaks as leaks_view

from conftest import event, registration

pytestmark = pytest.mark.kafka


def story(case: str, call: str) -> list[dict[str, Any]]:
    """A case from call to acknowledged feedback, as its producers send it."""
    return [
        event("call.received", call, "2026-10-30T08:00:00Z", {"phone": "138", "intent": "repair", "agent_id": "A7"}),
        event("case.registered", case, "2026-10-30T08:10:00Z", registration(call)),
        event("case.dispatched", case, "2026-10-30T08:12:00Z", {"outlet_id": "OUT-1", "by": "system"},
              source="/dispatch"),
        event("dispatch.accepted", case, "2026-10-30T08:40:00Z", {"outlet_id": "OUT-1", "technician_id": "TEC-1"},
              source="/outlet/OUT-1"),
        event("service.completed", case, "2026-10-31T09:00:00Z",
              {"technician_id": "TEC-1", "fault_code": "E1", "cause": "wear", "first_visit": True},
              source="/outlet/OUT-1"),
        event("callback.made", case, "2026-10-31T12:00:00Z",
              {"agent_id": "CB-1", "reached": True, "satisfaction": "satisfied"}, source="/callback/desk-1"),
    ]


def new_topic(bootstrap: str, partitions: int = 3) -> str:
    topic = f"t-{uuid.uuid4().hex[:10]}"
    binding.ensure_topics([bootstrap], [topic], partitions)
    return topic


def produce(bootstrap: str, topic: str, events: list[dict[str, Any]], mode: str = "structured",
            key: str | None = None) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for e in events:
        value, headers = wire.encode(e, mode)
        k = key or e["subject"]
        producer.send(topic, value=value, key=k.encode() if k else None, headers=headers)
    producer.flush()
    producer.close()


def produce_raw(bootstrap: str, topic: str, value: bytes | None, headers: list[tuple[str, bytes]] | None = None,
                partition: int = 0) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    producer.send(topic, value=value, headers=headers or [], partition=partition).get(timeout=10)
    producer.close()


def consume(engine: Engine, bootstrap: str, topics: list[str], member: str = "1/1",
            dlq: str | None = None) -> KafkaIngest:
    ingest = KafkaIngest(engine, [bootstrap], topics, member=parse_member(member), dlq_topic=dlq, poll_ms=100)
    try:
        ingest.run(until_idle=True, wait_for_topics=5)
    finally:
        ingest.close()
    return ingest


def read_topic(bootstrap: str, topic: str, expect: int) -> list[Any]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
    consumer.assign(tps)
    consumer.seek_to_beginning()
    out: list[Any] = []
    for _ in range(50):
        for batch in consumer.poll(timeout_ms=200).values():
            out += batch
        if len(out) >= expect:
            break
    consumer.close()
    return out


# --- the binding, without a broker ---------------------------------------------------------------
@pytest.mark.fast
def test_binary_and_structured_modes_decode_to_the_same_fact():
    reg = event("case.registered", "CASE-1", "2026-10-30T08:10:00Z", registration("CALL-1"))
    facts = [wire.decode_message(*wire.encode(reg, mode)).fact for mode in ("structured", "binary")]
    # each is the fact the contract makes of the event itself, envelope and data
    assert facts[0] == facts[1] == validate(reg)
    assert facts[0].data["customer"]["region"] == "R01"


@pytest.mark.fast
def test_a_structured_event_without_content_type_is_still_read():
    reg = event("call.received", "CALL-1", "2026-10-30T08:00:00Z", {"phone": "138", "intent": "repair"})
    assert wire.decode_message(orjson.dumps(reg), []).fact == validate(reg)


@pytest.mark.parametrize("value, headers, field, words", [
    (b"{not json", [], "(message)", "not JSON"),
    (b'{"hello": "world"}', [], "specversion", "not a CloudEvent"),
    (b'[1, 2]', [("content-type", wire.STRUCTURED.encode())], "(message)", "not an object"),
    (b"<xml/>", [("ce_specversion", b"1.0"), ("ce_id", b"x"), ("ce_source", b"/s"), ("ce_type", b"call.received"),
                 ("ce_time", b"2026-10-30T08:00:00Z"), ("ce_subject", b"C"), ("content-type", b"application/xml")],
     "datacontenttype", "application/xml"),
    (b"[]", [("content-type", wire.BATCH.encode())], "content-type", "one event per message"),
])
@pytest.mark.fast
def test_poison_messages_are_rejected_with_the_reason(value, headers, field, words):
    decoded = wire.decode_message(value, headers)
    assert decoded.fact is None and decoded.rejection is not None
    [error] = decoded.rejection.errors
    assert error["field"] == field and words in error["message"]


@pytest.mark.fast
def test_an_unknown_type_and_invalid_data_are_named_by_field():
    unknown = event("case.teleported", "CASE-1", "2026-10-30T08:10:00Z", {})
    invalid = event("service.completed", "CASE-1", "2026-10-30T08:10:00Z",
                    {"technician_id": "TEC-1", "fault_code": "E1", "cause": "gremlins", "first_visit": True})
    assert wire.decode_message(*wire.encode(unknown, "binary")).rejection.errors[0]["field"] == "type"
    assert wire.decode_message(*wire.encode(invalid)).rejection.errors[0]["field"] == "data.cause"


@pytest.mark.fast
def test_a_member_is_k_of_n():
    assert parse_member("2/3") == (2, 3)
    for bad in ("0/2", "3/2", "2", "a/b"):
        with pytest.raises(ValueError, match="k/n"):
            parse_member(bad)


# --- against the broker, on both databases ------------------------------------------------------
def test_events_from_a_topic_are_recorded_once_and_a_restart_takes_nothing_twice(
        database_url: str, kafka_bootstrap: str):
    topic = new_topic(kafka_bootstrap)
    case_1 = story("CASE-1", "CALL-1")
    produce(kafka_bootstrap, topic, case_1, "structured")
    produce(kafka_bootstrap, topic, story("CASE-2", "CALL-2"), "binary")
    engine = Engine.open(database_url)
    first = consume(engine, kafka_bootstrap, [topic]).totals
    assert (first.messages, first.accepted, first.quarantined) == (12, 12, 0)
    summary = leaks_view.summary(engine.storage, engine.clock())
    assert summary["cases"] == 2 and summary["closed_loops"] == 2  # the views are current
    assert sum(o["next_offset"] for o in stored_offsets(engine.storage)) == 12
    again = consume(engine, kafka_bootstrap, [topic]).totals
    assert again.messages == 0  # seeks to the stored offsets
    produce(kafka_bootstrap, topic, case_1, "binary")  # a producer's resend, in the other mode
    resend = consume(engine, kafka_bootstrap, [topic]).totals
    assert (resend.messages, resend.accepted, resend.duplicates) == (6, 0, 6)
    assert len(engine.log.read(0, 1000)) == 12
    engine.close()


def test_poison_never_stops_the_consumer_and_is_quarantined_and_dead_lettered(
        database_url: str, kafka_bootstrap: str):
    topic, dlq = new_topic(kafka_bootstrap, 1), new_topic(kafka_bootstrap, 1)
    good = story("CASE-1", "CALL-1")
    produce(kafka_bootstrap, topic, good[:2])
    produce_raw(kafka_bootstrap, topic, b"this is not json")
    produce_raw(kafka_bootstrap, topic, b'{"not": "a cloudevent"}')
    produce(kafka_bootstrap, topic, [event("case.teleported", "CASE-1", "2026-10-30T08:11:00Z", {})], "binary")
    produce(kafka_bootstrap, topic, [event("case.dispatched", "CASE-1", "2026-10-30T08:12:00Z",
                                           {"outlet_id": "OUT-1", "by": "telepathy"})])
    changed = dict(good[0], data={"phone": "139", "intent": "install"})  # an id reused with other content
    produce(kafka_bootstrap, topic, [changed], key="CALL-1")
    produce(kafka_bootstrap, topic, good[2:])
    engine = Engine.open(database_url)
    totals = consume(engine, kafka_bootstrap, [topic], dlq=dlq).totals
    assert (totals.messages, totals.accepted, totals.quarantined) == (11, 6, 5)
    entries = engine.quarantine.list()["items"]
    assert [e["channel"] for e in entries] == [f"kafka:{topic}/0@{o}" for o in (2, 3, 4, 5, 6)]
    assert [e["errors"][0]["field"] for e in entries] == ["(message)", "specversion", "type", "data.by", "id"]
    assert entries[0]["event"] == "this is not json"
    dead = read_topic(kafka_bootstrap, dlq, 5)
    assert len(dead) == 5
    headers = [dict(m.headers) for m in dead]
    assert [h[binding.DLQ_OFFSET] for h in headers] == [b"2", b"3", b"4", b"5", b"6"]
    assert all(h[binding.DLQ_TOPIC] == topic.encode() for h in headers)
    assert b"unknown event type 'case.teleported'" in headers[2][binding.DLQ_REASON]
    assert [int(h[binding.DLQ_QUARANTINE_ID]) for h in headers] == [e["qid"] for e in entries]
    assert dead[0].value == b"this is not json"
    # the operator corrects one and sends it again: it joins the case
    fixed = engine.resubmit(entries[3]["qid"], dict(entries[3]["event"], data={"outlet_id": "OUT-1", "by": "agent"}))
    assert fixed.accepted == 1
    engine.close()


def test_members_share_the_partitions_and_each_case_keeps_its_order(database_url: str, kafka_bootstrap: str):
    topic = new_topic(kafka_bootstrap, 4)
    cases = [(f"CASE-{i}", f"CALL-{i}") for i in range(12)]
    for case, call in cases:
        produce(kafka_bootstrap, topic, story(case, call), "binary" if int(case[5:]) % 2 else "structured")
    engine = Engine.open(database_url)
    one = consume(engine, kafka_bootstrap, [topic], member="1/2")
    two = consume(engine, kafka_bootstrap, [topic], member="2/2")
    assert {tp.partition for tp in one._assigned} == {0, 2} and {tp.partition for tp in two._assigned} == {1, 3}
    assert one.totals.accepted + two.totals.accepted == 72
    assert {o["member"] for o in stored_offsets(engine.storage)} == {"1/2", "2/2"}
    for case, _ in cases:  # in the order the producers sent them, whichever member read them
        assert [f.type for f in engine.log.stream(f"case:{case}")] == [e["type"] for e in story(case, "x")[1:]]
    engine.close()


def test_members_at_once_each_keep_their_share_of_the_views_and_reactors(database_url: str, kafka_bootstrap: str):
    import threading

    topic = new_topic(kafka_bootstrap, 4)
    events = [e for i in range(16) for e in story(f"CASE-{i}", f"CALL-{i}")]
    produce(kafka_bootstrap, topic, events)
    members = [Engine.open(database_url, share=(k, 2)) for k in (1, 2)]
    full = Engine.open(database_url)
    # the two shares split the views and reactors between them, with none left out
    for part in ("views", "reactors"):
        mine = [{x.name for x in getattr(m, part)} for m in members]
        assert not mine[0] & mine[1] and mine[0] | mine[1] == {x.name for x in getattr(full, part)}
    assert all(m.views for m in members)
    threads = [threading.Thread(target=consume, args=(m, kafka_bootstrap, [topic], f"{k}/2"))
               for k, m in zip((1, 2), members)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for m in members:  # what the other member appended after this one went idle
        m.catch_up()
    # every view and reactor is current without the full engine's help
    assert set(full.projector.lag().values()) == {0}
    head = full.log.head()
    assert set(full.reactions.positions().values()) == {head}

    reference = Engine.open(database_url.replace("closedloop.db", "reference.db")) if "sqlite" in database_url \
        else None
    if reference is not None:
        reference.submit(events)
        # (the case files hold log positions, which differ between the two logs)
        for table, columns in (("loop_items", "item, kind, service, started, registered, completed, region, "
                                "outlet_id, technician_id, complained, dissatisfied, first_leak, anomalies"),
                               ("loop_spans", "*")):
            with full.storage.reading() as a, reference.storage.reading() as b:
                ours = sorted(map(tuple, a.all(f"SELECT {columns} FROM {table}")))
                assert len(ours) >= 16 and ours == sorted(map(tuple, b.all(f"SELECT {columns} FROM {table}")))
        reference.close()
    for m in members + [full]:
        m.close()


def test_lag_per_partition_is_the_brokers_end_less_the_stored_position(database_url: str, kafka_bootstrap: str):
    topic = new_topic(kafka_bootstrap, 2)
    engine = Engine.open(database_url)
    produce(kafka_bootstrap, topic, story("CASE-1", "CALL-1") + story("CASE-2", "CALL-2"))
    before = lag_report(engine.storage, [kafka_bootstrap], [topic])
    assert before["total_lag"] == 12 and {p["partition"] for p in before["partitions"]} == {0, 1}
    assert all(p["position"] is None for p in before["partitions"])
    consume(engine, kafka_bootstrap, [topic])
    after = lag_report(engine.storage, [kafka_bootstrap], [topic])
    assert after["total_lag"] == 0
    assert sum(p["position"] for p in after["partitions"]) == 12
    offline = lag_report(engine.storage, None, [topic])
    assert offline["total_lag"] is None and "stored positions only" in offline["note"]
    engine.close()
