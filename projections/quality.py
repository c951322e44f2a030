"""What the quality views are built from: each service's record, the network, shipments,
penalties.

Rows:
- `quality_services`: one per case, from its facts folded in world time
  (`closedloop.domain.quality.service_record`): what product, what fault and cause, which
  outlet and technician did the job, when it was done and reviewed. No customer's name,
  phone or address: a repeat repair is found by a digest of the unit.
- `quality_outlets`: each outlet's name, tier and manager (for settlement and penalties).
- `quality_shipments`: units shipped per model, production batch, plant and period.
- `quality_penalties` and `quality_penalty_shares`: each penalty charged, and who pays what.

The defect analytics (`defects.py`) and the settlement (`settlement.py`) are queries over
these rows.
"""

from __future__ import annotations

from typing import Any, Sequence

import orjson

from closedloop.domain.facts import Fact
from closedloop.domain.quality import SERVICE_FACTS, period_range, service_lite, service_record
from closedloop.log.storage import Tx

SCHEMA_VERSION = "quality-1"

SERVICES = "quality_services"
OUTLETS = "quality_outlets"
SHIPMENTS = "quality_shipments"
PENALTIES = "quality_penalties"
SHARES = "quality_penalty_shares"

_SERVICE_COLUMNS = (
    "case_id", "registered", "region", "product_line", "model", "production_batch", "plant", "purchase_date",
    "request", "unit", "job", "outlet_id", "technician_id", "completed", "fault_code", "cause", "first_visit",
    "parts", "guided", "done", "reviewed", "satisfaction", "cancelled", "complaints", "file",
)


class QualityView:
    name = "quality"

    def fingerprint(self) -> str:
        return SCHEMA_VERSION

    def tables(self) -> list[str]:
        return [SERVICES, OUTLETS, SHIPMENTS, PENALTIES, SHARES]

    def create_statements(self) -> list[str]:
        return [
            f"CREATE TABLE {SERVICES} (case_id TEXT PRIMARY KEY, registered {{bigint}}, region TEXT, "
            "product_line TEXT, model TEXT, production_batch TEXT, plant TEXT, purchase_date TEXT, request TEXT, "
            "unit TEXT, job TEXT, outlet_id TEXT, technician_id TEXT, completed {bigint}, fault_code TEXT, "
            "cause TEXT, first_visit INTEGER, parts TEXT, guided {bigint}, done {bigint}, reviewed {bigint}, "
            "satisfaction TEXT, cancelled {bigint}, complaints INTEGER NOT NULL, file TEXT NOT NULL)",
            f"CREATE INDEX {SERVICES}_completed ON {SERVICES} (completed)",
            f"CREATE INDEX {SERVICES}_reviewed ON {SERVICES} (reviewed)",
            f"CREATE INDEX {SERVICES}_unit ON {SERVICES} (unit)",
            f"CREATE TABLE {OUTLETS} (outlet_id TEXT PRIMARY KEY, name TEXT, tier TEXT, manager TEXT, "
            "registered {bigint} NOT NULL)",
            f"CREATE TABLE {SHIPMENTS} (shipment_id TEXT PRIMARY KEY, model TEXT NOT NULL, production_batch TEXT "
            "NOT NULL, plant TEXT NOT NULL, product_line TEXT, quantity {bigint} NOT NULL, period TEXT NOT NULL, "
            "period_start {bigint} NOT NULL, period_end {bigint} NOT NULL, time {bigint} NOT NULL)",
            f"CREATE INDEX {SHIPMENTS}_batch ON {SHIPMENTS} (production_batch, plant, model)",
            f"CREATE TABLE {PENALTIES} (penalty_id TEXT PRIMARY KEY, case_id TEXT NOT NULL, complaint_id TEXT, "
            "category TEXT, outlet_id TEXT, accountable TEXT, time {bigint} NOT NULL, total_cents {bigint} NOT NULL, "
            "currency TEXT NOT NULL, customer_id TEXT, source TEXT NOT NULL)",
            f"CREATE INDEX {PENALTIES}_time ON {PENALTIES} (time)",
            f"CREATE TABLE {SHARES} (penalty_id TEXT NOT NULL, n INTEGER NOT NULL, party TEXT NOT NULL, "
            "role TEXT NOT NULL, name TEXT, amount_cents {bigint} NOT NULL, PRIMARY KEY (penalty_id, n))",
            f"CREATE INDEX {SHARES}_party ON {SHARES} (party)",
        ]

    def apply(self, tx: Tx, facts: Sequence[Fact]) -> None:
        cases = sorted({f.subject for f in facts if f.type in SERVICE_FACTS})
        files: dict[str, list[list[Any]]] = {c: [] for c in cases}
        for i in range(0, len(cases), 400):
            among, params = tx.in_list("case_id", cases[i : i + 400])
            for row in tx.all(f"SELECT case_id, file FROM {SERVICES} WHERE {among}", params):
                files[row["case_id"]] = orjson.loads(row["file"])
        for f in facts:
            kind = f.type
            if kind in SERVICE_FACTS:
                files[f.subject].append([f.time_ms, f.position or 0, kind, service_lite(kind, f.data)])
            elif kind == "outlet.registered":
                _outlet(tx, f)
            elif kind == "units.shipped":
                _shipment(tx, f)
            elif kind == "penalty.charged":
                _penalty(tx, f)
        rows = []
        for case_id in cases:
            r = service_record(files[case_id])
            r["case_id"] = case_id
            r["first_visit"] = None if r["first_visit"] is None else int(r["first_visit"])
            r["parts"] = orjson.dumps(r["parts"]).decode()
            r["file"] = orjson.dumps(files[case_id]).decode()
            rows.append(tuple(r[c] for c in _SERVICE_COLUMNS))
        tx.insert_many(SERVICES, _SERVICE_COLUMNS, rows, conflict=("case_id",), update=_SERVICE_COLUMNS[1:])


def _outlet(tx: Tx, f: Fact) -> None:
    # a re-registration later in world time updates the outlet; an earlier one does not
    d = f.data
    tx.execute(
        f"INSERT INTO {OUTLETS} (outlet_id, name, tier, manager, registered) VALUES ({tx.marks(5)}) "
        "ON CONFLICT (outlet_id) DO UPDATE SET name = excluded.name, tier = excluded.tier, "
        f"manager = excluded.manager, registered = excluded.registered WHERE excluded.registered >= {OUTLETS}.registered",
        [f.subject, d["name"], d["tier"], d.get("manager"), f.time_ms],
    )


def _shipment(tx: Tx, f: Fact) -> None:
    # the same shipment id sent again later in world time corrects it
    d = f.data
    start, end = period_range(d["period"])
    tx.execute(
        f"INSERT INTO {SHIPMENTS} (shipment_id, model, production_batch, plant, product_line, quantity, period, "
        f"period_start, period_end, time) VALUES ({tx.marks(10)}) ON CONFLICT (shipment_id) DO UPDATE SET "
        "model = excluded.model, production_batch = excluded.production_batch, plant = excluded.plant, "
        "product_line = excluded.product_line, quantity = excluded.quantity, period = excluded.period, "
        "period_start = excluded.period_start, period_end = excluded.period_end, time = excluded.time "
        f"WHERE excluded.time >= {SHIPMENTS}.time",
        [f.subject, d["model"], d["production_batch"], d["plant"], d.get("product_line"), d["quantity"], d["period"],
         start, end, f.time_ms],
    )


def _penalty(tx: Tx, f: Fact) -> None:
    d = f.data
    exists = tx.one(f"SELECT 1 AS x FROM {PENALTIES} WHERE penalty_id = {tx.q}", [f.subject])
    if exists is not None:
        return  # one penalty per id: the first recorded stands
    tx.execute(
        f"INSERT INTO {PENALTIES} (penalty_id, case_id, complaint_id, category, outlet_id, accountable, time, "
        f"total_cents, currency, customer_id, source) VALUES ({tx.marks(11)})",
        [f.subject, d["case_id"], d.get("complaint_id"), d.get("category"), d.get("outlet_id"), d.get("accountable"),
         f.time_ms, d["total_cents"], d["currency"], (d.get("payee") or {}).get("customer_id"), f.source],
    )
    tx.insert_many(
        SHARES, ("penalty_id", "n", "party", "role", "name", "amount_cents"),
        [(f.subject, n, s["party"], s["role"], s.get("name"), s["amount_cents"]) for n, s in enumerate(d["shares"])],
    )
