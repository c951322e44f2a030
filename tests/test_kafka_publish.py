"""Out: leaks become `loop.leaked` alerts as they occur; feedback and alerts are published to
department and alert topics as CloudEvents, with stable ids, from a tracked position."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest

from closedloop.contract import kafka as wire
from closedloop.consumers.kafka_publisher import KafkaPublisher, Topics, publisher_status
from closedloop.log.followers import FOLLOWERS_TABLE
from closedloop.domain.facts import parse_ms
from closedloop.domain.policy import LoopPolicy
from closedloop.app.engine import Engine
from closedloop.reactors.leak_alerts import LeakAlerts
from closedloop.app.settings import load_settings
from closedloop.projections import leaks as leaks_view

from conftest import event, registration
from test_kafka_consume import read_topic

CALL = event("call.received", "CALL-1", "2026-10-30T08:00:00Z", {"phone": "138", "intent": "repair", "agent_id": "A7"})
REG = event("case.registered", "CASE-1", "2026-10-30T08:10:00Z", registration("CALL-1"))
DONE = event("service.completed", "CASE-1", "2026-10-31T09:00:00Z",
             {"technician_id": "TEC-1", "fault_code": "E1", "cause": "manufacturing", "first_visit": True},
             source="/outlet/OUT-1")
CALLBACK = event("callback.made", "CASE-1", "2026-10-31T12:00:00Z",
                 {"agent_id": "CB-1", "reached": True, "satisfaction": "satisfied"}, source="/callback/desk-1")
ROUTED = event("feedback.routed", "FB-1", "2026-10-31T13:00:00Z",
               {"case_id": "CASE-1", "department": "manufacturing", "summary": "compressor batch"},
               source="/quality/router")
ORPHAN_CALL = event("call.received", "CALL-9", "2026-10-30T09:00:00Z", {"phone": "139", "intent": "install"})


class Clock:
    def __init__(self, moment: str) -> None:
        self.now = parse_ms(moment)

    def __call__(self) -> int:
        return self.now

    def set(self, moment: str) -> None:
        self.now = parse_ms(moment)


def alerts(engine: Engine) -> list[Any]:
    return [f for batch in engine.log.follow(0) for f in batch if f.type == "loop.leaked"]


# --- loop.leaked -----------------------------------------------------------------------------
def test_a_step_that_passes_its_due_time_open_is_alerted_once(database_url: str):
    clock = Clock("2026-10-30T08:20:00Z")
    engine = Engine.open(database_url, clock=clock, reactors=[LeakAlerts(LoopPolicy())])
    engine.submit([CALL, REG, ORPHAN_CALL])
    assert engine.tick() == 0  # nothing is overdue yet
    clock.set("2026-10-30T10:00:00Z")  # the orphan call was due to be recorded by 09:30
    assert engine.tick() == 1
    assert engine.tick() == 0
    clock.set("2026-11-02T00:00:00Z")  # CASE-1 was due to be handled by 11-01 08:10
    assert engine.tick() == 1
    [orphan, handled] = alerts(engine)
    assert (orphan.subject, orphan.data["stage"], orphan.data["call_id"], orphan.data["case_id"]) == \
        ("CALL-9", "recorded", "CALL-9", None)
    assert orphan.time_ms == parse_ms("2026-10-30T09:30:00Z")  # when, in the world, it leaked
    assert (handled.subject, handled.data["stage"], handled.data["due"]) == \
        ("CASE-1", "handled", "2026-11-01T08:10:00.000Z")
    assert handled.data["owner"] == "dispatch" and handled.source == "/closedloop/engine/leak-alerts"
    assert handled.stream == "alert:CASE-1"
    engine.close()


def test_a_step_closed_in_time_is_never_alerted_and_alerts_leave_the_loop_unchanged(database_url: str):
    clock = Clock("2026-10-30T08:20:00Z")
    engine = Engine.open(database_url, clock=clock, reactors=[LeakAlerts(LoopPolicy())])
    engine.submit([CALL, REG, DONE, CALLBACK])
    clock.set("2026-11-06T00:00:00Z")  # only feeding back is left, due 11-03 09:00
    before = leaks_view.summary(engine.storage, clock.now)
    assert engine.tick() == 1
    [fed_back] = alerts(engine)
    assert fed_back.data["stage"] == "fed_back" and fed_back.data["owner"] == "feedback-desk"
    assert leaks_view.summary(engine.storage, clock.now) == before
    engine.projector.rebuild()
    assert leaks_view.summary(engine.storage, clock.now) == before
    engine.close()


def test_a_step_that_arrives_already_overdue_is_alerted_at_the_next_look(database_url: str):
    clock = Clock("2026-11-10T00:00:00Z")
    engine = Engine.open(database_url, clock=clock, reactors=[LeakAlerts(LoopPolicy())])
    assert engine.tick() == 0
    engine.submit([CALL, REG])  # a backfill, days late
    assert engine.tick() == 1 and alerts(engine)[0].data["stage"] == "handled"
    engine.close()


def test_leak_alerts_are_on_by_default_and_can_be_switched_off():
    assert load_settings(env={}).leak_alerts
    assert not load_settings(env={"CLOSEDLOOP_LEAK_ALERTS": "0"}).leak_alerts
    assert not load_settings(env={"CLOSEDLOOP_LEAK_ALERTS": "off"}).leak_alerts


# --- publishing ------------------------------------------------------------------------------
@pytest.mark.kafka
def test_feedback_goes_to_its_department_and_leaks_to_the_alerts_topic_keyed_and_stable(
        database_url: str, kafka_bootstrap: str):
    prefix = f"fb-{uuid.uuid4().hex[:8]}."
    topics = Topics(alerts=f"alerts-{uuid.uuid4().hex[:8]}", feedback_prefix=prefix)
    clock = Clock("2026-10-30T08:20:00Z")
    engine = Engine.open(database_url, clock=clock, reactors=[LeakAlerts(LoopPolicy())])
    engine.submit([CALL, REG, DONE, ROUTED, ORPHAN_CALL])
    clock.set("2026-11-02T00:00:00Z")  # the orphan call and the review of CASE-1 have leaked
    assert engine.tick() == 2
    publisher = KafkaPublisher(engine, [kafka_bootstrap], topics, mode="structured")
    assert publisher.publish_once() == 3
    assert publisher_status(engine)["behind"] == 0
    [fb] = read_topic(kafka_bootstrap, f"{prefix}manufacturing", 1)
    assert fb.key == b"FB-1" and dict(fb.headers)["content-type"] == wire.STRUCTURED.encode()
    body = orjson.loads(fb.value)
    assert (body["type"], body["id"], body["source"], body["data"]["case_id"]) == \
        ("feedback.routed", ROUTED["id"], "/quality/router", "CASE-1")
    sent = read_topic(kafka_bootstrap, topics.alerts, 2)
    assert sorted(m.key for m in sent) == [b"CALL-9", b"CASE-1"]
    leaked = {orjson.loads(m.value)["data"]["stage"]: orjson.loads(m.value) for m in sent}
    assert set(leaked) == {"recorded", "reviewed"}
    # a crash before the position moved: the batch is sent again, with the same ids
    with engine.storage.writing() as tx:
        tx.execute(f"UPDATE {FOLLOWERS_TABLE} SET position = 0 WHERE kind = 'publisher'")
    assert publisher.publish_once() == 3
    again = read_topic(kafka_bootstrap, topics.alerts, 4)
    assert sorted((m.key, orjson.loads(m.value)["id"]) for m in again) == \
        sorted([(m.key, orjson.loads(m.value)["id"]) for m in sent] * 2)
    assert publisher.publish_once() == 0  # nothing new
    publisher.close()
    engine.close()


@pytest.mark.kafka
def test_what_the_publisher_sends_a_consumer_reads_back_as_the_same_facts(database_url: str, kafka_bootstrap: str,
                                                                           tmp_path):
    from test_kafka_consume import consume

    topics = Topics(alerts=f"alerts-{uuid.uuid4().hex[:8]}", feedback_prefix=f"fb-{uuid.uuid4().hex[:8]}.")
    engine = Engine.open(database_url, reactors=[])
    engine.submit([CALL, REG, DONE, ROUTED])
    publisher = KafkaPublisher(engine, [kafka_bootstrap], topics, mode="binary")
    assert publisher.publish_once() == 1
    publisher.close()
    mirror = Engine.open(f"sqlite:///{tmp_path}/mirror.db", reactors=[])
    consume(mirror, kafka_bootstrap, [topics.feedback("manufacturing")])
    [copy] = mirror.log.read(0)
    [original] = [f for f in engine.log.read(0) if f.type == "feedback.routed"]
    assert (copy.key, copy.type, copy.subject, copy.time_ms, dict(copy.data)) == \
        (original.key, original.type, original.subject, original.time_ms, dict(original.data))
    mirror.close()
    engine.close()
