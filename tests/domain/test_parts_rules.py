"""Spare parts by order, as rules: no storage, no engine.

Given a request and what is known of its case and the warehouses' shelves, when the rules
decide, then it is approved from a warehouse, denied or held, with the reason. Given a
request's facts, when they are walked, then its status and the stock it moved.

The parts approver (reactors/parts_approver.py) reads the case and the shelves from its
tables and records `decide`'s answer as a fact; that is tested on both databases in
tests/test_parts.py. Here: `decide`, `walk_request` and `PartsRules`, the pure rules it calls.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from closedloop.contract.events import validate
from closedloop.domain.facts import Fact, parse_ms
from closedloop.domain.parts import (
    ENGINE_SOURCE,
    CaseForParts,
    PartsRules,
    RequestState,
    Shelf,
    decide,
    part_entry,
    walk_request,
)

from conftest import event

pytestmark = pytest.mark.fast

RULES = PartsRules()
PART = "RF-THERM-01"


def at(clock: str) -> str:
    return f"2026-10-30T{clock}:00Z"


class Request:
    """One request's facts as the rules read them (time, position, type, lite, key)."""

    def __init__(self, quantity: int = 2, outlet: str = "OUT-S", time: str = at("09:00")) -> None:
        self.entries: list[list[Any]] = []
        self._add("part.requested", time, {"part_no": PART, "quantity": quantity, "outlet_id": outlet},
                  f"/outlet/{outlet}")

    def _add(self, type_: str, time: str, data: dict[str, Any], source: str) -> "Request":
        n = len(self.entries) + 1
        fact = validate(event(type_, "CASE-1", time, {"request_id": "PR-1", **data}, source=source, id=f"p{n}"))
        assert isinstance(fact, Fact), fact
        self.entries.append(part_entry(fact, n))
        return self

    def approved(self, time: str, warehouse: str, by: str = ENGINE_SOURCE + "parts-approver") -> "Request":
        return self._add("part.approved", time, {"warehouse_id": warehouse}, by)

    def denied(self, time: str, reason: str = "not needed", by: str = "/hq/parts") -> "Request":
        return self._add("part.denied", time, {"reason": reason}, by)

    def held(self, time: str, reason: str = "no stock", by: str = ENGINE_SOURCE + "parts-approver") -> "Request":
        return self._add("part.held", time, {"reason": reason}, by)

    def shipped(self, time: str, warehouse: str) -> "Request":
        return self._add("part.shipped", time, {"warehouse_id": warehouse}, f"/warehouse/{warehouse}")

    def delivered(self, time: str, warehouse: str) -> "Request":
        return self._add("part.delivered", time, {"warehouse_id": warehouse}, "/outlet/OUT-S")

    def state(self) -> RequestState:
        return walk_request("PR-1", "CASE-1", self.entries)

    def moves(self) -> list[tuple[str, int, int]]:
        """(warehouse, on-hand change, reserved change) of each stock move, in order."""
        return [(w, on_hand, reserved) for _t, w, part, on_hand, reserved in self.state().moves if part == PART]


# --- the state a request's facts leave ------------------------------------------------------------
def test_a_request_alone_is_open_and_moves_no_stock():
    r = Request(quantity=2).state()
    assert (r.status, r.part_no, r.quantity, r.outlet_id, r.open) == ("requested", PART, 2, "OUT-S", True)
    assert r.moves == [] and r.requested == parse_ms(at("09:00"))


def test_an_approval_reserves_the_quantity_at_the_warehouse_named():
    req = Request(quantity=2).approved(at("09:01"), "WH2-R01")
    r = req.state()
    assert (r.status, r.warehouse_id, r.reserved_at, r.decided_by) == ("approved", "WH2-R01", "WH2-R01", "engine")
    assert req.moves() == [("WH2-R01", 0, 2)]


def test_a_shipment_takes_the_part_off_the_shelf_and_out_of_the_reservation():
    req = Request(quantity=2).approved(at("09:01"), "WH2-R01").shipped(at("11:00"), "WH2-R01")
    assert req.state().status == "shipped" and req.state().reserved_at is None
    assert req.moves() == [("WH2-R01", 0, 2), ("WH2-R01", 0, -2), ("WH2-R01", -2, 0)]


def test_a_delivery_after_the_shipment_moves_nothing_more_and_closes_the_request():
    req = Request(quantity=2).approved(at("09:01"), "WH2-R01").shipped(at("11:00"), "WH2-R01") \
        .delivered(at("15:00"), "WH2-R01")
    r = req.state()
    assert (r.status, r.open) == ("delivered", False)
    assert req.moves() == [("WH2-R01", 0, 2), ("WH2-R01", 0, -2), ("WH2-R01", -2, 0)]


def test_a_shipment_nobody_approved_still_takes_the_part_off_the_named_shelf():
    req = Request(quantity=3).shipped(at("11:00"), "WH1-01")
    assert req.state().status == "shipped" and req.moves() == [("WH1-01", -3, 0)]


def test_a_denial_after_an_approval_lets_the_reservation_go():
    req = Request(quantity=2).approved(at("09:01"), "WH2-R01").denied(at("10:00"), "wrong part")
    r = req.state()
    assert (r.status, r.reason, r.decided_by, r.reserved_at) == ("denied", "wrong part", "producer", None)
    assert req.moves() == [("WH2-R01", 0, 2), ("WH2-R01", 0, -2)]


def test_a_later_approval_naming_another_warehouse_moves_the_reservation_there():
    req = Request(quantity=2).approved(at("09:01"), "WH2-R01").approved(at("09:30"), "WH1-01", by="/hq/parts")
    r = req.state()
    assert (r.warehouse_id, r.reserved_at) == ("WH1-01", "WH1-01")
    # the first decision stands as the moment it was decided
    assert (r.decided, r.decided_by) == (parse_ms(at("09:01")), "engine")
    assert req.moves() == [("WH2-R01", 0, 2), ("WH2-R01", 0, -2), ("WH1-01", 0, 2)]


def test_an_approval_or_denial_after_the_shipment_changes_nothing():
    shipped = Request(quantity=1).approved(at("09:01"), "WH2-R01").shipped(at("11:00"), "WH2-R01")
    before = (shipped.state().status, shipped.moves())
    shipped.approved(at("12:00"), "WH2-R01", by="/warehouse/WH2-R01").denied(at("12:30"))
    assert (shipped.state().status, shipped.moves()) == before


def test_a_held_request_is_decided_when_approved_and_its_history_keeps_both_steps():
    req = Request(quantity=1).held(at("09:01"), "no stock yet").approved(at("12:00"), "WH2-R01")
    r = req.state()
    assert r.status == "approved" and r.decided == parse_ms(at("12:00"))
    assert [(status, by) for _t, status, _w, _why, by in r.history] == [
        ("requested", "producer"), ("held", "engine"), ("approved", "engine")]


def test_the_walk_gives_the_same_state_whatever_order_the_facts_arrive_in():
    req = Request(quantity=2).held(at("09:01")).approved(at("10:00"), "WH2-R01") \
        .approved(at("10:30"), "WH1-01", by="/hq/parts").shipped(at("12:00"), "WH1-01").delivered(at("16:00"), "WH1-01")
    expected = req.state()
    rng = random.Random(5)
    for _ in range(20):
        shuffled = [list(e) for e in req.entries]
        rng.shuffle(shuffled)
        for position, e in enumerate(shuffled, start=1):
            e[1] = position
        got = walk_request("PR-1", "CASE-1", shuffled)
        assert (got.status, got.moves, got.warehouse_id, got.decided) == (
            expected.status, expected.moves, expected.warehouse_id, expected.decided)


# --- deciding a request -----------------------------------------------------------------------------
OPEN_CASE = CaseForParts(registered=True, region="R01", outlet_id="OUT-S")
SHELVES = [Shelf("WH2-R01", 2, "R01", on_hand=5, reserved=1), Shelf("WH2-R01B", 2, "R01", on_hand=3, reserved=0),
           Shelf("WH2-R02", 2, "R02", on_hand=50, reserved=0), Shelf("WH1-01", 1, "HQ", on_hand=100, reserved=0)]


def deciding(quantity: int = 2, outlet: str = "OUT-S") -> RequestState:
    return Request(quantity=quantity, outlet=outlet).state()


def test_a_request_is_approved_from_the_regions_second_level_warehouse_with_most_available():
    status, warehouse, reason = decide(deciding(2), OPEN_CASE, SHELVES, RULES)
    assert (status, warehouse) == ("approved", "WH2-R01")  # 4 available beats 3; another region's 50 is not asked
    assert reason == f"4 of {PART} available at WH2-R01, the second-level warehouse of region R01; 2 reserved"


def test_between_equally_stocked_regional_warehouses_the_first_by_name_ships():
    shelves = [Shelf("WH2-R01B", 2, "R01", 4, 0), Shelf("WH2-R01A", 2, "R01", 4, 0)]
    assert decide(deciding(1), OPEN_CASE, shelves, RULES)[1] == "WH2-R01A"


def test_without_enough_in_the_region_the_first_level_warehouse_ships():
    shelves = [Shelf("WH2-R01", 2, "R01", 5, 4), Shelf("WH1-01", 1, "HQ", 100, 0)]
    status, warehouse, reason = decide(deciding(2), OPEN_CASE, shelves, RULES)
    assert (status, warehouse) == ("approved", "WH1-01")
    assert reason == (f"WH2-R01 has 1 of {PART} available; 100 available at WH1-01, the first-level warehouse; "
                      "2 reserved")


def test_without_the_first_level_fallback_a_short_region_holds_the_request_until_stock_arrives():
    shelves = [Shelf("WH2-R01", 2, "R01", 5, 4), Shelf("WH1-01", 1, "HQ", 100, 0)]
    rules = PartsRules(first_level_fallback=False)
    assert decide(deciding(2), OPEN_CASE, shelves, rules) == (
        "held", None, f"WH2-R01 has 1 of {PART} available, fewer than 2 needed: held until stock arrives")


def test_a_region_with_no_second_level_warehouse_and_no_stock_anywhere_holds_the_request():
    assert decide(deciding(1), CaseForParts(True, "R09", "OUT-S"), [Shelf("WH1-01", 1, "HQ", 0, 0)], RULES) == (
        "held", None, "no second-level warehouse in region R09, fewer than 1 needed: held until stock arrives")


def test_a_quantity_over_the_limit_is_denied_before_anything_else_is_asked():
    assert decide(deciding(11), None, SHELVES, RULES) == (
        "denied", None, "quantity 11 is over the limit of 10 per request")


def test_a_quantity_over_the_automatic_limit_is_held_for_a_person_to_approve():
    assert decide(deciding(4), OPEN_CASE, SHELVES, RULES) == (
        "held", None, "quantity 4 is over the automatic approval limit of 3: held for a person to approve")


def test_a_request_for_a_case_not_registered_yet_is_held_until_it_is():
    expected = ("held", None, "case CASE-1 is not registered yet: held until it is")
    assert decide(deciding(), None, SHELVES, RULES) == expected
    assert decide(deciding(), CaseForParts(registered=False, region="R01"), SHELVES, RULES) == expected


@pytest.mark.parametrize(("closed", "words"), [("completed", "already completed"), ("cancelled", "already cancelled"),
                                               ("guided", "already resolved by phone guidance")])
def test_a_closed_case_needs_no_part_and_the_request_is_denied(closed: str, words: str):
    case = CaseForParts(True, "R01", "OUT-S", closed=closed)
    assert decide(deciding(), case, SHELVES, RULES) == ("denied", None, f"case CASE-1 is {words}: it needs no part")


def test_an_outlet_asking_for_another_outlets_case_is_denied():
    assert decide(deciding(outlet="OUT-B"), OPEN_CASE, SHELVES, RULES) == (
        "denied", None, "case CASE-1 is with OUT-S, not OUT-B")


def test_a_case_not_dispatched_yet_takes_a_request_from_any_outlet():
    assert decide(deciding(outlet="OUT-B"), CaseForParts(True, "R01", None), SHELVES, RULES)[0] == "approved"


def test_a_case_without_a_region_is_held_until_amended():
    assert decide(deciding(), CaseForParts(True, None, "OUT-S"), SHELVES, RULES) == (
        "held", None, "case CASE-1 has no region yet: held until it is amended")


def test_the_limits_are_configuration():
    rules = PartsRules(max_quantity=20, auto_quantity=5)
    assert decide(deciding(4), OPEN_CASE, [Shelf("WH2-R01", 2, "R01", 10, 0)], rules)[0] == "approved"
    assert decide(deciding(11), OPEN_CASE, [Shelf("WH2-R01", 2, "R01", 10, 0)], rules)[0] == "held"
    assert rules.fingerprint() != RULES.fingerprint()
    # switching the approver on or off changes what is decided next, not what is known
    assert PartsRules(auto_approve=False).fingerprint() == RULES.fingerprint()


def test_an_automatic_limit_above_the_hard_limit_is_refused():
    with pytest.raises(ValueError, match="auto_quantity"):
        PartsRules(max_quantity=3, auto_quantity=5)
