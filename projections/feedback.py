"""The departments' feedback items: what design, manufacturing, sales and service must answer.

One item per case (or call) and department: the engine's routing and a producer's routing
of the same case to the same department are one item, listing both feedback ids. Each item
lives as `closedloop.domain.feedback.FeedbackItem` says: awaiting a named owner, acting on
a corrective action due by a date, reopened when a closure could not verify it,
acknowledged (no date given), verified. Its phases are kept as intervals, so "where did it
stand at T, and was it overdue" is a range query for any `as_of`.

Rows:
- `feedback_ids`: every feedback id's facts, and the item it belongs to once routed
  (an acknowledgement may arrive before its routing: it waits here).
- `feedback_items`: one per item, with what the department needs to act (product, batch,
  plant, fault code) and where it stands after everything known.
- `feedback_phases`: each item's phases over time, with the due date and owner of those
  that owe something.
- `feedback_cases`: each case's completion and cause (the 72-hour wait for an owner of the
  item a cause requires starts at the completion, as the loop's fed-back step does).
"""

from __future__ import annotations

from typing import Any, Sequence

import orjson

from closedloop.domain.facts import Fact, iso, parse_ms
from closedloop.domain.feedback import OWING, FeedbackItem
from closedloop.domain.policy import LoopPolicy
from closedloop.log.storage import Params, Storage, Tx

SCHEMA_VERSION = "feedback-2"

IDS = "feedback_ids"
ITEMS = "feedback_items"
PHASES = "feedback_phases"
CASES = "feedback_cases"

_ITEM_COLUMNS = (
    "item_key", "department", "case_id", "call_id", "feedback_ids", "routed", "routed_by", "origin", "model",
    "product_line", "production_batch", "plant", "fault_code", "region", "summary", "phase", "owner",
    "corrective_action", "action_due", "acknowledged", "closed", "reopen_count", "anomalies", "entries",
)


class FeedbackView:
    name = "feedback"

    def __init__(self, policy: LoopPolicy) -> None:
        self.policy = policy

    def fingerprint(self) -> str:
        return f"{SCHEMA_VERSION}/{self.policy.fingerprint()}"

    def tables(self) -> list[str]:
        return [IDS, ITEMS, PHASES, CASES]

    def create_statements(self) -> list[str]:
        return [
            f"CREATE TABLE {IDS} (feedback_id TEXT PRIMARY KEY, item_key TEXT, entries TEXT NOT NULL)",
            f"CREATE TABLE {ITEMS} (item_key TEXT PRIMARY KEY, department TEXT NOT NULL, case_id TEXT, call_id TEXT, "
            "feedback_ids TEXT NOT NULL, routed {bigint} NOT NULL, routed_by TEXT, origin TEXT, model TEXT, "
            "product_line TEXT, production_batch TEXT, plant TEXT, fault_code TEXT, region TEXT, summary TEXT, "
            "phase TEXT NOT NULL, owner TEXT, corrective_action TEXT, action_due {bigint}, acknowledged {bigint}, "
            "closed {bigint}, reopen_count INTEGER NOT NULL, anomalies TEXT NOT NULL, entries TEXT NOT NULL)",
            f"CREATE INDEX {ITEMS}_case ON {ITEMS} (case_id)",
            f"CREATE INDEX {ITEMS}_dept ON {ITEMS} (department, routed)",
            f"CREATE TABLE {PHASES} (item_key TEXT NOT NULL, department TEXT NOT NULL, phase TEXT NOT NULL, "
            "opened {bigint} NOT NULL, closed {bigint}, due {bigint}, owner TEXT)",
            f"CREATE INDEX {PHASES}_item ON {PHASES} (item_key)",
            f"CREATE INDEX {PHASES}_open ON {PHASES} (opened, closed)",
            f"CREATE TABLE {CASES} (case_id TEXT PRIMARY KEY, completed {{bigint}} NOT NULL, cause TEXT NOT NULL)",
        ]

    def ensure_statements(self) -> list[str]:
        """Indexes its folding needs that came after its tables: made where missing, at every
        start, with no rebuild (they change no row). Each batch finds an item's feedback ids by
        item key; without this index that was a scan of every feedback id ever routed."""
        return [f"CREATE INDEX IF NOT EXISTS {IDS}_item ON {IDS} (item_key)"]

    def apply(self, tx: Tx, facts: Sequence[Fact]) -> None:
        fb_ids = sorted({f.subject for f in facts if f.type.startswith("feedback.")})
        ids: dict[str, tuple[str | None, list[list[Any]]]] = {}
        for among, params in _chunks(tx, "feedback_id", fb_ids):
            for row in tx.all(f"SELECT * FROM {IDS} WHERE {among}", params):
                ids[row["feedback_id"]] = (row["item_key"], orjson.loads(row["entries"]))
        dirty_items: set[str] = set()
        dirty_ids: set[str] = set()
        completions: dict[str, tuple[int, str]] = {}
        for f in facts:
            if f.type.startswith("feedback."):
                key, entries = ids.get(f.subject, (None, []))
                entries = entries + [[f.time_ms, f.position or 0, f.type, _lite(f)]]
                if f.type == "feedback.routed" and key is None:
                    d = f.data
                    origin = f"case:{d['case_id']}" if d.get("case_id") else f"call:{d['call_id']}"
                    key = f"{origin}:{d['department']}"
                ids[f.subject] = (key, entries)
                dirty_ids.add(f.subject)
                if key:
                    dirty_items.add(key)
            elif f.type == "service.completed":
                known = completions.get(f.subject)
                if known is None or f.time_ms < known[0]:
                    completions[f.subject] = (f.time_ms, f.data["cause"])
        if completions:
            self._completions(tx, completions, dirty_items)
        tx.insert_many(IDS, ("feedback_id", "item_key", "entries"),
                       [(fid, ids[fid][0], orjson.dumps(ids[fid][1]).decode()) for fid in sorted(dirty_ids)],
                       conflict=("feedback_id",), update=("item_key", "entries"))
        if dirty_items:
            self._rebuild_items(tx, sorted(dirty_items))

    def _completions(self, tx: Tx, completions: dict[str, tuple[int, str]], dirty_items: set[str]) -> None:
        cases = sorted(completions)
        for among, params in _chunks(tx, "case_id", cases):
            for row in tx.all(f"SELECT * FROM {CASES} WHERE {among}", params):
                if row["completed"] <= completions[row["case_id"]][0]:
                    completions[row["case_id"]] = (row["completed"], row["cause"])
            for row in tx.all(f"SELECT item_key FROM {ITEMS} WHERE {among}", params):
                dirty_items.add(row["item_key"])
        tx.insert_many(CASES, ("case_id", "completed", "cause"),
                       [(c, completions[c][0], completions[c][1]) for c in cases],
                       conflict=("case_id",), update=("completed", "cause"))

    def _rebuild_items(self, tx: Tx, keys: list[str]) -> None:
        members: dict[str, list[tuple[str, list[list[Any]]]]] = {k: [] for k in keys}
        for among, params in _chunks(tx, "item_key", keys):
            for row in tx.all(f"SELECT * FROM {IDS} WHERE {among}", params):
                members[row["item_key"]].append((row["feedback_id"], orjson.loads(row["entries"])))
        case_ids = sorted({k.split(":")[1] for k in keys if k.startswith("case:")})
        completed: dict[str, tuple[int, str]] = {}
        for among, params in _chunks(tx, "case_id", case_ids):
            for row in tx.all(f"SELECT * FROM {CASES} WHERE {among}", params):
                completed[row["case_id"]] = (row["completed"], row["cause"])
        items, phases = [], []
        for key in keys:
            built = self._item(key, members[key], completed)
            if built is None:
                continue
            row, spans = built
            items.append(tuple(row[c] for c in _ITEM_COLUMNS))
            phases.extend(spans)
        for among, params in _chunks(tx, "item_key", keys):
            tx.execute(f"DELETE FROM {PHASES} WHERE {among}", params)
        tx.insert_many(ITEMS, _ITEM_COLUMNS, items, conflict=("item_key",), update=_ITEM_COLUMNS[1:])
        tx.insert_many(PHASES, ("item_key", "department", "phase", "opened", "closed", "due", "owner"), phases)

    def _item(self, key: str, members: list[tuple[str, list[list[Any]]]],
              completed: dict[str, tuple[int, str]]) -> tuple[dict[str, Any], list[tuple[Any, ...]]] | None:
        entries = sorted((e + [fid] for fid, es in members for e in es), key=lambda e: (e[0], e[1]))
        routings = [e for e in entries if e[2] == "feedback.routed"]
        if not routings:
            return None
        origin_kind, origin_id, dept = key.split(":", 2)
        first = routings[0]
        item = FeedbackItem(dept, first[0])
        for e in routings:
            item.route(e[4])
        anchor = first[0]
        if origin_kind == "case" and origin_id in completed:
            done_at, cause = completed[origin_id]
            if self.policy.feedback_departments.get(cause) == dept:
                anchor = done_at  # the wait for an owner began when the case was completed
        anomalies: list[dict[str, Any]] = []
        spans: list[tuple[Any, ...]] = []
        current: list[Any] | None = None  # [opened, phase, due, owner]
        within = self.policy.feed_back_within
        seen: set[str] = set()  # feedback ids routed so far, in world time, as the loop's walk has them
        for t, _pos, kind, d, fid in entries:
            if kind == "feedback.routed":
                seen.add(fid)
            elif fid not in seen:
                anomalies.append({"time": t, "anomaly": f"feedback {fid} {kind.split('.', 1)[1]} before it was routed"})
                continue
            if kind != "feedback.routed":
                problem = item.fold(t, kind, d)
                if problem:
                    anomalies.append({"time": t, "anomaly": f"feedback {fid}: {problem}"})
            owes = item.obligation(anchor, within)
            state = [item.phase, owes[0] if owes else None, owes[1] if owes else item.owner]
            if current is not None and current[1:] == state:
                continue
            if current is not None:
                spans.append((key, dept, current[1], current[0], t, current[2], current[3]))
            current = [t, *state]
        if current is not None:
            spans.append((key, dept, current[1], current[0], None, current[2], current[3]))
        spans = [s for s in spans if s[4] is None or s[4] > s[3]]
        r = first[3]
        product = r.get("product") if isinstance(r.get("product"), dict) else {}
        row = {
            "item_key": key, "department": dept,
            "case_id": origin_id if origin_kind == "case" else None,
            "call_id": r.get("call_id") or (origin_id if origin_kind == "call" else None),
            # each id with when it was routed, so that an answer as of T lists only those routed by T
            "feedback_ids": orjson.dumps([[e[4], e[0]] for e in routings]).decode(), "routed": item.routed,
            "routed_by": r.get("source"), "origin": r.get("origin"),
            "model": product.get("model"), "product_line": product.get("product_line"),
            "production_batch": product.get("production_batch"), "plant": product.get("plant"),
            "fault_code": r.get("fault_code"), "region": r.get("region"), "summary": r.get("summary"),
            "phase": item.phase, "owner": item.owner, "corrective_action": item.action,
            "action_due": item.action_due, "acknowledged": item.acknowledged, "closed": item.closed,
            "reopen_count": item.reopen_count, "anomalies": orjson.dumps(anomalies).decode(),
            "entries": orjson.dumps(entries).decode(),
        }
        return row, spans


def _lite(f: Fact) -> dict[str, Any]:
    d = f.data
    if f.type == "feedback.routed":
        out = {k: d[k] for k in ("department", "case_id", "call_id", "summary", "fault_code", "region", "product")
               if d.get(k) is not None}
        out["source"] = f.source
        origin = d.get("cause") and f"cause:{d['cause']}" or d.get("intent") and f"intent:{d['intent']}"
        if origin:
            out["origin"] = origin
        return out
    if f.type == "feedback.acknowledged":
        return {"owner": d["owner"], "corrective_action": d["corrective_action"],
                "due": parse_ms(d["due"]) if d.get("due") else None}
    return {"verified": d["verified"], **({"note": d["note"]} if d.get("note") else {})}


def _chunks(tx: Tx, column: str, keys: list[str], size: int = 400):
    """`column` among `keys`, `size` at a time: (condition, parameters)."""
    for i in range(0, len(keys), size):
        yield tx.in_list(column, keys[i : i + size])


# --- questions ----------------------------------------------------------------------------------
STATUSES = ("awaiting_owner", "acting", "reopened", "acknowledged", "verified")
FILTERS = ("open", "overdue", "closed", *STATUSES)


def _standing_sql(db: Params, status: str | None) -> tuple[str, list[Any]]:
    """SQL over phases `p` (covering T) for a status filter; params take T where needed."""
    if status is None:
        return "", []
    if status == "open":
        among, params = db.in_list("p.phase", sorted(OWING))
        return f" AND {among}", params
    if status == "overdue":
        return f" AND p.due IS NOT NULL AND p.due <= {db.q}", ["__at__"]
    if status == "closed":
        return " AND p.phase IN ('acknowledged', 'verified')", []
    return f" AND p.phase = {db.q}", [status]


def items(storage: Storage, at: int, department: str | None = None, status: str | None = None,
          case_id: str | None = None, limit: int = 100, offset: int = 0) -> dict[str, Any]:
    """Items routed by T, where each stood at T; filtered by department and standing."""
    if status is not None and status not in FILTERS:
        raise ValueError(f"status must be one of {', '.join(FILTERS)}")
    where, params = _where(storage, at, department, status, case_id)
    with storage.reading() as tx:
        total = tx.one(f"SELECT COUNT(*) AS n FROM {ITEMS} i JOIN {PHASES} p ON p.item_key = i.item_key "
                       f"WHERE {where}", params)["n"]
        rows = tx.all(f"SELECT i.*, p.phase AS at_phase, p.due AS at_due, p.owner AS at_owner FROM {ITEMS} i "
                      f"JOIN {PHASES} p ON p.item_key = i.item_key WHERE {where} "
                      f"ORDER BY i.routed, i.item_key LIMIT {tx.q} OFFSET {tx.q}", params + [limit, offset])
    return {"as_of": iso(at), "department": department, "status": status, "total": int(total), "limit": limit,
            "offset": offset, "items": [_describe(r, at) for r in rows]}


def _where(db: Params, at: int, department: str | None, status: str | None,
           case_id: str | None) -> tuple[str, list[Any]]:
    q = db.q
    where = f"i.routed <= {q} AND p.opened <= {q} AND (p.closed IS NULL OR p.closed > {q})"
    params: list[Any] = [at, at, at]
    if department:
        where += f" AND i.department = {q}"
        params.append(department)
    if case_id:
        where += f" AND i.case_id = {q}"
        params.append(case_id)
    extra, extra_params = _standing_sql(db, status)
    return where + extra, params + [at if p == "__at__" else p for p in extra_params]


def _describe(r: Any, at: int) -> dict[str, Any]:
    overdue = r["at_due"] is not None and r["at_due"] <= at
    return {
        "item": r["item_key"],
        "department": r["department"],
        "feedback_ids": list(dict.fromkeys(fid for fid, t in orjson.loads(r["feedback_ids"]) if t <= at)),
        "case_id": r["case_id"],
        "call_id": r["call_id"],
        "routed": iso(r["routed"]),
        "routed_by": r["routed_by"],
        "origin": r["origin"],
        "summary": r["summary"],
        "product": {"model": r["model"], "product_line": r["product_line"],
                    "production_batch": r["production_batch"], "plant": r["plant"]},
        "fault_code": r["fault_code"],
        "status": r["at_phase"],
        "owner": r["at_owner"],
        "due": iso(r["at_due"]),
        "overdue": overdue,
        "overdue_hours": round((at - r["at_due"]) / 3_600_000, 2) if overdue else None,
    }


def summary(storage: Storage, at: int) -> dict[str, Any]:
    """How many items each department has in each standing at T, and how many are overdue."""
    with storage.reading() as tx:
        rows = tx.all(
            f"SELECT i.department AS department, p.phase AS phase, COUNT(*) AS n, "
            f"SUM(CASE WHEN p.due IS NOT NULL AND p.due <= {tx.q} THEN 1 ELSE 0 END) AS overdue "
            f"FROM {ITEMS} i JOIN {PHASES} p ON p.item_key = i.item_key "
            f"WHERE i.routed <= {tx.q} AND p.opened <= {tx.q} AND (p.closed IS NULL OR p.closed > {tx.q}) "
            "GROUP BY i.department, p.phase",
            [at, at, at, at],
        )
    from closedloop.domain.policy import DEPARTMENTS

    out = {d: {"items": 0, "overdue": 0, **{s: 0 for s in STATUSES}} for d in DEPARTMENTS}
    for r in rows:
        dept = out[r["department"]]
        dept[r["phase"]] += int(r["n"])
        dept["items"] += int(r["n"])
        dept["overdue"] += int(r["overdue"] or 0)
    total = {k: sum(d[k] for d in out.values()) for k in ("items", "overdue", *STATUSES)}
    return {"as_of": iso(at), "departments": out, "total": total}


def item(storage: Storage, ident: str, at: int) -> dict[str, Any] | None:
    """One item (by item key or any of its feedback ids), its history up to T and its standing."""
    with storage.reading() as tx:
        q = tx.q
        row = tx.one(f"SELECT item_key FROM {IDS} WHERE feedback_id = {q}", [ident])
        key = row["item_key"] if row and row["item_key"] else ident
        found = tx.one(f"SELECT i.*, p.phase AS at_phase, p.due AS at_due, p.owner AS at_owner FROM {ITEMS} i "
                       f"JOIN {PHASES} p ON p.item_key = i.item_key WHERE i.item_key = {q} AND i.routed <= {q} "
                       f"AND p.opened <= {q} AND (p.closed IS NULL OR p.closed > {q})", [key, at, at, at])
        if found is None:
            return None
        phases = tx.all(f"SELECT * FROM {PHASES} WHERE item_key = {q} AND opened <= {q} ORDER BY opened", [key, at])
    out = _describe(found, at)
    out["history"] = [
        {"time": iso(t), "feedback_id": fid, "type": kind, "data": _public(d)}
        for t, _pos, kind, d, fid in orjson.loads(found["entries"]) if t <= at
    ]
    out["phases"] = [{"status": p["phase"], "from": iso(p["opened"]),
                      "until": iso(p["closed"]) if p["closed"] is not None and p["closed"] <= at else None,
                      "due": iso(p["due"]), "owner": p["owner"]} for p in phases]
    out["anomalies"] = [{"time": iso(a["time"]), "anomaly": a["anomaly"]}
                        for a in orjson.loads(found["anomalies"]) if a["time"] <= at]
    return out


def _public(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (iso(v) if k == "due" and isinstance(v, int) else v) for k, v in d.items()}
