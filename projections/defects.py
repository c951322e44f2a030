"""Defect analytics for design, manufacturing and the service network.

Questions a quality engineer asks of the completed services in a period (completed in
[from, to), as the world stood at `as_of`):
- a Pareto of fault codes or causes, overall or per model or product line;
- failures by production batch or plant, with failure rates where shipped quantities are
  known (`units.shipped`);
- failures by months in service (purchase date to failure);
- repeat repairs of the same unit, first-visit fix rates, parts used by model.

Every answer is a list of flat `rows`; every row carries `filters` that, given to `cases`,
list exactly the cases behind its count (and `cases=True` lists them inline). No
customer's name, phone or address is kept in these rows.

Grouping details (model, batch, plant, purchase date) are the case's as last corrected;
what counts (a completion by `as_of`) follows world time.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, date, datetime
from typing import Any, Iterable

import orjson

from closedloop.domain.facts import iso
from closedloop.domain.quality import QualityPolicy
from closedloop.log.storage import Storage

from .quality import SERVICES, SHIPMENTS

# filters a drill-down accepts, each a column of the services view
FILTERS = ("job", "model", "product_line", "production_batch", "plant", "fault_code", "cause", "region",
           "outlet_id", "technician_id")
# computed filters
DERIVED = ("months_in_service", "first_visit", "repeat", "part_no")
GROUPS = ("model", "product_line")
FIRST_VISIT_GROUPS = ("model", "product_line", "outlet_id", "technician_id")

_COLUMNS = ("case_id", "completed", "region", "product_line", "model", "production_batch", "plant", "purchase_date",
            "job", "outlet_id", "technician_id", "fault_code", "cause", "first_visit", "parts", "unit")


class Period:
    """Completions in [start, end) that had happened by `at`."""

    def __init__(self, start: int, end: int, at: int) -> None:
        self.start, self.end, self.at = start, end, at

    def describe(self) -> dict[str, Any]:
        return {"from": iso(self.start), "to": iso(self.end), "as_of": iso(self.at)}


def _load(storage: Storage, period: Period, filters: dict[str, Any], months: bool = False,
          parts: bool = False) -> list[dict[str, Any]]:
    """Completed services of the period matching the column filters; `months` and `parts`
    also work out months in service and decode the parts used (only where asked: they cost)."""
    q = storage.q
    where = ["completed IS NOT NULL", f"completed >= {q}", f"completed < {q}", f"completed <= {q}"]
    params: list[Any] = [period.start, period.end, period.at]
    for name in FILTERS:
        value = filters.get(name)
        if value is not None:
            where.append(f"{name} = {q}")
            params.append(value)
    with storage.reading() as tx:
        rows = tx.all(f"SELECT {', '.join(_COLUMNS)} FROM {SERVICES} WHERE {' AND '.join(where)} "
                      "ORDER BY completed, case_id", params)
    out = []
    for r in rows:
        row = {c: r[c] for c in _COLUMNS}
        if parts:
            row["parts"] = orjson.loads(row["parts"]) if row["parts"] else []
        if months:
            row["months_in_service"] = months_in_service(row["purchase_date"], row["completed"])
        out.append(row)
    return out


def months_in_service(purchase_date: str | None, failed: int) -> int | None:
    """Whole months from the purchase date to the failure (None when the date is unknown)."""
    if not purchase_date:
        return None
    try:
        bought = date.fromisoformat(purchase_date[:10])
    except ValueError:
        return None
    at = datetime.fromtimestamp(failed / 1000, tz=UTC).date()
    months = (at.year - bought.year) * 12 + (at.month - bought.month) - (1 if at.day < bought.day else 0)
    return max(months, 0)


def _repeats(storage: Storage, period: Period, rows: list[dict[str, Any]], policy: QualityPolicy) -> dict[str, Any]:
    """case id -> the earlier repair of the same unit it repeats (completed within the window before it)."""
    units = sorted({r["unit"] for r in rows if r["unit"] and r["job"] == "repair"})
    history: dict[str, list[tuple[int, str]]] = defaultdict(list)
    with storage.reading() as tx:
        for i in range(0, len(units), 400):
            among, params = tx.in_list("unit", units[i : i + 400])
            for r in tx.all(f"SELECT unit, case_id, completed FROM {SERVICES} WHERE job = 'repair' AND completed "
                            f"IS NOT NULL AND completed <= {tx.q} AND {among}", [period.at, *params]):
                history[r["unit"]].append((r["completed"], r["case_id"]))
    found: dict[str, Any] = {}
    for r in rows:
        if r["job"] != "repair" or not r["unit"]:
            continue
        earlier = [(t, c) for t, c in history[r["unit"]]
                   if (t, c) < (r["completed"], r["case_id"]) and r["completed"] - t <= policy.repeat_within]
        if earlier:
            t, c = max(earlier)
            found[r["case_id"]] = {"earlier_case_id": c, "days_between": round((r["completed"] - t) / 86_400_000, 1)}
    return found


def _derived(rows: list[dict[str, Any]], filters: dict[str, Any], repeats: dict[str, Any] | None) -> list[dict[str, Any]]:
    out = rows
    if filters.get("months_in_service") is not None:
        want = filters["months_in_service"]
        out = [r for r in out if (r["months_in_service"] if r["months_in_service"] is not None else "unknown") == want]
    if filters.get("first_visit") is not None:
        out = [r for r in out if r["first_visit"] is not None and bool(r["first_visit"]) is filters["first_visit"]]
    if filters.get("part_no") is not None:
        out = [r for r in out if filters["part_no"] in r["parts"]]
    if filters.get("repeat") is not None and repeats is not None:
        out = [r for r in out if (r["case_id"] in repeats) is filters["repeat"]]
    return out


def _row_filters(base: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {k: v for k, v in {**base, **more}.items() if v is not None}


def _with_cases(row: dict[str, Any], cases: list[str], include: bool) -> dict[str, Any]:
    if include:
        row["cases"] = cases
    return row


def _share(n: int, total: int) -> float | None:
    return round(n / total, 4) if total else None


# --- the questions ----------------------------------------------------------------------------
def pareto(storage: Storage, period: Period, by: str = "fault_code", per: str | None = None,
           filters: dict[str, Any] | None = None, cases: bool = False) -> dict[str, Any]:
    """Fault codes (or causes) by how many completed services they account for, largest first,
    with the cumulative share: overall, or per model or product line."""
    if by not in ("fault_code", "cause"):
        raise ValueError("by must be fault_code or cause")
    if per is not None and per not in GROUPS:
        raise ValueError(f"per must be one of {', '.join(GROUPS)}")
    filters = dict(filters or {})
    rows = _load(storage, period, filters)
    groups: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[r[per] if per else None].append(r)
    out_rows = []
    for key in sorted(groups, key=lambda k: (-len(groups[k]), str(k))):
        members = groups[key]
        counts: dict[Any, list[str]] = defaultdict(list)
        for r in members:
            counts[r[by]].append(r["case_id"])
        running = 0
        for rank, (value, ids) in enumerate(sorted(counts.items(), key=lambda kv: (-len(kv[1]), str(kv[0]))), 1):
            running += len(ids)
            row: dict[str, Any] = {}
            if per:
                row[per] = key
                row["group_total"] = len(members)
            row.update({by: value, "rank": rank, "count": len(ids), "share": _share(len(ids), len(members)),
                        "cumulative_share": _share(running, len(members))})
            row["filters"] = _row_filters(filters, **({per: key} if per else {}), **{by: value})
            out_rows.append(_with_cases(row, ids, cases))
    return {**period.describe(), "by": by, "per": per, "filters": filters, "total": len(rows), "rows": out_rows}


def failures_by_batch(storage: Storage, period: Period, by: str = "batch", filters: dict[str, Any] | None = None,
                      cases: bool = False, sort: str = "failures") -> dict[str, Any]:
    """Failures (completed repairs by default) by production batch (with model and plant) or by
    plant, with the units shipped and the failure rate where shipments are known.

    A rate counts only failures of batches whose shipments are known, against the units of
    those batches: a plant's rate is not diluted by batches nobody reported shipping."""
    if by not in ("batch", "plant"):
        raise ValueError("by must be batch or plant")
    if sort not in ("failures", "rate"):
        raise ValueError("sort must be failures or rate")
    filters = {"job": "repair", **(filters or {})}
    rows = _load(storage, period, filters)
    batch_keys = ("model", "production_batch", "plant")
    keys = batch_keys if by == "batch" else ("plant",)
    shipped_batches = _shipped(storage, batch_keys, period.at, filters)
    shipped: dict[tuple, int] = defaultdict(int)
    for batch, units in shipped_batches.items():
        shipped[batch if by == "batch" else (batch[2],)] += units
    groups: dict[tuple, list[str]] = defaultdict(list)
    known: Counter[tuple] = Counter()
    for r in rows:
        key = tuple(r[k] for k in keys)
        groups[key].append(r["case_id"])
        if tuple(r[k] for k in batch_keys) in shipped_batches:
            known[key] += 1
    out_rows = []
    for key, ids in groups.items():
        row: dict[str, Any] = dict(zip(keys, key))
        units = shipped.get(key)
        row.update({"failures": len(ids), "failures_in_shipped_batches": known[key], "shipped": units,
                    "failure_rate_ppm": round(known[key] * 1_000_000 / units, 1) if units else None})
        row["filters"] = _row_filters(filters, **dict(zip(keys, key)))
        out_rows.append(_with_cases(row, ids, cases))
    if sort == "rate":
        out_rows.sort(key=lambda r: (r["failure_rate_ppm"] is None, -(r["failure_rate_ppm"] or 0), -r["failures"],
                                     [str(r[k]) for k in keys]))
    else:
        out_rows.sort(key=lambda r: (-r["failures"], [str(r[k]) for k in keys]))
    return {**period.describe(), "by": by, "filters": filters, "total": len(rows), "rows": out_rows,
            "note": "failure_rate_ppm: failures in the period of batches with known shipments, per million "
                    "units of those batches shipped"}


def _shipped(storage: Storage, keys: tuple[str, ...], at: int, filters: dict[str, Any]) -> dict[tuple, int]:
    cols = ", ".join(keys)
    q = storage.q
    where, params = f"time <= {q}", [at]
    for name in ("model", "product_line", "production_batch", "plant"):
        if filters.get(name) is not None:
            where += f" AND {name} = {q}"
            params.append(filters[name])
    with storage.reading() as tx:
        rows = tx.all(f"SELECT {cols}, SUM(quantity) AS units FROM {SHIPMENTS} WHERE {where} GROUP BY {cols}", params)
    return {tuple(r[k] for k in keys): int(r["units"]) for r in rows}


def failures_by_months_in_service(storage: Storage, period: Period, per: str | None = None,
                                  filters: dict[str, Any] | None = None, cases: bool = False) -> dict[str, Any]:
    """Failures (completed repairs by default) by whole months from purchase to failure."""
    if per is not None and per not in GROUPS:
        raise ValueError(f"per must be one of {', '.join(GROUPS)}")
    filters = {"job": "repair", **(filters or {})}
    rows = _load(storage, period, filters, months=True)
    groups: dict[tuple, list[str]] = defaultdict(list)
    for r in rows:
        months = r["months_in_service"] if r["months_in_service"] is not None else "unknown"
        groups[(r[per] if per else None, months)].append(r["case_id"])

    def order(kv: tuple[tuple, list[str]]) -> tuple:
        (group, months), _ = kv
        return (str(group), months == "unknown", months if months != "unknown" else 0)

    out_rows = []
    for (group, months), ids in sorted(groups.items(), key=order):
        row: dict[str, Any] = {per: group} if per else {}
        row.update({"months_in_service": months, "failures": len(ids), "share": _share(len(ids), len(rows))})
        row["filters"] = _row_filters(filters, **({per: group} if per else {}), months_in_service=months)
        out_rows.append(_with_cases(row, ids, cases))
    return {**period.describe(), "per": per, "filters": filters, "total": len(rows), "rows": out_rows}


def repeat_repairs(storage: Storage, period: Period, policy: QualityPolicy, per: str = "model",
                   filters: dict[str, Any] | None = None, cases: bool = False) -> dict[str, Any]:
    """Repairs of a unit repaired before within the repeat window, per model, outlet or technician."""
    if per not in FIRST_VISIT_GROUPS:
        raise ValueError(f"per must be one of {', '.join(FIRST_VISIT_GROUPS)}")
    filters = {"job": "repair", **(filters or {})}
    rows = _load(storage, period, filters)
    repeats = _repeats(storage, period, rows, policy)
    groups: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[r[per]].append(r)
    out_rows = []
    for key in sorted(groups, key=lambda k: (-sum(r["case_id"] in repeats for r in groups[k]), str(k))):
        members = groups[key]
        ids = [r["case_id"] for r in members if r["case_id"] in repeats]
        row = {per: key, "repairs": len(members), "repeats": len(ids), "repeat_rate": _share(len(ids), len(members))}
        row["filters"] = _row_filters(filters, **{per: key}, repeat=True)
        out_rows.append(_with_cases(row, ids, cases))
    listed = [{"case_id": c, **repeats[c]} for c in sorted(repeats)]
    return {**period.describe(), "per": per, "filters": filters, "repeat_within_days": policy.repeat_within / 86_400_000,
            "total": len(rows), "repeats": len(repeats), "rows": out_rows, "repeat_cases": listed}


def first_visit_fix(storage: Storage, period: Period, per: str = "model", filters: dict[str, Any] | None = None,
                    cases: bool = False) -> dict[str, Any]:
    """Share of completed repairs fixed on the first visit, per model, product line, outlet or technician."""
    if per not in FIRST_VISIT_GROUPS:
        raise ValueError(f"per must be one of {', '.join(FIRST_VISIT_GROUPS)}")
    filters = {"job": "repair", **(filters or {})}
    rows = _load(storage, period, filters)
    groups: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[r[per]].append(r)
    out_rows = []
    for key in sorted(groups, key=lambda k: (-len(groups[k]), str(k))):
        members = groups[key]
        fixed = sum(1 for r in members if r["first_visit"])
        missed = [r["case_id"] for r in members if not r["first_visit"]]
        row = {per: key, "repairs": len(members), "first_visit_fixes": fixed,
               "first_visit_fix_rate": _share(fixed, len(members)), "not_fixed_first_visit": len(missed)}
        row["filters"] = _row_filters(filters, **{per: key}, first_visit=False)
        out_rows.append(_with_cases(row, missed, cases))
    fixed_total = sum(1 for r in rows if r["first_visit"])
    return {**period.describe(), "per": per, "filters": filters, "total": len(rows),
            "first_visit_fix_rate": _share(fixed_total, len(rows)), "rows": out_rows}


def parts_by_model(storage: Storage, period: Period, filters: dict[str, Any] | None = None,
                   cases: bool = False) -> dict[str, Any]:
    """Spare parts used in completed services, per model and part number."""
    filters = dict(filters or {})
    rows = _load(storage, period, filters, parts=True)
    groups: dict[tuple, list[str]] = defaultdict(list)
    used: Counter[tuple] = Counter()
    for r in rows:
        for part in r["parts"]:
            key = (r["model"], part)
            used[key] += 1
            listed = groups[key]
            if not listed or listed[-1] != r["case_id"]:  # rows come case by case
                listed.append(r["case_id"])
    out_rows = []
    for key in sorted(used, key=lambda k: (-used[k], [str(x) for x in k])):
        model, part = key
        row = {"model": model, "part_no": part, "quantity": used[key], "services": len(groups[key])}
        row["filters"] = _row_filters(filters, model=model, part_no=part)
        out_rows.append(_with_cases(row, groups[key], cases))
    return {**period.describe(), "filters": filters, "total": len(rows), "parts_used": sum(used.values()),
            "rows": out_rows}


def case_list(storage: Storage, period: Period, policy: QualityPolicy, filters: dict[str, Any],
              limit: int = 100, offset: int = 0) -> dict[str, Any]:
    """The cases behind a number: completed services in the period matching every filter."""
    rows = _load(storage, period, filters, months=True, parts=True)
    repeats = _repeats(storage, period, rows, policy) if filters.get("repeat") is not None else None
    rows = _derived(rows, filters, repeats)
    page = rows[offset : offset + limit]
    listed = []
    for r in page:
        out = {k: r[k] for k in _COLUMNS if k != "unit"}
        out["completed"] = iso(r["completed"])
        out["first_visit"] = None if r["first_visit"] is None else bool(r["first_visit"])
        out["months_in_service"] = r["months_in_service"]
        if repeats is not None and r["case_id"] in repeats:
            out["repeat_of"] = repeats[r["case_id"]]
        listed.append(out)
    return {**period.describe(), "filters": filters, "total": len(rows), "limit": limit, "offset": offset,
            "rows": listed}


def flat(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows for a CSV export: filters dropped, lists joined by spaces."""
    out = []
    for r in rows:
        out.append({k: (" ".join(map(str, v)) if isinstance(v, list) else v)
                    for k, v in r.items() if k != "filters" and not isinstance(v, dict)})
    return out
