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

from .loop import COUNTS, ITEMS, SPANS

_OPEN_AT = "opened <= ? AND (closed IS NULL OR closed > ?)"


def _open_at(columns: str, where: str = "") -> str:
    """Spans open at a moment (two `?`: the moment, twice), as two index-driven halves:
    still open (a partial index), or closed only after the moment (by closing time)."""
    extra = f" AND {where}" if where else ""
    return (f"SELECT {columns} FROM {SPANS} WHERE closed IS NULL AND opened <= ?{extra} "
            f"UNION ALL SELECT {columns} FROM {SPANS} WHERE closed > ? AND opened <= ?{extra}")


def summary(storage: Storage, at: int) -> dict[str, Any]:
    with storage.reading() as tx:
        rows = tx.all(
            f"SELECT stage, COUNT(*) AS open, SUM(CASE WHEN due <= ? THEN 1 ELSE 0 END) AS overdue, "
            f"COUNT(DISTINCT case_id) AS cases FROM ({_open_at('stage, due, case_id')}) s GROUP BY stage",
            [at, at, at, at],
        )
        with_open = tx.one(
            f"SELECT COUNT(DISTINCT case_id) AS n FROM ({_open_at('case_id', 'case_id IS NOT NULL')}) s",
            [at, at, at],
        )["n"]
        # all registered cases, less those registered after T (few, when T is recent)
        later = tx.one(f"SELECT COUNT(*) AS n FROM {ITEMS} WHERE kind = 'case' AND registered > ?", [at])["n"]
        cases = tx.one(f"SELECT n FROM {COUNTS} WHERE name = 'registered_cases'")["n"] - later
        # a case with a step open at T whose registration came after T is open at "recorded" only
        early = tx.one(
            f"SELECT COUNT(DISTINCT s.case_id) AS n FROM ({_open_at('case_id', 'case_id IS NOT NULL')}) s "
            f"JOIN {ITEMS} i ON i.item = 'case:' || s.case_id WHERE i.registered IS NULL OR i.registered > ?",
            [at, at, at, at],
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
        "closed_loops": int(cases) - (int(with_open) - int(early)),
    }


@dataclass(frozen=True)
class LeakFilter:
    stage: str | None = None
    region: str | None = None
    outlet_id: str | None = None
    owner: str | None = None


def leaks(storage: Storage, at: int, flt: LeakFilter, limit: int = 100, offset: int = 0) -> dict[str, Any]:
    where = ["due <= ?"]
    params: list[Any] = [at]
    for column in ("stage", "region", "outlet_id", "owner"):
        value = getattr(flt, column)
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    clause = " AND ".join(where)
    columns = "item, case_id, call_id, stage, opened, due, owner, outlet_id, region, waiting_for"
    both = [at, *params, at, at, *params]
    with storage.reading() as tx:
        total = tx.one(f"SELECT COUNT(*) AS n FROM ({_open_at('1 AS one', clause)}) s", both)["n"]
        rows = tx.all(
            f"SELECT * FROM ({_open_at(columns, clause)}) s ORDER BY due, item, stage LIMIT ? OFFSET ?",
            both + [limit, offset],
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
