"""A technician's work permit, kept like a driving license: a points ledger.

Every technician starts a review period with a number of points. Violations found on a case
deduct points (a broken promise, a non-standard service, an upheld complaint, a job not fixed
on the first visit, a repeat repair); customer delight and small improvements add some back.
The balance decides the permit's status: normal, warning (fewer jobs) or eliminated (no jobs
until retrained at a service center). A yearly review starts a new period.

Pure rules: `violations` reads a case's facts (walked in world time) and says which rules
were broken, by whom, when and why; `Permit.change` turns one into ledger entries. The rules
and point values are configuration (`PermitRules`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from .facts import Fact, iso, parse_ms
from .policy import HOUR, parse_duration

DAY = 24 * HOUR
DEDUCTIONS = ("promise_broken", "non_standard_service", "overcharge", "not_fixed_first_visit", "repeat_repair",
              "attitude", "other")
ADDITIONS = ("delight", "improvement")
FIVE_ONES = ("permit", "shoe_covers", "pad_cloth", "rag", "gift")
_FIVE_ONES_WORDS = {"permit": "work permit", "shoe_covers": "shoe covers", "pad_cloth": "pad cloth", "rag": "rag",
                    "gift": "small gift"}


class PermitRulesError(ValueError):
    """The permit rules given as configuration cannot be used."""


@dataclass(frozen=True)
class PermitRules:
    """Point values and thresholds of the permit."""

    start_points: int = 12
    # praise cannot lift a balance above this
    max_points: int = 12
    # a balance at or below this puts the permit on warning
    warning_at: int = 6
    # at or below this the permit is eliminated: no jobs until retrained
    eliminated_at: int = 0
    # points taken per violation; non_standard_service is per missing item of the five ones;
    # a complaint category deducts only when the complaint is upheld against the technician
    deductions: Mapping[str, int] = field(default_factory=lambda: {
        "promise_broken": 3, "non_standard_service": 1, "overcharge": 3, "not_fixed_first_visit": 2,
        "repeat_repair": 3, "attitude": 2, "other": 0,
    })
    additions: Mapping[str, int] = field(default_factory=lambda: {"delight": 1, "improvement": 1})
    # completed later than the agreed appointment plus this: the promise was broken
    promise_grace: int = 2 * HOUR
    repeat_within: int = 30 * DAY
    review_every: int = 365 * DAY

    @classmethod
    def from_mapping(cls, given: Any) -> "PermitRules":
        if not isinstance(given, dict):
            raise PermitRulesError("permit rules must be a JSON object")
        base = cls()
        values: dict[str, Any] = {}
        for name, value in given.items():
            if name in ("start_points", "max_points", "warning_at", "eliminated_at"):
                if not isinstance(value, int) or isinstance(value, bool):
                    raise PermitRulesError(f"permit rules: {name} must be a whole number, not {value!r}")
                values[name] = value
            elif name in ("promise_grace", "repeat_within", "review_every"):
                try:
                    values[name] = parse_duration(str(value))
                except ValueError as exc:
                    raise PermitRulesError(f"permit rules: {name}: {exc}") from None
            elif name in ("deductions", "additions"):
                known = DEDUCTIONS if name == "deductions" else ADDITIONS
                if not isinstance(value, dict):
                    raise PermitRulesError(f"permit rules: {name} must be an object of rule: points")
                merged = dict(getattr(base, name))
                for rule, points in value.items():
                    if rule not in known:
                        raise PermitRulesError(f"permit rules: {name}.{rule} is not a rule; the rules are "
                                               + ", ".join(known))
                    if not isinstance(points, int) or isinstance(points, bool) or points < 0:
                        raise PermitRulesError(f"permit rules: {name}.{rule} must be points >= 0, not {points!r}")
                    merged[rule] = points
                values[name] = merged
            else:
                raise PermitRulesError(f"permit rules: unknown setting {name!r}")
        rules = cls(**values)
        if not rules.eliminated_at < rules.warning_at < rules.start_points <= rules.max_points:
            raise PermitRulesError("permit rules need eliminated_at < warning_at < start_points <= max_points")
        return rules

    def fingerprint(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True, default=dict).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        out = asdict(self)
        for name in ("promise_grace", "repeat_within", "review_every"):
            out[name] = f"{out[name] / HOUR:g}h" if out[name] < 2 * DAY else f"{out[name] / DAY:g}d"
        return out

    def status_for(self, balance: int, previous: str) -> str:
        # elimination sticks until the technician is retrained, whatever praise comes after
        if previous == "eliminated" or balance <= self.eliminated_at:
            return "eliminated"
        if balance <= self.warning_at:
            return "warning"
        return "normal"


@dataclass
class Permit:
    technician_id: str
    balance: int
    status: str = "normal"
    period_start: int = 0

    @classmethod
    def issue(cls, technician_id: str, rules: PermitRules, at: int) -> "Permit":
        return cls(technician_id, rules.start_points, "normal", at)

    def change(self, rules: PermitRules, rule: str, points: int, reason: str,
               case_id: str | None) -> list[tuple[str, dict[str, Any]]]:
        """Deduct (points < 0) or add points; returns the ledger entries as (type, data)."""
        before = self.balance
        target = before + points
        if points > 0:
            target = max(before, min(target, rules.max_points))
        applied = target - before
        if applied != points:
            reason += f" (capped at {rules.max_points} points)"
        self.balance = target
        out: list[tuple[str, dict[str, Any]]] = []
        status = rules.status_for(target, self.status)
        data: dict[str, Any] = {"rule": rule, "points": applied, "balance": target, "status": status, "reason": reason}
        if case_id:
            data["case_id"] = case_id
        out.append(("permit.points_changed", data))
        if status != self.status:
            out.append(("permit.status_changed", self._status(status, rule, case_id, _status_reason(rules, status, target))))
        return out

    def _status(self, status: str, rule: str, case_id: str | None, reason: str) -> dict[str, Any]:
        data: dict[str, Any] = {"previous": self.status, "status": status, "balance": self.balance, "rule": rule,
                                "reason": reason}
        if case_id:
            data["case_id"] = case_id
        self.status = status
        return data

    def review(self, rules: PermitRules, at: int) -> list[tuple[str, dict[str, Any]]]:
        """The yearly review: a new period with full points, unless the permit is eliminated."""
        before = self.balance
        if self.status != "eliminated":
            self.balance = rules.start_points
        after = "normal" if self.status == "warning" else self.status
        out: list[tuple[str, dict[str, Any]]] = [
            ("permit.reviewed", {"period_start": iso(self.period_start), "period_end": iso(at),
                                 "balance_before": before, "balance": self.balance, "status": after})]
        if after != self.status:
            out.append(("permit.status_changed", self._status(
                after, "yearly_review", None, f"yearly review: a new period starts with {self.balance} points")))
        self.period_start = at
        return out

    def retrain(self, rules: PermitRules, at: int, center: str | None) -> list[tuple[str, dict[str, Any]]]:
        """Retrained and examined at a service center: an eliminated permit is issued again."""
        if self.status != "eliminated":
            return []
        self.balance = rules.start_points
        self.period_start = at
        where = f" at {center}" if center else ""
        return [("permit.status_changed", self._status(
            "normal", "retrained", None, f"retrained and passed the exam{where}: permit reissued with "
            f"{self.balance} points"))]


def _status_reason(rules: PermitRules, status: str, balance: int) -> str:
    if status == "eliminated":
        return f"balance {balance} is at or below {rules.eliminated_at}: no jobs until retrained"
    if status == "warning":
        return f"balance {balance} is at or below {rules.warning_at}: warned, fewer dispatched jobs"
    return f"balance {balance} is above {rules.warning_at}: back to normal"


# --- what a case says about its technicians -------------------------------------------------
PERMIT_CASE_FACTS = frozenset({
    "case.registered", "case.amended", "case.dispatched", "case.transferred", "dispatch.accepted",
    "appointment.set", "visit.arrived", "service.completed", "complaint.filed", "complaint.resolved",
})


def permit_lite(fact: Fact) -> dict[str, Any]:
    d, t = fact.data, fact.type
    if t in ("case.registered", "case.amended"):
        product = d.get("product")
        if isinstance(product, dict) and "serial" in product:
            return {"serial": product["serial"] or None}
        return {}
    if t == "appointment.set":
        return {"at": parse_ms(d["at"]), "agreed": d["customer_agreed"]}
    if t == "service.completed":
        five = d.get("five_ones")
        return {"technician_id": d["technician_id"], "first_visit": d["first_visit"],
                "five_ones": dict(five) if isinstance(five, dict) else None}
    if t == "complaint.filed":
        return {k: d.get(k) for k in ("complaint_id", "category", "technician_id")}
    if t == "complaint.resolved":
        return {k: d.get(k) for k in ("complaint_id", "accountable", "resolution")}
    if t in ("dispatch.accepted", "visit.arrived"):
        return {"technician_id": d["technician_id"]}
    return {}


@dataclass(frozen=True)
class Violation:
    rule: str
    technician_id: str
    time: int
    reason: str
    units: int = 1
    cause: str | None = None  # the key of the fact that showed it


def _hours(ms: int) -> str:
    return f"{ms / HOUR:.1f} h"


def violations(entries: Iterable[Sequence[Any]], rules: PermitRules) -> list[Violation]:
    """The permit rules a case's facts show broken, walked in world time: (time, position,
    type, lite data[, key]) entries; each violation names the key of the fact that showed it."""
    out: list[Violation] = []
    technician: str | None = None
    appointment: int | None = None
    first_visitor: str | None = None
    completed_by: str | None = None
    complaints: dict[str, tuple[str, str | None]] = {}
    for entry in sorted(entries, key=lambda e: (e[0], e[1])):
        t, _pos, kind, d = entry[:4]
        cause = entry[4] if len(entry) > 4 else None

        def flag(rule: str, who: str, reason: str, units: int = 1) -> None:
            out.append(Violation(rule, who, t, reason, units, cause))

        if kind == "dispatch.accepted":
            technician = d["technician_id"]
        elif kind in ("case.dispatched", "case.transferred"):
            # another outlet takes the job: its technician makes the promises from now on
            technician, appointment = None, None
        elif kind == "appointment.set":
            if d["agreed"]:
                appointment = d["at"]
            elif appointment is not None and technician is not None and d["at"] != appointment:
                flag("promise_broken", technician, f"the appointment agreed for {iso(appointment)} was moved to "
                     f"{iso(d['at'])} without the customer's agreement")
        elif kind == "visit.arrived":
            if first_visitor is None:
                first_visitor = d["technician_id"]
            technician = technician or d["technician_id"]
        elif kind == "service.completed":
            by = d["technician_id"]
            completed_by = by
            if appointment is not None and t > appointment + rules.promise_grace:
                flag("promise_broken", by, f"completed {_hours(t - appointment)} after the appointment agreed for "
                     f"{iso(appointment)} (allowed: {_hours(rules.promise_grace)})")
            five = d.get("five_ones") or {}
            missing = [k for k in FIVE_ONES if five.get(k) is False]
            if missing:
                flag("non_standard_service", by, "non-standard service, missing of the five ones: "
                     + ", ".join(_FIVE_ONES_WORDS[k] for k in missing), units=len(missing))
            if d["first_visit"] is False:
                who = first_visitor or by
                extra = f" (completed by {by})" if who != by else ""
                flag("not_fixed_first_visit", who, f"not fixed on the first visit{extra}")
        elif kind == "complaint.filed":
            complaints[d["complaint_id"]] = (d["category"], d.get("technician_id"))
        elif kind == "complaint.resolved":
            found = complaints.get(d["complaint_id"])
            if found is None:
                continue
            category, named = found
            who = named or completed_by
            if who and d.get("accountable") == who:
                flag(category, who, f"complaint {d['complaint_id']} ({category.replace('_', ' ')}) upheld against "
                     f"the technician: {d.get('resolution') or 'resolved'}")
    return out


def repeat_violation(serial: str, earlier_case: str, completed_at: int, technician_id: str, registered_at: int,
                     rules: PermitRules) -> Violation | None:
    """The same product back with a fault within the window after a completion."""
    gap = registered_at - completed_at
    if not 0 <= gap <= rules.repeat_within:
        return None
    return Violation("repeat_repair", technician_id, registered_at,
                     f"product {serial} back with a fault {gap / DAY:.1f} days after {earlier_case} was completed")
