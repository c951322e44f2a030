"""What has leaked out of the loop at a moment, and who owns each leak.

Answers from `loop_spans`: a step is open at T when a span covers T, and leaked when that
span's due time is not after T.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from closedloop.domain.facts import iso
from closedloop.domain.loop import STAGES
from closedloop.storage import Storage

from .loop import ITEMS, SPANS

_OPEN_AT = "opened <= ? AND (closed IS NULL OR closed > ?)"


def summary(storage: Storage, at: int) -> dict[str, Any]:
    with storage.reading() as tx:
        rows = tx.all(
            f"SELECT stage, COUNT(*) AS open, SUM(CASE WHEN due <= ? THEN 1 ELSE 0 END) AS overdue "
            f"FROM {SPANS} WHERE {_OPEN_AT} GROUP BY stage",
            [at, at, at],
        )
        cases = tx.one(f"SELECT COUNT(*) AS n FROM {ITEMS} WHERE kind = 'case' AND registered <= ?", [at])["n"]
        closed = tx.one(
            f"SELECT COUNT(*) AS n FROM {ITEMS} i WHERE kind = 'case' AND registered <= ? AND NOT EXISTS "
            f"(SELECT 1 FROM {SPANS} s WHERE s.case_id = i.case_id AND "
            "s.opened <= ? AND (s.closed IS NULL OR s.closed > ?))",
            [at, at, at],
        )["n"]
    open_ = {s: 0 for s in STAGES}
    leaks = {s: 0 for s in STAGES}
    for r in rows:
        open_[r["stage"]] = int(r["open"])
        leaks[r["stage"]] = int(r["overdue"] or 0)
    return {
        "as_of": iso(at),
        "cases": int(cases),
        "open": open_,
        "leaks": leaks,
        "leaked_total": sum(leaks.values()),
        # registered cases with no step open at that moment: the loop closed, so far
        "closed_loops": int(closed),
    }


@dataclass(frozen=True)
class LeakFilter:
    stage: str | None = None
    region: str | None = None
    outlet_id: str | None = None
    owner: str | None = None


def leaks(storage: Storage, at: int, flt: LeakFilter, limit: int = 100, offset: int = 0) -> dict[str, Any]:
    where = [f"due <= ?", _OPEN_AT]
    params: list[Any] = [at, at, at]
    for column in ("stage", "region", "outlet_id", "owner"):
        value = getattr(flt, column)
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    clause = " AND ".join(where)
    with storage.reading() as tx:
        total = tx.one(f"SELECT COUNT(*) AS n FROM {SPANS} WHERE {clause}", params)["n"]
        rows = tx.all(
            f"SELECT item, case_id, call_id, stage, opened, due, owner, outlet_id, region, waiting_for FROM {SPANS} "
            f"WHERE {clause} ORDER BY due, item, stage LIMIT ? OFFSET ?",
            params + [limit, offset],
        )
    items = [
        {
            "case_id": r["case_id"],
            "call_id": r["call_id"],
            "stage": r["stage"],
            "due": iso(r["due"]),
            "owner": r["owner"],
            "overdue_hours": round((at - r["due"]) / 3_600_000, 2),
            "open_since": iso(r["opened"]),
            "region": r["region"],
            "outlet_id": r["outlet_id"],
            "waiting_for": r["waiting_for"],
        }
        for r in rows
    ]
    return {"as_of": iso(at), "total": int(total), "limit": limit, "offset": offset, "items": items}
