"""Spare parts by order: an outlet's request, approved by rule, shipped, delivered.

Pure rules shared by the engine's parts approver and the network view:

- `walk_request`: a request's facts in world time give its status (requested, held,
  approved, denied, shipped, delivered) and the stock moves it caused: approval reserves the
  quantity at a warehouse, shipment takes it off the shelf and out of the reservation, a
  denial after approval lets the reservation go. A later approval naming another warehouse
  moves the reservation there.
- `decide`: approve from the region's second-level warehouse when the rules allow, else say
  why not: denied (the case does not need it, the quantity is over the limit) or held (no
  stock yet, a quantity a person must approve, a case not registered yet).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

from .facts import Fact

PART_FACTS = frozenset({"part.requested", "part.approved", "part.denied", "part.held", "part.shipped",
                        "part.delivered"})
OPEN = frozenset({"requested", "held", "approved", "shipped"})
ENGINE_SOURCE = "/closedloop/engine/"


@dataclass(frozen=True)
class PartsRules:
    # the engine decides requests by itself
    auto_approve: bool = True
    # a request for more than this is denied
    max_quantity: int = 10
    # above this (up to max_quantity) a person approves: the request is held
    auto_quantity: int = 3
    # none in the region's second-level warehouse: ship from the first-level one
    first_level_fallback: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.auto_quantity <= self.max_quantity:
            raise ValueError(f"parts rules need 1 <= auto_quantity ({self.auto_quantity}) <= max_quantity "
                             f"({self.max_quantity})")

    def fingerprint(self) -> str:
        blob = {k: v for k, v in asdict(self).items() if k != "auto_approve"}
        return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]


def part_lite(fact: Fact) -> dict[str, Any]:
    d = fact.data
    out: dict[str, Any] = {"request_id": d["request_id"]}
    if fact.type == "part.requested":
        out.update(part_no=d["part_no"], quantity=d["quantity"], outlet_id=d["outlet_id"])
    else:
        for k in ("warehouse_id", "reason"):
            if d.get(k) is not None:
                out[k] = d[k]
    out["engine"] = fact.source.startswith(ENGINE_SOURCE)
    return out


def part_entry(fact: Fact, position: int) -> list[Any]:
    return [fact.time_ms, position, fact.type, part_lite(fact), f"{fact.source}|{fact.id}"]


@dataclass
class RequestState:
    request_id: str
    case_id: str
    part_no: str | None = None
    quantity: int | None = None
    outlet_id: str | None = None
    requested: int | None = None
    status: str | None = None  # requested | held | approved | denied | shipped | delivered
    warehouse_id: str | None = None
    reason: str | None = None
    decided: int | None = None
    decided_by: str | None = None  # engine | producer
    reserved_at: str | None = None
    # (time, warehouse, part, on-hand change, reserved change)
    moves: list[tuple[int, str, str, int, int]] = field(default_factory=list)
    # (time, status, warehouse, reason, by)
    history: list[tuple[int, str, str | None, str | None, str]] = field(default_factory=list)

    @property
    def open(self) -> bool:
        return self.status in OPEN


def walk_request(request_id: str, case_id: str, entries: Iterable[Sequence[Any]]) -> RequestState:
    r = RequestState(request_id, case_id)
    shipped = False

    def move(t: int, warehouse: str, on_hand: int, reserved: int) -> None:
        if r.part_no is not None and r.quantity is not None:
            r.moves.append((t, warehouse, r.part_no, on_hand * r.quantity, reserved * r.quantity))

    for t, _pos, kind, d, _key in sorted(entries, key=lambda e: (e[0], e[1])):
        by = "engine" if d.get("engine") else "producer"
        status = kind.split(".", 1)[1]
        if kind == "part.requested":
            if r.requested is None:
                r.requested, r.part_no, r.quantity, r.outlet_id = t, d["part_no"], d["quantity"], d["outlet_id"]
                r.status = r.status or "requested"
            r.history.append((t, "requested", None, None, by))
            continue
        r.history.append((t, status, d.get("warehouse_id"), d.get("reason"), by))
        if kind == "part.held":
            if r.status in (None, "requested", "held"):
                r.status, r.reason, r.decided, r.decided_by = "held", d.get("reason"), t, by
        elif kind == "part.approved":
            if shipped:
                continue  # a late confirmation: the part is already on its way
            where = d.get("warehouse_id")
            if where and where != r.reserved_at:
                if r.reserved_at:
                    move(t, r.reserved_at, 0, -1)
                move(t, where, 0, +1)
                r.reserved_at = where
            if r.status != "approved":
                r.decided, r.decided_by = t, by
            r.status, r.reason = "approved", d.get("reason")
            r.warehouse_id = where or r.warehouse_id
        elif kind == "part.denied":
            if shipped:
                continue
            if r.reserved_at:
                move(t, r.reserved_at, 0, -1)
                r.reserved_at = None
            r.status, r.reason, r.decided, r.decided_by = "denied", d.get("reason"), t, by
        elif kind in ("part.shipped", "part.delivered"):
            if not shipped:
                shipped = True
                where = d.get("warehouse_id") or r.reserved_at
                if r.reserved_at:
                    move(t, r.reserved_at, 0, -1)
                    r.reserved_at = None
                if where:
                    move(t, where, -1, 0)
                r.warehouse_id = where or r.warehouse_id
            if kind == "part.delivered" or r.status != "delivered":
                r.status = "delivered" if kind == "part.delivered" else "shipped"
    return r


# --- deciding a request ----------------------------------------------------------------------
@dataclass(frozen=True)
class CaseForParts:
    """What the approver knows of the case a part is for."""

    registered: bool
    region: str | None = None
    outlet_id: str | None = None
    closed: str | None = None  # completed | cancelled | guided


@dataclass(frozen=True)
class Shelf:
    """One warehouse's stock of the requested part."""

    warehouse_id: str
    level: int
    region: str
    on_hand: int
    reserved: int

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved


def decide(r: RequestState, case: CaseForParts | None, shelves: Sequence[Shelf],
           rules: PartsRules) -> tuple[str, str | None, str]:
    """(approved | denied | held, warehouse, reason) for an open request, by the rules."""
    part, qty = r.part_no, r.quantity or 0
    if qty > rules.max_quantity:
        return "denied", None, f"quantity {qty} is over the limit of {rules.max_quantity} per request"
    if case is None or not case.registered:
        return "held", None, f"case {r.case_id} is not registered yet: held until it is"
    if case.closed:
        how = {"guided": "resolved by phone guidance"}.get(case.closed, case.closed)
        return "denied", None, f"case {r.case_id} is already {how}: it needs no part"
    if case.outlet_id and r.outlet_id and case.outlet_id != r.outlet_id:
        return "denied", None, f"case {r.case_id} is with {case.outlet_id}, not {r.outlet_id}"
    if not case.region:
        return "held", None, f"case {r.case_id} has no region yet: held until it is amended"
    if qty > rules.auto_quantity:
        return "held", None, (f"quantity {qty} is over the automatic approval limit of {rules.auto_quantity}: "
                              "held for a person to approve")
    regional = sorted((s for s in shelves if s.level == 2 and s.region == case.region),
                      key=lambda s: (-s.available, s.warehouse_id))
    for s in regional:
        if s.available >= qty:
            return "approved", s.warehouse_id, (
                f"{s.available} of {part} available at {s.warehouse_id}, the second-level warehouse of region "
                f"{case.region}; {qty} reserved")
    first = sorted((s for s in shelves if s.level == 1), key=lambda s: (-s.available, s.warehouse_id))
    where = "no second-level warehouse in region " + case.region if not regional else (
        f"{regional[0].warehouse_id} has {max(regional[0].available, 0)} of {part} available")
    if rules.first_level_fallback:
        for s in first:
            if s.available >= qty:
                return "approved", s.warehouse_id, (
                    f"{where}; {s.available} available at {s.warehouse_id}, the first-level warehouse; {qty} reserved")
    return "held", None, f"{where}, fewer than {qty} needed: held until stock arrives"
