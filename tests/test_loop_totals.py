"""The loop view's running totals and the answers given from them, checked against figures
counted here from the events fed: each case's facts gathered into a file and assessed by the
domain's rules (`closedloop.domain.loop`), then counted by hand. Nothing of the view's own
SQL, tables or bookkeeping makes the expected figures; after any delivery, after a rebuild,
and after a rebuild cut off before its end, the totals and the summary, leaks and controls
answered from them equal these counts, at any moment, with every filter."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from closedloop.contract.events import validate
from closedloop.domain.facts import STREAM_KIND, Fact, iso, to_ms
from closedloop.domain.loop import STAGES, CaseFile, Span, assess, call_spans, feedback_spans, lite
from closedloop.domain.policy import LoopPolicy
from closedloop.app.engine import Engine, feed
from closedloop.projections import controls as controls_view
from closedloop.projections import leaks as leaks_view
from closedloop.projections.controls import GROUPS, MEASURES
from closedloop.projections.loop import COUNTS
from closedloop.projections.loop_totals import NONE, OPEN_TOTALS, STALE, kept, mark_stale, recount
from closedloop.projections.runner import rebuilding
from closedloop.simulation.workload import WorkloadSpec, generate

END = datetime(2026, 11, 1, tzinfo=UTC)
SPEC = WorkloadSpec(seed=33, days=6, calls_per_day=120, outlets=10, regions=3, end=END)
DAY = 86_400_000
POLICY = LoopPolicy()


@pytest.fixture
def engine(database_url: str):
    """The loop view with no reactors: the log holds exactly the events a test feeds."""
    e = Engine.open(database_url, policy=POLICY, reactors=[])
    yield e
    e.close()


# --- the expected figures, counted from the events fed ----------------------------------------
@dataclass
class Counted:
    # (span, case id, call id, region) of every step interval
    spans: list[tuple[Span, str | None, str | None, str | None]] = field(default_factory=list)
    # one per case, and one per service call that never got a case
    items: list[dict[str, Any]] = field(default_factory=list)


def count(events: list[dict]) -> Counted:
    """The loop's facts as the business reads them: a case's facts, the call it was registered
    from (the first registration keeps the call), calls and feedback naming it; a call that
    asked for service and got no case is a service of its own."""
    files: dict[str, CaseFile] = {}
    calls: dict[str, tuple[int, str, str, str | None]] = {}  # the first report of each call
    case_of_call: dict[str, str] = {}
    feedback: dict[str, list[list[Any]]] = {}
    feedback_case: dict[str, str | None] = {}

    def file(case_id: str) -> CaseFile:
        return files.setdefault(case_id, CaseFile(case_id))

    for position, e in enumerate(events, start=1):
        f = validate(e)
        assert isinstance(f, Fact), f
        f = Fact(f.type, f.subject, f.source, f.id, f.time_ms, f.data, None, position)
        d = f.data
        if f.type == "call.received":
            if f.subject not in calls:
                owner = f"agent:{d['agent_id']}" if d.get("agent_id") else f.source
                calls[f.subject] = (f.time_ms, d["intent"], owner, d.get("case_id"))
                if d.get("case_id"):
                    file(d["case_id"]).related_calls[f.subject] = [f.time_ms, d["intent"], owner]
        elif f.type.startswith("feedback."):
            feedback.setdefault(f.subject, []).append([f.time_ms, position, f.type, lite(f)])
            if f.type == "feedback.routed" and feedback_case.get(f.subject) is None:
                feedback_case[f.subject] = d.get("case_id")
        elif STREAM_KIND[f.type] in ("outlet", "technician", "warehouse"):
            continue  # the network, not a case
        else:
            file(f.subject).add(f)
            if f.type == "case.registered":
                case_of_call.setdefault(d["call_id"], f.subject)
    for call_id, case_id in case_of_call.items():
        if call_id in calls and calls[call_id][3] != case_id:
            time, intent, owner, _named = calls[call_id]
            file(case_id).call = [call_id, time, intent, owner]
    for fid, entries in feedback.items():
        if feedback_case.get(fid):
            file(feedback_case[fid]).feedback[fid] = entries

    out = Counted()
    for call_id, (time, intent, owner, named) in calls.items():
        if call_id in case_of_call or named:
            continue
        own = call_spans(call_id, time, intent, owner, POLICY)
        if own:
            out.spans += [(s, None, call_id, None) for s in own]
            out.items.append({"kind": "call", "case_id": None, "registered": None, "service": True,
                              "started": time, "region": None, "outlet_id": None, "product_line": None,
                              "technician_id": None, "complained": None, "dissatisfied": None,
                              "first_leak": own[0].due})
    for fid, entries in feedback.items():
        routed = next((e for e in entries if e[2] == "feedback.routed"), None)
        if feedback_case.get(fid) is None and routed is not None:
            out.spans += [(s, None, routed[3].get("call_id"), None) for s in feedback_spans(fid, entries, POLICY)]
    for case_id, f in files.items():
        a = assess(f, POLICY, steps=False)
        region = a.profile.get("region")
        for s in a.spans:
            call_id = s.item[5:] if s.item.startswith("call:") else (f.call[0] if f.call else None)
            out.spans.append((s, case_id, call_id, region))
        out.items.append({"kind": "case", "case_id": case_id, "registered": a.registered,
                          "service": a.registered is not None, "started": a.started, "region": region,
                          "outlet_id": a.outlet_id, "product_line": a.profile.get("product_line"),
                          "technician_id": a.technician_id, "complained": a.complained,
                          "dissatisfied": a.dissatisfied, "first_leak": a.first_leak})
    return out


def totals(c: Counted) -> dict[str, Any]:
    """What the running totals must hold, in `kept`'s shape (a missing value as NONE)."""
    def k(value: Any) -> Any:
        return NONE if value is None else value

    still_open = [(s, case, region) for s, case, _call, region in c.spans if s.closed is None]
    open_: dict[tuple, int] = {}
    for s, _case, region in still_open:
        key = (s.stage, k(region), k(s.outlet_id), k(s.owner))
        open_[key] = open_.get(key, 0) + 1
    cases_open = {case for _s, case, _r in still_open if case is not None}
    unregistered = {i["case_id"] for i in c.items if i["kind"] == "case" and i["registered"] is None}
    days: dict[tuple[str, int, str], list[int]] = {}
    for i in c.items:
        if not i["service"] or i["started"] is None:
            continue
        marks = [1] + [0 if i[m] is None else 1 for m in ("complained", "dissatisfied", "first_leak")]
        for dim, column in (("", None), ("region", "region"), ("outlet", "outlet_id"),
                            ("product_line", "product_line"), ("technician", "technician_id")):
            key = (dim, i["started"] // DAY, k(i[column]) if column else NONE)
            days[key] = [a + b for a, b in zip(days.get(key, [0, 0, 0, 0]), marks)]
    return {"open": open_, "open_cases": len(cases_open), "open_unregistered": len(cases_open & unregistered),
            "days": {key: tuple(v) for key, v in days.items()}}


def open_at(c: Counted, at: int) -> list[tuple[Span, str | None, str | None, str | None]]:
    return [x for x in c.spans if x[0].opened <= at and (x[0].closed is None or x[0].closed > at)]


def summary_at(c: Counted, at: int) -> dict[str, Any]:
    spans = open_at(c, at)
    open_ = {stage: sum(1 for s, *_ in spans if s.stage == stage) for stage in STAGES}
    leaks = {stage: sum(1 for s, *_ in spans if s.stage == stage and s.due <= at) for stage in STAGES}
    registered = {i["case_id"]: i["registered"] for i in c.items if i["kind"] == "case"}
    cases = sum(1 for t in registered.values() if t is not None and t <= at)
    with_open = {case for _s, case, *_ in spans if case is not None}
    not_yet = {case for case in with_open if registered[case] is None or registered[case] > at}
    return {"as_of": iso(at), "cases": cases, "open": open_, "leaks": leaks, "leaked_total": sum(leaks.values()),
            "closed_loops": cases - (len(with_open) - len(not_yet))}


def leaks_at(c: Counted, at: int, flt: leaks_view.LeakFilter, limit: int, offset: int) -> dict[str, Any]:
    rows = []
    for s, case, call, region in open_at(c, at):
        row = {"stage": s.stage, "region": region, "outlet_id": s.outlet_id, "owner": s.owner}
        if s.due > at or any(getattr(flt, k) is not None and getattr(flt, k) != v for k, v in row.items()):
            continue
        rows.append((s.due, s.item, s.stage, {
            "case_id": case, "call_id": call, "stage": s.stage, "due": iso(s.due), "owner": s.owner,
            "overdue_hours": round((at - s.due) / 3_600_000, 2), "open_since": iso(s.opened), "region": region,
            "outlet_id": s.outlet_id, "waiting_for": s.waiting_for}))
    rows.sort(key=lambda r: r[:3])
    return {"as_of": iso(at), "total": len(rows), "limit": limit, "offset": offset,
            "items": [r[3] for r in rows[offset : offset + limit]]}


def controls_at(c: Counted, start: int, end: int, at: int, by: str | None) -> dict[str, Any]:
    services = [i for i in c.items if i["service"] and start <= i["started"] < end and i["started"] <= at]

    def rates(group: list[dict[str, Any]]) -> dict[str, Any]:
        """Per control: how many services it marked by `at`, in parts per million, against 10 PPM."""
        out: dict[str, Any] = {"services": len(group)}
        for measure, column in MEASURES.items():
            n = sum(1 for i in group if i[column] is not None and i[column] <= at)
            rate = round(n * 1_000_000 / len(group), 1) if group else None
            out[measure] = {"count": n, "ppm": rate, "target_ppm": 10.0,
                            "within_target": None if rate is None else rate < 10.0}
        return out

    out: dict[str, Any] = {"from": iso(start), "to": iso(end), "as_of": iso(at), "target_ppm": 10.0,
                           "total": rates(services)}
    if by:
        groups: dict[Any, list[dict[str, Any]]] = {}
        for i in services:
            groups.setdefault(i[GROUPS[by]], []).append(i)
        out["by"] = by
        out["groups"] = sorted(({by: g, **rates(members)} for g, members in groups.items()),
                               key=lambda g: (-g["services"], str(g[by])))
    return out


def by_services(answer: dict[str, Any]) -> dict[str, Any]:
    """Groups with as many services come in the database's own order: compared sorted."""
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


def assert_totals_kept(engine: Engine, fed: list[dict]) -> None:
    expected = totals(count(fed))
    with engine.storage.reading() as tx:
        assert kept(tx) == expected
        assert recount(tx) == expected  # and the view's rows say the same


def assert_answers_as_counted(engine: Engine, fed: list[dict]) -> None:
    counted = count(fed)
    still_open = [(s, region) for s, _case, _call, region in counted.spans if s.closed is None]
    region = next(r for _s, r in still_open if r)
    outlet = next(s.outlet_id for s, _r in still_open if s.outlet_id)
    owner = still_open[0][0].owner
    filters = [leaks_view.LeakFilter(), leaks_view.LeakFilter(stage="handled"), leaks_view.LeakFilter(region=region),
               leaks_view.LeakFilter(outlet_id=outlet), leaks_view.LeakFilter(owner=owner),
               leaks_view.LeakFilter(stage="recorded", region=region)]
    leaked_somewhere = False
    for at in moments():
        expected = summary_at(counted, at)
        leaked_somewhere = leaked_somewhere or expected["leaked_total"] > 0
        assert leaks_view.summary(engine.storage, at) == expected, iso(at)
        for flt in filters:
            for limit, offset in ((100, 0), (7, 3), (5, 40)):
                assert leaks_view.leaks(engine.storage, at, flt, limit, offset) \
                    == leaks_at(counted, at, flt, limit, offset), (iso(at), flt, limit, offset)
        for by in (None, *GROUPS):
            for start, end in ((at - 30 * DAY, at), (at - 2 * DAY - 999, at - DAY // 3), (at - 3_600_000, at + 5),
                               (at - 400 * DAY, at + DAY)):
                got = controls_view.controls(engine.storage, start, end, at, by)
                assert by_services(got) == controls_at(counted, start, end, at, by), (iso(at), by, start, end)
    assert leaked_somewhere  # the workload plants leaks: the answers compared are not all zero


@pytest.mark.fast
def test_the_figures_counted_from_the_events_are_not_trivial(workload: list[dict]):
    """What the tests below compare against has something in every total."""
    expected = totals(count(workload))
    assert len(expected["open"]) > 10 and expected["open_cases"] > 10
    # part way through, registrations are still on their way
    assert any(totals(count(workload[:n]))["open_unregistered"] > 0 for n in (300, len(workload) // 3))
    assert {dim for dim, _day, _grp in expected["days"]} == {"", "region", "outlet", "product_line", "technician"}
    assert sum(n[3] for (dim, _d, _g), n in expected["days"].items() if dim == "") > 0  # services that leaked


def test_totals_kept_through_every_delivery_equal_the_figures_counted_from_the_events(engine: Engine,
                                                                                        workload: list[dict]):
    third = len(workload) // 3
    fed = 0
    for part, size in ((workload[:third], 37), (workload[third : 2 * third], 400), (workload[2 * third :], 1)):
        if size == 1:  # one event at a time, then the rest
            for e in part[:300]:
                engine.submit([e])
            fed += 300
            assert_totals_kept(engine, workload[:fed])
            part = part[300:]
        feed(engine, part, batch_size=size if size > 1 else 90)
        fed += len(part)
        assert_totals_kept(engine, workload[:fed])
    assert engine.log.head() == fed == len(workload)


def test_answers_from_the_totals_equal_the_counted_ones_before_and_after_a_rebuild(engine: Engine,
                                                                                   workload: list[dict]):
    feed(engine, workload, batch_size=250)
    assert_answers_as_counted(engine, workload)
    engine.projector.rebuild()
    assert_totals_kept(engine, workload)
    assert_answers_as_counted(engine, workload)


def test_a_rebuild_cut_off_before_its_end_leaves_totals_the_next_start_counts_afresh(database_url: str,
                                                                                    workload: list[dict]):
    half = len(workload) // 2
    expected = totals(count(workload[:half]))
    engine = Engine.open(database_url, policy=POLICY, reactors=[])
    try:
        # given: the loop view folded from the first event as a rebuild does, leaving its totals
        # to the end, and stopped there (a crash before the totals were counted)
        feed(engine, workload[:half], batch_size=250)
        with engine.storage.writing() as tx:
            engine.projector._reset(tx, engine.loop, defer_indexes=True)
        with rebuilding([engine.loop]):
            engine.projector.catch_up()
        with engine.storage.reading() as tx:
            assert tx.one(f"SELECT n FROM {COUNTS} WHERE name = '{STALE}'")["n"] == 1
            assert kept(tx) != expected
    finally:
        engine.close()
    # when: the engine starts again
    engine = Engine.open(database_url, policy=POLICY, reactors=[])
    try:
        # then: the totals are counted from the rows, and kept from there on
        with engine.storage.reading() as tx:
            assert kept(tx) == expected
            assert tx.one(f"SELECT n FROM {COUNTS} WHERE name = '{STALE}'")["n"] == 0
        feed(engine, workload[half:], batch_size=250)
        assert_totals_kept(engine, workload)
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
    assert_totals_kept(engine, workload)


def test_a_moment_long_past_is_counted_and_answers_the_same(engine: Engine, workload: list[dict], monkeypatch):
    feed(engine, workload, batch_size=500)
    counted = count(workload)
    # every moment takes the counting path when any span opened after it is too many
    monkeypatch.setattr(leaks_view, "_FAR", 1)
    for at in moments()[:-1]:
        assert leaks_view.summary(engine.storage, at) == summary_at(counted, at)
