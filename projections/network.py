"""The service network as the log tells it: outlets, technicians and their permits, dispatch
assignments and alarms, warehouses and their stock, part requests.

Every row carries the world time it holds from, so each question is answered for any
moment (`as_of`) from the same rows, as the loop view does:
- `net_outlets`, `net_technicians`: one version per registration (and promotion), the one
  in force at T is the latest from before it;
- `net_permit`: the permit ledger, one row per change the engine recorded;
- `net_assignments`, `net_alarms`: each case's dispatch history walked in world time
  (`closedloop.domain.network.walk_dispatch`): who held the job from when, accepted or let
  go when; alarms with when they were resolved. An outlet's load on a day is a count of
  assignments holding at T;
- `net_warehouses`, `net_stock`: stock received, and the moves part requests caused
  (reserved, released, shipped), so stock at T is a sum;
- `net_requests`: each part request with its facts, walked up to T for its status then.
The walks' inputs (`net_dispatch_files`, and each request's entries) let facts arriving in
any order meet.
"""

from __future__ import annotations

from typing import Any, Sequence

import orjson

from closedloop.domain.facts import Fact
from closedloop.domain.network import DISPATCH_FACTS, DispatchPolicy, dispatch_entry, walk_dispatch
from closedloop.domain.parts import PART_FACTS, part_entry, walk_request
from closedloop.log.storage import Tx

SCHEMA_VERSION = "network-1"

OUTLETS, TECHNICIANS, PERMIT = "net_outlets", "net_technicians", "net_permit"
FILES, ASSIGNMENTS, ALARMS = "net_dispatch_files", "net_assignments", "net_alarms"
WAREHOUSES, STOCK, REQUESTS = "net_warehouses", "net_stock", "net_requests"
PERMIT_FACTS = frozenset({"permit.points_changed", "permit.status_changed", "permit.reviewed"})
# the columns the fold writes, in the order of their tables (and of the rows it builds)
_OUTLET_COLUMNS = ("outlet_id", "valid_from", "position", "name", "tier", "regions", "product_lines", "daily_capacity")
_TECHNICIAN_COLUMNS = ("technician_id", "valid_from", "position", "outlet_id", "name", "level")
_PERMIT_COLUMNS = ("technician_id", "time", "position", "type", "case_id", "rule", "points", "balance", "status",
                   "previous", "reason")
_ASSIGNMENT_COLUMNS = ("case_id", "key", "outlet_id", "by_whom", "technician_id", "time", "day", "accept_by",
                       "accepted", "released", "how")
_ALARM_COLUMNS = ("case_id", "key", "outlet_id", "level", "time", "dispatched_at", "accept_by", "action", "reason",
                  "resolved", "resolution")
_STOCK_COLUMNS = ("warehouse_id", "part_no", "time", "on_hand", "reserved", "request_id", "kind")


def packed(values: Sequence[str]) -> str:
    """',R01,R02,': a list a LIKE '%,R01,%' can search on both databases."""
    return "," + ",".join(values) + ","


class NetworkView:
    # what folding it costs beside the other views (about 1): a parallel rebuild balances on it
    weight = 1.4
    name = "network"

    def __init__(self, policy: DispatchPolicy) -> None:
        self.policy = policy

    def fingerprint(self) -> str:
        return f"{SCHEMA_VERSION}/{self.policy.fingerprint()}"

    def tables(self) -> list[str]:
        return [OUTLETS, TECHNICIANS, PERMIT, FILES, ASSIGNMENTS, ALARMS, WAREHOUSES, STOCK, REQUESTS]

    def create_statements(self) -> list[str]:
        return [
            f"CREATE TABLE {OUTLETS} (outlet_id TEXT NOT NULL, valid_from {{bigint}} NOT NULL, position {{bigint}} "
            "NOT NULL, name TEXT, tier TEXT NOT NULL, regions TEXT NOT NULL, product_lines TEXT NOT NULL, "
            "daily_capacity INTEGER NOT NULL, PRIMARY KEY (outlet_id, valid_from, position))",
            f"CREATE TABLE {TECHNICIANS} (technician_id TEXT NOT NULL, valid_from {{bigint}} NOT NULL, position "
            "{bigint} NOT NULL, outlet_id TEXT, name TEXT, level TEXT, PRIMARY KEY (technician_id, valid_from, position))",
            f"CREATE INDEX {TECHNICIANS}_outlet ON {TECHNICIANS} (outlet_id)",
            f"CREATE TABLE {PERMIT} (technician_id TEXT NOT NULL, time {{bigint}} NOT NULL, position {{bigint}} NOT NULL, "
            "type TEXT NOT NULL, case_id TEXT, rule TEXT, points INTEGER, balance INTEGER NOT NULL, status TEXT NOT NULL, "
            "previous TEXT, reason TEXT, PRIMARY KEY (technician_id, position))",
            f"CREATE TABLE {FILES} (case_id TEXT PRIMARY KEY, entries TEXT NOT NULL)",
            f"CREATE TABLE {ASSIGNMENTS} (case_id TEXT NOT NULL, key TEXT NOT NULL, outlet_id TEXT NOT NULL, "
            "by_whom TEXT NOT NULL, technician_id TEXT, time {bigint} NOT NULL, day {bigint} NOT NULL, "
            "accept_by {bigint} NOT NULL, accepted {bigint}, released {bigint}, how TEXT)",
            f"CREATE INDEX {ASSIGNMENTS}_outlet ON {ASSIGNMENTS} (outlet_id, day)",
            f"CREATE INDEX {ASSIGNMENTS}_case ON {ASSIGNMENTS} (case_id)",
            f"CREATE TABLE {ALARMS} (case_id TEXT NOT NULL, key TEXT NOT NULL, outlet_id TEXT NOT NULL, "
            "level INTEGER NOT NULL, time {bigint} NOT NULL, dispatched_at {bigint} NOT NULL, accept_by {bigint} "
            "NOT NULL, action TEXT, reason TEXT, resolved {bigint}, resolution TEXT)",
            f"CREATE INDEX {ALARMS}_time ON {ALARMS} (time)",
            f"CREATE INDEX {ALARMS}_case ON {ALARMS} (case_id)",
            f"CREATE TABLE {WAREHOUSES} (warehouse_id TEXT PRIMARY KEY, level INTEGER NOT NULL, region TEXT NOT NULL, "
            "since {bigint} NOT NULL)",
            f"CREATE TABLE {STOCK} (warehouse_id TEXT NOT NULL, part_no TEXT NOT NULL, time {{bigint}} NOT NULL, "
            "on_hand INTEGER NOT NULL, reserved INTEGER NOT NULL, request_id TEXT, kind TEXT NOT NULL)",
            f"CREATE INDEX {STOCK}_warehouse ON {STOCK} (warehouse_id, part_no)",
            f"CREATE INDEX {STOCK}_request ON {STOCK} (request_id)",
            f"CREATE TABLE {REQUESTS} (request_id TEXT PRIMARY KEY, case_id TEXT NOT NULL, outlet_id TEXT, "
            "part_no TEXT, quantity INTEGER, requested {bigint}, entries TEXT NOT NULL)",
            f"CREATE INDEX {REQUESTS}_outlet ON {REQUESTS} (outlet_id)",
            f"CREATE INDEX {REQUESTS}_case ON {REQUESTS} (case_id)",
        ]

    def apply(self, tx: Tx, facts: Sequence[Fact]) -> None:
        _Batch(self, tx).run(facts)


class _Batch:
    def __init__(self, view: NetworkView, tx: Tx) -> None:
        self.policy = view.policy
        self.tx = tx
        self.files: dict[str, list[list[Any]]] = {}
        self.dirty_files: set[str] = set()
        self.requests: dict[str, dict[str, Any]] = {}
        self.dirty_requests: set[str] = set()
        self.technicians: dict[str, dict[str, Any] | None] = {}

    def run(self, facts: Sequence[Fact]) -> None:
        tx = self.tx
        self.load(facts)
        outlets, technicians, permit, warehouses, stock = [], [], [], {}, []
        for f in facts:
            kind, d = f.type, f.data
            if kind == "outlet.registered":
                outlets.append((f.subject, f.time_ms, f.position, d.get("name"), d["tier"], packed(d["regions"]),
                                packed(d["product_lines"]), d["daily_capacity"]))
            elif kind in ("technician.registered", "technician.promoted"):
                known = self.technician(f.subject) or {"outlet_id": None, "name": None, "level": None}
                current = dict(known)
                if kind == "technician.registered":
                    current.update(outlet_id=d["outlet_id"], name=d["name"], level=d["level"])
                else:
                    current["level"] = d["level"]
                self.technicians[f.subject] = current
                technicians.append((f.subject, f.time_ms, f.position, current["outlet_id"], current["name"],
                                    current["level"]))
            elif kind in PERMIT_FACTS:
                if kind == "permit.reviewed":
                    reason = (f"yearly review of the period from {d['period_start']}: {d['balance_before']} points "
                              f"left, {d['balance']} for the new period")
                    permit.append((f.subject, f.time_ms, f.position, kind, None, "yearly_review",
                                   d["balance"] - d["balance_before"], d["balance"], d["status"], None, reason))
                else:
                    permit.append((f.subject, f.time_ms, f.position, kind, d.get("case_id"), d["rule"], d.get("points"),
                                   d["balance"], d["status"], d.get("previous"), d["reason"]))
            elif kind == "stock.received":
                house = warehouses.get(f.subject)
                warehouses[f.subject] = (d["level"], d["region"], min(f.time_ms, house[2]) if house else f.time_ms)
                stock.append((f.subject, d["part_no"], f.time_ms, d["quantity"], 0, None, "received"))
            elif kind in PART_FACTS:
                rid = d["request_id"]
                req = self.requests.setdefault(rid, {"case_id": f.subject, "entries": []})
                req["entries"].append(part_entry(f, f.position or 0))
                self.dirty_requests.add(rid)
            if kind in DISPATCH_FACTS:
                self.files.setdefault(f.subject, []).append(dispatch_entry(f))
                self.dirty_files.add(f.subject)
        tx.insert_many(OUTLETS, _OUTLET_COLUMNS, outlets)
        tx.insert_many(TECHNICIANS, _TECHNICIAN_COLUMNS, technicians)
        tx.insert_many(PERMIT, _PERMIT_COLUMNS, permit)
        if warehouses:
            for w, (level, region, since) in sorted(warehouses.items()):
                tx.execute(
                    f"INSERT INTO {WAREHOUSES} (warehouse_id, level, region, since) VALUES ({tx.marks(4)}) "
                    "ON CONFLICT (warehouse_id) DO UPDATE SET level = excluded.level, region = excluded.region, "
                    f"since = CASE WHEN excluded.since < {WAREHOUSES}.since THEN excluded.since ELSE {WAREHOUSES}.since END",
                    [w, level, region, since])
        tx.insert_many(STOCK, _STOCK_COLUMNS, stock)
        self.write_files()
        self.write_requests()

    # --- loading -----------------------------------------------------------------------------
    def load(self, facts: Sequence[Fact]) -> None:
        cases = {f.subject for f in facts if f.type in DISPATCH_FACTS}
        for among, params in _chunks(self.tx, "case_id", sorted(cases)):
            for row in self.tx.all(f"SELECT case_id, entries FROM {FILES} WHERE {among}", params):
                self.files[row["case_id"]] = orjson.loads(row["entries"])
        requests = {f.data["request_id"] for f in facts if f.type in PART_FACTS}
        for among, params in _chunks(self.tx, "request_id", sorted(requests)):
            for row in self.tx.all(f"SELECT request_id, case_id, entries FROM {REQUESTS} WHERE {among}", params):
                self.requests[row["request_id"]] = {"case_id": row["case_id"], "entries": orjson.loads(row["entries"])}
        # the latest record of each technician the batch names: one query, not one per fact
        named = sorted({f.subject for f in facts if f.type in ("technician.registered", "technician.promoted")})
        latest: dict[str, tuple[Any, ...]] = {}
        for among, params in _chunks(self.tx, "technician_id", named):
            for row in self.tx.all(f"SELECT technician_id, outlet_id, name, level, valid_from, position "
                                   f"FROM {TECHNICIANS} WHERE {among}", params):
                order = (row["valid_from"], row["position"])
                if row["technician_id"] not in latest or order > latest[row["technician_id"]][0]:
                    latest[row["technician_id"]] = (order, {"outlet_id": row["outlet_id"], "name": row["name"],
                                                            "level": row["level"]})
        for t in named:
            self.technicians[t] = latest[t][1] if t in latest else None

    def technician(self, technician_id: str) -> dict[str, Any] | None:
        if technician_id not in self.technicians:
            row = self.tx.one(f"SELECT outlet_id, name, level FROM {TECHNICIANS} WHERE technician_id = {self.tx.q} "
                              "ORDER BY valid_from DESC, position DESC LIMIT 1", [technician_id])
            self.technicians[technician_id] = dict(row) if row else None
        return self.technicians[technician_id]

    # --- writing back --------------------------------------------------------------------------
    def write_files(self) -> None:
        if not self.dirty_files:
            return
        tx = self.tx
        cases = sorted(self.dirty_files)
        assignments, alarms = [], []
        for case_id in cases:
            state = walk_dispatch(case_id, self.files[case_id], self.policy)
            for a in state.assignments:
                assignments.append((case_id, a.key, a.outlet_id, a.by, a.technician_id, a.time,
                                    self.policy.day_of(a.time), a.accept_by, a.accepted, a.released, a.how))
            for x in state.alarms:
                alarms.append((case_id, x.key, x.outlet_id, x.level, x.time, x.dispatched_at, x.accept_by, x.action,
                               x.reason, x.resolved, x.resolution))
        for among, params in _chunks(tx, "case_id", cases):
            tx.execute(f"DELETE FROM {ASSIGNMENTS} WHERE {among}", params)
            tx.execute(f"DELETE FROM {ALARMS} WHERE {among}", params)
        tx.insert_many(FILES, ("case_id", "entries"), [(c, orjson.dumps(self.files[c]).decode()) for c in cases],
                       conflict=("case_id",), update=("entries",))
        tx.insert_many(ASSIGNMENTS, _ASSIGNMENT_COLUMNS, assignments)
        tx.insert_many(ALARMS, _ALARM_COLUMNS, alarms)

    def write_requests(self) -> None:
        if not self.dirty_requests:
            return
        tx = self.tx
        ids = sorted(self.dirty_requests)
        rows, moves = [], []
        for rid in ids:
            req = self.requests[rid]
            r = walk_request(rid, req["case_id"], req["entries"])
            rows.append((rid, req["case_id"], r.outlet_id, r.part_no, r.quantity, r.requested,
                         orjson.dumps(req["entries"]).decode()))
            for t, warehouse, part, on_hand, reserved in r.moves:
                kind = "shipped" if on_hand else ("reserved" if reserved > 0 else "released")
                moves.append((warehouse, part, t, on_hand, reserved, rid, kind))
        for among, params in _chunks(tx, "request_id", ids):
            tx.execute(f"DELETE FROM {STOCK} WHERE {among}", params)
        tx.insert_many(REQUESTS, ("request_id", "case_id", "outlet_id", "part_no", "quantity", "requested", "entries"),
                       rows, conflict=("request_id",),
                       update=("outlet_id", "part_no", "quantity", "requested", "entries"))
        tx.insert_many(STOCK, _STOCK_COLUMNS, moves)


def _chunks(tx: Tx, column: str, keys: list[str], size: int = 400):
    """`column` among `keys`, `size` at a time: (condition, parameters)."""
    for i in range(0, len(keys), size):
        yield tx.in_list(column, keys[i : i + size])
