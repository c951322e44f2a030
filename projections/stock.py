"""Warehouses with their stock per part, and part requests with where each stands, at T.

Stock at T is the sum of the moves recorded by then: received, reserved by an approval,
released by a denial, taken off the shelf by a shipment. A request's status at T is what
its facts up to then say (`closedloop.domain.parts.walk_request`).
"""

from __future__ import annotations

from typing import Any

import orjson

from closedloop.domain.facts import iso
from closedloop.domain.parts import OPEN, walk_request
from closedloop.log.storage import Storage

from .network import REQUESTS, STOCK, WAREHOUSES


def _stock(tx, warehouse_ids: list[str], at: int) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {w: [] for w in warehouse_ids}
    if not warehouse_ids:
        return out
    among, params = tx.in_list("warehouse_id", warehouse_ids)
    rows = tx.all(
        f"SELECT warehouse_id, part_no, SUM(on_hand) AS on_hand, SUM(reserved) AS reserved FROM {STOCK} "
        f"WHERE time <= {tx.q} AND {among} "
        "GROUP BY warehouse_id, part_no ORDER BY warehouse_id, part_no", [at, *params])
    for r in rows:
        on_hand, reserved = int(r["on_hand"]), int(r["reserved"])
        out[r["warehouse_id"]].append({"part_no": r["part_no"], "on_hand": on_hand, "reserved": reserved,
                                       "available": on_hand - reserved})
    return out


def warehouses(storage: Storage, at: int, level: int | None = None, region: str | None = None,
               limit: int = 100, offset: int = 0) -> dict[str, Any]:
    q = storage.q
    where, params = [f"since <= {q}"], [at]
    if level is not None:
        where.append(f"level = {q}")
        params.append(level)
    if region:
        where.append(f"region = {q}")
        params.append(region)
    clause = " AND ".join(where)
    with storage.reading() as tx:
        total = tx.one(f"SELECT COUNT(*) AS n FROM {WAREHOUSES} WHERE {clause}", params)["n"]
        rows = tx.all(f"SELECT * FROM {WAREHOUSES} WHERE {clause} ORDER BY level, warehouse_id LIMIT {q} OFFSET {q}",
                      params + [limit, offset])
        stock = _stock(tx, [r["warehouse_id"] for r in rows], at)
    items = [{"warehouse_id": r["warehouse_id"], "level": r["level"], "region": r["region"],
              "stock": stock[r["warehouse_id"]]} for r in rows]
    return {"as_of": iso(at), "total": int(total), "limit": limit, "offset": offset, "items": items}


def warehouse(storage: Storage, warehouse_id: str, at: int) -> dict[str, Any] | None:
    with storage.reading() as tx:
        row = tx.one(f"SELECT * FROM {WAREHOUSES} WHERE warehouse_id = {tx.q} AND since <= {tx.q}", [warehouse_id, at])
        if row is None:
            return None
        stock = _stock(tx, [warehouse_id], at)[warehouse_id]
    return {"warehouse_id": warehouse_id, "as_of": iso(at), "level": row["level"], "region": row["region"],
            "stock": stock}


def part_requests(storage: Storage, at: int, outlet_id: str | None = None, case_id: str | None = None,
                  state: str = "open", limit: int = 100, offset: int = 0) -> dict[str, Any]:
    """Part requests made by T, each with its status at T; `state` is open, all, or a status."""
    q = storage.q
    where, params = [f"requested <= {q}"], [at]
    if outlet_id:
        where.append(f"outlet_id = {q}")
        params.append(outlet_id)
    if case_id:
        where.append(f"case_id = {q}")
        params.append(case_id)
    with storage.reading() as tx:
        rows = tx.all(f"SELECT request_id, case_id, entries FROM {REQUESTS} WHERE {' AND '.join(where)} "
                      "ORDER BY requested, request_id", params)
    items = []
    by_outlet: dict[str, int] = {}
    for row in rows:
        # the request as its facts up to T tell it
        r = walk_request(row["request_id"], row["case_id"], [e for e in orjson.loads(row["entries"]) if e[0] <= at])
        status = r.status or "requested"
        if (state == "open" and status not in OPEN) or (state not in ("open", "all") and status != state):
            continue
        by_outlet[r.outlet_id or "?"] = by_outlet.get(r.outlet_id or "?", 0) + 1
        items.append({
            "request_id": r.request_id, "case_id": r.case_id, "outlet_id": r.outlet_id, "part_no": r.part_no,
            "quantity": r.quantity, "requested": iso(r.requested), "status": status, "warehouse_id": r.warehouse_id,
            "reason": r.reason, "decided_by": r.decided_by,
            "history": [{"time": iso(t), "status": st, "warehouse_id": w, "reason": why, "by": by}
                        for t, st, w, why, by in r.history],
        })
    return {"as_of": iso(at), "state": state, "total": len(items), "limit": limit, "offset": offset,
            "by_outlet": dict(sorted(by_outlet.items())), "items": items[offset : offset + limit]}
