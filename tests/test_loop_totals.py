"""The loop view's running totals: after any delivery, and after a rebuild, they equal the
totals counted afresh from its rows; and the summary, leaks and controls answered from them
equal the answers of counting every span and item, at any moment, with every filter."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from closedloop.domain.facts import iso, to_ms
from closedloop.domain.policy import LoopPolicy
from closedloop.domain.loop import STAGES
from closedloop.app.engine import Engine, feed
from closedloop.projections import controls as controls_view
from closedloop.projections import leaks as leaks_view
from closedloop.projections.controls import GROUPS, MEASURES, TARGET_PPM, _rates
from closedloop.projections.loop import COUNTS, ITEMS, SPANS
from closedloop.projections.loop_totals import CONTROL_DAYS, OPEN_TOTALS, STALE, kept, mark_stale, recount
from closedloop.projections.runner import rebuilding
from closedloop.simulation.workload import WorkloadSpec, generate

END = datetime(2026, 11, 1, tzinfo=UTC)
SPEC = WorkloadSpec(seed=33, days=6, calls_per_day=120, outlets=10, regions=3, end=END)
DAY = 86_400_000
OPEN_AT = "opened <= ? AND (closed IS NULL OR closed > ?)"


def open_at(columns: str, where: str = "") -> str:
    extra = f" AND {where}" if where else ""
    return f"SELECT {columns} FROM {SPANS} WHERE {OPEN_AT}{extra}"


# --- the answers counted from every row, as the views answered before they kept totals -------
def scan_summary(engine: Engine, at: int) -> dict[str, Any]:
    with engine.storage.reading() as tx:
        rows = tx.all(f"SELECT stage, COUNT(*) AS open, SUM(CASE WHEN due <= ? THEN 1 ELSE 0 END) AS overdue "
                      f"FROM ({open_at('stage, due')}) s GROUP BY stage", [at, at, at])
        with_open = tx.one(f"SELECT COUNT(DISTINCT case_id) AS n FROM ({open_at('case_id', 'case_id IS NOT NULL')}) s",
                           [at, at])["n"]
        cases = tx.one(f"SELECT COUNT(*) AS n FROM {ITEMS} WHERE kind = 'case' AND registered <= ?", [at])["n"]
        early = tx.one(f"SELECT COUNT(DISTINCT s.case_id) AS n FROM ({open_at('case_id', 'case_id IS NOT NULL')}) s "
                       f"JOIN {ITEMS} i ON i.item = 'case:' || s.case_id WHERE i.registered IS NULL OR i.registered > ?",
                       [at, at, at])["n"]
    open_ = {s: 0 for s in STAGES} | {r["stage"]: int(r["open"]) for r in rows}
    leaks = {s: 0 for s in STAGES} | {r["stage"]: int(r["overdue"] or 0) for r in rows}
    return {"as_of": iso(at), "cases": int(cases), "open": open_, "leaks": leaks,
            "leaked_total": sum(leaks.values()), "closed_loops": int(cases) - (int(with_open) - int(early))}


def scan_leaks(engine: Engine, at: int, flt: leaks_view.LeakFilter, limit: int, offset: int) -> dict[str, Any]:
    where, params = ["due <= ?"], [at]
    for column in ("stage", "region", "outlet_id", "owner"):
        if getattr(flt, column) is not None:
            where.append(f"{column} = ?")
            params.append(getattr(flt, column))
    clause = " AND ".join(where)
    with engine.storage.reading() as tx:
        rows = tx.all(f"SELECT * FROM ({open_at('*', clause)}) s ORDER BY due, item, stage", [at, at, *params])
    items = [{"case_id": r["case_id"], "call_id": r["call_id"], "stage": r["stage"], "due": iso(r["due"]),
              "owner": r["owner"], "overdue_hours": round((at - r["due"]) / 3_600_000, 2),
              "open_since": iso(r["opened"]), "region": r["region"], "outlet_id": r["outlet_id"],
              "waiting_for": r["waiting_for"]} for r in rows[offset : offset + limit]]
    return {"as_of": iso(at), "total": len(rows), "limit": limit, "offset": offset, "items": items}


def scan_controls(engine: Engine, start: int, end: int, at: int, by: str | None) -> dict[str, Any]:
    sums = ", ".join(f"SUM(CASE WHEN {c} <= ? THEN 1 ELSE 0 END) AS {m}" for m, c in MEASURES.items())
    key = GROUPS[by] if by else "NULL"
    group = f"GROUP BY {key}" if by else ""
    with engine.storage.reading() as tx:
        rows = tx.all(f"SELECT {key} AS grp, COUNT(*) AS services, {sums} FROM {ITEMS} "
                      f"WHERE service = 1 AND started >= ? AND started < ? AND started <= ? {group}",
                      [at] * len(MEASURES) + [start, end, at])
    rows = [r for r in rows if r["services"]]
    total = _rates(sum(int(r["services"]) for r in rows), {m: sum(int(r[m] or 0) for r in rows) for m in MEASURES})
    out: dict[str, Any] = {"from": iso(start), "to": iso(end), "as_of": iso(at), "target_ppm": TARGET_PPM,
                           "total": total}
    if by:
        out["by"] = by
        # the order of groups with as many services is the database's own: compared as sets
        out["groups"] = sorted(({by: r["grp"], **_rates(int(r["services"]), {m: int(r[m] or 0) for m in MEASURES})}
                                for r in rows), key=lambda g: (-g["services"], str(g[by])))
    return out


def by_services(answer: dict[str, Any]) -> dict[str, Any]:
    if "groups" in answer:
        answer = answer | {"groups": sorted(answer["groups"], key=lambda g: (-g["services"], str(g[answer["by"]])))}
    return answer


# --- the workload, delivered out of order in uneven batches ---------------------------------
@pytest.fixture(scope="module")
def workload() -> list[dict]:
    events = list(generate(SPEC))
    # mostly in order, with a share of late and early arrivals, so that registrations meet
    # their calls late and cases are rewritten many times over
    rng = random.Random(4)
    for _ in range(len(events) // 8):
        i, j = rng.randrange(len(events)), rng.randrange(len(events))
        events[i], events[j] = events[j], events[i]
    return events


def moments() -> list[int]:
    start = END - timedelta(days=SPEC.days)
    return [to_ms(start + timedelta(hours=h, minutes=7)) for h in (2, 20, 47, 70, 95, 130, 143)] + [
        to_ms(END + timedelta(days=3))]


def assert_totals_kept(engine: Engine) -> None:
    with engine.storage.reading() as tx:
        assert kept(tx) == recount(tx)


def assert_answers_as_counted(engine: Engine) -> None:
    with engine.storage.reading() as tx:
        spans = tx.all(f"SELECT DISTINCT region, outlet_id, owner FROM {SPANS} WHERE closed IS NULL")
    region = next(r["region"] for r in spans if r["region"])
    outlet = next(r["outlet_id"] for r in spans if r["outlet_id"])
    owner = spans[0]["owner"]
    filters = [leaks_view.LeakFilter(), leaks_view.LeakFilter(stage="handled"), leaks_view.LeakFilter(region=region),
               leaks_view.LeakFilter(outlet_id=outlet), leaks_view.LeakFilter(owner=owner),
               leaks_view.LeakFilter(stage="recorded", region=region)]
    for at in moments():
        assert leaks_view.summary(engine.storage, at) == scan_summary(engine, at), iso(at)
        for flt in filters:
            for limit, offset in ((100, 0), (7, 3), (5, 40)):
                assert leaks_view.leaks(engine.storage, at, flt, limit, offset) \
                    == scan_leaks(engine, at, flt, limit, offset), (iso(at), flt, limit, offset)
        for by in (None, *GROUPS):
            for start, end in ((at - 30 * DAY, at), (at - 2 * DAY - 999, at - DAY // 3), (at - 3_600_000, at + 5),
                               (at - 400 * DAY, at + DAY)):
                got = controls_view.controls(engine.storage, start, end, at, by)
                assert by_services(got) == scan_controls(engine, start, end, at, by), (iso(at), by, start, end)


def test_totals_kept_through_every_delivery_equal_a_recount(engine: Engine, workload: list[dict]):
    third = len(workload) // 3
    for part, size in ((workload[:third], 37), (workload[third : 2 * third], 400), (workload[2 * third :], 1)):
        if size == 1:  # one event at a time, then the rest
            for e in part[:300]:
                engine.submit([e])
            part = part[300:]
        feed(engine, part, batch_size=size if size > 1 else 90)
        assert_totals_kept(engine)
    with engine.storage.reading() as tx:
        assert tx.one(f"SELECT COUNT(*) AS n FROM {OPEN_TOTALS}")["n"] > 0
        assert tx.one(f"SELECT COUNT(*) AS n FROM {CONTROL_DAYS}")["n"] > 0
        assert tx.one(f"SELECT n FROM {COUNTS} WHERE name = 'open_cases'")["n"] > 0


def test_answers_from_the_totals_equal_counting_every_row_before_and_after_a_rebuild(engine: Engine,
                                                                                      workload: list[dict]):
    feed(engine, workload, batch_size=250)
    assert_answers_as_counted(engine)
    with engine.storage.reading() as tx:
        before = kept(tx)
    engine.projector.rebuild()
    with engine.storage.reading() as tx:
        assert kept(tx) == before == recount(tx)
    assert_answers_as_counted(engine)


def test_a_rebuild_cut_off_before_its_end_leaves_totals_the_next_start_counts_afresh(database_url: str,
                                                                                    workload: list[dict]):
    half = len(workload) // 2
    engine = Engine.open(database_url, policy=LoopPolicy())
    try:
        # given: the loop view folded from the first event as a rebuild does, leaving its totals
        # to the end, and stopped there (a crash before the totals were counted)
        feed(engine, workload[:half], batch_size=250)
        with engine.storage.reading() as tx:
            before = kept(tx)
        with engine.storage.writing() as tx:
            engine.projector._reset(tx, engine.loop, defer_indexes=True)
        with rebuilding([engine.loop]):
            engine.projector.catch_up()
        with engine.storage.reading() as tx:
            assert tx.one(f"SELECT n FROM {COUNTS} WHERE name = '{STALE}'")["n"] == 1
            assert kept(tx) != recount(tx)
    finally:
        engine.close()
    # when: the engine starts again
    engine = Engine.open(database_url, policy=LoopPolicy())
    try:
        # then: the totals are counted from the rows, and kept from there on
        with engine.storage.reading() as tx:
            assert kept(tx) == recount(tx) == before
            assert tx.one(f"SELECT n FROM {COUNTS} WHERE name = '{STALE}'")["n"] == 0
        feed(engine, workload[half:], batch_size=250)
        assert_totals_kept(engine)
    finally:
        engine.close()


def test_a_live_batch_counts_totals_a_rebuild_left_stale(engine: Engine, workload: list[dict]):
    half = len(workload) // 2
    feed(engine, workload[:half], batch_size=250)
    # given: totals marked stale (as by another process's rebuild cut off) and wrong
    with engine.storage.writing() as tx:
        mark_stale(tx, COUNTS)
        tx.execute(f"DELETE FROM {OPEN_TOTALS}")
    # when: the next batch is folded live
    feed(engine, workload[half:], batch_size=250)
    # then: the totals were counted afresh and kept
    assert_totals_kept(engine)


def test_a_moment_long_past_is_counted_and_answers_the_same(engine: Engine, workload: list[dict], monkeypatch):
    feed(engine, workload, batch_size=500)
    # every moment takes the counting path when any span opened after it is too many
    monkeypatch.setattr(leaks_view, "_FAR", 1)
    for at in moments()[:-1]:
        assert leaks_view.summary(engine.storage, at) == scan_summary(engine, at)
