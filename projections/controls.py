"""The three controls: complaint, dissatisfaction and omission rates, in PPM of services.

A service is a customer's request for service: a registered case, or a call that asked for
one and was never recorded. It belongs to the period in which the customer first asked.
Against the services of a period, judged at a moment T:
- complaint: services with a complaint filed by T;
- dissatisfaction: services whose reached callback said dissatisfied or very dissatisfied;
- omission: services where any of the four nothing-missed steps had become overdue by T.
"""

from __future__ import annotations

from typing import Any

from closedloop.domain.facts import iso
from closedloop.log.storage import Storage

from collections import defaultdict

from .loop import ITEMS
from .loop_totals import CONTROL_DAYS, DAY_MS, unkey

TARGET_PPM = 10.0
GROUPS = {"region": "region", "outlet": "outlet_id", "product_line": "product_line", "technician": "technician_id"}
MEASURES = {"complaint": "complained", "dissatisfaction": "dissatisfied", "omission": "first_leak"}


def ppm(count: int, services: int) -> float | None:
    if services == 0:
        return None
    return round(count * 1_000_000 / services, 1)


def _rates(services: int, counts: dict[str, int]) -> dict[str, Any]:
    out: dict[str, Any] = {"services": services}
    for measure, count in counts.items():
        rate = ppm(count, services)
        out[measure] = {
            "count": count,
            "ppm": rate,
            "target_ppm": TARGET_PPM,
            "within_target": None if rate is None else rate < TARGET_PPM,
        }
    return out


def controls(storage: Storage, start: int, end: int, at: int, by: str | None = None,
             period: str | None = None, cases: bool = False, compare: bool = False) -> dict[str, Any]:
    """Rates for services begun in [start, end), judged at `at`; optionally grouped.

    `compare` adds how each rate moved from the window of the same length just before;
    `period` (day, week or month) adds the rates of each calendar period in the window,
    each with its move from the period before; `cases` lists the services behind each count.
    """
    if by is not None and by not in GROUPS:
        raise ValueError(f"by must be one of {', '.join(GROUPS)}")
    result = _controls(storage, start, end, at, by)
    if not (period or cases or compare):
        return result
    from .control_periods import enrich

    return enrich(storage, result, start, end, at, by, period, cases, compare)


def _controls(storage: Storage, start: int, end: int, at: int, by: str | None = None) -> dict[str, Any]:
    with storage.reading() as tx:
        rows = _counts(tx, start, end, at, by)
    total_services = sum(int(r["services"]) for r in rows)
    total = {m: sum(int(r[m] or 0) for r in rows) for m in MEASURES}
    result: dict[str, Any] = {
        "from": iso(start),
        "to": iso(end),
        "as_of": iso(at),
        "target_ppm": TARGET_PPM,
        "total": _rates(total_services, total),
    }
    if by:
        result["by"] = by
        result["groups"] = [
            {by: r["grp"], **_rates(int(r["services"]), {m: int(r[m] or 0) for m in MEASURES})} for r in rows
        ]
    return result


def _counts(tx: Any, start: int, end: int, at: int, by: str | None) -> list[dict[str, Any]]:
    """Services begun in [start, end) and by `at`, with each control's count at `at`, per group
    (ordered by services, most first): whole days from the days' totals, less the marks made
    after `at`; the days the window cuts from the items themselves."""
    stop = min(end, at + 1)
    first, last = -(-start // DAY_MS), stop // DAY_MS  # the whole days: [first, last)
    counts: dict[Any, dict[str, int]] = defaultdict(lambda: dict.fromkeys(["services", *MEASURES], 0))
    q = tx.q
    if first >= last:
        cuts = [(start, stop)] if start < stop else []
    else:
        cuts = [(start, first * DAY_MS), (last * DAY_MS, stop)]
        dim = by or ""
        for r in tx.all(f"SELECT grp, SUM(services) AS services, {', '.join(f'SUM({c}) AS {m}' for m, c in MEASURES.items())} "
                        f"FROM {CONTROL_DAYS} WHERE dim = {q} AND day >= {q} AND day < {q} GROUP BY grp", [dim, first, last]):
            c = counts[unkey(r["grp"]) if by else None]
            for name in ("services", *MEASURES):
                c[name] += int(r[name])
        col = GROUPS[by] if by else "NULL"
        group = f" GROUP BY {col}" if by else ""
        for measure, mark in MEASURES.items():
            for r in tx.all(f"SELECT {col} AS grp, COUNT(*) AS n FROM {ITEMS} WHERE {mark} > {q} AND +started >= {q} "
                            f"AND +started < {q} AND +service = 1{group}", [at, first * DAY_MS, last * DAY_MS]):
                counts[r["grp"]][measure] -= int(r["n"])  # the `+`: by the mark's small index, not the days
    sums = ", ".join(f"SUM(CASE WHEN {col} <= {q} THEN 1 ELSE 0 END) AS {measure}" for measure, col in MEASURES.items())
    key = GROUPS[by] if by else "NULL"
    group = f"GROUP BY {key}" if by else ""
    for a, b in cuts:
        if a >= b:
            continue
        for r in tx.all(f"SELECT {key} AS grp, COUNT(*) AS services, {sums} FROM {ITEMS} "
                        f"WHERE service = 1 AND started >= {q} AND started < {q} {group}", [at] * len(MEASURES) + [a, b]):
            if not r["services"]:
                continue
            c = counts[r["grp"]]
            c["services"] += int(r["services"])
            for m in MEASURES:
                c[m] += int(r[m] or 0)
    found = [{"grp": g, **c} for g, c in counts.items() if c["services"]]
    # most services first; ties in the order SQLite's sorter left them when it grouped and
    # ordered in one statement (the group's descending order, none last), so answers stay as they were
    found.sort(key=lambda r: (r["grp"] is not None, r["grp"] or ""), reverse=True)
    found.sort(key=lambda r: -r["services"])
    return found
