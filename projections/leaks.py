"""What has leaked out of the loop at a moment, and who owns each leak.

Answers from `loop_spans`: a step is open at T when a span covers T, and leaked when that
span's due time is not after T.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from closedloop.domain.facts import iso
from closedloop.domain.loop import STAGES
from closedloop.log.storage import Storage

from .loop import COUNTS, ITEMS, SPANS
from .loop_totals import OPEN_TOTALS, key

def _open_at_moment(q: str) -> str:
    """A span open at a moment (two parameters: the moment, twice)."""
    return f"opened <= {q} AND (closed IS NULL OR closed > {q})"


def _open_at(q: str, columns: str, where: str = "") -> str:
    """Spans open at a moment (three parameters: the moment, thrice), as two index-driven
    halves: still open (a partial index), or closed only after the moment (by closing time)."""
    extra = f" AND {where}" if where else ""
    return (f"SELECT {columns} FROM {SPANS} WHERE closed IS NULL AND opened <= {q}{extra} "
            f"UNION ALL SELECT {columns} FROM {SPANS} WHERE closed > {q} AND opened <= {q}{extra}")


def _summary_scan(tx: Any, at: int) -> dict[str, Any]:
    """Counting the spans open at `at`: for a moment long past, when the corrections to the
    running totals would be most of the spans."""
    q = tx.q
    rows = tx.all(
        f"SELECT stage, COUNT(*) AS open, SUM(CASE WHEN due <= {q} THEN 1 ELSE 0 END) AS overdue, "
        f"COUNT(DISTINCT case_id) AS cases FROM ({_open_at(q, 'stage, due, case_id')}) s GROUP BY stage",
        [at, at, at, at],
    )
    with_open = tx.one(
        f"SELECT COUNT(DISTINCT case_id) AS n FROM ({_open_at(q, 'case_id', 'case_id IS NOT NULL')}) s",
        [at, at, at],
    )["n"]
    # all registered cases, less those registered after T (few, when T is recent)
    later = tx.one(f"SELECT COUNT(*) AS n FROM {ITEMS} WHERE kind = 'case' AND registered > {q}", [at])["n"]
    cases = tx.one(f"SELECT n FROM {COUNTS} WHERE name = 'registered_cases'")["n"] - later
    # a case with a step open at T whose registration came after T is open at "recorded" only
    early = tx.one(
        f"SELECT COUNT(DISTINCT s.case_id) AS n FROM ({_open_at(q, 'case_id', 'case_id IS NOT NULL')}) s "
        f"JOIN {ITEMS} i ON i.item = 'case:' || s.case_id WHERE i.registered IS NULL OR i.registered > {q}",
        [at, at, at, at],
    )["n"]
    open_ = {s: 0 for s in STAGES}
    leaks = {s: 0 for s in STAGES}
    for r in rows:
        open_[r["stage"]] = int(r["open"])
        leaks[r["stage"]] = int(r["overdue"] or 0)
    return _summary(at, cases, open_, leaks, with_open, early)


_FAR = 20_000  # spans opened or closed after the moment asked about, beyond which counting is cheaper


def summary(storage: Storage, at: int) -> dict[str, Any]:
    with storage.reading() as tx:
        q = tx.q
        later = tx.one(f"SELECT COUNT(*) AS n FROM (SELECT 1 AS one FROM {SPANS} WHERE closed IS NULL AND opened > {q} "
                       f"LIMIT {_FAR}) s", [at])["n"]
        later += tx.one(f"SELECT COUNT(*) AS n FROM (SELECT 1 AS one FROM {SPANS} WHERE closed > {q} LIMIT {_FAR}) s",
                        [at])["n"]
        if later >= _FAR:
            return _summary_scan(tx, at)
        return _summary_totals(tx, at)


def _summary_totals(tx: Any, at: int) -> dict[str, Any]:
    """The running totals of spans still open, less those that opened after `at`, plus those
    closed after it: at "now" both corrections are a handful of rows, whatever the store's size."""
    q = tx.q
    open_ = {s: 0 for s in STAGES}
    leaks = {s: 0 for s in STAGES}
    for r in tx.all(f"SELECT stage, SUM(n) AS n FROM {OPEN_TOTALS} GROUP BY stage"):
        open_[r["stage"]] += int(r["n"])
        leaks[r["stage"]] += int(r["n"])
    # counted here rather than grouped in SQL, which would walk the index by stage, every open span
    for r in tx.all(f"SELECT stage FROM {SPANS} WHERE closed IS NULL AND opened > {q}", [at]):
        open_[r["stage"]] -= 1
        leaks[r["stage"]] -= 1
    # still open and opened by `at`, but not due yet
    # (grouped by an expression, so that the index by due time serves, not the one by stage)
    for r in tx.all(f"SELECT stage || '' AS stage, COUNT(*) AS n FROM {SPANS} WHERE closed IS NULL AND due > {q} "
                    f"AND +opened <= {q} GROUP BY stage || ''", [at, at]):
        leaks[r["stage"]] -= int(r["n"])
    for r in tx.all(f"SELECT stage, due FROM {SPANS} WHERE closed > {q} AND opened <= {q}", [at, at]):
        open_[r["stage"]] += 1
        leaks[r["stage"]] += 1 if r["due"] <= at else 0
    # all registered cases, less those registered after T (few, when T is recent)
    later = tx.one(f"SELECT COUNT(*) AS n FROM {ITEMS} WHERE kind = 'case' AND registered > {q}", [at])["n"]
    counts = {r["name"]: int(r["n"]) for r in tx.all(f"SELECT name, n FROM {COUNTS}")}
    cases = counts["registered_cases"] - later
    # Cases with a step open at T: those with a span still open, corrected by the cases
    # whose spans opened or closed after T (`base`: a span still open; `now`: open at T).
    with_open = counts["open_cases"]
    # of those, the ones not registered by T: unregistered ones, corrected the same way ...
    early = counts["open_unregistered"]
    for r in tx.all(
        f"SELECT c.case_id, MAX(CASE WHEN s.closed IS NULL THEN 1 ELSE 0 END) AS base, "
        f"MAX(CASE WHEN s.{_open_at_moment(q)} THEN 1 ELSE 0 END) AS now, "
        f"MAX(i.item) AS item, MAX(i.registered) AS registered FROM "
        f"(SELECT case_id FROM {SPANS} WHERE closed IS NULL AND opened > {q} AND case_id IS NOT NULL "
        f"UNION SELECT case_id FROM {SPANS} WHERE closed > {q} AND case_id IS NOT NULL) c "
        f"JOIN {SPANS} s ON s.case_id = c.case_id LEFT JOIN {ITEMS} i ON i.item = 'case:' || c.case_id "
        "GROUP BY c.case_id",
        [at, at, at, at],
    ):
        with_open += int(r["now"]) - int(r["base"])
        if r["item"] is not None and r["registered"] is None:
            early += int(r["now"]) - int(r["base"])
    # ... and the ones registered after T
    early += tx.one(
        f"SELECT COUNT(DISTINCT s.case_id) AS n FROM {ITEMS} i JOIN {SPANS} s ON s.case_id = i.case_id "
        f"WHERE i.kind = 'case' AND i.registered > {q} AND s.{_open_at_moment(q)}",
        [at, at, at],
    )["n"]
    return _summary(at, cases, open_, leaks, with_open, early)


def _summary(at: int, cases: Any, open_: dict[str, int], leaks: dict[str, int], with_open: Any,
             early: Any) -> dict[str, Any]:
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
    q = storage.q
    filtered, params = [], []
    for column in ("stage", "region", "outlet_id", "owner"):
        value = getattr(flt, column)
        if value is not None:
            filtered.append(column)
            params.append(value)
    also = "".join(f" AND {c} = {q}" for c in filtered)
    columns = "item, case_id, call_id, stage, opened, closed, due, owner, outlet_id, region, waiting_for"
    order = "ORDER BY due, item, stage"
    # each half walks an index in the page's order and stops at the page's end
    still_open = f"SELECT {columns} FROM {SPANS} WHERE closed IS NULL AND due <= {q} AND opened <= {q}{also}"
    closed_later = f"SELECT {columns} FROM {SPANS} WHERE closed > {q} AND opened <= {q} AND due <= {q}{also}"
    with storage.reading() as tx:
        total = tx.one(f"SELECT COALESCE(SUM(n), 0) AS n FROM {OPEN_TOTALS} WHERE 1 = 1{also}",
                       [key(v) for v in params])["n"]
        total -= tx.one(f"SELECT COUNT(*) AS n FROM {SPANS} WHERE closed IS NULL AND due > {q}{also}",
                        [at, *params])["n"]
        # by the index of when they opened (few after `at`), not a filter's (all of its open spans)
        unindexed = "".join(f" AND {c} || '' = {q}" for c in filtered)
        total -= tx.one(f"SELECT COUNT(*) AS n FROM {SPANS} WHERE closed IS NULL AND opened > {q} AND +due <= {q}{unindexed}",
                        [at, at, *params])["n"]
        total += tx.one(f"SELECT COUNT(*) AS n FROM ({closed_later}) s", [at, at, at, *params])["n"]
        rows = tx.all(
            f"SELECT * FROM (SELECT * FROM ({still_open} {order} LIMIT {q}) a UNION ALL "
            f"SELECT * FROM ({closed_later} {order} LIMIT {q}) b) s {order} LIMIT {q} OFFSET {q}",
            [at, at, *params, limit + offset, at, at, at, *params, limit + offset, limit, offset],
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
