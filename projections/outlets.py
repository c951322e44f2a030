"""Outlets with their load and capacity today, and technicians with their permit and ledger.

Answers from the network view for any moment T: the outlet and technician versions in force
at T, the permit as its last change by T left it, and the assignments holding a slot at T.
"""

from __future__ import annotations

from typing import Any, Sequence

from closedloop.domain.facts import iso
from closedloop.domain.network import Candidate, DispatchPolicy, Outlet, Staff, capacity_today
from closedloop.domain.permit import PermitRules
from closedloop.log.storage import Storage, Tx

from .network import ALARMS, ASSIGNMENTS, OUTLETS, PERMIT, TECHNICIANS, packed

# Conditions at a moment T, for the placeholder `q` of the database asked (T twice, or thrice).
def _outlet_at(q: str) -> str:
    """The version of an outlet in force at T: the latest from before it."""
    return (f"o.valid_from <= {q} AND NOT EXISTS (SELECT 1 FROM {OUTLETS} n WHERE n.outlet_id = o.outlet_id AND "
            f"n.valid_from <= {q} AND (n.valid_from > o.valid_from OR (n.valid_from = o.valid_from AND "
            "n.position > o.position)))")


def _tech_at(q: str) -> str:
    """The version of a technician in force at T."""
    return (f"t.valid_from <= {q} AND NOT EXISTS (SELECT 1 FROM {TECHNICIANS} n WHERE n.technician_id = t.technician_id "
            f"AND n.valid_from <= {q} AND (n.valid_from > t.valid_from OR (n.valid_from = t.valid_from AND "
            "n.position > t.position)))")


def _permit_at(q: str) -> str:
    """The permit's last change by T."""
    return (f"p.time <= {q} AND NOT EXISTS (SELECT 1 FROM {PERMIT} n WHERE n.technician_id = p.technician_id AND "
            f"n.time <= {q} AND (n.time > p.time OR (n.time = p.time AND n.position > p.position)))")


def _holds_at(q: str) -> str:
    """An assignment takes a slot at T unless it was let go, unaccepted, by T (T thrice)."""
    return f"a.time <= {q} AND ((a.accepted IS NOT NULL AND a.accepted <= {q}) OR a.released IS NULL OR a.released > {q})"


def _outlet_json(row: Any) -> dict[str, Any]:
    return {"outlet_id": row["outlet_id"], "name": row["name"], "tier": row["tier"],
            "regions": row["regions"].strip(",").split(","), "product_lines": row["product_lines"].strip(",").split(","),
            "daily_capacity": row["daily_capacity"], "registered": iso(row["valid_from"])}


def _staff(tx: Tx, outlet_ids: Sequence[str], at: int, rules: PermitRules) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {o: [] for o in outlet_ids}
    if not outlet_ids:
        return out
    among, params = tx.in_list("t.outlet_id", outlet_ids)
    rows = tx.all(
        f"SELECT t.technician_id, t.outlet_id, t.name, t.level, p.balance, p.status FROM {TECHNICIANS} t "
        f"LEFT JOIN {PERMIT} p ON p.technician_id = t.technician_id AND {_permit_at(tx.q)} "
        f"WHERE {_tech_at(tx.q)} AND {among} ORDER BY t.technician_id",
        [at, at, at, at, *params])
    for r in rows:
        out[r["outlet_id"]].append({
            "technician_id": r["technician_id"], "name": r["name"], "level": r["level"],
            "permit": {"status": r["status"] or "normal",
                       "balance": r["balance"] if r["balance"] is not None else rules.start_points}})
    return out


def _loads(tx: Tx, outlet_ids: Sequence[str], day: int, at: int) -> dict[str, int]:
    if not outlet_ids:
        return {}
    among, params = tx.in_list("a.outlet_id", outlet_ids)
    rows = tx.all(f"SELECT a.outlet_id, COUNT(*) AS n FROM {ASSIGNMENTS} a WHERE a.day = {tx.q} AND {_holds_at(tx.q)} "
                  f"AND {among} GROUP BY a.outlet_id", [day, at, at, at, *params])
    return {r["outlet_id"]: int(r["n"]) for r in rows}


def _open_alarms(tx: Tx, outlet_ids: Sequence[str], at: int) -> dict[str, int]:
    if not outlet_ids:
        return {}
    among, params = tx.in_list("outlet_id", outlet_ids)
    rows = tx.all(f"SELECT outlet_id, COUNT(*) AS n FROM {ALARMS} WHERE time <= {tx.q} AND (resolved IS NULL OR "
                  f"resolved > {tx.q}) AND {among} GROUP BY outlet_id", [at, at, *params])
    return {r["outlet_id"]: int(r["n"]) for r in rows}


def _with_today(rows: Sequence[Any], tx: Tx, at: int, policy: DispatchPolicy, rules: PermitRules,
                staff_detail: bool) -> list[dict[str, Any]]:
    ids = [r["outlet_id"] for r in rows]
    day = policy.day_of(at)
    staff, loads, alarms = _staff(tx, ids, at, rules), _loads(tx, ids, day, at), _open_alarms(tx, ids, at)
    out = []
    for r in rows:
        o = _outlet_json(r)
        team = staff[r["outlet_id"]]
        cap = capacity_today(Candidate(Outlet(r["outlet_id"], r["tier"], r["daily_capacity"]), 0,
                                       tuple(Staff(t["technician_id"], t["permit"]["status"]) for t in team)), policy)
        load = loads.get(r["outlet_id"], 0)
        o["today"] = {"day": iso(day), "load": load, "capacity": cap, "left": max(cap - load, 0),
                      "open_alarms": alarms.get(r["outlet_id"], 0)}
        statuses = [t["permit"]["status"] for t in team]
        o["technicians"] = team if staff_detail else {s: statuses.count(s) for s in ("normal", "warning", "eliminated")}
        out.append(o)
    return out


def outlets(storage: Storage, at: int, policy: DispatchPolicy, rules: PermitRules, region: str | None = None,
            product_line: str | None = None, tier: str | None = None, limit: int = 100,
            offset: int = 0) -> dict[str, Any]:
    q = storage.q
    where, params = [_outlet_at(q)], [at, at]
    if region:
        where.append(f"o.regions LIKE {q}")
        params.append(f"%{packed([region])}%")
    if product_line:
        where.append(f"o.product_lines LIKE {q}")
        params.append(f"%{packed([product_line])}%")
    if tier:
        where.append(f"o.tier = {q}")
        params.append(tier)
    clause = " AND ".join(where)
    with storage.reading() as tx:
        total = tx.one(f"SELECT COUNT(*) AS n FROM {OUTLETS} o WHERE {clause}", params)["n"]
        rows = tx.all(f"SELECT * FROM {OUTLETS} o WHERE {clause} ORDER BY o.outlet_id LIMIT {q} OFFSET {q}",
                      params + [limit, offset])
        items = _with_today(rows, tx, at, policy, rules, staff_detail=False)
    return {"as_of": iso(at), "total": int(total), "limit": limit, "offset": offset, "items": items}


def outlet(storage: Storage, outlet_id: str, at: int, policy: DispatchPolicy, rules: PermitRules) -> dict[str, Any] | None:
    with storage.reading() as tx:
        row = tx.one(f"SELECT * FROM {OUTLETS} o WHERE o.outlet_id = {tx.q} AND {_outlet_at(tx.q)}", [outlet_id, at, at])
        if row is None:
            return None
        [found] = _with_today([row], tx, at, policy, rules, staff_detail=True)
    found["as_of"] = iso(at)
    return found


def technicians(storage: Storage, at: int, rules: PermitRules, outlet_id: str | None = None,
                status: str | None = None, limit: int = 100, offset: int = 0) -> dict[str, Any]:
    q = storage.q
    where, params = [_tech_at(q)], [at, at, at, at]
    if outlet_id:
        where.append(f"t.outlet_id = {q}")
        params.append(outlet_id)
    if status:
        where.append(f"COALESCE(p.status, 'normal') = {q}")
        params.append(status)
    base = (f"FROM {TECHNICIANS} t LEFT JOIN {PERMIT} p ON p.technician_id = t.technician_id AND {_permit_at(q)} "
            f"WHERE {' AND '.join(where)}")
    with storage.reading() as tx:
        total = tx.one(f"SELECT COUNT(*) AS n {base}", params)["n"]
        rows = tx.all(f"SELECT t.technician_id, t.outlet_id, t.name, t.level, p.balance, p.status {base} "
                      f"ORDER BY t.technician_id LIMIT {q} OFFSET {q}", params + [limit, offset])
    items = [{"technician_id": r["technician_id"], "outlet_id": r["outlet_id"], "name": r["name"], "level": r["level"],
              "permit": {"status": r["status"] or "normal",
                         "balance": r["balance"] if r["balance"] is not None else rules.start_points}}
             for r in rows]
    return {"as_of": iso(at), "total": int(total), "limit": limit, "offset": offset, "items": items}


def technician(storage: Storage, technician_id: str, at: int, policy: DispatchPolicy,
               rules: PermitRules) -> dict[str, Any] | None:
    """A technician's permit at T, with the ledger of every change up to then."""
    with storage.reading() as tx:
        q = tx.q
        row = tx.one(f"SELECT * FROM {TECHNICIANS} t WHERE t.technician_id = {q} AND {_tech_at(q)}",
                     [technician_id, at, at])
        ledger = tx.all(f"SELECT * FROM {PERMIT} WHERE technician_id = {q} AND time <= {q} ORDER BY time, position",
                        [technician_id, at])
        if row is None and not ledger:
            return None
        day = policy.day_of(at)
        jobs = tx.one(f"SELECT COUNT(*) AS n FROM {ASSIGNMENTS} a WHERE a.technician_id = {q} AND a.day = {q} "
                      f"AND {_holds_at(q)}",
                      [technician_id, day, at, at, at])["n"]
    balance, status = rules.start_points, "normal"
    if ledger:
        balance, status = ledger[-1]["balance"], ledger[-1]["status"]
    since = next((iso(r["time"]) for r in reversed(ledger) if r["type"] == "permit.status_changed"), None)
    return {
        "technician_id": technician_id,
        "as_of": iso(at),
        "outlet_id": row["outlet_id"] if row else None,
        "name": row["name"] if row else None,
        "level": row["level"] if row else None,
        "registered": iso(row["valid_from"]) if row else None,
        "permit": {"status": status, "balance": balance, "status_since": since,
                   "thresholds": {"start": rules.start_points, "warning_at": rules.warning_at,
                                  "eliminated_at": rules.eliminated_at},
                   "share_of_jobs": policy.share(status)},
        "jobs_today": int(jobs),
        "ledger": [{"time": iso(r["time"]), "change": r["type"].split(".", 1)[1], "case_id": r["case_id"],
                    "rule": r["rule"], "points": r["points"], "balance": r["balance"], "status": r["status"],
                    "previous": r["previous"], "reason": r["reason"]} for r in ledger],
    }
