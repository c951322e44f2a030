"""Events into the log on SQLite and PostgreSQL: once only, nothing lost, any order."""

from __future__ import annotations

import random

from closedloop.domain.facts import parse_ms
from closedloop.app.engine import Engine
from closedloop.projections import leaks as leaks_view

from conftest import event, registration

CALL = event("call.received", "CALL-1", "2026-10-30T08:00:00Z", {"phone": "138", "intent": "repair", "agent_id": "A7"})
REG = event("case.registered", "CASE-1", "2026-10-30T08:10:00Z", registration("CALL-1"))
DONE = event("service.completed", "CASE-1", "2026-10-31T09:00:00Z",
             {"technician_id": "TEC-1", "fault_code": "E1", "cause": "manufacturing", "first_visit": True},
             source="/outlet/OUT-1")
CALLBACK = event("callback.made", "CASE-1", "2026-10-31T12:00:00Z",
                 {"agent_id": "CB-1", "reached": True, "satisfaction": "very_dissatisfied"}, source="/callback/desk-1")
ROUTED = event("feedback.routed", "FB-1", "2026-10-31T13:00:00Z",
               {"case_id": "CASE-1", "department": "manufacturing", "summary": "compressor batch"},
               source="/quality/router")
ACKED = event("feedback.acknowledged", "FB-1", "2026-11-01T13:00:00Z",
              {"owner": "Zhang Wei", "corrective_action": "inspect batch B2026-07-A"}, source="/quality/manufacturing")
STORY = [CALL, REG, DONE, CALLBACK, ROUTED, ACKED]


def summary(engine: Engine, moment: str) -> dict:
    s = leaks_view.summary(engine.storage, parse_ms(moment))
    s.pop("as_of")
    return s


def test_a_resend_is_a_no_op(engine: Engine):
    first = engine.submit(STORY)
    again = engine.submit(STORY)
    assert (first.accepted, again.accepted, again.duplicates) == (6, 0, 6)
    assert engine.log.head() == 7  # the six, and the engine's routing of the manufacturing cause
    assert engine.quarantine.list()["total"] == 0


def test_a_resend_within_one_batch_is_a_no_op(engine: Engine):
    result = engine.submit([CALL, CALL, REG])
    assert (result.accepted, result.duplicates) == (2, 1)


def test_an_id_reused_with_other_content_is_quarantined_not_recorded(engine: Engine):
    engine.submit([CALL])
    changed = dict(CALL, data={"phone": "139", "intent": "install"})
    result = engine.submit([changed])
    assert result.accepted == 0 and len(result.rejected) == 1
    entry = engine.quarantine.list()["items"][0]
    assert entry["errors"][0]["field"] == "id" and "different content" in entry["errors"][0]["message"]
    assert entry["event"]["data"]["intent"] == "install"


def test_a_rejected_event_is_kept_and_can_be_corrected_and_resubmitted(engine: Engine):
    broken = dict(DONE, data={"technician_id": "TEC-1", "fault_code": "E1", "cause": "gremlins", "first_visit": True})
    result = engine.submit([CALL, REG, broken])
    assert result.accepted == 2 and len(result.rejected) == 1
    assert result.rejected[0].errors[0]["field"] == "data.cause"
    [entry] = engine.quarantine.list()["items"]
    again = engine.resubmit(entry["qid"])  # as it was: still wrong, still kept
    assert again.rejected and engine.quarantine.get(entry["qid"])["status"] == "open"
    fixed = engine.resubmit(entry["qid"], DONE)
    assert fixed.accepted == 1
    assert engine.quarantine.get(entry["qid"])["status"] == "resubmitted"
    assert engine.quarantine.list()["total"] == 0


def test_the_story_out_of_order_gives_the_same_loop_as_in_order(engine: Engine, database_url: str, tmp_path):
    rng = random.Random(11)
    shuffled = STORY[:]
    rng.shuffle(shuffled)
    for ev in shuffled:  # one by one: each arrives in its own batch
        engine.submit([ev])
    reference = Engine.open(f"sqlite:///{tmp_path}/reference.db")
    reference.submit(STORY)
    for moment in ("2026-10-30T08:05:00Z", "2026-10-30T09:00:00Z", "2026-11-01T12:59:00Z", "2026-11-05T00:00:00Z"):
        assert summary(engine, moment) == summary(reference, moment), moment
    reference.close()


def test_a_registration_before_its_call_still_links_them(engine: Engine):
    engine.submit([REG])
    engine.submit([CALL])
    s = summary(engine, "2026-10-30T09:00:00Z")
    assert s["cases"] == 1 and s["open"]["recorded"] == 0
    items = leaks_view.leaks(engine.storage, parse_ms("2026-10-30T09:00:00Z"), leaks_view.LeakFilter())
    assert items["total"] == 0


def test_an_acknowledgement_before_its_routing_still_closes_the_loop(engine: Engine):
    engine.submit([CALL, REG, DONE, CALLBACK, ACKED])
    assert summary(engine, "2026-11-05T00:00:00Z")["leaks"]["fed_back"] == 1
    engine.submit([ROUTED])
    assert summary(engine, "2026-11-05T00:00:00Z")["leaks"]["fed_back"] == 0


def test_views_can_be_dropped_and_rebuilt_to_the_same_rows(engine: Engine):
    engine.submit(STORY)
    before = summary(engine, "2026-11-05T00:00:00Z")
    n = engine.projector.rebuild()
    assert n == 7  # the six, and the engine's routing
    assert summary(engine, "2026-11-05T00:00:00Z") == before
    assert set(engine.projector.lag().values()) == {0}  # every view current


def test_two_writers_on_one_database_lose_and_repeat_nothing(engine: Engine, database_url: str):
    """Two engines (as two processes would) append to the same cases' streams in turn;
    each one's cached stream versions go stale and the append retries."""
    other = Engine.open(database_url)
    try:
        events = []
        for i in range(40):
            events.append(event("call.received", f"CALL-{i}", "2026-10-30T08:00:00Z", {"phone": "1", "intent": "repair"}))
            events.append(event("case.registered", f"CASE-{i % 5}", f"2026-10-30T08:{i:02d}:00Z",
                                registration(f"CALL-{i}")))
        for n, ev in enumerate(events):
            (engine if n % 3 else other).submit([ev])
        # (PostgreSQL's sequence skips the positions of a rolled-back attempt: count rows)
        assert sum(len(batch) for batch in engine.log.follow(0)) == len(events)
        assert other.submit(events).duplicates == len(events)
        streams = {f"case:CASE-{k}" for k in range(5)}
        for stream in streams:
            assert len(engine.log.stream(stream)) == 8
        engine.catch_up()
        other.catch_up()
        assert set(engine.projector.lag().values()) == {0}  # every view current
        at = parse_ms("2026-10-30T10:00:00Z")
        assert leaks_view.summary(engine.storage, at) == leaks_view.summary(other.storage, at)
    finally:
        other.close()


def test_two_writers_at_once_project_the_same_views_without_stepping_on_each_other(engine: Engine,
                                                                                   database_url: str):
    """Two engines submitting at the same moment (two consumers sharing a topic's partitions)
    both bring the views along; neither fails because the other moved a view's position
    between its read and its update."""
    import threading

    other = Engine.open(database_url)
    errors: list[BaseException] = []

    def send(e: Engine, offset: int) -> None:
        try:
            for b in range(15):
                batch = []
                for i in range(offset + b * 10, offset + b * 10 + 10):
                    batch.append(event("call.received", f"CALL-{i}", "2026-10-30T08:00:00Z",
                                       {"phone": "1", "intent": "repair"}))
                    batch.append(event("case.registered", f"CASE-{i}", "2026-10-30T08:05:00Z",
                                       registration(f"CALL-{i}")))
                e.submit(batch)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    try:
        threads = [threading.Thread(target=send, args=(e, k * 1000)) for k, e in enumerate((engine, other))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        engine.catch_up()
        assert set(engine.projector.lag().values()) == {0}
        at = parse_ms("2026-10-30T10:00:00Z")
        assert leaks_view.summary(engine.storage, at)["cases"] == 300
    finally:
        other.close()


def test_processes_starting_together_on_a_fresh_database_all_get_their_tables(database_url: str):
    """Consumers and servers started at the same moment on an empty database each create the
    tables they need; none may fail because another was creating them too."""
    import threading

    errors: list[BaseException] = []
    engines: list[Engine] = []
    start = threading.Barrier(4)

    def open_one() -> None:
        try:
            start.wait()
            engines.append(Engine.open(database_url, reactors=[]))
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert engines[0].submit([CALL]).accepted == 1
    for e in engines:
        e.close()
