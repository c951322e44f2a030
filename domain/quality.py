"""The quality loop's rules that are configuration: prices, penalties, periods, money.

Money is kept in integer cents (fen for CNY) from the moment it is read: a statement adds
up to the cent on every replay, which floating point does not promise.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation

from .facts import to_ms
from .policy import parse_duration

DAY_MS = 86_400_000
JOBS = ("repair", "install", "maintenance", "guidance")
TIERS = ("authorized", "specialized", "center")
COMPLAINT_CATEGORIES = ("promise_broken", "non_standard_service", "overcharge", "not_fixed_first_visit",
                        "repeat_repair", "attitude", "other")

# What an outlet is paid per job, in cents, until configured otherwise.
DEFAULT_PRICES = {"repair": 5000, "install": 4000, "maintenance": 3000, "guidance": 1000}
# The rolling-door factory's rule from the sources: late, a poor repair, or a bad attitude
# costs the responsible employee 5 yuan and the manager 5 yuan, paid to the customer.
DEFAULT_PENALTIES = {
    "promise_broken": (500, 500),
    "not_fixed_first_visit": (500, 500),
    "repeat_repair": (500, 500),
    "attitude": (500, 500),
}


def parse_money(text: str) -> int:
    """'5', '5.00', '12.5' -> cents; more than two decimals or a negative is refused."""
    try:
        amount = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError(f"{text!r} is not an amount of money (e.g. 5.00)") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"{text!r} is not an amount of money (e.g. 5.00)")
    cents = amount * 100
    if cents != cents.to_integral_value():
        raise ValueError(f"{text!r} has more than two decimals")
    return int(cents)


def money(cents: int) -> str:
    """Cents -> '12.50': the form statements print amounts in."""
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(cents), 100)
    return f"{sign}{whole}.{part:02d}"


# --- periods -----------------------------------------------------------------------------------
_PERIOD = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?|-W(\d{2}))?$")


def period_range(text: str) -> tuple[int, int]:
    """'2026', '2026-10', '2026-W44' (ISO week) or '2026-10-30' -> [start, end) in epoch ms, UTC."""
    match = _PERIOD.match(text.strip()) if isinstance(text, str) else None
    if not match:
        raise ValueError(f"{text!r} is not a period: write 2026, 2026-10, 2026-W44 or 2026-10-30")
    year, month, day, week = match.groups()
    y = int(year)
    try:
        if week:
            start = date.fromisocalendar(y, int(week), 1)
            end = start + timedelta(days=7)
        elif day:
            start = date(y, int(month), int(day))
            end = start + timedelta(days=1)
        elif month:
            m = int(month)
            start = date(y, m, 1)
            end = start + timedelta(days=calendar.monthrange(y, m)[1])
        else:
            start, end = date(y, 1, 1), date(y + 1, 1, 1)
    except ValueError:
        raise ValueError(f"{text!r} is not a period: no such date") from None
    return _ms(start), _ms(end)


def _ms(d: date) -> int:
    return to_ms(datetime(d.year, d.month, d.day, tzinfo=UTC))


BUCKETS = ("day", "week", "month")


def bucket_of(ms: int, size: str) -> str:
    """The name of the day, ISO week or month a moment falls in: '2026-10-30', '2026-W44', '2026-10'."""
    d = datetime.fromtimestamp(ms / 1000, tz=UTC).date()
    if size == "day":
        return d.isoformat()
    if size == "week":
        y, w, _ = d.isocalendar()
        return f"{y}-W{w:02d}"
    if size == "month":
        return f"{d.year}-{d.month:02d}"
    raise ValueError(f"period must be one of {', '.join(BUCKETS)}")


def previous_bucket(name: str) -> str:
    start, end = period_range(name)
    size = "day" if len(name) == 10 else "week" if "W" in name else "month" if len(name) == 7 else "year"
    if size == "year":
        return str(int(name) - 1)
    return bucket_of(start - 1, size)


# --- prices and penalties ---------------------------------------------------------------------
@dataclass(frozen=True)
class PriceList:
    """Prices in cents by job (`repair`) or job at an outlet tier (`repair@center`), in force from `since`."""

    since: int | None
    prices: dict[str, int]

    def price(self, job: str, tier: str | None) -> int:
        if tier and f"{job}@{tier}" in self.prices:
            return self.prices[f"{job}@{tier}"]
        return self.prices.get(job, 0)


def parse_prices(text: str) -> tuple[PriceList, ...]:
    """'repair=50.00, install=40.00, repair@center=60.00; from 2027-01-01: repair=55.00'.

    Lists are separated by ';'; each after the first starts 'from YYYY-MM-DD:' and changes
    only the prices it names. Jobs not named keep the built-in defaults.
    """
    lists: list[PriceList] = []
    current = dict(DEFAULT_PRICES)
    for n, segment in enumerate(text.split(";")):
        segment = segment.strip()
        if not segment:
            continue
        since = None
        head = re.match(r"^from\s+(\d{4}-\d{2}-\d{2})\s*:\s*", segment)
        if head:
            since = period_range(head.group(1))[0]
            segment = segment[head.end():]
        elif lists:
            raise ValueError(f"price list {n + 1} needs 'from YYYY-MM-DD:' before its prices")
        current = dict(current)
        for part in segment.split(","):
            part = part.strip()
            if not part:
                continue
            key, sep, amount = (p.strip() for p in part.partition("="))
            job, _, tier = key.partition("@")
            if not sep or job not in JOBS or (tier and tier not in TIERS):
                raise ValueError(f"{part!r}: write job=amount or job@tier=amount; jobs: {', '.join(JOBS)}; "
                                 f"tiers: {', '.join(TIERS)}")
            current[key] = parse_money(amount)
        if lists and since is not None and lists[-1].since is not None and since <= lists[-1].since:
            raise ValueError("price lists must be in date order")
        lists.append(PriceList(since, current))
    return tuple(lists) or (PriceList(None, dict(DEFAULT_PRICES)),)


def parse_penalties(text: str) -> dict[str, tuple[int, int]]:
    """'promise_broken=5.00+5.00, attitude=5.00+5.00': complaint category = employee's share +
    manager's share. Categories not named cost nothing; an empty text charges no penalties."""
    rules: dict[str, tuple[int, int]] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        category, sep, amounts = (p.strip() for p in part.partition("="))
        if not sep or category not in COMPLAINT_CATEGORIES:
            raise ValueError(f"{part!r}: write category=employee+manager, e.g. promise_broken=5.00+5.00; "
                             f"categories: {', '.join(COMPLAINT_CATEGORIES)}")
        employee, plus, manager = amounts.partition("+")
        rules[category] = (parse_money(employee), parse_money(manager) if plus else 0)
    return rules


@dataclass(frozen=True)
class QualityPolicy:
    """How outlets are paid and penalised, and what counts as a repeat repair."""

    currency: str = "CNY"
    prices: tuple[PriceList, ...] = (PriceList(None, dict(DEFAULT_PRICES)),)
    penalties: dict[str, tuple[int, int]] = field(default_factory=lambda: dict(DEFAULT_PENALTIES))
    # a repair of the same unit this soon after an earlier repair is a repeat repair
    repeat_within: int = 90 * DAY_MS

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "QualityPolicy":
        env = dict(os.environ if env is None else env)
        kwargs: dict[str, object] = {}
        for var, name, parse in (
            ("CLOSEDLOOP_PRICES", "prices", parse_prices),
            ("CLOSEDLOOP_PENALTIES", "penalties", parse_penalties),
            ("CLOSEDLOOP_REPEAT_WITHIN", "repeat_within", parse_duration),
        ):
            value = env.get(var)
            if value is not None:
                try:
                    kwargs[name] = parse(value)
                except ValueError as exc:
                    raise ValueError(f"{var}: {exc}") from None
        currency = env.get("CLOSEDLOOP_CURRENCY")
        if currency is not None:
            if not re.fullmatch(r"[A-Z]{3}", currency):
                raise ValueError(f"CLOSEDLOOP_CURRENCY: {currency!r} is not an ISO 4217 code such as CNY")
            kwargs["currency"] = currency
        return cls(**kwargs)  # type: ignore[arg-type]

    def price(self, job: str, tier: str | None, at: int) -> int:
        """What a job is paid when it settles at `at`: the price list in force then."""
        chosen = self.prices[0]
        for plist in self.prices[1:]:
            if plist.since is not None and plist.since <= at:
                chosen = plist
        return chosen.price(job, tier)

    def penalty_fingerprint(self) -> str:
        blob = json.dumps([self.currency, sorted(self.penalties.items())]).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def describe(self) -> dict[str, object]:
        return {
            "currency": self.currency,
            "prices": [{"from": None if p.since is None else datetime.fromtimestamp(p.since / 1000, UTC).date()
                        .isoformat(), "prices": {k: money(v) for k, v in sorted(p.prices.items())}}
                       for p in self.prices],
            "penalties": {k: {"employee": money(e), "manager": money(m)} for k, (e, m) in sorted(self.penalties.items())},
            "repeat_within_days": self.repeat_within / DAY_MS,
        }
