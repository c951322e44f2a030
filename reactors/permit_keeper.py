"""The permit keeper: every technician's points ledger, kept by the engine.

It follows the log and reads each case for violations of the permit rules (a broken
promise, a non-standard service, an upheld complaint, a job not fixed on the first visit,
the same product back within 30 days), praise for delight and improvements, and retraining.
Each change is a fact in the technician's stream naming the case and the rule:
`permit.points_changed`, `permit.status_changed` when the balance crosses a threshold, and
`permit.reviewed` at each yearly review (`due`). The dispatcher reads the status changes.

A rule is applied once per technician, case and rule, whichever facts show it and in
whatever order they arrive.
"""

from __future__ import annotations

from typing import Any, Sequence

import orjson

from closedloop.domain.facts import Fact, parse_ms
from closedloop.domain.network import UNPOSITIONED, fact_key
from closedloop.domain.permit import (
    PERMIT_CASE_FACTS,
    Permit,
    PermitRules,
    Violation,
    permit_lite,
    repeat_violation,
    violations,
)
from closedloop.reactors.process import engine_fact
from closedloop.log.storage import Tx

from .reacting import advance_watermark, digest, horizon, replaying, rows_by, source_of, watermark_table

NAME = "permit-keeper"
SCHEMA = "permit-keeper-1"
PERMITS, CASES, SERIALS, WATERMARK = "pmt_permits", "pmt_cases", "pmt_serials", "pmt_watermark"
OWN = frozenset({"permit.points_changed", "permit.status_changed", "permit.reviewed"})
TECHNICIAN_FACTS = frozenset({"technician.registered", "technician.praised", "technician.retrained"}) | OWN
ANSWERED = PERMIT_CASE_FACTS | TECHNICIAN_FACTS


class PermitKeeper:
    name = NAME
    # its cost beside the views' (loop view 6): consumers sharing the followers split by it
    weight = 1.8

    def __init__(self, rules: PermitRules, behind: int = 3_600_000) -> None:
        self.rules = rules
        self.behind = behind  # see `closedloop.reactors.reacting.horizon`
        self.source = source_of(NAME)

    def fingerprint(self) -> str:
        return f"{SCHEMA}/{self.rules.fingerprint()}"

    def tables(self) -> list[str]:
        return [PERMITS, CASES, SERIALS, WATERMARK]

    def create_statements(self) -> list[str]:
        return [
            f"CREATE TABLE {PERMITS} (technician_id TEXT PRIMARY KEY, outlet_id TEXT, balance INTEGER NOT NULL, "
            "status TEXT NOT NULL, period_start {bigint} NOT NULL, review_due {bigint} NOT NULL, applied TEXT NOT NULL)",
            f"CREATE INDEX {PERMITS}_review ON {PERMITS} (review_due)",
            f"CREATE TABLE {CASES} (case_id TEXT PRIMARY KEY, record TEXT NOT NULL)",
            f"CREATE TABLE {SERIALS} (serial TEXT PRIMARY KEY, case_id TEXT NOT NULL, completed {{bigint}} NOT NULL, "
            "technician_id TEXT NOT NULL)",
            watermark_table(WATERMARK),
        ]

    def react(self, tx: Tx, facts: Sequence[Fact]) -> list[Fact]:
        relevant = [f for f in facts if f.type in ANSWERED]
        if not relevant:
            return []
        advance_watermark(tx, WATERMARK, relevant, self.source)
        batch = _Batch(self, tx, decide=not replaying(tx, NAME, facts))
        batch.prefetch(relevant)
        for f in relevant:
            if f.type in PERMIT_CASE_FACTS:
                batch.case_fact(f)
            else:
                batch.technician_fact(f)
        batch.flush()
        return batch.decisions

    def due(self, tx: Tx, now: int) -> list[Fact]:
        now = horizon(tx, WATERMARK, now, self.behind)
        rows = tx.all(f"SELECT technician_id FROM {PERMITS} WHERE review_due <= {tx.q} ORDER BY review_due LIMIT 5000",
                      [now])
        if not rows:
            return []
        batch = _Batch(self, tx, decide=True)
        batch.load_permits({r["technician_id"] for r in rows})
        for r in rows:
            batch.review(r["technician_id"], now)
        batch.flush()
        return batch.decisions


# the case facts at which `violations` can flag a rule
FLAGGING = frozenset({"appointment.set", "service.completed", "complaint.resolved"})


# the case facts whose own data names the technician a rule is applied to
_SCORED = frozenset({"service.completed", "complaint.resolved"})


def _sorts_last(entries: list[list[Any]]) -> bool:
    """Does the last entry come last in the walk's order (world time, then position)?"""
    last = entries[-1]
    t, pos = last[0], last[1]
    for e in entries[:-1]:
        if e[0] > t or (e[0] == t and e[1] > pos):
            return False
    return True


class _Tech:
    __slots__ = ("permit", "outlet_id", "review_due", "applied")

    def __init__(self, permit: Permit, outlet_id: str | None, review_due: int, applied: set[str]) -> None:
        self.permit = permit
        self.outlet_id = outlet_id
        self.review_due = review_due
        self.applied = applied


class _Batch:
    def __init__(self, keeper: PermitKeeper, tx: Tx, decide: bool) -> None:
        self.k = keeper
        self.rules = keeper.rules
        self.tx = tx
        self.decide = decide
        self.decisions: list[Fact] = []
        self.techs: dict[str, _Tech | None] = {}
        self.techs_dirty: set[str] = set()
        self.cases: dict[str, dict[str, Any]] = {}
        self.cases_dirty: set[str] = set()
        self.serials: dict[str, tuple[str, int, str] | None] = {}
        self.serials_dirty: set[str] = set()

    # --- loading -----------------------------------------------------------------------------
    def prefetch(self, facts: Sequence[Fact]) -> None:
        technicians: set[str] = set()
        case_ids: set[str] = set()
        serials: set[str] = set()
        for f in facts:
            kind = f.type
            if kind in PERMIT_CASE_FACTS:
                case_ids.add(f.subject)
                # the permits a case fact most likely changes; any other is read when it does
                if kind in _SCORED:
                    for field in ("technician_id", "accountable"):
                        if isinstance(f.data.get(field), str):
                            technicians.add(f.data[field])
                elif kind == "case.registered":
                    product = f.data.get("product")
                    if isinstance(product, dict) and product.get("serial"):
                        serials.add(product["serial"])
            else:
                technicians.add(f.subject)
        self.load_cases(case_ids)
        for f in facts:
            if f.type == "service.completed":
                serials.update(e[3]["serial"] for e in self.cases[f.subject]["e"] if e[3].get("serial"))
        for row in rows_by(self.tx, f"SELECT serial, case_id, completed, technician_id FROM {SERIALS} "
                           "WHERE {among}", "serial", serials):
            self.serials[row["serial"]] = (row["case_id"], row["completed"], row["technician_id"])
            technicians.add(row["technician_id"])
        for s in serials:
            self.serials.setdefault(s, None)
        self.load_permits(technicians)

    def load_cases(self, case_ids: set[str]) -> None:
        need = {c for c in case_ids if c not in self.cases}
        for row in rows_by(self.tx, f"SELECT case_id, record FROM {CASES} WHERE {{among}}", "case_id", need):
            self.cases[row["case_id"]] = orjson.loads(row["record"])
        for c in need:
            self.cases.setdefault(c, {"e": [], "q": [], "d": []})

    def load_permits(self, technicians: set[str]) -> None:
        need = {t for t in technicians if t not in self.techs}
        for row in rows_by(self.tx, f"SELECT * FROM {PERMITS} WHERE {{among}}", "technician_id", need):
            permit = Permit(row["technician_id"], row["balance"], row["status"], row["period_start"])
            self.techs[row["technician_id"]] = _Tech(permit, row["outlet_id"], row["review_due"],
                                                     set(orjson.loads(row["applied"])))
        for t in need:
            self.techs.setdefault(t, None)

    def tech(self, technician_id: str, at: int) -> _Tech:
        """The technician's permit; one the network never registered is issued at first sight."""
        self.load_permits({technician_id})
        found = self.techs.get(technician_id)
        if found is None:
            found = self.techs[technician_id] = _Tech(Permit.issue(technician_id, self.rules, at), None,
                                                      at + self.rules.review_every, set())
            self.techs_dirty.add(technician_id)
        return found

    # --- folding -----------------------------------------------------------------------------
    def technician_fact(self, f: Fact) -> None:
        kind, who = f.type, f.subject
        if kind == "technician.registered":
            tech = self.tech(who, f.time_ms)
            tech.outlet_id = f.data["outlet_id"]
            self.techs_dirty.add(who)
        elif kind in OWN:
            self.own(f)
        elif not self.decide:
            return
        elif kind == "technician.praised":
            rule = f.data["kind"]
            self.change(who, f.data["case_id"], rule, self.rules.additions.get(rule, 0), f.time_ms,
                        "customer delight" if rule == "delight" else "a small improvement")
        elif kind == "technician.retrained":
            tech = self.tech(who, f.time_ms)
            at = parse_ms(f.data["exam_passed_at"])
            entries = tech.permit.retrain(self.rules, max(at, f.time_ms), f.data.get("center_id"))
            if entries:
                tech.review_due = tech.permit.period_start + self.rules.review_every
                self.record(who, tech, f.time_ms, entries, f"permit-retrained:{who}:{digest(fact_key(f))}")

    def own(self, f: Fact) -> None:
        """One of the keeper's own changes, read back from the log: applied once."""
        tech = self.tech(f.subject, f.time_ms)
        key = fact_key(f)
        if key in tech.applied:
            return
        tech.applied.add(key)
        self.techs_dirty.add(f.subject)
        d = f.data
        tech.permit.balance = d["balance"]
        tech.permit.status = d["status"]
        if f.type == "permit.reviewed":
            tech.permit.period_start = parse_ms(d["period_end"])
            tech.review_due = tech.permit.period_start + self.rules.review_every
        elif f.type == "permit.status_changed" and d["rule"] == "retrained":
            tech.permit.period_start = f.time_ms
            tech.review_due = f.time_ms + self.rules.review_every

    def case_fact(self, f: Fact) -> None:
        rec = self.cases[f.subject]
        key = fact_key(f)
        entries = rec["e"]
        for e in entries:
            if e[4] == key:
                return
        entries.append([f.time_ms, f.position if f.position is not None else UNPOSITIONED, f.type, permit_lite(f), key])
        if not self.decide:
            rec["q"].append(key)  # folded in a rebuild: decided before, under the rules of then
        self.cases_dirty.add(f.subject)
        serial = None
        if f.type == "service.completed" or f.type == "case.registered":  # the only facts that ask
            serial = next((e[3]["serial"] for e in reversed(entries) if e[3].get("serial")), None)
        if f.type == "service.completed" and serial:
            known = self.serials.get(serial) if serial in self.serials else self.serial(serial)
            if known is None or known[1] <= f.time_ms:
                self.serials[serial] = (f.subject, f.time_ms, f.data["technician_id"])
                self.serials_dirty.add(serial)
        if not self.decide:
            return
        found: list[Violation] = []
        if f.type == "case.registered" and serial:
            earlier = self.serials.get(serial) if serial in self.serials else self.serial(serial)
            if earlier is not None and earlier[0] != f.subject:
                v = repeat_violation(serial, earlier[0], earlier[1], earlier[2], f.time_ms, self.rules)
                if v is not None:
                    found.append(Violation(v.rule, v.technician_id, v.time, v.reason, v.units, key))
        decided_list = rec.setdefault("d", [])
        if f.type in FLAGGING or not _sorts_last(rec["e"]):
            # Otherwise the walk would find only what the walk before this fact found (it
            # looks backwards in time, and this fact is the newest and flags nothing itself),
            # and all of that was decided then.
            quiet = set(rec["q"])
            found += [v for v in violations(rec["e"], self.rules) if v.cause not in quiet]
        if not found:
            return
        decided = set(decided_list)
        for v in found:
            if f"{v.technician_id}|{v.rule}" in decided:
                continue  # decided already, as the case remembers: no need to look at the permit
            if self.change(v.technician_id, f.subject, v.rule, -self.rules.deductions.get(v.rule, 0) * v.units,
                           v.time, v.reason):
                rec["d"].append(f"{v.technician_id}|{v.rule}")

    def serial(self, serial: str) -> tuple[str, int, str] | None:
        row = self.tx.one(f"SELECT case_id, completed, technician_id FROM {SERIALS} WHERE serial = {self.tx.q}", [serial])
        self.serials[serial] = (row["case_id"], row["completed"], row["technician_id"]) if row else None
        return self.serials[serial]

    # --- deciding ----------------------------------------------------------------------------
    def change(self, technician_id: str, case_id: str, rule: str, points: int, at: int, reason: str) -> bool:
        """Apply a rule to a technician's permit for a case, once; True if it is applied (now or before)."""
        if points == 0:
            return False  # a rule the configuration does not score
        key = f"permit:{technician_id}:{case_id}:{rule}"
        tech = self.tech(technician_id, at)
        if f"{self.k.source}|{key}" in tech.applied:
            return True
        entries = tech.permit.change(self.rules, rule, points, reason, case_id)
        self.record(technician_id, tech, at, entries, key)
        return True

    def record(self, technician_id: str, tech: _Tech, at: int, entries: list[tuple[str, dict[str, Any]]],
               key: str) -> None:
        for n, (type_, data) in enumerate(entries):
            fact = engine_fact(type_, technician_id, at, data, NAME, key if n == 0 else f"{key}:{type_}")
            tech.applied.add(fact_key(fact))
            self.decisions.append(fact)
        self.techs_dirty.add(technician_id)

    def review(self, technician_id: str, now: int) -> None:
        tech = self.techs.get(technician_id)
        if tech is None:
            return
        while tech.review_due <= now:
            at = tech.review_due
            self.record(technician_id, tech, at, tech.permit.review(self.rules, at), f"permit-review:{technician_id}:{at}")
            tech.review_due = at + self.rules.review_every

    def flush(self) -> None:
        if self.cases_dirty:
            self.tx.insert_many(CASES, ("case_id", "record"),
                                [(c, orjson.dumps(self.cases[c]).decode()) for c in sorted(self.cases_dirty)],
                                conflict=("case_id",), update=("record",))
        if self.serials_dirty:
            self.tx.insert_many(SERIALS, ("serial", "case_id", "completed", "technician_id"),
                                [(s, *self.serials[s]) for s in sorted(self.serials_dirty)],  # type: ignore[misc]
                                conflict=("serial",), update=("case_id", "completed", "technician_id"))
        rows = []
        for t in sorted(self.techs_dirty):
            tech = self.techs[t]
            if tech is None:
                continue
            p = tech.permit
            rows.append((t, tech.outlet_id, p.balance, p.status, p.period_start, tech.review_due,
                         orjson.dumps(sorted(tech.applied)).decode()))
        columns = ("technician_id", "outlet_id", "balance", "status", "period_start", "review_due", "applied")
        self.tx.insert_many(PERMITS, columns, rows, conflict=("technician_id",), update=columns[1:])
