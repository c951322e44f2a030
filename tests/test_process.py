"""Process logic infrastructure: the engine's own decisions are facts in the same log,
taken once, with the reactor's state and position committed together."""

from __future__ import annotations

from typing import Sequence

from closedloop.domain.facts import Fact, parse_ms
from closedloop.app.engine import Engine
from closedloop.reactors.process import engine_fact
from closedloop.log.storage import Tx

from conftest import event, registration


class DispatchEverythingToOneOutlet:
    """A toy dispatcher: every registered case goes to OUT-1; unaccepted after an hour, to the center."""

    name = "toy-dispatch"

    def __init__(self, version: str = "1") -> None:
        self.version = version

    def fingerprint(self) -> str:
        return self.version

    def tables(self) -> list[str]:
        return ["toy_waiting"]

    def create_statements(self) -> list[str]:
        return ["CREATE TABLE toy_waiting (case_id TEXT PRIMARY KEY, since {bigint} NOT NULL)"]

    def react(self, tx: Tx, facts: Sequence[Fact]) -> list[Fact]:
        decisions = []
        for f in facts:
            if f.type == "case.registered":
                tx.execute(f"INSERT INTO toy_waiting (case_id, since) VALUES ({tx.marks(2)}) ON CONFLICT DO NOTHING",
                           [f.subject, f.time_ms])
                decisions.append(engine_fact("case.dispatched", f.subject, f.time_ms,
                                             {"outlet_id": "OUT-1", "by": "system"}, self.name,
                                             f"dispatch:{f.subject}:1"))
            elif f.type == "dispatch.accepted":
                tx.execute(f"DELETE FROM toy_waiting WHERE case_id = {tx.q}", [f.subject])
        return decisions

    def due(self, tx: Tx, now: int) -> list[Fact]:
        rows = tx.all(f"SELECT case_id, since FROM toy_waiting WHERE since <= {tx.q}", [now - 3_600_000])
        tx.execute(f"DELETE FROM toy_waiting WHERE since <= {tx.q}", [now - 3_600_000])
        return [engine_fact("case.transferred", r["case_id"], r["since"] + 3_600_000,
                            {"from_outlet_id": "OUT-1", "to": "center", "reason": "not accepted within 1 h"},
                            self.name, f"escalate:{r['case_id']}") for r in rows]


def dispatches(engine: Engine, case_id: str) -> list[Fact]:
    return [f for f in engine.log.stream(f"case:{case_id}") if f.source.startswith("/closedloop/engine")]


def test_a_decision_is_a_fact_in_the_case_stream_taken_once(database_url: str):
    engine = Engine.open(database_url, reactors=[DispatchEverythingToOneOutlet()])
    reg = event("case.registered", "CASE-1", "2026-10-30T08:10:00Z", registration("CALL-1"))
    engine.submit([reg])
    engine.submit([reg])  # a resend decides nothing new
    engine.catch_up()
    [decision] = dispatches(engine, "CASE-1")
    assert decision.type == "case.dispatched" and decision.data["by"] == "system"
    assert decision.time_ms == parse_ms("2026-10-30T08:10:00Z")
    # the view saw the engine's decision like any other fact: the case is the outlet's to handle
    with engine.storage.reading() as tx:
        assert tx.one("SELECT outlet_id FROM loop_items WHERE case_id = 'CASE-1'")["outlet_id"] == "OUT-1"
        still_open = tx.all("SELECT stage, owner FROM loop_spans WHERE case_id = 'CASE-1' AND closed IS NULL")
    assert [(r["stage"], r["owner"]) for r in still_open] == [("handled", "outlet:OUT-1")]
    engine.close()


def test_time_passing_decides_and_a_second_tick_decides_nothing_more(database_url: str):
    now = [parse_ms("2026-10-30T08:30:00Z")]
    engine = Engine.open(database_url, reactors=[DispatchEverythingToOneOutlet()], clock=lambda: now[0])
    engine.submit([event("case.registered", "CASE-1", "2026-10-30T08:10:00Z", registration("CALL-1")),
                   event("case.registered", "CASE-2", "2026-10-30T08:10:00Z", registration("CALL-2")),
                   event("dispatch.accepted", "CASE-2", "2026-10-30T08:20:00Z",
                         {"outlet_id": "OUT-1", "technician_id": "TEC-1"}, source="/outlet/OUT-1")])
    assert engine.tick() == 0
    now[0] = parse_ms("2026-10-30T09:30:00Z")
    assert engine.tick() == 1
    assert engine.tick() == 0
    assert [f.type for f in dispatches(engine, "CASE-1")] == ["case.dispatched", "case.transferred"]
    assert [f.type for f in dispatches(engine, "CASE-2")] == ["case.dispatched"]
    engine.close()


def test_new_rules_rebuild_the_reactor_without_deciding_history_again(database_url: str):
    engine = Engine.open(database_url, reactors=[DispatchEverythingToOneOutlet("1")])
    engine.submit([event("case.registered", "CASE-1", "2026-10-30T08:10:00Z", registration("CALL-1"))])
    engine.close()
    changed = DispatchEverythingToOneOutlet("2")
    engine = Engine.open(database_url, reactors=[changed])
    engine.catch_up()
    assert len(dispatches(engine, "CASE-1")) == 1
    with engine.storage.reading() as tx:  # its state was rebuilt from the log all the same
        assert tx.one("SELECT COUNT(*) AS n FROM toy_waiting")["n"] == 1
    engine.submit([event("case.registered", "CASE-2", "2026-10-30T09:10:00Z", registration("CALL-2"))])
    assert len(dispatches(engine, "CASE-2")) == 1
    engine.close()
