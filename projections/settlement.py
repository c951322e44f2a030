"""Settlement of the service network, and the penalties that land on named owners.

A statement is per outlet and period. Its lines are cases: every case the outlet completed
(or handled by phone guidance) and that was reviewed — a callback reached the customer, or
the follow-up of a guidance found it working — settles once, in the period in which it was
reviewed, priced by its job (repair, install, maintenance, guidance) and the outlet's tier
from the price list in force then. A case not yet reviewed does not settle. Penalties
charged to the outlet's people in the period are deducted on the line of their case (a
line of its own when the case settles in another period). Amounts are integer cents, so
a statement replayed from the log adds up to the same cent.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from closedloop.domain.facts import iso
from closedloop.domain.quality import QualityPolicy, money
from closedloop.log.storage import Storage

from .quality import OUTLETS, PENALTIES, SERVICES, SHARES


def _services(storage: Storage, start: int, end: int, at: int, outlet_id: str | None) -> list[Any]:
    q = storage.q
    where = f"s.done IS NOT NULL AND s.reviewed IS NOT NULL AND s.job IS NOT NULL AND s.reviewed >= {q} " \
            f"AND s.reviewed < {q} AND s.reviewed <= {q}"
    params: list[Any] = [start, end, at]
    if outlet_id is not None:
        where += f" AND s.outlet_id = {q}"
        params.append(outlet_id)
    with storage.reading() as tx:
        return tx.all(f"SELECT s.case_id, s.outlet_id, s.technician_id, s.job, s.done, s.reviewed, o.tier, o.name "
                      f"FROM {SERVICES} s LEFT JOIN {OUTLETS} o ON o.outlet_id = s.outlet_id WHERE {where} "
                      "ORDER BY s.reviewed, s.case_id", params)


def _penalties(storage: Storage, start: int, end: int, at: int, outlet_id: str | None) -> list[Any]:
    q = storage.q
    where = f"time >= {q} AND time < {q} AND time <= {q}"
    params: list[Any] = [start, end, at]
    if outlet_id is not None:
        where += f" AND outlet_id = {q}"
        params.append(outlet_id)
    with storage.reading() as tx:
        return tx.all(f"SELECT * FROM {PENALTIES} WHERE {where} ORDER BY time, penalty_id", params)


def statements(storage: Storage, quality: QualityPolicy, start: int, end: int, at: int,
               outlet_id: str | None = None, lines: bool = True) -> dict[str, Any]:
    """Every outlet's statement for [start, end), as the world stood at `at` (or one outlet's)."""
    services = _services(storage, start, end, at, outlet_id)
    penalties = _penalties(storage, start, end, at, outlet_id)
    with storage.reading() as tx:
        outlets = {r["outlet_id"]: r for r in tx.all(f"SELECT * FROM {OUTLETS}")}
    per_outlet: dict[str | None, dict[str, Any]] = {}

    def book(oid: str | None) -> dict[str, Any]:
        if oid not in per_outlet:
            o = outlets.get(oid) if oid else None
            per_outlet[oid] = {"outlet_id": oid, "name": o["name"] if o else None, "tier": o["tier"] if o else None,
                               "lines": {}, "order": []}
        return per_outlet[oid]

    for s in services:
        b = book(s["outlet_id"])
        price = quality.price(s["job"], s["tier"], s["reviewed"])
        b["lines"][s["case_id"]] = {
            "case_id": s["case_id"], "kind": "service", "job": s["job"], "technician_id": s["technician_id"],
            "done": iso(s["done"]), "reviewed": iso(s["reviewed"]), "price_cents": price, "penalties": [],
        }
        b["order"].append(s["case_id"])
    for p in penalties:
        b = book(p["outlet_id"])
        line = b["lines"].get(p["case_id"])
        if line is None:
            line = b["lines"][p["case_id"]] = {"case_id": p["case_id"], "kind": "penalty", "job": None,
                                               "technician_id": None, "done": None, "reviewed": None,
                                               "price_cents": 0, "penalties": []}
            b["order"].append(p["case_id"])
        line["penalties"].append({"penalty_id": p["penalty_id"], "complaint_id": p["complaint_id"],
                                  "category": p["category"], "charged": iso(p["time"]),
                                  "amount_cents": int(p["total_cents"])})
    out_statements = []
    for oid in sorted(per_outlet, key=lambda k: (k is None, k or "")):
        b = per_outlet[oid]
        rendered = []
        for case_id in b["order"]:
            line = b["lines"][case_id]
            deducted = sum(x["amount_cents"] for x in line["penalties"])
            line["penalty_cents"] = deducted
            line["net_cents"] = line["price_cents"] - deducted
            line["net"] = money(line["net_cents"])
            rendered.append(line)
        gross = sum(x["price_cents"] for x in rendered)
        deducted = sum(x["penalty_cents"] for x in rendered)
        statement = {
            "outlet_id": oid, "name": b["name"], "tier": b["tier"],
            "services": sum(1 for x in rendered if x["kind"] == "service"),
            "gross_cents": gross, "penalty_cents": deducted, "net_cents": gross - deducted,
            "gross": money(gross), "penalties": money(deducted), "net": money(gross - deducted),
            "currency": quality.currency,
        }
        if lines:
            statement["lines"] = rendered
        out_statements.append(statement)
    totals = {k: sum(s[k] for s in out_statements) for k in ("services", "gross_cents", "penalty_cents", "net_cents")}
    totals["net"] = money(totals["net_cents"])
    return {"from": iso(start), "to": iso(end), "as_of": iso(at), "currency": quality.currency,
            "statements": out_statements, "total": totals}


def penalties_by_owner(storage: Storage, start: int, end: int, at: int, party: str | None = None,
                       outlet_id: str | None = None) -> dict[str, Any]:
    """Who paid which penalties in [start, end), at `at`: the named owners and their managers."""
    q = storage.q
    where = f"p.time >= {q} AND p.time < {q} AND p.time <= {q}"
    params: list[Any] = [start, end, at]
    if party is not None:
        where += f" AND s.party = {q}"
        params.append(party)
    if outlet_id is not None:
        where += f" AND p.outlet_id = {q}"
        params.append(outlet_id)
    with storage.reading() as tx:
        rows = tx.all(f"SELECT s.party, s.role, s.name, s.amount_cents, p.penalty_id, p.case_id, p.complaint_id, "
                      f"p.category, p.outlet_id, p.time, p.currency, p.customer_id FROM {SHARES} s JOIN {PENALTIES} p "
                      f"ON p.penalty_id = s.penalty_id WHERE {where} ORDER BY s.party, p.time, p.penalty_id", params)
    owners: dict[str, dict[str, Any]] = {}
    payees: dict[str, int] = defaultdict(int)
    for r in rows:
        o = owners.setdefault(r["party"], {"party": r["party"], "name": r["name"], "role": r["role"],
                                           "outlet_id": r["outlet_id"], "penalties": 0, "amount_cents": 0,
                                           "lines": []})
        o["penalties"] += 1
        o["amount_cents"] += int(r["amount_cents"])
        o["lines"].append({"penalty_id": r["penalty_id"], "case_id": r["case_id"], "complaint_id": r["complaint_id"],
                           "category": r["category"], "charged": iso(r["time"]),
                           "amount_cents": int(r["amount_cents"]), "paid_to_case": r["case_id"]})
        payees[r["case_id"]] += int(r["amount_cents"])
    listed = sorted(owners.values(), key=lambda o: (-o["amount_cents"], o["party"]))
    for o in listed:
        o["amount"] = money(o["amount_cents"])
    total = sum(o["amount_cents"] for o in listed)
    return {"from": iso(start), "to": iso(end), "as_of": iso(at), "owners": listed,
            "total_cents": total, "total": money(total),
            "paid_to_customers": [{"case_id": c, "amount_cents": a, "amount": money(a)} for c, a in sorted(payees.items())]}
