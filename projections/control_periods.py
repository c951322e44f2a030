"""The three controls over time: by calendar period, against the period before, down to the cases.

Adds to `controls.controls`:
- `previous` and `change`: the same rates for the window of the same length just before,
  and how each moved (in PPM);
- `periods`: the rates of each day, ISO week or month in the window (the first and last
  clipped to it), each with its move from the whole period before it;
- `cases`: the services behind each count: case ids, or `call:<id>` for a call that
  asked for service and was never recorded.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from closedloop.domain.facts import iso
from closedloop.domain.quality import DAY_MS, bucket_of, period_range, previous_bucket
from closedloop.log.storage import Storage

from .controls import GROUPS, MEASURES, _controls, _rates
from .loop import ITEMS, SPANS


def _change(current: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
    out = {}
    for measure in MEASURES:
        now = current[measure]["ppm"]
        before = previous[measure]["ppm"] if previous else None
        out[measure] = {
            "ppm": now,
            "previous_ppm": before,
            "change_ppm": None if now is None or before is None else round(now - before, 1),
        }
    return out


def _day_counts(storage: Storage, start: int, end: int, at: int, col: str | None) -> list[Any]:
    q = storage.q
    sums = ", ".join(f"SUM(CASE WHEN {c} <= {q} THEN 1 ELSE 0 END) AS {m}" for m, c in MEASURES.items())
    key = col or "NULL"
    group = f"started / {DAY_MS}" + (f", {col}" if col else "")
    with storage.reading() as tx:
        return tx.all(
            f"SELECT started / {DAY_MS} AS day, {key} AS grp, COUNT(*) AS services, {sums} FROM {ITEMS} "
            f"WHERE service = 1 AND started >= {q} AND started < {q} AND started <= {q} GROUP BY {group}",
            [at] * len(MEASURES) + [start, end, at],
        )


def _fold(rows: list[Any], bucket: str | None) -> dict[str, dict[Any, dict[str, int]]]:
    """Day rows -> {bucket name: {group: {services, complaint, ...}}}."""
    out: dict[str, dict[Any, dict[str, int]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(int)))
    for r in rows:
        name = bucket_of(int(r["day"]) * DAY_MS, bucket) if bucket else "all"
        counts = out[name][r["grp"]]
        counts["services"] += int(r["services"])
        for m in MEASURES:
            counts[m] += int(r[m] or 0)
    return out


def _flagged(storage: Storage, start: int, end: int, at: int, col: str | None) -> list[Any]:
    key = col or "NULL"
    with storage.reading() as tx:
        return tx.all(
            f"SELECT item, case_id, call_id, started, {key} AS grp, complained, dissatisfied, first_leak FROM {ITEMS} "
            f"WHERE service = 1 AND started >= {tx.q} AND started < {tx.q} AND started <= {tx.q} AND "
            f"(complained <= {tx.q} OR dissatisfied <= {tx.q} OR first_leak <= {tx.q}) ORDER BY started, item",
            [start, end, at, at, at, at],
        )


def _ident(r: Any) -> str:
    return r["case_id"] if r["case_id"] else f"call:{r['call_id']}"


def enrich(storage: Storage, result: dict[str, Any], start: int, end: int, at: int, by: str | None,
           period: str | None, cases: bool, compare: bool) -> dict[str, Any]:
    col = GROUPS[by] if by else None
    if compare or period:
        prev = _controls(storage, start - (end - start), start, at, by)
        result["previous"] = {"from": prev["from"], "to": prev["to"], "total": prev["total"]}
        result["total"]["change"] = _change(result["total"], prev["total"])
        if by:
            before = {g[by]: g for g in prev.get("groups", [])}
            for g in result["groups"]:
                g["change"] = _change(g, before.get(g[by]))
    flagged = _flagged(storage, start, end, at, col) if cases else []
    if cases:
        _attach(result["total"], flagged, at)
        per_group = _by_group(flagged)
        for g in result.get("groups", []):
            _attach(g, per_group.get(g[by], []), at)
    if period:
        result["period"] = period
        result["periods"] = _periods(storage, start, end, at, by, col, period, flagged if cases else None)
    return result


def _periods(storage: Storage, start: int, end: int, at: int, by: str | None, col: str | None, size: str,
             flagged: list[Any] | None) -> list[dict[str, Any]]:
    names: list[str] = []
    t = start
    while t < end:
        name = bucket_of(t, size)
        names.append(name)
        t = period_range(name)[1]
    if not names:
        return []
    buckets = _fold(_day_counts(storage, start, end, at, col), size)
    # each period is compared with the whole period before it, even where the window clips that one
    first_prev = previous_bucket(names[0])
    whole = _fold(_day_counts(storage, period_range(first_prev)[0], end, at, col), size)
    flagged_by_bucket: dict[str, list[Any]] = defaultdict(list)
    for r in flagged or []:
        flagged_by_bucket[bucket_of(r["started"], size)].append(r)
    out = []
    for i, name in enumerate(names):
        before = whole.get(first_prev if i == 0 else names[i - 1], {})
        b_start, b_end = period_range(name)
        groups = buckets.get(name, {})
        total = _sum(groups.values())
        prev_total = _sum(before.values()) if before else None
        entry: dict[str, Any] = {"period": name, "from": iso(max(start, b_start)), "to": iso(min(end, b_end)),
                                 "total": _rates(total["services"], {m: total[m] for m in MEASURES})}
        entry["total"]["change"] = _change(entry["total"], _rates(prev_total["services"], {m: prev_total[m] for m in MEASURES})
                                           if prev_total else None)
        in_bucket = flagged_by_bucket.get(name, []) if flagged is not None else None
        if in_bucket is not None:
            _attach(entry["total"], in_bucket, at)
        if by:
            listed = []
            per_group = _by_group(in_bucket or [])
            for grp in sorted(groups, key=lambda g: (-groups[g]["services"], str(g))):
                c = groups[grp]
                g = {by: grp, **_rates(c["services"], {m: c[m] for m in MEASURES})}
                p = before.get(grp)
                g["change"] = _change(g, _rates(p["services"], {m: p[m] for m in MEASURES}) if p else None)
                if in_bucket is not None:
                    _attach(g, per_group.get(grp, []), at)
                listed.append(g)
            entry["groups"] = listed
        out.append(entry)
    return out


def _by_group(rows: list[Any]) -> dict[Any, list[Any]]:
    out: dict[Any, list[Any]] = defaultdict(list)
    for r in rows:
        out[r["grp"]].append(r)
    return out


def _sum(groups: Any) -> dict[str, int]:
    total: dict[str, int] = defaultdict(int)
    for c in groups:
        for k, v in c.items():
            total[k] += v
    return total


def _attach(rates: dict[str, Any], rows: list[Any], at: int) -> None:
    for measure, column in MEASURES.items():
        rates[measure]["cases"] = [_ident(r) for r in rows if r[column] is not None and r[column] <= at]


def control_cases(storage: Storage, start: int, end: int, at: int, measure: str, filters: dict[str, str],
                  limit: int = 100, offset: int = 0) -> dict[str, Any]:
    """The services behind one count: which, when it happened, and for an omission the step
    that leaked first, due when and owned by whom."""
    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {', '.join(MEASURES)}")
    column = MEASURES[measure]
    q = storage.q
    where = ["service = 1", f"started >= {q}", f"started < {q}", f"started <= {q}", f"{column} <= {q}"]
    params: list[Any] = [start, end, at, at]
    for name, value in filters.items():
        if name not in GROUPS:
            raise ValueError(f"filter {name!r}: one of {', '.join(GROUPS)}")
        if value is not None:
            where.append(f"{GROUPS[name]} = {q}")
            params.append(value)
    clause = " AND ".join(where)
    with storage.reading() as tx:
        total = tx.one(f"SELECT COUNT(*) AS n FROM {ITEMS} WHERE {clause}", params)["n"]
        rows = tx.all(f"SELECT item, case_id, call_id, started, region, outlet_id, product_line, technician_id, "
                      f"{column} AS happened FROM {ITEMS} WHERE {clause} ORDER BY {column}, item LIMIT {q} OFFSET {q}",
                      params + [limit, offset])
        leaks: dict[str, Any] = {}
        if measure == "omission" and rows:
            names = [r["item"] for r in rows]
            cases = [r["case_id"] for r in rows if r["case_id"]]
            found = []
            if cases:
                among, params = tx.in_list("case_id", cases)
                found += tx.all(f"SELECT item, case_id, stage, due, owner FROM {SPANS} WHERE {among} "
                                f"AND due <= {q} AND (closed IS NULL OR closed > due) ORDER BY due", params + [at])
            calls = [n for n in names if n.startswith("call:")]
            if calls:
                among, params = tx.in_list("item", calls)
                found += tx.all(f"SELECT item, case_id, stage, due, owner FROM {SPANS} WHERE {among} "
                                f"AND due <= {q} ORDER BY due", params + [at])
            for s in sorted(found, key=lambda s: s["due"]):
                leaks.setdefault(s["case_id"] or s["item"], s)
    items = []
    for r in rows:
        entry = {"case_id": r["case_id"], "call_id": r["call_id"], "asked": iso(r["started"]), "region": r["region"],
                 "outlet_id": r["outlet_id"], "product_line": r["product_line"], "technician_id": r["technician_id"],
                 "when": iso(r["happened"])}
        leak = leaks.get(r["case_id"] or r["item"])
        if leak is not None:
            entry["leaked"] = {"stage": leak["stage"], "item": leak["item"], "due": iso(leak["due"]),
                               "owner": leak["owner"]}
        items.append(entry)
    return {"measure": measure, "from": iso(start), "to": iso(end), "as_of": iso(at), "filters": filters,
            "total": int(total), "limit": limit, "offset": offset, "items": items}
