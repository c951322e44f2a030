"""Penalties: a complaint costs the people who answer for it, and is paid to its customer.

The sources' rolling-door factory: late, a poor repair or a bad attitude, and the customer
who reports it gets 10 yuan, 5 from the responsible employee and 5 from the factory
director. Here the rule is configuration (`CLOSEDLOOP_PENALTIES`: complaint category ->
employee's share + manager's share), and it lands on the named owner: when a complaint is
resolved, its `accountable` party pays the employee's share and the manager of that
party's outlet pays the manager's share. The engine records it as `penalty.charged`, one
per complaint (its id comes from the complaint), at the moment the complaint was resolved.

Changing the rule charges new complaints by the new rule; what was charged stays charged.
"""

from __future__ import annotations

from typing import Any, Sequence

from closedloop.domain.facts import Fact
from closedloop.domain.quality import QualityPolicy
from closedloop.log.eventlog import EventLog
from closedloop.reactors.process import engine_fact
from closedloop.reactors.state import Documents
from closedloop.log.storage import Tx


PENDING = "pending"  # complaints resolved whose people are not all known yet
WAIT_FOR_PARTIES = 24 * 3_600_000


class PenaltyReactor:
    name = "penalties"
    # its cost beside the views' (loop view 6): consumers sharing the followers split by it
    weight = 0.6
    version = "3"

    def __init__(self, quality: QualityPolicy, log: EventLog) -> None:
        self.quality = quality
        self.log = log
        # the network (who works where, who manages it) and the complaints; a case's customer
        # and outlet are read from its stream when a penalty is decided
        self.state = Documents("penalty_state")

    def fingerprint(self) -> str:
        return f"{self.version}/{self.quality.penalty_fingerprint()}"

    def tables(self) -> list[str]:
        return [self.state.table]

    def create_statements(self) -> list[str]:
        return [self.state.create_statement()]

    def due(self, tx: Tx, now: int) -> list[Fact]:
        # Whoever is still unknown a day after the resolution will not become known: decide
        # with what is known.
        docs = self.state.session(tx)
        pending = docs.peek(PENDING) or {}
        decisions: list[Fact] = []
        for complaint_id in sorted(pending):
            complaint = docs.get(f"complaint:{complaint_id}")
            if complaint.get("resolved", now) + WAIT_FOR_PARTIES <= now:
                decisions += self._decide(docs, complaint_id, complaint, force=True)
        docs.flush()
        return decisions

    def react(self, tx: Tx, facts: Sequence[Fact]) -> list[Fact]:
        facts = [f for f in facts if f.type in _ANSWERED]
        docs = self.state.session(tx)
        docs.load([PENDING, *(k for f in facts for k in _keys(f))])
        decisions: list[Fact] = []
        introduced = False  # someone a waiting complaint may need became known
        for f in facts:
            kind, d = f.type, f.data
            if kind == "technician.registered":
                docs.get(f"technician:{f.subject}").update(outlet_id=d["outlet_id"], name=d["name"])
                introduced = True
            elif kind == "outlet.registered":
                outlet = docs.get(f"outlet:{f.subject}")
                outlet["name"] = d["name"]
                if d.get("manager"):
                    outlet["manager"] = d["manager"]
                introduced = True
            elif kind == "case.registered":
                introduced = introduced or f.subject in (docs.peek(PENDING) or {}).values()
            elif kind == "complaint.filed":
                complaint = docs.get(f"complaint:{d['complaint_id']}")
                if "category" not in complaint:
                    complaint.update(case_id=f.subject, category=d["category"],
                                     outlet_id=d.get("outlet_id"), technician_id=d.get("technician_id"))
                decisions += self._decide(docs, d["complaint_id"], complaint)
            elif kind == "complaint.resolved":
                complaint = docs.get(f"complaint:{d['complaint_id']}")
                if "accountable" not in complaint:
                    complaint.update(resolved=f.time_ms, accountable=d["accountable"], resolved_case=f.subject)
                decisions += self._decide(docs, d["complaint_id"], complaint)
        pending = docs.peek(PENDING)
        if introduced and pending:
            for complaint_id in sorted(pending):
                decisions += self._decide(docs, complaint_id, docs.get(f"complaint:{complaint_id}"))
        docs.flush()
        return decisions

    def _decide(self, docs: Any, complaint_id: str, complaint: dict[str, Any], force: bool = False) -> list[Fact]:
        # Both halves are needed, in whichever order they arrive: what it was about (filed)
        # and who answers for it (resolved).
        if complaint.get("decided") or "category" not in complaint or "accountable" not in complaint:
            return []
        rule = self.quality.penalties.get(complaint["category"])
        if rule is None or rule == (0, 0):
            complaint["decided"] = True
            return []
        case_id = complaint["case_id"]
        case = self._case(docs.tx, case_id)
        accountable = complaint["accountable"]
        technician = docs.peek(f"technician:{accountable}")
        named_outlet = docs.peek(f"outlet:{accountable}")
        if technician is not None:
            outlet_id = technician["outlet_id"]
        elif named_outlet is not None:
            outlet_id = accountable
        else:
            outlet_id = complaint.get("outlet_id") or case.get("outlet_id")
        # A penalty names who pays and who is paid: it waits (a day at most) until the case,
        # the accountable party and their outlet are known, so that facts arriving in any
        # order charge the same people the same amounts.
        known = case.get("registered") and outlet_id and docs.peek(f"outlet:{outlet_id}") is not None
        pending = docs.get(PENDING)
        if not known and not force:
            pending[complaint_id] = case_id
            return []
        pending.pop(complaint_id, None)
        complaint["decided"] = True
        employee_cents, manager_cents = rule
        shares = [{"party": accountable, "role": "employee", "amount_cents": employee_cents}]
        if technician is not None:
            shares[0]["name"] = technician["name"]
        if manager_cents:
            outlet = docs.peek(f"outlet:{outlet_id}") if outlet_id else None
            manager = {"party": f"manager:{outlet_id or accountable}", "role": "manager", "amount_cents": manager_cents}
            if outlet and outlet.get("manager"):
                manager["name"] = outlet["manager"]
            shares.append(manager)
        payee = {"case_id": case_id}
        if case.get("customer_id"):
            payee["customer_id"] = case["customer_id"]
        data: dict[str, Any] = {
            "case_id": case_id, "complaint_id": complaint_id, "category": complaint["category"],
            "accountable": accountable, "shares": shares, "total_cents": sum(s["amount_cents"] for s in shares),
            "currency": self.quality.currency, "payee": payee,
        }
        if outlet_id:
            data["outlet_id"] = outlet_id
        return [engine_fact("penalty.charged", f"PEN-{complaint_id}", complaint["resolved"], data, self.name,
                            f"penalty:{complaint_id}")]


    def _case(self, tx: Tx, case_id: str) -> dict[str, Any]:
        """Whether the case is registered, its customer, and the outlet that accepted it."""
        out: dict[str, Any] = {}
        story = sorted(self.log.stream_in(tx, f"case:{case_id}"), key=lambda f: (f.time_ms, f.position or 0))
        for f in story:
            if f.type in ("case.registered", "case.amended"):
                if f.type == "case.registered":
                    out["registered"] = True
                customer = f.data.get("customer")
                if isinstance(customer, dict) and customer.get("id"):
                    out["customer_id"] = customer["id"]
            elif f.type == "dispatch.accepted":
                out["outlet_id"] = f.data["outlet_id"]
        return out


# the facts `react` looks at; the rest of a batch is skipped before any work
_ANSWERED = frozenset({"technician.registered", "outlet.registered", "case.registered", "complaint.filed",
                       "complaint.resolved"})


def _keys(f: Fact) -> list[str]:
    kind, d = f.type, f.data
    if kind == "technician.registered":
        return [f"technician:{f.subject}"]
    if kind == "outlet.registered":
        return [f"outlet:{f.subject}"]
    if kind == "complaint.filed":
        return [f"complaint:{d['complaint_id']}", f"outlet:{d.get('outlet_id')}"]
    if kind == "complaint.resolved":
        a = d["accountable"]
        return [f"complaint:{d['complaint_id']}", f"technician:{a}", f"outlet:{a}"]
    return []
