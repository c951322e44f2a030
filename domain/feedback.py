"""A feedback item's life, run as a failure-reporting-and-corrective-action system runs it.

Report, analyse, act, verify, close: an item is routed to a department; a named owner
acknowledges it with a corrective action and the date it is due by; it is closed only by
a verification that the action worked; a closure that could not verify it reopens the item,
and the owner answers for it again until a new action is acknowledged or the old one is
verified.

The same fold decides the case's fed-back step in the loop (`closedloop.domain.loop`) and
each item's standing in the departments' view, so the two always agree. It is plain data
and reads no clock: what an item owes, and by when, follows from its facts alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Where an item stands. The first three owe something; the last two do not.
AWAITING_OWNER = "awaiting_owner"  # routed, no named owner yet
ACTING = "acting"  # a named owner took it, with a corrective action due by a date
REOPENED = "reopened"  # a closure could not verify the action: the owner answers again
ACKNOWLEDGED = "acknowledged"  # a named owner took it, with no due date to hold them to
VERIFIED = "verified"  # closed with the corrective action verified
PHASES = (AWAITING_OWNER, ACTING, REOPENED, ACKNOWLEDGED, VERIFIED)
OWING = frozenset({AWAITING_OWNER, ACTING, REOPENED})


@dataclass
class FeedbackItem:
    """One department's item about one case (or call): every routing of it, every answer."""

    department: str
    routed: int
    feedback_ids: list[str] = field(default_factory=list)
    phase: str = AWAITING_OWNER
    owner: str | None = None
    action: str | None = None
    action_due: int | None = None
    acknowledged: int | None = None
    closed: int | None = None
    reopened: int | None = None
    reopen_count: int = 0
    # when the department's obligation was last met (None while it owes something)
    done: int | None = None

    def route(self, feedback_id: str) -> None:
        """A further routing of the same case to the same department is the same item."""
        if feedback_id not in self.feedback_ids:
            self.feedback_ids.append(feedback_id)

    def fold(self, t: int, kind: str, d: dict[str, Any]) -> str | None:
        """Apply an answer to the item; returns an anomaly to flag, or None."""
        if kind == "feedback.acknowledged":
            owner = d.get("owner")
            if not owner or not str(owner).strip():
                return "feedback acknowledged without a named owner"
            self.owner = owner
            self.action = d.get("corrective_action")
            self.action_due = d.get("due")
            self.acknowledged = t
            if self.action_due is None:
                # v1 reading: a named owner answers for it; there is no date to hold them to
                self.phase, self.done = ACKNOWLEDGED, t
            else:
                self.phase, self.done = ACTING, None
            return None
        if kind == "feedback.closed":
            if self.owner is None:
                return "feedback closed before a named owner acknowledged it"
            if d.get("verified"):
                if self.phase != VERIFIED:
                    self.phase, self.closed, self.done = VERIFIED, t, t
                return None
            # not verified: the action did not work, or could not be checked
            self.phase, self.reopened, self.done = REOPENED, t, None
            self.action_due = None
            self.reopen_count += 1
            return None
        return None

    def obligation(self, anchor: int, within: int) -> tuple[int, str] | None:
        """What the item owes now, as (due, owner); None when it owes nothing.

        `anchor` is when the wait for a named owner began (the case's completion for the
        item its cause requires, else the routing); `within` is how long a department has
        to name an owner (the loop's fed-back deadline).
        """
        if self.phase == AWAITING_OWNER:
            return (anchor + within, f"department:{self.department}")
        if self.phase == ACTING:
            return (self.action_due, self.owner)  # type: ignore[return-value]
        if self.phase == REOPENED:
            return ((self.reopened or anchor) + within, self.owner)  # type: ignore[return-value]
        return None

    def describe(self) -> dict[str, Any]:
        return {
            "department": self.department,
            "phase": self.phase,
            "owner": self.owner,
            "corrective_action": self.action,
            "action_due": self.action_due,
            "acknowledged": self.acknowledged,
            "closed": self.closed,
            "reopened": self.reopened,
            "reopen_count": self.reopen_count,
        }
