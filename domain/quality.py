"""The quality loop's rules that are configuration: prices, penalties, periods, money.

Money is kept in integer cents (fen for CNY) from the moment it is read: a statement adds
up to the cent on every replay, which floating point does not promise.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation

from .facts import to_ms

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
    repeat_within: int = 30 * DAY_MS  # one window for analytics and the permit (issue 4: 30 days)

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


# --- one service, as the quality views see it ---------------------------------------------------
# Case facts the quality views fold, and what each keeps (never a customer's name, phone or address).
SERVICE_FACTS = frozenset({
    "case.registered", "case.amended", "case.dispatched", "dispatch.accepted", "case.transferred",
    "guidance.given", "follow_up.made", "service.completed", "callback.made", "case.cancelled",
    "complaint.filed",
})
_PROFILE = ("model", "product_line", "production_batch", "plant", "purchase_date")


def unit_key(data: dict) -> str | None:
    """The unit a registration is about, as a digest: its serial, else the customer and model.
    It lets repeat repairs of one unit be found without keeping who the customer is."""
    product = data.get("product") if isinstance(data.get("product"), dict) else {}
    customer = data.get("customer") if isinstance(data.get("customer"), dict) else {}
    if product.get("serial"):
        basis = f"serial:{product['serial']}"
    elif customer.get("id") and product.get("model"):
        basis = f"customer:{customer['id']}:{product['model']}"
    else:
        return None
    return hashlib.blake2b(basis.encode(), digest_size=10).hexdigest()


def service_lite(type_: str, data: dict) -> dict:
    """What the quality views keep of a case fact."""
    if type_ in ("case.registered", "case.amended"):
        out: dict = {}
        product = data.get("product")
        if isinstance(product, dict):
            for name in _PROFILE:
                if name in product:
                    out[name] = product[name]
        customer = data.get("customer")
        if isinstance(customer, dict) and "region" in customer:
            out["region"] = customer["region"]
        if data.get("request"):
            out["request"] = data["request"]
        unit = unit_key(data)
        if unit:
            out["unit"] = unit
        return out
    if type_ == "service.completed":
        return {"technician_id": data["technician_id"], "fault_code": data["fault_code"], "cause": data["cause"],
                "first_visit": data["first_visit"], "parts": list(data.get("parts_used") or [])}
    keep = ("outlet_id", "technician_id", "to_outlet_id", "to", "working", "reached", "satisfaction",
            "complaint_id", "category")
    return {k: data[k] for k in keep if k in data}


def service_record(entries: list[list]) -> dict:
    """A case's facts ([time, position, type, lite]) -> the row the quality views query.

    The walk is in world time, so facts arriving in any order give the same row. The
    outlet and technician are those that did the job (at completion or phone guidance);
    `reviewed` is the first reached callback after completion, or the working follow-up
    of a phone guidance; a job settles when it is both done and reviewed.
    """
    row: dict = {"registered": None, "region": None, "request": None, "unit": None, "outlet_id": None,
                 "technician_id": None, "completed": None, "fault_code": None, "cause": None,
                 "first_visit": None, "parts": [], "guided": None, "reviewed": None, "satisfaction": None,
                 "cancelled": None, "complaints": 0, "job": None, "done": None}
    for name in _PROFILE:
        row[name] = None
    outlet = technician = None
    for t, _pos, kind, d in sorted(entries, key=lambda e: (e[0], e[1])):
        if kind in ("case.registered", "case.amended"):
            if kind == "case.registered" and row["registered"] is None:
                row["registered"] = t
            for name, value in d.items():
                if value not in (None, "") or name not in row:
                    row[name] = value
        elif kind in ("case.dispatched", "dispatch.accepted"):
            outlet = d["outlet_id"]
            technician = d.get("technician_id")
        elif kind == "case.transferred":
            outlet, technician = d.get("to_outlet_id"), None
        elif kind == "guidance.given":
            technician = d["technician_id"]
            if row["completed"] is None and row["guided"] is None:
                row["guided"] = t
        elif kind == "follow_up.made":
            if row["guided"] is not None and row["completed"] is None and row["done"] is None and d["working"]:
                row.update(done=t, reviewed=t, job="guidance", outlet_id=outlet, technician_id=technician)
        elif kind == "service.completed":
            if row["completed"] is None and row["job"] != "guidance":
                row.update(completed=t, done=t, technician_id=d["technician_id"], fault_code=d["fault_code"],
                           cause=d["cause"], first_visit=d["first_visit"], parts=d["parts"], outlet_id=outlet)
        elif kind == "callback.made":
            if row["completed"] is not None and row["reviewed"] is None and d.get("reached"):
                row.update(reviewed=t, satisfaction=d.get("satisfaction"))
        elif kind == "case.cancelled":
            if row["cancelled"] is None:
                row["cancelled"] = t
        elif kind == "complaint.filed":
            row["complaints"] += 1
    if row["completed"] is not None:
        row["job"] = row["request"] or "repair"
    return row
