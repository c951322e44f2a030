"""Replay: views rebuilt from the log equal the live ones, and the loop at a past moment
computed by replaying only the facts up to it equals what the live views say of it."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from closedloop.domain.facts import to_ms
from closedloop.app.engine import Engine, feed
from closedloop.projections import controls as controls_view
from closedloop.projections import leaks as leaks_view
from closedloop.projections.loop import ITEMS, SPANS
from closedloop.app.replay import loop_as_of
from closedloop.simulation.workload import WorkloadSpec, generate

END = datetime(2026, 11, 1, tzinfo=UTC)
SPEC = WorkloadSpec(seed=21, days=5, calls_per_day=120, outlets=16, regions=4, end=END)


@pytest.fixture(scope="module")
def workload() -> list[dict]:
    return list(generate(SPEC))


def moments() -> list[int]:
    start = END - timedelta(days=SPEC.days)
    return [to_ms(start + timedelta(hours=h)) for h in (3, 19, 40, 61, 87, 101, 119)] + [to_ms(END + timedelta(days=4))]


def snapshot(engine: Engine) -> tuple[list, list]:
    with engine.storage.reading() as tx:
        items = [dict(r) for r in tx.all(f"SELECT * FROM {ITEMS} ORDER BY item")]
        spans = [dict(r) for r in tx.all(
            f"SELECT * FROM {SPANS} ORDER BY item, stage, opened, due, owner")]
    return items, spans


def test_a_rebuild_from_the_log_equals_the_live_views(engine: Engine, workload: list[dict]):
    result = feed(engine, workload, batch_size=700)
    assert result.accepted == len(workload) and not result.rejected
    live = snapshot(engine)
    assert len(live[0]) > 400 and len(live[1]) > 800
    in_log = sum(len(batch) for batch in engine.log.follow(0))  # the workload and the engine's decisions
    assert in_log > len(workload)
    assert engine.projector.rebuild() == in_log
    assert snapshot(engine) == live


def every_view_table(engine: Engine) -> dict[str, list]:
    out = {}
    with engine.storage.reading() as tx:
        for view in engine.views:
            for table in view.tables():
                out[table] = sorted(repr(tuple(r)) for r in tx.all(f"SELECT * FROM {table}"))
    return out


def test_views_folded_by_several_processes_at_once_equal_the_live_ones(engine: Engine, workload: list[dict]):
    feed(engine, workload, batch_size=700)
    live = every_view_table(engine)
    assert sum(len(rows) for rows in live.values()) > 2000
    in_log = sum(len(batch) for batch in engine.log.follow(0))
    assert engine.projector.rebuild(workers=2) == in_log
    assert every_view_table(engine) == live
    assert set(engine.projector.lag().values()) == {0}
    # the scratch files of the SQLite workers are gone
    path = getattr(engine.storage, "path", None)
    if path:
        from pathlib import Path

        assert not list(Path(path).parent.glob("*.rebuild-*"))


def test_the_loop_replayed_up_to_a_moment_equals_the_live_view_of_that_moment(engine: Engine, workload: list[dict]):
    feed(engine, workload, batch_size=1000)
    start = to_ms(END - timedelta(days=SPEC.days + 1))
    leaked_somewhere = False
    for at in moments():
        live = leaks_view.summary(engine.storage, at)
        replayed = loop_as_of(engine.log, engine.policy, at, controls_from=start)
        replayed_controls = replayed.pop("controls")
        assert replayed == live, at
        assert replayed_controls == controls_view.controls(engine.storage, start, at + 1, at)
        leaked_somewhere |= live["leaked_total"] > 0
    assert leaked_somewhere


def test_a_backfill_recorded_late_and_out_of_order_gives_the_same_answers(tmp_path, workload: list[dict]):
    in_order = Engine.open(f"sqlite:///{tmp_path}/in-order.db")
    feed(in_order, workload, batch_size=1000)
    rng = random.Random(5)
    shuffled = workload[:]
    rng.shuffle(shuffled)
    backfilled = Engine.open(f"sqlite:///{tmp_path}/backfilled.db")
    feed(backfilled, shuffled, batch_size=97)
    for at in moments():
        assert leaks_view.summary(backfilled.storage, at) == leaks_view.summary(in_order.storage, at), at
    in_order.close()
    backfilled.close()


def test_known_at_keeps_only_what_had_been_recorded(tmp_path, workload: list[dict]):
    clock = [to_ms(datetime(2026, 11, 2, tzinfo=UTC))]
    engine = Engine.open(f"sqlite:///{tmp_path}/audit.db", clock=lambda: clock[0])
    half = len(workload) // 2
    feed(engine, workload[:half])
    known = clock[0]
    clock[0] += 3_600_000
    feed(engine, workload[half:])
    at = to_ms(END + timedelta(days=4))
    then = loop_as_of(engine.log, engine.policy, at, known_at=known)
    now = loop_as_of(engine.log, engine.policy, at)
    assert then != now and then["cases"] < now["cases"]
    assert loop_as_of(engine.log, engine.policy, at, known_at=known - 1)["cases"] == 0
    engine.close()
