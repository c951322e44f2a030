"""The network view is rebuildable and answers for any moment: rebuilt from the log it equals
the live one, and its answer for T equals a view built only from the facts up to T.
A synthetic workload runs with automatic dispatch on, so the log holds the engine's own
dispatches, alarms, escalations, part decisions and permit changes too."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from closedloop.domain.facts import to_ms
from closedloop.app.engine import Engine, feed
from closedloop.reactors.network import NetworkConfig
from closedloop.projections import alarms as alarms_view
from closedloop.projections import outlets as outlets_view
from closedloop.projections import stock as stock_view
from closedloop.projections.network import NetworkView
from closedloop.log.storage import SQLiteStorage
from closedloop.simulation.workload import WorkloadSpec, generate

from conftest import event, registration

END = datetime(2026, 11, 1, tzinfo=UTC)
SPEC = WorkloadSpec(seed=5, days=3, calls_per_day=150, outlets=12, regions=3, end=END)
TABLES = ("net_outlets", "net_technicians", "net_permit", "net_assignments", "net_alarms", "net_warehouses",
          "net_stock", "net_requests")


@pytest.fixture(scope="module")
def workload() -> list[dict]:
    return list(generate(SPEC))


@pytest.fixture
def live(database_url: str, workload: list[dict]) -> Engine:
    engine = Engine.open(database_url, network=NetworkConfig().with_auto_dispatch(True), clock=lambda: to_ms(END))
    result = feed(engine, workload, batch_size=500)
    assert not result.rejected
    # and a few cases no outlet ever accepts, so that alarms and escalations have work
    unanswered = [event("case.registered", f"CASE-X{n}", f"2026-10-31T0{n}:15:00Z",
                        registration(f"CALL-X{n}", region=f"R0{n}", product_line=line))
                  for n, line in ((1, "refrigerator"), (2, "washer"), (3, "air_conditioner"))]
    assert not engine.submit(unanswered).rejected
    engine.tick()  # the deadlines that had passed by the end: alarms and escalations
    yield engine
    engine.close()


def snapshot(engine: Engine) -> dict[str, list]:
    out = {}
    with engine.storage.reading() as tx:
        for table in TABLES:
            rows = [tuple(r) for r in tx.all(f"SELECT * FROM {table}")]
            out[table] = sorted(rows, key=repr)
    return out


def answers(storage, engine: Engine, at: int) -> dict:
    net = engine.network
    return {
        "outlets": outlets_view.outlets(storage, at, net.dispatch, net.permit, limit=1000),
        "technicians": outlets_view.technicians(storage, at, net.permit, limit=1000),
        "alarms": alarms_view.alarms(storage, at, state="all", limit=1000),
        "open_alarms": alarms_view.alarms(storage, at, limit=1000),
        "warehouses": stock_view.warehouses(storage, at),
        "requests": stock_view.part_requests(storage, at, state="all", limit=1000),
    }


def test_the_engine_decided_every_kind_of_thing_in_this_workload(live: Engine):
    with live.storage.reading() as tx:
        kinds = {r["topic"] for r in tx.all("SELECT DISTINCT topic FROM closedloop_events")}
    for kind in ("case.dispatched", "dispatch.alarmed", "part.approved", "permit.points_changed"):
        assert kind in kinds, kind


def test_a_rebuild_of_the_network_view_equals_the_live_one(live: Engine):
    before = snapshot(live)
    assert sum(len(rows) for rows in before.values()) > 1000
    live.projector.rebuild()
    assert snapshot(live) == before


def test_the_network_at_a_moment_equals_a_view_of_only_the_facts_up_to_it(live: Engine):
    start = END - timedelta(days=SPEC.days)
    for hours in (5, 30, 51, 70):
        at = to_ms(start + timedelta(hours=hours))
        scratch = SQLiteStorage("sqlite://:memory:", ":memory:")
        try:
            view = NetworkView(live.network.dispatch)
            scratch.create(view.create_statements())
            for facts in live.log.follow(0, 2000):
                kept = [f for f in facts if f.time_ms <= at]
                if kept:
                    with scratch.writing() as tx:
                        view.apply(tx, kept)
            assert answers(scratch, live, at) == answers(live.storage, live, at), hours
        finally:
            scratch.close()
