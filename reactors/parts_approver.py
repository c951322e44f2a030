"""Spare parts by order: the engine approves an outlet's request when the rules allow.

The approver keeps the stock of every warehouse (received, reserved by approvals, taken off
the shelf by shipments), what it needs of each case (registered, region, the outlet that
has it, whether it is closed) and every part request with its history. On `part.requested`
it decides by the rules of `closedloop.domain.parts`: `part.approved` with the warehouse
(reserving the quantity there), `part.denied` with the reason, or `part.held` with the
reason; held requests are decided again when stock arrives or the case they wait for is
registered or amended. People may still decide (a warehouse approving, a manager denying):
their facts count the same.
"""

from __future__ import annotations

from typing import Any, Sequence

import orjson

from closedloop.domain.facts import Fact
from closedloop.domain.network import UNPOSITIONED, fact_key
from closedloop.domain.parts import (
    PART_FACTS,
    CaseForParts,
    PartsRules,
    RequestState,
    Shelf,
    decide,
    part_entry,
    walk_request,
)
from closedloop.reactors.process import engine_fact
from closedloop.log.storage import Tx

from .reacting import digest, replaying, rows_by, source_of

NAME = "parts-approver"
SCHEMA = "parts-approver-1"
WAREHOUSES, STOCK, REQUESTS, CASES = "prt_warehouses", "prt_stock", "prt_requests", "prt_cases"
CASE_FACTS = frozenset({"case.registered", "case.amended", "case.dispatched", "dispatch.accepted", "case.transferred",
                        "guidance.given", "follow_up.made", "service.completed", "case.cancelled"})
ANSWERED = PART_FACTS | CASE_FACTS | {"stock.received"}


class PartsApprover:
    name = NAME
    # its cost beside the views' (loop view 6): consumers sharing the followers split by it
    weight = 1.2

    def __init__(self, rules: PartsRules) -> None:
        self.rules = rules
        self.source = source_of(NAME)

    def fingerprint(self) -> str:
        return f"{SCHEMA}/{self.rules.fingerprint()}"

    def tables(self) -> list[str]:
        return [WAREHOUSES, STOCK, REQUESTS, CASES]

    def create_statements(self) -> list[str]:
        return [
            f"CREATE TABLE {WAREHOUSES} (warehouse_id TEXT PRIMARY KEY, level INTEGER NOT NULL, region TEXT NOT NULL)",
            f"CREATE TABLE {STOCK} (warehouse_id TEXT NOT NULL, part_no TEXT NOT NULL, on_hand INTEGER NOT NULL, "
            "reserved INTEGER NOT NULL, PRIMARY KEY (warehouse_id, part_no))",
            f"CREATE INDEX {STOCK}_part ON {STOCK} (part_no)",
            f"CREATE TABLE {REQUESTS} (request_id TEXT PRIMARY KEY, case_id TEXT NOT NULL, part_no TEXT, "
            "status TEXT, record TEXT NOT NULL)",
            f"CREATE INDEX {REQUESTS}_held ON {REQUESTS} (part_no, status)",
            f"CREATE INDEX {REQUESTS}_case ON {REQUESTS} (case_id)",
            f"CREATE TABLE {CASES} (case_id TEXT PRIMARY KEY, registered {{bigint}}, region TEXT, region_time {{bigint}}, "
            "outlet_id TEXT, outlet_time {bigint}, closed TEXT)",
        ]

    def ensure_statements(self) -> list[str]:
        """Made where missing at every start, no rebuild (no row changes): the held requests,
        which a batch with stock or a registration loads, found without reading every request."""
        return [f"CREATE INDEX IF NOT EXISTS {REQUESTS}_waiting ON {REQUESTS} (status) WHERE status = 'held'"]

    def react(self, tx: Tx, facts: Sequence[Fact]) -> list[Fact]:
        relevant = [f for f in facts if f.type in ANSWERED]
        if not relevant:
            return []
        batch = _Batch(self, tx, decide=self.rules.auto_approve and not replaying(tx, NAME, facts))
        batch.prefetch(relevant)
        for f in relevant:
            if f.type in PART_FACTS:
                batch.part_fact(f)
            elif f.type == "stock.received":
                batch.stock_received(f)
            else:
                batch.case_fact(f)
        batch.flush()
        return batch.decisions

    def due(self, tx: Tx, now: int) -> list[Fact]:
        return []  # held requests wait for facts (stock, a registration), not for time


class _Batch:
    def __init__(self, approver: PartsApprover, tx: Tx, decide: bool) -> None:
        self.a = approver
        self.rules = approver.rules
        self.tx = tx
        self.decide = decide
        self.decisions: list[Fact] = []
        self.requests: dict[str, dict[str, Any]] = {}  # request id -> {case, e, net, status, part}
        self.requests_dirty: set[str] = set()
        self.cases: dict[str, dict[str, Any] | None] = {}
        self.cases_dirty: set[str] = set()
        self.warehouses: dict[str, tuple[int, str]] = {}
        self.warehouses_dirty: set[str] = set()
        self.stock: dict[tuple[str, str], list[int]] = {}
        self.stock_dirty: set[tuple[str, str]] = set()
        self.shelves_loaded: set[tuple[str, str | None]] = set()
        self.parts_at: dict[str, list[str]] = {}  # part -> the warehouses with a shelf of it in `stock`
        self.stored_stock: dict[str, list[Any]] = {}  # part -> its stock rows at first and second-level warehouses
        self.regional: dict[str, list[str]] | None = None  # region -> its second-level warehouses
        self.batch_parts: set[str] = set()
        self.held: dict[str, tuple[str, str | None]] | None = None  # request id -> (case, part), loaded once
        # the held requests by part and by case, kept with `held`: a stock arrival or a
        # registration looks up its own, not every held request
        self.held_by_part: dict[str | None, set[str]] = {}
        self.held_by_case: dict[str, set[str]] = {}

    # --- loading -----------------------------------------------------------------------------
    def prefetch(self, facts: Sequence[Fact]) -> None:
        self.load_requests({f.data["request_id"] for f in facts if f.type in PART_FACTS})
        self.load_cases({f.subject for f in facts if f.type in PART_FACTS or f.type in CASE_FACTS})
        pairs = {(f.subject, f.data["part_no"]) for f in facts if f.type == "stock.received"}
        self.batch_parts = {p for _, p in pairs} | {f.data["part_no"] for f in facts if f.type == "part.requested"}
        for r in self.requests.values():
            pairs |= {tuple(k.split("\x1f", 1)) for k in r["net"]}  # type: ignore[misc]
        self.load_stock(pairs)

    def load_requests(self, request_ids: set[str]) -> None:
        need = {r for r in request_ids if r not in self.requests}
        for row in rows_by(self.tx, f"SELECT request_id, case_id, record FROM {REQUESTS} WHERE {{among}}",
                           "request_id", need):
            self.requests[row["request_id"]] = orjson.loads(row["record"])

    def load_cases(self, case_ids: set[str]) -> None:
        need = {c for c in case_ids if c not in self.cases}
        for row in rows_by(self.tx, f"SELECT * FROM {CASES} WHERE {{among}}", "case_id", need):
            self.cases[row["case_id"]] = dict(row)
        for c in need:
            self.cases.setdefault(c, None)

    def load_stock(self, pairs: set[tuple[str, str]]) -> None:
        need = {p for p in pairs if p not in self.stock}
        if not need:
            return
        for p in need:
            self.add_stock(p, [0, 0])
        for row in rows_by(self.tx, f"SELECT warehouse_id, part_no, on_hand, reserved FROM {STOCK} "
                           "WHERE {among}", "part_no", {p for _, p in need}):
            pair = (row["warehouse_id"], row["part_no"])
            if pair in need:
                self.stock[pair] = [row["on_hand"], row["reserved"]]

    def add_stock(self, pair: tuple[str, str], shelf: list[int]) -> None:
        self.stock[pair] = shelf
        self.parts_at.setdefault(pair[1], []).append(pair[0])

    def stored_shelves(self, part_no: str, region: str) -> tuple[list[Any], list[str]]:
        """As stored before this batch: the part's stock at the first-level warehouses and the
        region's second-level ones, and the region's second-level warehouses. Read for all the
        parts this batch may decide at once (nothing here writes these tables before `flush`)."""
        if part_no not in self.stored_stock:
            parts = ({part_no} | self.batch_parts | {r.get("part") for r in self.requests.values()}) - {None}
            parts -= set(self.stored_stock)
            for p in parts:
                self.stored_stock[p] = []
            for row in rows_by(self.tx, f"SELECT s.warehouse_id, s.part_no, s.on_hand, s.reserved, w.level, w.region "
                               f"FROM {STOCK} s JOIN {WAREHOUSES} w ON w.warehouse_id = s.warehouse_id "
                               "WHERE {among} AND w.level IN (1, 2)", "s.part_no", parts):
                self.stored_stock[row["part_no"]].append(row)
        if self.regional is None:
            self.regional = {}
            for row in self.tx.all(f"SELECT warehouse_id, region FROM {WAREHOUSES} WHERE level = 2"):
                self.regional.setdefault(row["region"], []).append(row["warehouse_id"])
        rows = [r for r in self.stored_stock[part_no] if r["level"] == 1 or (r["level"] == 2 and r["region"] == region)]
        return rows, self.regional.get(region, [])

    def shelves(self, part_no: str, region: str | None) -> list[Shelf]:
        """The part's stock at the first-level warehouses and the region's second-level ones."""
        if (part_no, region) not in self.shelves_loaded:
            self.shelves_loaded.add((part_no, region))
            rows, houses = self.stored_shelves(part_no, region or "")
            for row in rows:
                self.warehouses.setdefault(row["warehouse_id"], (row["level"], row["region"]))
                if (row["warehouse_id"], part_no) not in self.stock:
                    self.add_stock((row["warehouse_id"], part_no), [row["on_hand"], row["reserved"]])
            for w in houses:
                self.warehouses.setdefault(w, (2, region or ""))
        out = []
        for w in self.parts_at.get(part_no, ()):
            if w not in self.warehouses:
                continue
            on_hand, reserved = self.stock[(w, part_no)]
            level, where = self.warehouses[w]
            if level == 1 or (level == 2 and where == region):
                out.append(Shelf(w, level, where, on_hand, reserved))
        # a second-level warehouse of the region that never had this part is a shelf with none
        for w, (level, where) in self.warehouses.items():
            if level == 2 and where == region and (w, part_no) not in self.stock:
                out.append(Shelf(w, level, where, 0, 0))
        return out

    # --- folding -----------------------------------------------------------------------------
    def stock_received(self, f: Fact) -> None:
        w, part = f.subject, f.data["part_no"]
        self.warehouses[w] = (f.data["level"], f.data["region"])
        self.warehouses_dirty.add(w)
        self.load_stock({(w, part)})
        self.stock[(w, part)][0] += f.data["quantity"]
        self.stock_dirty.add((w, part))
        if self.decide:
            self.reconsider(f)

    def case_fact(self, f: Fact) -> None:
        case = self.cases.get(f.subject)
        if case is None:
            case = self.cases[f.subject] = {"case_id": f.subject, "registered": None, "region": None,
                                            "region_time": None, "outlet_id": None, "outlet_time": None, "closed": None}
        d, t = f.data, f.time_ms
        reconsider = False
        if f.type in ("case.registered", "case.amended"):
            if f.type == "case.registered" and (case["registered"] is None or t < case["registered"]):
                case["registered"] = t
                reconsider = True
            customer = d.get("customer")
            if isinstance(customer, dict) and "region" in customer and (case["region_time"] or 0) <= t:
                reconsider = reconsider or case["region"] != (customer["region"] or None)
                case["region"], case["region_time"] = customer["region"] or None, t
        elif f.type in ("case.dispatched", "dispatch.accepted", "case.transferred"):
            outlet = d.get("outlet_id") or d.get("to_outlet_id")
            if f.type == "case.transferred" and not d.get("to_outlet_id"):
                outlet = None  # at the service center: any outlet of the center may ask
            if (case["outlet_time"] or 0) <= t:
                case["outlet_id"], case["outlet_time"] = outlet, t
        elif f.type == "follow_up.made":
            if d["working"] and not case["closed"]:
                case["closed"] = "guided"
        elif f.type == "service.completed":
            case["closed"] = "completed"
        elif f.type == "case.cancelled":
            case["closed"] = "cancelled"
        self.cases_dirty.add(f.subject)
        if reconsider and self.decide:
            self.reconsider(f)

    def part_fact(self, f: Fact) -> None:
        rid = f.data["request_id"]
        req = self.requests.get(rid)
        if req is None:
            req = self.requests[rid] = {"case": f.subject, "e": [], "net": {}}
        key = fact_key(f)
        known = next((e for e in req["e"] if e[4] == key), None)
        if known is not None:
            if known[1] == UNPOSITIONED and f.position is not None:
                known[1] = f.position
                self.requests_dirty.add(rid)
            return
        req["e"].append(part_entry(f, f.position if f.position is not None else UNPOSITIONED))
        state = self.settle(rid, req)
        if (self.decide and f.type == "part.requested" and f.source != self.a.source
                and state.status == "requested"):
            self.evaluate(rid, req, state, f.time_ms, key)

    def reconsider(self, cause: Fact) -> None:
        """Decide again the held requests this fact may release: for its part, or its case."""
        if self.held is None:
            rows = self.tx.all(f"SELECT request_id, case_id, part_no FROM {REQUESTS} WHERE status = 'held'")
            self.held = {}
            for r in rows:
                self.hold_index(r["request_id"], (r["case_id"], r["part_no"]))
            for rid, req in self.requests.items():  # what this batch has changed and not yet written
                self.hold_index(rid, (req["case"], req.get("part")) if req.get("status") == "held" else None)
        if cause.type == "stock.received":
            ids = set(self.held_by_part.get(cause.data["part_no"], ()))
        else:
            ids = set(self.held_by_case.get(cause.subject, ()))
        if not ids:
            return
        self.load_requests(ids)
        for rid in sorted(ids):
            req = self.requests[rid]
            state = walk_request(rid, req["case"], req["e"])
            if state.status == "held":
                self.evaluate(rid, req, state, max(cause.time_ms, state.requested or 0), fact_key(cause))

    def hold_index(self, rid: str, held: tuple[str, str | None] | None) -> None:
        """Record that request `rid` is held for (case, part), or (None) is not held."""
        assert self.held is not None
        before = self.held.get(rid)
        if before == held:
            return
        if before is not None:
            del self.held[rid]
            self.held_by_case[before[0]].discard(rid)
            self.held_by_part[before[1]].discard(rid)
        if held is not None:
            self.held[rid] = held
            self.held_by_case.setdefault(held[0], set()).add(rid)
            self.held_by_part.setdefault(held[1], set()).add(rid)

    # --- deciding ----------------------------------------------------------------------------
    def evaluate(self, rid: str, req: dict[str, Any], state: RequestState, at: int, cause: str) -> None:
        row = self.cases.get(state.case_id)
        if state.case_id not in self.cases:
            self.load_cases({state.case_id})
            row = self.cases.get(state.case_id)
        case = None
        if row is not None:
            case = CaseForParts(row["registered"] is not None, row["region"], row["outlet_id"], row["closed"])
        shelves = self.shelves(state.part_no or "", case.region if case else None)
        status, warehouse, reason = decide(state, case, shelves, self.rules)
        if status == "held" and state.status == "held" and state.reason == reason:
            return  # still held, for the same reason
        data: dict[str, Any] = {"request_id": rid, "reason": reason}
        if warehouse:
            data["warehouse_id"] = warehouse
        fact = engine_fact(f"part.{status}", state.case_id, at, data, NAME, f"part:{rid}:{status}:{digest(cause)}")
        self.decisions.append(fact)
        req["e"].append(part_entry(fact, UNPOSITIONED))
        self.settle(rid, req)

    def settle(self, rid: str, req: dict[str, Any]) -> RequestState:
        """Bring the warehouses' stock in line with what the request has moved so far."""
        state = walk_request(rid, req["case"], req["e"])
        net: dict[str, list[int]] = {}
        for _t, w, p, on_hand, reserved in state.moves:
            k = f"{w}\x1f{p}"
            cur = net.setdefault(k, [0, 0])
            cur[0] += on_hand
            cur[1] += reserved
        old = req["net"]
        for k in set(old) | set(net):
            before, after = old.get(k, [0, 0]), net.get(k, [0, 0])
            if before == after:
                continue
            pair = tuple(k.split("\x1f", 1))
            self.load_stock({pair})  # type: ignore[arg-type]
            shelf = self.stock[pair]  # type: ignore[index]
            shelf[0] += after[0] - before[0]
            shelf[1] += after[1] - before[1]
            self.stock_dirty.add(pair)  # type: ignore[arg-type]
        req["net"] = {k: v for k, v in net.items() if v != [0, 0]}
        req["status"], req["part"] = state.status, state.part_no
        self.requests_dirty.add(rid)
        if self.held is not None:
            self.hold_index(rid, (req["case"], req["part"]) if req["status"] == "held" else None)
        return state

    def flush(self) -> None:
        tx = self.tx
        if self.warehouses_dirty:
            tx.insert_many(WAREHOUSES, ("warehouse_id", "level", "region"),
                           [(w, *self.warehouses[w]) for w in sorted(self.warehouses_dirty)],
                           conflict=("warehouse_id",), update=("level", "region"))
        if self.stock_dirty:
            tx.insert_many(STOCK, ("warehouse_id", "part_no", "on_hand", "reserved"),
                           [(w, p, *self.stock[(w, p)]) for w, p in sorted(self.stock_dirty)],
                           conflict=("warehouse_id", "part_no"), update=("on_hand", "reserved"))
        if self.requests_dirty:
            tx.insert_many(REQUESTS, ("request_id", "case_id", "part_no", "status", "record"),
                           [(r, self.requests[r]["case"], self.requests[r].get("part"), self.requests[r].get("status"),
                             orjson.dumps(self.requests[r]).decode()) for r in sorted(self.requests_dirty)],
                           conflict=("request_id",), update=("part_no", "status", "record"))
        if self.cases_dirty:
            cols = ("case_id", "registered", "region", "region_time", "outlet_id", "outlet_time", "closed")
            tx.insert_many(CASES, cols,
                           [tuple(self.cases[c][k] for k in cols) for c in sorted(self.cases_dirty)],  # type: ignore[index]
                           conflict=("case_id",), update=cols[1:])

