"""The loop's deadlines and routing rules: configuration, not code."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field

MINUTE = 60_000
HOUR = 60 * MINUTE

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d)?\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": MINUTE, "min": MINUTE, "h": HOUR, "d": 24 * HOUR}


def parse_duration(text: str) -> int:
    """'30m', '48h', '2d', '90s' -> milliseconds; a bare number is minutes."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (try 30m, 48h or 2d)")
    number, unit = match.groups()
    return int(float(number) * _UNIT_MS[unit or "m"])


DEPARTMENTS = ("design", "manufacturing", "sales", "service")
CAUSES = ("design", "manufacturing", "installation", "transport", "usage", "wear", "unknown")
INTENTS = ("repair", "install", "maintenance", "consultation", "complaint", "suggestion",
           "purchase_interest", "follow_up")


def parse_routes(text: str, choices: tuple[str, ...]) -> dict[str, str]:
    """'design=design, installation=service' -> {"design": "design", "installation": "service"};
    an empty text routes nothing."""
    routes: dict[str, str] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, dept = (p.strip() for p in part.partition("="))
        if not sep or not key or not dept:
            raise ValueError(f"{part!r} is not a route: write what=department, e.g. design=design")
        if key not in choices:
            raise ValueError(f"{key!r} is not one of {', '.join(choices)}")
        if dept not in DEPARTMENTS:
            raise ValueError(f"{dept!r} is not a department: {', '.join(DEPARTMENTS)}")
        routes[key] = dept
    return routes


@dataclass(frozen=True)
class LoopPolicy:
    """Deadlines of the four nothing-missed steps, in milliseconds."""

    # recorded: a call that asks for service has its case registered with full details
    record_within: int = 30 * MINUTE
    # handled: completed by the agreed appointment (plus the time the work itself takes),
    # else within this long of registration
    handle_within: int = 48 * HOUR
    appointment_grace: int = 2 * HOUR
    # a phone guidance (misreport, misuse) is checked by a follow-up call this soon
    follow_up_within: int = 2 * HOUR
    # reviewed: a callback that reaches the customer after completion
    review_within: int = 24 * HOUR
    # fed back: routed to the right department and acknowledged by a named owner
    feed_back_within: int = 72 * HOUR
    # intents of a call that must lead to a recorded case
    record_intents: tuple[str, ...] = ("repair", "install", "maintenance", "complaint")
    # completion cause -> department that must act on it
    feedback_departments: dict[str, str] = field(
        default_factory=lambda: {
            "design": "design",
            "manufacturing": "manufacturing",
            "installation": "service",
            "transport": "service",
        }
    )
    # intent of a call -> department its feedback goes to (a call that opens no case)
    intent_departments: dict[str, str] = field(
        default_factory=lambda: {"suggestion": "design", "purchase_interest": "sales"}
    )

    def fingerprint(self) -> str:
        """Views built under another policy are stale: this tells them apart."""
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def describe(self) -> dict[str, object]:
        return {k: (v if not isinstance(v, int) else f"{v / HOUR:g}h") for k, v in asdict(self).items()}
