"""Cases told as the producers would send them, for the quality loop's tests."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from conftest import event


def at(moment: str, hours: float = 0) -> str:
    t = datetime.fromisoformat(moment.replace("Z", "+00:00")) + timedelta(hours=hours)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def outlet(outlet_id: str, tier: str = "authorized", manager: str | None = "Director Sun") -> dict[str, Any]:
    data = {"name": f"{outlet_id} Repair Point", "tier": tier, "regions": ["R01"], "product_lines": ["refrigerator"],
            "daily_capacity": 20}
    if manager:
        data["manager"] = manager
    return event("outlet.registered", outlet_id, "2026-08-01T00:00:00Z", data, source="/hq/network",
                 id=f"reg-{outlet_id}")


def technician(tech_id: str, outlet_id: str, name: str = "Zhang Wei") -> dict[str, Any]:
    return event("technician.registered", tech_id, "2026-08-01T01:00:00Z",
                 {"outlet_id": outlet_id, "name": name, "level": "senior"}, source=f"/outlet/{outlet_id}",
                 id=f"reg-{tech_id}")


def case(case_id: str, start: str, *, model: str = "BCD-216", line: str = "refrigerator", batch: str = "B2026-05-A",
         plant: str = "PLANT-QD1", purchased: str | None = "2026-03-15", serial: str | None = None,
         request: str = "repair", outlet_id: str = "OUT-1", tech: str = "TEC-1", fault_code: str = "E1",
         cause: str = "wear", first_visit: bool = True, parts: list[str] | None = None,
         completed_after: float | None = 20, reviewed_after: float | None = 3, region: str = "R01",
         customer: str = "CU-1", satisfaction: str = "satisfied") -> list[dict[str, Any]]:
    """A call, its registration, dispatch, acceptance, completion (hours after the call) and a
    reached callback (hours after the completion); None leaves a step out."""
    call_id = f"CALL-{case_id}"
    product = {"model": model, "product_line": line, "production_batch": batch, "plant": plant,
               "purchase_date": purchased, "serial": serial}
    events = [
        event("call.received", call_id, start, {"phone": "13800000000", "intent": request, "agent_id": "A7"}),
        event("case.registered", case_id, at(start, 0.1), {
            "call_id": call_id,
            "customer": {"id": customer, "name": "Wang Li", "phone": "13800000000", "address": "1 Haier Road",
                         "region": region},
            "product": product, "fault": {"description": "not cooling"}, "request": request}),
        event("case.dispatched", case_id, at(start, 0.2), {"outlet_id": outlet_id, "by": "agent"}),
        event("dispatch.accepted", case_id, at(start, 0.3), {"outlet_id": outlet_id, "technician_id": tech},
              source=f"/outlet/{outlet_id}"),
    ]
    if completed_after is not None:
        done = at(start, completed_after)
        events.append(event("service.completed", case_id, done, {
            "technician_id": tech, "fault_code": fault_code, "cause": cause, "first_visit": first_visit,
            "parts_used": parts or []}, source=f"/outlet/{outlet_id}"))
        if reviewed_after is not None:
            events.append(event("callback.made", case_id, at(done, reviewed_after),
                                 {"agent_id": "CB-1", "reached": True, "satisfaction": satisfaction},
                                 source="/callback/desk-1"))
    return events


def complaint(case_id: str, when: str, category: str, accountable: str, complaint_id: str | None = None,
              resolved_after: float = 4) -> list[dict[str, Any]]:
    cid = complaint_id or f"CMP-{case_id}"
    return [
        event("complaint.filed", case_id, when, {"complaint_id": cid, "category": category}),
        event("complaint.resolved", case_id, at(when, resolved_after),
              {"complaint_id": cid, "resolution": "apologised", "accountable": accountable}, source="/hq/service-quality"),
    ]
