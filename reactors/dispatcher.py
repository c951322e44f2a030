"""Electronic dispatch: the engine picks the outlet, alarms when a job is not taken, escalates.

The dispatcher follows the log and keeps, in its own tables, what it needs to decide: the
outlets (tier, capacity, regions and product lines covered), their technicians and permit
status, each outlet's load per day, each case's dispatch history, the products completed by
serial (for repeat repairs) and the next deadline of every case waiting for acceptance.

Its decisions, each a fact in the case's stream with the reason in its data:
- `case.dispatched` (by `system`) when a registered case has no outlet: at registration, at
  once after a decline, after a follow-up call finds a phone-guided product still broken,
  or when an amendment supplies the region it lacked; with the ranked reasons and the
  candidates considered;
- `dispatch.held` when no outlet can take it now (none covers it, all are full today),
  tried again when the next day's capacity opens;
- `dispatch.alarmed` level 1 when a dispatch is not accepted by its deadline (the outlet is
  paged), level 2 at the second deadline, with the escalation: `case.dispatched` to the
  next outlet, or `case.transferred` to the service center.

Only automatic dispatch (`DispatchPolicy.auto_dispatch`) picks outlets; alarms are raised
and escalated to the service center whoever dispatched.
"""

from __future__ import annotations

from typing import Any, Sequence

import orjson

from closedloop.domain.facts import Fact, iso
from closedloop.domain.network import (
    DAY,
    DISPATCH_FACTS,
    UNPOSITIONED,
    Candidate,
    DispatchPolicy,
    DispatchState,
    DispatchWalk,
    Outlet,
    Staff,
    choose,
    dispatch_entry,
    fact_key,
    higher_tier_reason,
    needs_dispatch,
    next_deadline,
    walk_dispatch,
)
from closedloop.reactors.process import engine_fact
from closedloop.log.storage import Tx

from .reacting import (
    advance_watermark,
    digest,
    horizon,
    replaying,
    rows_by,
    rows_by_pairs,
    source_of,
    watermark_table,
)

NAME = "dispatcher"
SCHEMA = "dispatcher-2"
OUTLETS, COVERAGE, STAFF, LOAD = "dsp_outlets", "dsp_coverage", "dsp_staff", "dsp_load"
CASES, SERIALS, DEADLINES, WATERMARK = "dsp_cases", "dsp_serials", "dsp_deadlines", "dsp_watermark"
REFERENCE = frozenset({"outlet.registered", "technician.registered", "permit.status_changed"})
ANSWERED = DISPATCH_FACTS | REFERENCE
# the facts whose step in the walk can start, accept or let go of an assignment
ASSIGNING = frozenset({"case.dispatched", "dispatch.accepted", "dispatch.declined", "case.transferred",
                       "guidance.given", "follow_up.made"})


class Dispatcher:
    name = NAME
    # its cost beside the views' (loop view 6): consumers sharing the followers split by it
    weight = 2.5

    def __init__(self, policy: DispatchPolicy) -> None:
        self.policy = policy
        self.source = source_of(NAME)

    def fingerprint(self) -> str:
        return f"{SCHEMA}/{self.policy.fingerprint()}"

    def tables(self) -> list[str]:
        return [OUTLETS, COVERAGE, STAFF, LOAD, CASES, SERIALS, DEADLINES, WATERMARK]

    def create_statements(self) -> list[str]:
        return [
            # with how many of its technicians are on each permit status: what its capacity today depends on
            f"CREATE TABLE {OUTLETS} (outlet_id TEXT PRIMARY KEY, tier TEXT NOT NULL, daily_capacity INTEGER NOT NULL, "
            "n_normal INTEGER NOT NULL DEFAULT 0, n_warning INTEGER NOT NULL DEFAULT 0, "
            "n_eliminated INTEGER NOT NULL DEFAULT 0)",
            f"CREATE TABLE {COVERAGE} (region TEXT NOT NULL, product_line TEXT NOT NULL, outlet_id TEXT NOT NULL, "
            "PRIMARY KEY (region, product_line, outlet_id))",
            f"CREATE INDEX {COVERAGE}_outlet ON {COVERAGE} (outlet_id)",
            f"CREATE TABLE {STAFF} (technician_id TEXT PRIMARY KEY, outlet_id TEXT, status TEXT NOT NULL, "
            "jobs INTEGER NOT NULL)",
            f"CREATE INDEX {STAFF}_outlet ON {STAFF} (outlet_id)",
            f"CREATE TABLE {LOAD} (outlet_id TEXT NOT NULL, day {{bigint}} NOT NULL, n INTEGER NOT NULL, "
            "PRIMARY KEY (outlet_id, day))",
            f"CREATE TABLE {CASES} (case_id TEXT PRIMARY KEY, record TEXT NOT NULL)",
            f"CREATE TABLE {SERIALS} (serial TEXT PRIMARY KEY, case_id TEXT NOT NULL, completed {{bigint}} NOT NULL)",
            f"CREATE TABLE {DEADLINES} (case_id TEXT PRIMARY KEY, due {{bigint}} NOT NULL, kind TEXT NOT NULL)",
            f"CREATE INDEX {DEADLINES}_due ON {DEADLINES} (due)",
            watermark_table(WATERMARK),
        ]

    def react(self, tx: Tx, facts: Sequence[Fact]) -> list[Fact]:
        relevant = [f for f in facts if f.type in ANSWERED]
        if not relevant:
            return []
        advance_watermark(tx, WATERMARK, relevant, self.source)
        batch = _Batch(self, tx, decide=not replaying(tx, NAME, facts))
        i = 0
        while i < len(relevant):
            reference = relevant[i].type in REFERENCE
            j = i
            while j < len(relevant) and (relevant[j].type in REFERENCE) == reference:
                j += 1
            if reference:
                batch.reference(relevant[i:j])
            else:
                batch.cases(relevant[i:j])
            i = j
        batch.flush()
        return batch.decisions

    # deadlines handled per tick: a tick is one transaction, and appends wait for it; the API's
    # follow thread ticks every second, so a backlog is worked off in short steps
    per_tick = 2000

    def due(self, tx: Tx, now: int) -> list[Fact]:
        now = horizon(tx, WATERMARK, now, self.policy.behind)
        decisions: list[Fact] = []
        seen: set[tuple[str, int, str]] = set()
        for _ in range(10):  # a chain (re-dispatched, again not accepted) settles within a few rounds
            if len(seen) >= self.per_tick:
                break
            rows = tx.all(f"SELECT case_id, due, kind FROM {DEADLINES} WHERE due <= {tx.q} ORDER BY due, case_id "
                          f"LIMIT {tx.q}",
                          [now, min(500, self.per_tick - len(seen))])
            rows = [r for r in rows if (r["case_id"], r["due"], r["kind"]) not in seen]
            if not rows:
                break
            seen.update((r["case_id"], r["due"], r["kind"]) for r in rows)
            batch = _Batch(self, tx, decide=True)
            batch.deadlines_due(rows)
            batch.flush()
            decisions += batch.decisions
        return decisions


class _Batch:
    """The part of the dispatcher's state one batch touches, loaded in bulk, written back once."""

    def __init__(self, dispatcher: Dispatcher, tx: Tx, decide: bool) -> None:
        self.d = dispatcher
        self.policy = dispatcher.policy
        self.tx = tx
        self.decide = decide
        self.decisions: list[Fact] = []
        self.records: dict[str, dict[str, Any]] = {}
        self.dirty: set[str] = set()
        self.outlets: dict[str, Outlet] = {}
        self.counts: dict[str, tuple[tuple[str, int], ...]] = {}
        self.coverage: dict[tuple[str, str], list[str]] = {}
        self.staff: dict[str, Staff] = {}
        self.staff_of: dict[str, list[str]] = {}
        self.staff_dirty: set[str] = set()
        self.loads: dict[tuple[str, int], int] = {}
        self.loads_dirty: set[tuple[str, int]] = set()
        self.serials: dict[str, tuple[str, int] | None] = {}
        self.serials_dirty: set[str] = set()
        self.deadlines: dict[str, tuple[int, str] | None] = {}
        # each case's walk as of its last fold in this batch, and how many entries it had
        self.walks: dict[str, tuple[DispatchWalk, int]] = {}
        self.stepped = False  # whether the last `walk` stepped on

    # --- reference data --------------------------------------------------------------------
    def reference(self, facts: Sequence[Fact]) -> None:
        # written straight away, so that what follows in this batch sees it
        self.flush()
        tx = self.tx
        outlets = {f.subject: f for f in facts if f.type == "outlet.registered"}
        if outlets:
            tx.insert_many(OUTLETS, ("outlet_id", "tier", "daily_capacity"),
                           [(o, f.data["tier"], f.data["daily_capacity"]) for o, f in sorted(outlets.items())],
                           conflict=("outlet_id",), update=("tier", "daily_capacity"))
            for chunk in _chunks(sorted(outlets)):
                among, params = tx.in_list("outlet_id", chunk)
                tx.execute(f"DELETE FROM {COVERAGE} WHERE {among}", params)
            tx.insert_many(COVERAGE, ("region", "product_line", "outlet_id"),
                           [(r, line, o) for o, f in sorted(outlets.items())
                            for r in f.data["regions"] for line in f.data["product_lines"]],
                           conflict=())
        technicians = {f.subject: f.data["outlet_id"] for f in facts if f.type == "technician.registered"}
        statuses = {f.subject: f.data["status"] for f in facts if f.type == "permit.status_changed"}
        counted = set(outlets) | set(technicians.values())
        if technicians or statuses:
            counted |= {r["outlet_id"] for r in rows_by(
                tx, f"SELECT outlet_id FROM {STAFF} WHERE {{among}}", "technician_id", set(technicians) | set(statuses))
                if r["outlet_id"]}
        if technicians:
            tx.insert_many(STAFF, ("technician_id", "outlet_id", "status", "jobs"),
                           [(t, o, "normal", 0) for t, o in sorted(technicians.items())],
                           conflict=("technician_id",), update=("outlet_id",))
        if statuses:
            tx.insert_many(STAFF, ("technician_id", "outlet_id", "status", "jobs"),
                           [(t, None, s, 0) for t, s in sorted(statuses.items())],
                           conflict=("technician_id",), update=("status",))
        for chunk in _chunks(sorted(counted)):
            among, params = tx.in_list("outlet_id", chunk)
            tx.execute(
                f"UPDATE {OUTLETS} SET " + ", ".join(
                    f"n_{s} = (SELECT COUNT(*) FROM {STAFF} t WHERE t.outlet_id = {OUTLETS}.outlet_id AND t.status = '{s}')"
                    for s in ("normal", "warning", "eliminated"))
                + f" WHERE {among}", params)
        self.outlets.clear()
        self.counts.clear()
        self.coverage.clear()
        self.staff.clear()
        self.staff_of.clear()

    # --- loading ------------------------------------------------------------------------------
    def load_records(self, case_ids: set[str]) -> None:
        need = {c for c in case_ids if c not in self.records}
        for row in rows_by(self.tx, f"SELECT case_id, record FROM {CASES} WHERE {{among}}", "case_id", need):
            self.records[row["case_id"]] = orjson.loads(row["record"])
        for c in need:
            self.records.setdefault(c, {"e": [], "holds": [], "repeat": None, "retry": None})

    def prefetch(self, pairs: set[tuple[str, str]], days: set[int]) -> None:
        """Candidates of these (region, product line) pairs, their staff and loads on these days."""
        pairs = {p for p in pairs if p[0] and p[1]}
        if len(pairs) == 1 and len(days) == 1:
            (pair,), (day,) = pairs, days
            if pair in self.coverage and all(
                    o in self.outlets and (o, day) in self.loads for o in self.coverage[pair]):
                return  # what one dispatch needs is at hand already
        need = {p for p in pairs if p not in self.coverage}
        if need:
            for p in need:
                self.coverage[p] = []
            for row in rows_by_pairs(self.tx, f"WITH {{pairs}} SELECT c.region, c.product_line, c.outlet_id FROM k "
                                     f"JOIN {COVERAGE} c ON c.region = k.a AND c.product_line = k.b", need):
                self.coverage[(row["region"], row["product_line"])].append(row["outlet_id"])
        outlets = {o for p in pairs for o in self.coverage[p]}
        self.load_outlets(outlets)
        self.load_loads(outlets, days)

    def load_outlets(self, outlet_ids: set[str]) -> None:
        need = {o for o in outlet_ids if o not in self.outlets}
        if not need:
            return
        for row in rows_by(self.tx, f"SELECT * FROM {OUTLETS} WHERE {{among}}", "outlet_id", need):
            self.outlets[row["outlet_id"]] = Outlet(row["outlet_id"], row["tier"], row["daily_capacity"])
            self.counts[row["outlet_id"]] = (("normal", row["n_normal"]), ("warning", row["n_warning"]),
                                             ("eliminated", row["n_eliminated"]))

    def staff_for(self, outlet_id: str) -> list[Staff]:
        """The outlet's technicians, for naming the one who gets a job."""
        if outlet_id not in self.staff_of:
            self.staff_of[outlet_id] = []
            for row in self.tx.all(f"SELECT technician_id, status, jobs FROM {STAFF} WHERE outlet_id = {self.tx.q} "
                                   "ORDER BY technician_id", [outlet_id]):
                self.staff.setdefault(row["technician_id"], Staff(row["technician_id"], row["status"], row["jobs"]))
                self.staff_of[outlet_id].append(row["technician_id"])
        return [self.staff[t] for t in self.staff_of[outlet_id]]

    def load_technicians(self, technician_ids: set[str]) -> None:
        need = {t for t in technician_ids if t not in self.staff}
        for row in rows_by(self.tx, f"SELECT technician_id, status, jobs FROM {STAFF} WHERE {{among}}",
                           "technician_id", need):
            self.staff[row["technician_id"]] = Staff(row["technician_id"], row["status"], row["jobs"])

    def load_loads(self, outlet_ids: set[str], days: set[int]) -> None:
        if len(outlet_ids) == 1 and len(days) == 1 and (next(iter(outlet_ids)), next(iter(days))) in self.loads:
            return
        need = {(o, d) for o in outlet_ids for d in days if (o, d) not in self.loads}
        if not need:
            return
        for (o, d) in need:
            self.loads[(o, d)] = 0
        on_days, day_params = self.tx.in_list("day", sorted({d for _, d in need}))
        for chunk in _chunks(sorted({o for o, _ in need})):
            among, params = self.tx.in_list("outlet_id", chunk)
            for row in self.tx.all(f"SELECT outlet_id, day, n FROM {LOAD} WHERE {on_days} AND {among}",
                                   day_params + params):
                self.loads[(row["outlet_id"], row["day"])] = row["n"]

    def technician(self, technician_id: str) -> Staff | None:
        if technician_id not in self.staff:
            row = self.tx.one(f"SELECT technician_id, outlet_id, status, jobs FROM {STAFF} WHERE technician_id = {self.tx.q}",
                              [technician_id])
            if row is None:
                return None
            self.staff[technician_id] = Staff(row["technician_id"], row["status"], row["jobs"])
        return self.staff[technician_id]

    def serial(self, serial: str) -> tuple[str, int] | None:
        if serial not in self.serials:
            row = self.tx.one(f"SELECT case_id, completed FROM {SERIALS} WHERE serial = {self.tx.q}", [serial])
            self.serials[serial] = (row["case_id"], row["completed"]) if row else None
        return self.serials[serial]

    # --- case facts ----------------------------------------------------------------------------
    def cases(self, facts: Sequence[Fact]) -> None:
        self.load_records({f.subject for f in facts})
        pairs: set[tuple[str, str]] = set()
        days: set[int] = set()
        serials: set[str] = set()
        # the outlets and technicians whose load these facts may change, looked up together
        named: set[tuple[str, int]] = set()
        technicians: set[str] = set()
        for rec in self.records.values():
            for _key, outlet, day, technician in rec.get("holds") or []:
                named.add((outlet, day))
                if technician:
                    technicians.add(technician)
        for f in facts:
            rec = self.records[f.subject]
            if f.type == "service.completed" and rec.get("serial"):
                serials.add(rec["serial"])
            for field in ("outlet_id", "to_outlet_id"):
                if f.data.get(field):
                    named.add((f.data[field], self.policy.day_of(f.time_ms)))
            if f.data.get("technician_id"):
                technicians.add(f.data["technician_id"])
            region, line = rec.get("region"), rec.get("line")
            if f.type == "case.registered":
                customer, product = f.data.get("customer") or {}, f.data.get("product") or {}
                region, line = customer.get("region") or region, product.get("product_line") or line
                if product.get("serial"):
                    serials.add(product["serial"])
            if region and line:
                pairs.add((region, line))
            days.add(self.policy.day_of(f.time_ms))
        if serials:
            for row in rows_by(self.tx, f"SELECT serial, case_id, completed FROM {SERIALS} WHERE {{among}}",
                               "serial", serials):
                self.serials[row["serial"]] = (row["case_id"], row["completed"])
            for s in serials:
                self.serials.setdefault(s, None)
        for day in {d for _, d in named}:
            self.load_loads({o for o, d in named if d == day}, {day})
        self.load_technicians(technicians)
        if self.decide and self.policy.auto_dispatch:
            # only choosing an outlet reads the candidates; alarms and holds do not
            self.prefetch(pairs, days)
        for f in facts:
            self.fold(f)

    def fold(self, f: Fact) -> None:
        case_id = f.subject
        rec = self.records[case_id]
        key = fact_key(f)
        known = next((e for e in rec["e"] if e[4] == key), None)
        if known is not None:
            # one of our own decisions, folded when it was taken, now with its place in the log
            if known[1] == UNPOSITIONED and f.position is not None:
                known[1] = f.position
                self.dirty.add(case_id)
                self.walks.pop(case_id, None)  # its place in the walk may have moved
            return
        entry = dispatch_entry(f)
        rec["e"].append(entry)
        self.dirty.add(case_id)
        state = self.walk(case_id, rec["e"])
        # stepped on by a fact that moves no assignment: the slots held are those settled last
        same_holds = self.stepped and f.type not in ASSIGNING
        if f.type == "case.registered" and state.serial:
            earlier = self.serial(state.serial)
            if earlier and earlier[0] != case_id and 0 <= f.time_ms - earlier[1] <= self.policy.repeat_within:
                rec["repeat"] = [earlier[0], earlier[1]]
        if f.type == "service.completed" and state.serial:
            earlier = self.serial(state.serial)
            if earlier is None or earlier[1] <= f.time_ms:
                self.serials[state.serial] = (case_id, f.time_ms)
                self.serials_dirty.add(state.serial)
        if self.decide and f.source != self.d.source and needs_dispatch(state) and self.policy.auto_dispatch:
            at = max(state.since or f.time_ms, f.time_ms)
            self.dispatch(rec, state, at, key, retry=False)
            self.walks.pop(case_id, None)
            state = walk_dispatch(case_id, rec["e"], self.policy)
            same_holds = False
        self.settle(case_id, rec, state, same_holds)

    def walk(self, case_id: str, entries: list[list[Any]]) -> DispatchState:
        """`walk_dispatch` of the case's entries, the last one just added: stepped on from
        the walk of this batch's fold before, when the new entry comes last in walk order."""
        cached = self.walks.get(case_id)
        self.stepped = cached is not None and cached[1] == len(entries) - 1 and cached[0].follows(entries[-1])
        if self.stepped:
            walk = cached[0]  # type: ignore[index]
            walk.step(entries[-1])
        else:
            walk = DispatchWalk(case_id, self.policy)
            for e in sorted(entries, key=lambda e: (e[0], e[1])):
                walk.step(e)
        self.walks[case_id] = (walk, len(entries))
        return walk.state()

    # --- deciding ----------------------------------------------------------------------------
    def take(self, rec: dict[str, Any], fact: Fact) -> None:
        """A decision: into the log, and into the case's record at once."""
        self.decisions.append(fact)
        rec["e"].append(dispatch_entry(fact, UNPOSITIONED))
        self.dirty.add(fact.subject)
        self.walks.pop(fact.subject, None)

    def candidates(self, region: str, line: str, day: int) -> list[Candidate]:
        self.prefetch({(region, line)}, {day})
        out = []
        for o in self.coverage.get((region, line), []):
            outlet = self.outlets.get(o)
            if outlet is None:
                continue
            self.load_loads({o}, {day})
            out.append(Candidate(outlet, self.loads[(o, day)], counts=self.counts[o]))
        return out

    def dispatch(self, rec: dict[str, Any], state: DispatchState, at: int, cause: str, retry: bool,
                 avoid: Sequence[str] = (), escalation: str | None = None) -> bool:
        """Dispatch the case at `at` if an outlet can take it; else hold it. True if dispatched."""
        case_id = state.case_id
        if not state.region or not state.product_line:
            self.hold(rec, state, at, cause, "the registration has no region or product line: dispatched once an "
                      "amendment gives them", None, emit=not retry)
            return False
        day = self.policy.day_of(at)
        choice, why = choose(self.candidates(state.region, state.product_line, day), state.region,
                             state.product_line, self.policy, higher_tier_reason(state, rec.get("repeat")),
                             avoid=[*state.tried, *avoid], staff_of=self.staff_for)
        if choice is None:
            if escalation is not None:
                return False
            self.hold(rec, state, at, cause, f"{why}; tried again when the next day's capacity opens", day + DAY,
                      emit=not retry)
            return False
        reasons = ([escalation] if escalation else []) + choice.reasons
        data: dict[str, Any] = {"outlet_id": choice.outlet_id, "by": "system", "accept_by": iso(at + self.policy.accept_within)}
        if choice.technician_id:
            data["technician_id"] = choice.technician_id
        data["reasons"] = reasons
        data["candidates"] = choice.ranking
        self.take(rec, engine_fact("case.dispatched", case_id, at, data, NAME, f"dispatch:{case_id}:{digest(cause)}"))
        rec["retry"] = None
        return True

    def hold(self, rec: dict[str, Any], state: DispatchState, at: int, cause: str, reason: str,
             retry_at: int | None, emit: bool) -> None:
        rec["retry"] = retry_at
        if not emit or (state.held is not None and state.held[0] == reason):
            return
        data: dict[str, Any] = {"reason": reason, "region": state.region, "product_line": state.product_line}
        if retry_at is not None:
            data["retry_at"] = iso(retry_at)
        self.take(rec, engine_fact("dispatch.held", state.case_id, at, data, NAME,
                                   f"held:{state.case_id}:{digest(cause)}"))

    def deadlines_due(self, rows: Sequence[Any]) -> None:
        self.load_records({r["case_id"] for r in rows})
        states = {c: walk_dispatch(c, self.records[c]["e"], self.policy) for c in {r["case_id"] for r in rows}}
        self.prefetch({(s.region, s.product_line) for s in states.values() if s.region and s.product_line},
                      {self.policy.day_of(r["due"]) for r in rows})
        for row in rows:
            case_id = row["case_id"]
            rec = self.records[case_id]
            state = walk_dispatch(case_id, rec["e"], self.policy)
            expected = self.expected_deadline(rec, state)
            if expected != (row["due"], row["kind"]):
                # settled meanwhile: only the deadline row was stale
                rec["deadline"] = list(expected) if expected else None
                self.deadlines[case_id] = expected
                self.dirty.add(case_id)
                continue
            at, kind = expected
            if kind == "alarm":
                self.alarm(rec, state, at)
            elif kind == "escalate":
                self.escalate(rec, state, at)
            elif kind == "retry":
                if self.policy.auto_dispatch:
                    self.dispatch(rec, state, at, f"retry:{at}", retry=True)
                else:
                    rec["retry"] = None  # automatic dispatch was turned off: people dispatch it now
            self.dirty.add(case_id)
            self.settle(case_id, rec, walk_dispatch(case_id, rec["e"], self.policy))

    def alarm(self, rec: dict[str, Any], state: DispatchState, at: int) -> None:
        a = state.current
        assert a is not None
        data = {"outlet_id": a.outlet_id, "dispatched_at": iso(a.time), "accept_by": iso(a.accept_by), "level": 1,
                "reason": f"not accepted by {iso(a.accept_by)}: {a.outlet_id} is paged until someone takes it",
                "action": "page"}
        self.take(rec, engine_fact("dispatch.alarmed", state.case_id, at, data, NAME,
                                   f"alarm:{state.case_id}:{digest(a.key)}:1"))

    def escalate(self, rec: dict[str, Any], state: DispatchState, at: int) -> None:
        a = state.current
        assert a is not None
        case_id = state.case_id
        waited = f"{a.outlet_id} did not accept by {iso(a.accept_by)} nor after the alarm"
        base = {"outlet_id": a.outlet_id, "dispatched_at": iso(a.time), "accept_by": iso(a.accept_by), "level": 2}
        alarm_key = f"alarm:{case_id}:{digest(a.key)}:2"
        if self.policy.auto_dispatch and state.escalations < self.policy.max_redispatches:
            # the alarm first, so the walk knows this escalation when the next outlet is chosen
            alarm = engine_fact("dispatch.alarmed", case_id, at,
                                {**base, "reason": f"{waited}: re-dispatched to the next outlet", "action": "redispatch"},
                                NAME, alarm_key)
            self.take(rec, alarm)
            state2 = walk_dispatch(case_id, rec["e"], self.policy)
            if self.dispatch(rec, state2, at, f"escalate:{a.key}", retry=False, avoid=[a.outlet_id],
                             escalation=f"escalated: {waited}"):
                return
            # no other outlet can take it: the alarm stands corrected, the center takes it
            self.decisions.remove(alarm)
            rec["e"].pop()
        reason = (f"{waited}: the service center takes it" if self.policy.auto_dispatch
                  else f"{waited}: handed to the service center")
        if self.policy.auto_dispatch and state.escalations >= self.policy.max_redispatches:
            reason += f" after {state.escalations} re-dispatch(es)"
        self.take(rec, engine_fact("dispatch.alarmed", case_id, at, {**base, "reason": reason, "action": "to_center"},
                                   NAME, alarm_key))
        self.take(rec, engine_fact("case.transferred", case_id, at,
                                   {"from_outlet_id": a.outlet_id, "to": "center", "reason": reason}, NAME,
                                   f"to-center:{case_id}:{digest(a.key)}"))

    # --- keeping the state -----------------------------------------------------------------
    def expected_deadline(self, rec: dict[str, Any], state: DispatchState) -> tuple[int, str] | None:
        found = next_deadline(state, self.policy)
        if found is None and state.status == "unassigned" and rec.get("retry") is not None:
            found = (rec["retry"], "retry")
        return found

    def settle(self, case_id: str, rec: dict[str, Any], state: DispatchState, same_holds: bool = False) -> None:
        """The load each assignment takes, and the case's next deadline, after a change."""
        rec["region"], rec["line"], rec["serial"] = state.region, state.product_line, state.serial
        new = [] if same_holds else [h for h in state.holds(self.policy)]
        old = rec.get("holds") or []
        if not same_holds and new != old:
            gone = [h for h in old if h not in new]
            came = [h for h in new if h not in old]
            for sign, holds in ((-1, gone), (1, came)):
                for _key, outlet, day, technician in holds:
                    self.load_loads({outlet}, {day})
                    self.loads[(outlet, day)] += sign
                    self.loads_dirty.add((outlet, day))
                    staff = self.technician(technician) if technician else None
                    if staff is not None:
                        staff.jobs += sign
                        self.staff_dirty.add(staff.technician_id)
            rec["holds"] = new
            self.dirty.add(case_id)
        deadline = self.expected_deadline(rec, state)
        known = tuple(rec["deadline"]) if rec.get("deadline") else None
        if deadline != known:
            rec["deadline"] = list(deadline) if deadline else None
            self.deadlines[case_id] = deadline
            self.dirty.add(case_id)

    def flush(self) -> None:
        tx = self.tx
        if self.dirty:
            tx.insert_many(CASES, ("case_id", "record"),
                           [(c, orjson.dumps(self.records[c]).decode()) for c in sorted(self.dirty)],
                           conflict=("case_id",), update=("record",))
            self.dirty.clear()
        if self.loads_dirty:
            tx.insert_many(LOAD, ("outlet_id", "day", "n"), [(o, d, self.loads[(o, d)]) for o, d in sorted(self.loads_dirty)],
                           conflict=("outlet_id", "day"), update=("n",))
            self.loads_dirty.clear()
        if self.staff_dirty:
            tx.executemany(f"UPDATE {STAFF} SET jobs = {tx.q} WHERE technician_id = {tx.q}",
                           [(self.staff[t].jobs, t) for t in sorted(self.staff_dirty)])
            self.staff_dirty.clear()
        if self.serials_dirty:
            tx.insert_many(SERIALS, ("serial", "case_id", "completed"),
                           [(s, *self.serials[s]) for s in sorted(self.serials_dirty)],  # type: ignore[misc]
                           conflict=("serial",), update=("case_id", "completed"))
            self.serials_dirty.clear()
        if self.deadlines:
            cases = sorted(self.deadlines)
            for chunk in _chunks(cases):
                among, params = tx.in_list("case_id", chunk)
                tx.execute(f"DELETE FROM {DEADLINES} WHERE {among}", params)
            tx.insert_many(DEADLINES, ("case_id", "due", "kind"),
                           [(c, *self.deadlines[c]) for c in cases if self.deadlines[c] is not None])  # type: ignore[misc]
            self.deadlines.clear()


def _chunks(keys: list[str], size: int = 400):
    for i in range(0, len(keys), size):
        yield keys[i : i + size]
