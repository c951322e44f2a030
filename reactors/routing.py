"""Feedback routing: every result the departments must hear about reaches them.

A completed case whose cause the rules route (design -> design, manufacturing ->
manufacturing with the model, production batch and plant, installation or transport ->
service) and a call whose intent they route (suggestion -> design, purchase interest ->
sales) get a `feedback.routed` decided by the engine. The rules are the loop policy's
(`CLOSEDLOOP_ROUTE_CAUSES`, `CLOSEDLOOP_ROUTE_INTENTS`).

The decision's id comes from the case (or call) and the department, so it is recorded
once however often it is taken; and when a producer (the feedback desk) has already
routed that case to that department, the engine does not route it again. A producer's
routing that comes after the engine's is the same item in the views: one case, one
department, one item.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Sequence

from closedloop.domain.facts import Fact
from closedloop.domain.policy import LoopPolicy
from closedloop.log.eventlog import EventLog, decode
from closedloop.reactors.process import engine_fact
from closedloop.reactors.state import Documents
from closedloop.reactors.reacting import rows_by
from closedloop.log.storage import EVENTS_TABLE, Tx

_PRODUCT_FIELDS = ("model", "product_line", "production_batch", "plant")


class FeedbackRouter:
    name = "feedback-routing"
    # its cost beside the views' (loop view 6): consumers sharing the followers split by it
    weight = 0.6
    version = "2"

    def __init__(self, policy: LoopPolicy, log: EventLog) -> None:
        self.policy = policy
        self.log = log
        # only what routing needs to remember: who routed which case (or call) where, and
        # completions that wait for their registration; the rest is read from the case's stream
        self.state = Documents("routing_state")
        self._stories: dict[str, list[Fact]] = {}  # this batch's, see `_read_stories`

    def fingerprint(self) -> str:
        rules = json.dumps([self.policy.feedback_departments, self.policy.intent_departments], sort_keys=True)
        return f"{self.version}/{hashlib.sha256(rules.encode()).hexdigest()[:16]}"

    def tables(self) -> list[str]:
        return [self.state.table]

    def create_statements(self) -> list[str]:
        return [self.state.create_statement()]

    def due(self, tx: Tx, now: int) -> list[Fact]:
        return []  # routing follows facts, not the clock

    def react(self, tx: Tx, facts: Sequence[Fact]) -> list[Fact]:
        facts = [f for f in facts if f.type in _ANSWERED]
        docs = self.state.session(tx)
        docs.load(k for f in facts for k in self._keys(f))
        self._stories = self._read_stories(tx, docs, facts)
        decisions: list[Fact] = []
        causes = self.policy.feedback_departments
        for f in facts:
            kind, d = f.type, f.data
            if kind == "service.completed" and d["cause"] in causes:
                decisions += self._route_case(tx, docs, f.subject)
            elif kind == "case.registered":
                waiting = docs.peek(f"case:{f.subject}")
                if waiting and waiting.get("waiting"):
                    decisions += self._route_case(tx, docs, f.subject)
            elif kind == "feedback.routed":
                # keyed as the views key items: by its case when it names one, else by its call
                key = f"case:{d['case_id']}" if d.get("case_id") else f"call:{d['call_id']}"
                routed = docs.get(key).setdefault("routed", [])
                if d["department"] not in routed:
                    routed.append(d["department"])
            elif kind == "call.received" and d["intent"] in self.policy.intent_departments:
                decisions += self._route_call(f, docs.get(f"call:{f.subject}"))
        docs.flush()
        return decisions

    def _keys(self, f: Fact) -> list[str]:
        if f.type == "service.completed":
            return [f"case:{f.subject}"] if f.data["cause"] in self.policy.feedback_departments else []
        if f.type == "case.registered":
            return [f"case:{f.subject}"]
        if f.type == "feedback.routed":
            d = f.data
            return [f"case:{d['case_id']}" if d.get("case_id") else f"call:{d['call_id']}"]
        if f.type == "call.received" and f.data["intent"] in self.policy.intent_departments:
            return [f"call:{f.subject}"]
        return []

    def _read_stories(self, tx: Tx, docs: Any, facts: Sequence[Fact]) -> dict[str, list[Fact]]:
        """The streams of the cases this batch may route, read in one go: nothing this reactor
        does before it answers writes to the log, so each is what `stream_in` would read."""
        causes = self.policy.feedback_departments
        completed = {f.subject for f in facts if f.type == "service.completed" and f.data["cause"] in causes}
        wanted = completed | {f.subject for f in facts if f.type == "case.registered" and (
            f.subject in completed or (docs.peek(f"case:{f.subject}") or {}).get("waiting"))}
        stories: dict[str, list[Fact]] = {f"case:{c}": [] for c in wanted}
        col = "rowid" if self.log.storage.dialect == "sqlite" else "notification_id"
        for r in rows_by(tx, f"SELECT {col} AS position, originator_id, topic, state FROM {EVENTS_TABLE} "
                         "WHERE {among} ORDER BY originator_id, originator_version", "originator_id", stories):
            stories[r["originator_id"]].append(decode(r["position"], r["topic"], bytes(r["state"])))
        return stories

    def _route_case(self, tx: Tx, docs: Any, case_id: str) -> list[Fact]:
        # The case as its stream tells it, in world time: its first completion counts (as in
        # the loop), and it is routed once its registration (what the product is) is known.
        stream = self._stories.get(f"case:{case_id}")
        if stream is None:
            stream = self.log.stream_in(tx, f"case:{case_id}")
        story = sorted(stream, key=lambda f: (f.time_ms, f.position or 0))
        done = next((f for f in story if f.type == "service.completed"), None)
        if done is None:
            return []
        dept = self.policy.feedback_departments.get(done.data["cause"])
        doc = docs.peek(f"case:{case_id}") or {}
        if dept is None or dept in doc.get("routed", ()):
            return []
        doc = docs.get(f"case:{case_id}")
        if not any(f.type == "case.registered" for f in story):
            doc["waiting"] = True
            return []
        doc.pop("waiting", None)
        doc.setdefault("routed", []).append(dept)
        case: dict[str, Any] = {}
        for f in story:
            if f.type in ("case.registered", "case.amended"):
                _details(case, f.data)
        cause, code = done.data["cause"], done.data["fault_code"]
        product = {k: v for k, v in (case.get("product") or {}).items() if v}
        line = str(product.get("product_line", "product")).replace("_", " ")
        what = f"{line.capitalize()} {product.get('model', '')}".strip()
        fault = case.get("fault")
        summary = f"{what}: {fault + ' ' if fault else ''}(fault {code}, cause {cause})"
        data: dict[str, Any] = {"case_id": case_id, "department": dept, "summary": summary[:1000],
                                "fault_code": code, "cause": cause, "rule": f"cause {cause} -> {dept}"}
        if product:
            data["product"] = product
        if case.get("region"):
            data["region"] = case["region"]
        return [engine_fact("feedback.routed", f"FB-{case_id}-{dept}", done.time_ms, data, self.name,
                            f"route:case:{case_id}:{dept}")]

    def _route_call(self, fact: Fact, call: dict[str, Any]) -> list[Fact]:
        d = fact.data
        dept = self.policy.intent_departments[d["intent"]]
        routed = call.setdefault("routed", [])
        if dept in routed:
            return []
        routed.append(dept)
        summary = d.get("summary") or f"A customer's {d['intent'].replace('_', ' ')} by phone"
        data: dict[str, Any] = {"call_id": fact.subject, "department": dept, "summary": summary[:1000],
                                "intent": d["intent"], "rule": f"intent {d['intent']} -> {dept}"}
        if d.get("case_id"):
            data["case_id"] = d["case_id"]
        return [engine_fact("feedback.routed", f"FB-{fact.subject}-{dept}", fact.time_ms, data, self.name,
                            f"route:call:{fact.subject}:{dept}")]


# the facts `react` looks at; the rest of a batch is skipped before any work
_ANSWERED = frozenset({"service.completed", "case.registered", "feedback.routed", "call.received"})


def _details(case: dict[str, Any], d: dict[str, Any]) -> None:
    """What the departments need to know of the product and the fault, not of the customer."""
    product = case.setdefault("product", {})
    part = d.get("product")
    if isinstance(part, dict):
        for name in _PRODUCT_FIELDS:
            if part.get(name):
                product[name] = part[name]
    customer = d.get("customer")
    if isinstance(customer, dict) and customer.get("region"):
        case["region"] = customer["region"]
    fault = d.get("fault")
    if isinstance(fault, dict) and fault.get("description"):
        case["fault"] = str(fault["description"])[:300]
