"""Automatic dispatch, alarms and escalation, as the engine decides them, on both databases.

Given the network and these events, when they are submitted (and time passes: `tick`),
then the engine records these decisions in the case's stream, each with its reason."""

from __future__ import annotations

from closedloop.domain.facts import iso
from closedloop.domain.network import DispatchPolicy
from closedloop.reactors.network import NetworkConfig

from conftest import event
from network_fixtures import at, decisions, ms, network_engine, outlet, register, technician, NETWORK


def dispatched_to(engine, case_id: str) -> list[str]:
    return [f.data["outlet_id"] for f in decisions(engine, f"case:{case_id}", "case.dispatched")]


def test_a_registered_case_is_dispatched_by_the_system_with_ranked_reasons(database_url):
    engine = network_engine(database_url)
    engine.submit([register("CASE-1", at("08:10"))])
    [d] = decisions(engine, "case:CASE-1")
    assert d.type == "case.dispatched" and d.data["by"] == "system"
    assert d.time_ms == ms(at("08:10")) and d.data["accept_by"] == iso(ms(at("08:40")))
    # every repair point is empty: the one with most room; the center is kept for hard cases
    assert d.data["outlet_id"] == "OUT-S" and d.data["technician_id"] == "TEC-S1"
    reasons = d.data["reasons"]
    assert reasons[0] == "covers region R01 and product line refrigerator"
    assert "capacity left today: 5 of 5 (0% used)" in reasons
    assert [c["outlet_id"] for c in d.data["candidates"]] == ["OUT-S", "OUT-B", "OUT-A", "OUT-C"]
    engine.close()


def test_dispatch_balances_load_across_outlets_with_room(database_url):
    engine = network_engine(database_url)
    engine.submit([register(f"CASE-{i}", at(f"08:{10 + i}")) for i in range(1, 6)])
    picks = [dispatched_to(engine, f"CASE-{i}")[0] for i in range(1, 6)]
    # S 0/5 -> B 0/3 -> A 0/2 -> S 1/5 -> B 1/3 (each time the least used share of capacity)
    assert picks == ["OUT-S", "OUT-B", "OUT-A", "OUT-S", "OUT-B"]
    engine.close()


def test_a_repeat_repair_prefers_the_higher_tier(database_url):
    engine = network_engine(database_url)
    engine.submit([register("CASE-1", at("08:10", "2026-10-10"), serial="RF2607123"),
                   event("service.completed", "CASE-1", at("15:00", "2026-10-10"),
                         {"technician_id": "TEC-S1", "fault_code": "E1", "cause": "wear", "first_visit": True},
                         source="/outlet/OUT-S"),
                   register("CASE-2", at("08:10"), serial="RF2607123")])
    [d] = decisions(engine, "case:CASE-2")
    assert d.data["outlet_id"] == "OUT-C"
    assert any(r.startswith("higher tier preferred (repeat repair: CASE-1 completed 2026-10-10") for r in d.data["reasons"])
    engine.close()


def test_a_follow_up_that_finds_it_still_broken_goes_back_to_dispatch_as_a_hard_case(database_url):
    engine = network_engine(database_url)
    engine.submit([register("CASE-1", at("08:10")),
                   event("dispatch.accepted", "CASE-1", at("08:20"), {"outlet_id": "OUT-S", "technician_id": "TEC-S1"},
                         source="/outlet/OUT-S"),
                   event("guidance.given", "CASE-1", at("08:40"), {"technician_id": "TEC-S1", "finding": "misuse"},
                         source="/outlet/OUT-S")])
    assert dispatched_to(engine, "CASE-1") == ["OUT-S"]
    engine.submit([event("follow_up.made", "CASE-1", at("10:30"), {"working": False}, source="/callback/desk-1")])
    again = decisions(engine, "case:CASE-1", "case.dispatched")[-1]
    assert again.data["outlet_id"] == "OUT-C" and again.time_ms == ms(at("10:30"))
    assert "hard case: the follow-up call found it still not working" in " ".join(again.data["reasons"])
    # a follow-up that finds it working closes the job: nothing more to dispatch
    engine.submit([register("CASE-2", at("09:00")),
                   event("guidance.given", "CASE-2", at("09:30"), {"technician_id": "TEC-B1", "finding": "misreport"}),
                   event("follow_up.made", "CASE-2", at("11:00"), {"working": True})])
    assert len(dispatched_to(engine, "CASE-2")) == 1
    engine.close()


def test_a_declined_dispatch_is_re_dispatched_at_once_to_another_outlet(database_url):
    engine = network_engine(database_url)
    engine.submit([register("CASE-1", at("08:10"))])
    engine.submit([event("dispatch.declined", "CASE-1", at("08:25"), {"outlet_id": "OUT-S", "reason": "full"},
                         source="/outlet/OUT-S")])
    assert dispatched_to(engine, "CASE-1") == ["OUT-S", "OUT-B"]
    second = decisions(engine, "case:CASE-1", "case.dispatched")[-1]
    assert second.time_ms == ms(at("08:25"))
    assert "left out: 1 tried already" in second.data["reasons"]
    engine.close()


def test_full_outlets_hold_the_case_until_the_next_days_capacity(database_url):
    small = [outlet("OUT-A", "authorized", 1), technician("TEC-A1", "OUT-A")]
    now = [ms(at("09:00"))]
    engine = network_engine(database_url, clock=now, network=small)
    engine.submit([register("CASE-1", at("08:10")), register("CASE-2", at("08:20")),
                   event("dispatch.accepted", "CASE-1", at("08:30"), {"outlet_id": "OUT-A", "technician_id": "TEC-A1"})])
    assert dispatched_to(engine, "CASE-1") == ["OUT-A"]
    [held] = decisions(engine, "case:CASE-2")
    assert held.type == "dispatch.held"
    assert held.data["reason"].startswith("none of the 1 outlet(s) covering region R01 and product line "
                                          "refrigerator can take it: 1 full today")
    assert held.data["retry_at"] == "2026-10-31T00:00:00.000Z"
    assert engine.tick() == 0
    now[0] = ms(at("00:05", "2026-10-31"))
    assert engine.tick() == 1
    assert dispatched_to(engine, "CASE-2") == ["OUT-A"]
    assert decisions(engine, "case:CASE-2")[-1].time_ms == ms(at("00:00", "2026-10-31"))
    engine.close()


def test_a_case_no_outlet_covers_is_held_with_the_reason(database_url):
    engine = network_engine(database_url)
    engine.submit([register("CASE-1", at("08:10"), region="R09")])
    [held] = decisions(engine, "case:CASE-1")
    assert held.type == "dispatch.held"
    assert held.data["reason"].startswith("no outlet covers region R09 and product line refrigerator")
    engine.close()


def test_eliminated_technicians_get_no_work_and_warned_ones_a_reduced_share(database_url):
    engine = network_engine(database_url)
    status = [event("permit.status_changed", "TEC-S1", at("07:00"),
                    {"previous": "normal", "status": "eliminated", "balance": 0, "rule": "test", "reason": "test"},
                    source="/hq/permits"),
              event("permit.status_changed", "TEC-B1", at("07:00"),
                    {"previous": "normal", "status": "warning", "balance": 5, "rule": "test", "reason": "test"},
                    source="/hq/permits"),
              event("permit.status_changed", "TEC-A2", at("07:00"),
                    {"previous": "normal", "status": "eliminated", "balance": 0, "rule": "test", "reason": "test"},
                    source="/hq/permits")]
    engine.submit(status)
    engine.submit([register(f"CASE-{i}", at(f"08:{10 + i}")) for i in range(1, 7)])
    picks = [(f.data["outlet_id"], f.data.get("technician_id")) for i in range(1, 7)
             for f in decisions(engine, f"case:CASE-{i}", "case.dispatched")]
    outlets = [o for o, _ in picks]
    # OUT-S has no technician allowed to work; OUT-B (3 a day) is at half share: 1; OUT-A (2 a day)
    # has one of two technicians left: 1; the center takes the rest
    assert "OUT-S" not in outlets
    assert outlets.count("OUT-B") == 1 and outlets.count("OUT-A") == 1
    assert ("OUT-A", "TEC-A1") in picks and all(t != "TEC-A2" for _, t in picks)
    assert outlets.count("OUT-C") == 4
    b = next(f for i in range(1, 7) for f in decisions(engine, f"case:CASE-{i}", "case.dispatched")
             if f.data["outlet_id"] == "OUT-B")
    assert any("reduced by technicians' permits" in r for r in b.data["reasons"])
    assert any("at a 50% share on a warning permit" in r for r in b.data["reasons"])
    engine.close()


def test_a_dispatch_not_accepted_in_time_alarms_then_escalates_to_the_next_outlet(database_url):
    now = [ms(at("08:30"))]
    engine = network_engine(database_url, clock=now)
    engine.submit([register("CASE-1", at("08:10"))])
    assert engine.tick() == 0
    now[0] = ms(at("08:41"))
    assert engine.tick() == 1
    [alarm] = decisions(engine, "case:CASE-1", "dispatch.alarmed")
    assert alarm.time_ms == ms(at("08:40"))
    assert {k: alarm.data[k] for k in ("outlet_id", "dispatched_at", "accept_by", "level", "action")} == {
        "outlet_id": "OUT-S", "dispatched_at": iso(ms(at("08:10"))), "accept_by": iso(ms(at("08:40"))),
        "level": 1, "action": "page"}
    assert engine.tick() == 0  # raised once
    now[0] = ms(at("09:11"))
    assert engine.tick() == 2  # the second deadline: escalated, and re-dispatched
    escalation = decisions(engine, "case:CASE-1", "dispatch.alarmed")[-1]
    assert escalation.data["level"] == 2 and escalation.data["action"] == "redispatch"
    assert escalation.time_ms == ms(at("09:10"))
    assert dispatched_to(engine, "CASE-1") == ["OUT-S", "OUT-B"]
    assert decisions(engine, "case:CASE-1", "case.dispatched")[-1].data["reasons"][0].startswith(
        "escalated: OUT-S did not accept by")
    engine.close()


def test_unanswered_re_dispatches_end_at_the_service_center(database_url):
    now = [ms(at("08:30"))]
    engine = network_engine(database_url, clock=now)
    engine.submit([register("CASE-1", at("08:10"))])
    now[0] = ms(at("12:00"))
    engine.tick()  # every deadline up to noon, in one go
    types = [(f.type, f.data.get("outlet_id") or f.data.get("to"), f.data.get("level")) for f in
             decisions(engine, "case:CASE-1")]
    assert types == [
        ("case.dispatched", "OUT-S", None), ("dispatch.alarmed", "OUT-S", 1),
        ("dispatch.alarmed", "OUT-S", 2), ("case.dispatched", "OUT-B", None),
        ("dispatch.alarmed", "OUT-B", 1), ("dispatch.alarmed", "OUT-B", 2), ("case.dispatched", "OUT-A", None),
        ("dispatch.alarmed", "OUT-A", 1), ("dispatch.alarmed", "OUT-A", 2), ("case.transferred", "center", None),
    ]
    last = decisions(engine, "case:CASE-1")[-1]
    assert last.data["from_outlet_id"] == "OUT-A" and "after 2 re-dispatch(es)" in last.data["reason"]
    assert engine.tick() == 0
    engine.close()


def test_an_accepted_dispatch_raises_no_alarm(database_url):
    now = [ms(at("08:30"))]
    engine = network_engine(database_url, clock=now)
    engine.submit([register("CASE-1", at("08:10")),
                   event("dispatch.accepted", "CASE-1", at("08:35"), {"outlet_id": "OUT-S", "technician_id": "TEC-S1"},
                         source="/outlet/OUT-S")])
    now[0] = ms(at("18:00"))
    assert engine.tick() == 0
    assert [f.type for f in decisions(engine, "case:CASE-1")] == ["case.dispatched"]
    engine.close()


def test_without_automatic_dispatch_an_agents_dispatch_still_alarms_and_goes_to_the_center(database_url):
    now = [ms(at("08:30"))]
    engine = network_engine(database_url, clock=now, auto=False)
    engine.submit([register("CASE-1", at("08:10"))])
    assert decisions(engine, "case:CASE-1") == []
    engine.submit([event("case.dispatched", "CASE-1", at("08:15"),
                         {"outlet_id": "OUT-A", "by": "agent", "accept_by": at("09:00")})])
    now[0] = ms(at("10:00"))
    assert engine.tick() == 3
    assert [(f.type, f.data.get("level")) for f in decisions(engine, "case:CASE-1")] == [
        ("dispatch.alarmed", 1), ("dispatch.alarmed", 2), ("case.transferred", None)]
    assert decisions(engine, "case:CASE-1")[0].time_ms == ms(at("09:00"))
    engine.close()


def test_an_agents_later_dispatch_supersedes_the_systems_and_frees_its_slot(database_url):
    small = [outlet("OUT-A", "authorized", 1), outlet("OUT-B", "authorized", 1),
             technician("TEC-A1", "OUT-A"), technician("TEC-B1", "OUT-B")]
    engine = network_engine(database_url, network=small)
    engine.submit([register("CASE-1", at("08:10"))])
    assert dispatched_to(engine, "CASE-1") == ["OUT-A"]
    engine.submit([event("case.dispatched", "CASE-1", at("08:15"), {"outlet_id": "OUT-B", "by": "agent"})])
    engine.submit([register("CASE-2", at("08:20"))])
    assert dispatched_to(engine, "CASE-2") == ["OUT-A"]  # OUT-A's slot was freed, OUT-B's is taken
    engine.close()


def test_new_dispatch_rules_rebuild_the_dispatcher_without_deciding_again(database_url):
    engine = network_engine(database_url)
    engine.submit([register("CASE-1", at("08:10")), register("CASE-2", at("08:20"))])
    before = engine.log.head()
    engine.close()
    changed = NetworkConfig(dispatch=DispatchPolicy(accept_within=45 * 60_000, auto_dispatch=True))
    engine = network_engine(database_url, config=changed)
    engine.catch_up()
    assert engine.log.head() == before + 0  # the network re-sent as duplicates; nothing decided again
    engine.submit([register("CASE-3", at("08:30"))])
    # the rebuilt state still knows the load: S 1/5, B 1/3 -> A 0/2
    assert dispatched_to(engine, "CASE-3") == ["OUT-A"]
    engine.close()


def test_the_network_fixture_is_valid(database_url):
    engine = network_engine(database_url, auto=False)
    assert engine.quarantine.list()["total"] == 0 and engine.log.head() == len(NETWORK)
    engine.close()


def test_history_sent_late_is_judged_by_its_own_time_not_the_wall_clock(database_url):
    """A backfill (or a producer catching up) sends days-old facts in minutes: the acceptance
    of a job may be in the next batch, so deadlines follow the stream's time."""
    now = [ms("2026-11-05T12:00:00Z")]
    engine = network_engine(database_url, clock=now)
    engine.submit([register("CASE-1", at("08:10")), register("CASE-2", at("08:15"))])
    assert engine.tick() == 0  # the stream is at 08:15 of a day long past: nothing is overdue yet
    engine.submit([event("dispatch.accepted", "CASE-1", at("08:30"), {"outlet_id": "OUT-S", "technician_id": "TEC-S1"},
                         source="/outlet/OUT-S"),
                   register("CASE-3", at("09:00"))])
    assert engine.tick() == 1  # the stream has passed 08:45: CASE-2's dispatch is alarmed, CASE-1's is taken
    assert [f.type for f in decisions(engine, "case:CASE-2")] == ["case.dispatched", "dispatch.alarmed"]
    assert decisions(engine, "case:CASE-1", "dispatch.alarmed") == []
    now[0] += 20 * 60_000  # twenty minutes of silence after the stream reached 09:00
    assert engine.tick() == 2  # 09:15: CASE-2 escalated and re-dispatched
    engine.close()
