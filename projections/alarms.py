"""Dispatch alarms: which jobs were not taken in time, where, and whether someone has since.

An alarm is open at T when it was raised by T and not yet resolved (the job accepted,
declined, re-dispatched, transferred, or the case closed) by T.
"""

from __future__ import annotations

from typing import Any

from closedloop.domain.facts import iso
from closedloop.log.storage import Storage

from .network import ALARMS


def alarms(storage: Storage, at: int, state: str = "open", outlet_id: str | None = None, case_id: str | None = None,
           level: int | None = None, limit: int = 100, offset: int = 0) -> dict[str, Any]:
    q = storage.q
    where, params = [f"time <= {q}"], [at]
    if state == "open":
        where.append(f"(resolved IS NULL OR resolved > {q})")
        params.append(at)
    elif state == "resolved":
        where.append(f"resolved <= {q}")
        params.append(at)
    for column, value in (("outlet_id", outlet_id), ("case_id", case_id), ("level", level)):
        if value is not None:
            where.append(f"{column} = {q}")
            params.append(value)
    clause = " AND ".join(where)
    with storage.reading() as tx:
        total = tx.one(f"SELECT COUNT(*) AS n FROM {ALARMS} WHERE {clause}", params)["n"]
        rows = tx.all(f"SELECT * FROM {ALARMS} WHERE {clause} ORDER BY time DESC, case_id, level LIMIT {q} OFFSET {q}",
                      params + [limit, offset])
    items = []
    for r in rows:
        resolved = r["resolved"] is not None and r["resolved"] <= at
        items.append({
            "case_id": r["case_id"], "outlet_id": r["outlet_id"], "level": r["level"], "raised": iso(r["time"]),
            "dispatched_at": iso(r["dispatched_at"]), "accept_by": iso(r["accept_by"]), "action": r["action"],
            "reason": r["reason"], "state": "resolved" if resolved else "open",
            "resolved": iso(r["resolved"]) if resolved else None, "resolution": r["resolution"] if resolved else None,
            "open_minutes": round(((r["resolved"] if resolved else at) - r["time"]) / 60_000, 1),
        })
    return {"as_of": iso(at), "state": state, "total": int(total), "limit": limit, "offset": offset, "items": items}
