"""Spare parts by order, approved by the engine's rules, on both databases.

Given stock and a case, when an outlet requests a part, then the engine approves it from a
warehouse (reserving it), denies it or holds it, with the reason."""

from __future__ import annotations

import pytest

from closedloop.domain.parts import PartsRules
from closedloop.reactors.network import NetworkConfig

from conftest import event
from network_fixtures import at, decisions, network_engine, register

OUTLET = "/outlet/OUT-S"


def stock(warehouse: str, level: int, region: str, part: str, quantity: int, time: str = "2026-10-01T09:00:00Z",
          n: int = 1) -> dict:
    return event("stock.received", warehouse, time, {"level": level, "region": region, "part_no": part,
                                                     "quantity": quantity},
                 source=f"/warehouse/{warehouse}", id=f"RCV-{warehouse}-{part}-{n}")


def request(case_id: str, request_id: str, time: str, part: str = "RF-THERM-01", quantity: int = 1,
            outlet: str = "OUT-S") -> dict:
    return event("part.requested", case_id, time, {"request_id": request_id, "part_no": part, "quantity": quantity,
                                                   "outlet_id": outlet}, source=f"/outlet/{outlet}")


def accepted(case_id: str, time: str) -> dict:
    return event("dispatch.accepted", case_id, time, {"outlet_id": "OUT-S", "technician_id": "TEC-S1"}, source=OUTLET)


def part_decisions(engine, case_id: str) -> list[tuple]:
    return [(f.type, f.data["request_id"], f.data.get("warehouse_id"), f.data["reason"])
            for f in decisions(engine, f"case:{case_id}") if f.type.startswith("part.")]


def shelf(engine, warehouse: str, part: str) -> tuple[int, int]:
    with engine.storage.reading() as tx:
        row = tx.one(f"SELECT on_hand, reserved FROM prt_stock WHERE warehouse_id = {tx.q} AND part_no = {tx.q}",
                     [warehouse, part])
    return (row["on_hand"], row["reserved"]) if row else (0, 0)


STOCK = [stock("WH1-01", 1, "R01", "RF-THERM-01", 100), stock("WH2-R01", 2, "R01", "RF-THERM-01", 5),
         stock("WH2-R02", 2, "R02", "RF-THERM-01", 50), stock("WH2-R01", 2, "R01", "RF-SEAL-05", 0)]


@pytest.fixture
def engine(database_url):
    e = network_engine(database_url, auto=False)
    e.submit(STOCK)
    yield e
    e.close()


def test_a_request_is_approved_from_the_regions_second_level_warehouse_and_reserved(engine):
    engine.submit([register("CASE-1", at("08:10")), accepted("CASE-1", at("08:20")),
                   request("CASE-1", "PR-1", at("09:00"), quantity=2)])
    [(kind, rid, warehouse, reason)] = part_decisions(engine, "CASE-1")
    assert (kind, rid, warehouse) == ("part.approved", "PR-1", "WH2-R01")
    assert reason == "5 of RF-THERM-01 available at WH2-R01, the second-level warehouse of region R01; 2 reserved"
    assert shelf(engine, "WH2-R01", "RF-THERM-01") == (5, 2)


def test_shipment_and_delivery_move_the_reserved_stock(engine):
    engine.submit([register("CASE-1", at("08:10")), accepted("CASE-1", at("08:20")),
                   request("CASE-1", "PR-1", at("09:00"), quantity=2),
                   event("part.shipped", "CASE-1", at("10:00"), {"request_id": "PR-1", "warehouse_id": "WH2-R01"},
                         source="/warehouse/WH2-R01")])
    assert shelf(engine, "WH2-R01", "RF-THERM-01") == (3, 0)
    engine.submit([event("part.delivered", "CASE-1", at("13:00"), {"request_id": "PR-1", "warehouse_id": "WH2-R01"},
                         source=OUTLET)])
    assert shelf(engine, "WH2-R01", "RF-THERM-01") == (3, 0)
    # the warehouse confirming the approval afterwards reserves nothing twice
    engine.submit([event("part.approved", "CASE-1", at("09:10"), {"request_id": "PR-1", "warehouse_id": "WH2-R01"},
                         source="/warehouse/WH2-R01")])
    assert shelf(engine, "WH2-R01", "RF-THERM-01") == (3, 0)


def test_without_regional_stock_the_first_level_warehouse_ships_or_the_request_is_held(engine):
    engine.submit([register("CASE-1", at("08:10")), accepted("CASE-1", at("08:20")),
                   request("CASE-1", "PR-1", at("09:00"), part="RF-SEAL-05"),
                   request("CASE-1", "PR-2", at("09:05"), quantity=3)])
    held, approved = part_decisions(engine, "CASE-1")
    assert held[:3] == ("part.held", "PR-1", None)
    assert held[3] == "WH2-R01 has 0 of RF-SEAL-05 available, fewer than 1 needed: held until stock arrives"
    assert approved[:3] == ("part.approved", "PR-2", "WH2-R01")
    engine.submit([request("CASE-1", "PR-3", at("09:10"), quantity=3)])  # 5 - 3 = 2 left in R01
    assert part_decisions(engine, "CASE-1")[-1][2] == "WH1-01"
    assert "WH2-R01 has 2 of RF-THERM-01 available" in part_decisions(engine, "CASE-1")[-1][3]
    engine.submit([stock("WH2-R01", 2, "R01", "RF-SEAL-05", 10, at("12:00"), n=2)])
    last = part_decisions(engine, "CASE-1")[-1]
    assert last[:3] == ("part.approved", "PR-1", "WH2-R01")
    assert decisions(engine, "case:CASE-1")[-1].time_ms > decisions(engine, "case:CASE-1")[0].time_ms


def test_quantities_over_the_limits_are_denied_or_held_for_a_person(engine):
    engine.submit([register("CASE-1", at("08:10")), accepted("CASE-1", at("08:20")),
                   request("CASE-1", "PR-1", at("09:00"), quantity=11),
                   request("CASE-1", "PR-2", at("09:05"), quantity=4)])
    denied, held = part_decisions(engine, "CASE-1")
    assert denied == ("part.denied", "PR-1", None, "quantity 11 is over the limit of 10 per request")
    assert held == ("part.held", "PR-2", None,
                    "quantity 4 is over the automatic approval limit of 3: held for a person to approve")
    # a person approves it: it counts like any approval
    engine.submit([event("part.approved", "CASE-1", at("10:00"), {"request_id": "PR-2", "warehouse_id": "WH1-01"},
                         source="/hq/parts")])
    assert shelf(engine, "WH1-01", "RF-THERM-01") == (100, 4)


def test_a_case_that_does_not_need_the_part_gets_a_denial_with_the_reason(engine):
    engine.submit([register("CASE-1", at("08:10")), accepted("CASE-1", at("08:20")),
                   event("service.completed", "CASE-1", at("10:00"),
                         {"technician_id": "TEC-S1", "fault_code": "E1", "cause": "wear", "first_visit": True}),
                   request("CASE-1", "PR-1", at("11:00")),
                   register("CASE-2", at("08:10")), accepted("CASE-2", at("08:20")),
                   request("CASE-2", "PR-2", at("09:00"), outlet="OUT-B")])
    assert part_decisions(engine, "CASE-1") == [("part.denied", "PR-1", None, "case CASE-1 is already completed: "
                                                 "it needs no part")]
    assert part_decisions(engine, "CASE-2") == [("part.denied", "PR-2", None, "case CASE-2 is with OUT-S, not OUT-B")]


def test_a_request_for_a_case_not_yet_registered_waits_for_the_registration(engine):
    engine.submit([request("CASE-1", "PR-1", at("09:00"))])
    assert part_decisions(engine, "CASE-1")[0][:2] == ("part.held", "PR-1")
    engine.submit([register("CASE-1", at("08:10"))])  # synced late, registered earlier
    assert part_decisions(engine, "CASE-1")[-1][:3] == ("part.approved", "PR-1", "WH2-R01")


def test_a_case_waiting_for_a_part_shows_it_as_the_reason_it_is_not_handled(engine):
    engine.submit([register("CASE-1", at("08:10")), accepted("CASE-1", at("08:20")),
                   request("CASE-1", "PR-1", at("09:00"), part="RF-SEAL-05")])
    handled = engine_standing(engine, "CASE-1", "2026-10-30T12:00:00Z")["steps"]["handled"]
    assert handled["status"] == "open" and handled["owner"] == "outlet:OUT-S"
    assert handled["waiting_for"] == "part RF-SEAL-05 (request PR-1, held)"
    engine.submit([stock("WH2-R01", 2, "R01", "RF-SEAL-05", 10, at("12:00"), n=2),
                   event("part.shipped", "CASE-1", at("13:00"), {"request_id": "PR-1", "warehouse_id": "WH2-R01"})])
    assert engine_standing(engine, "CASE-1", "2026-10-30T13:30:00Z")["steps"]["handled"]["waiting_for"] == \
        "part RF-SEAL-05 (request PR-1, shipped)"
    engine.submit([event("part.delivered", "CASE-1", at("16:00"), {"request_id": "PR-1", "warehouse_id": "WH2-R01"})])
    assert engine_standing(engine, "CASE-1", "2026-10-30T17:00:00Z")["steps"]["handled"]["waiting_for"] is None
    # and as of the morning, it was waiting
    assert engine_standing(engine, "CASE-1", "2026-10-30T11:59:00Z")["steps"]["handled"]["waiting_for"].endswith("held)")


def test_turning_automatic_approval_off_leaves_requests_to_people(database_url):
    config = NetworkConfig(parts=PartsRules(auto_approve=False))
    engine = network_engine(database_url, auto=False, config=config)
    engine.submit(STOCK + [register("CASE-1", at("08:10")), request("CASE-1", "PR-1", at("09:00"))])
    assert part_decisions(engine, "CASE-1") == []
    engine.close()


def engine_standing(engine, case_id: str, moment: str) -> dict:
    from closedloop.domain.facts import parse_ms
    from closedloop.projections.standing import case_standing

    found = case_standing(engine.log, engine.policy, case_id, parse_ms(moment))
    assert found is not None
    return found
