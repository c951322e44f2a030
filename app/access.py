"""Who may do what: API keys, roles, and what each role may see.

Keys are random secrets shown once when made; only their SHA-256 is stored (in the same
database as the log, so every process of a deployment sees the same keys). Roles:
- producer: append events, only for the `source` prefixes its key names; reads nothing;
- operator: the quarantine (see, correct, re-submit, discard), health, replay;
- analyst: the views, with customers' personal data left out;
- auditor: the views with everything in them, the log's verification and checkpoints;
- admin: all of the above.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from typing import Any

import orjson

from closedloop.log.eventlog import now_ms
from closedloop.log.storage import Storage

KEYS_TABLE = "closedloop_api_keys"
ROLES = ("producer", "operator", "analyst", "auditor", "admin")
# what each role may do; a route names the permission it needs
PERMISSIONS: dict[str, frozenset[str]] = {
    "producer": frozenset({"append"}),
    "operator": frozenset({"quarantine", "operate", "read"}),
    "analyst": frozenset({"read"}),
    "auditor": frozenset({"read", "personal_data", "audit", "operate"}),
    "admin": frozenset({"append", "quarantine", "operate", "read", "personal_data", "audit"}),
}
KEY_PREFIX = "clk_"


@dataclass(frozen=True)
class Principal:
    name: str
    role: str
    sources: tuple[str, ...] = ()
    rate_per_second: float | None = None
    permissions: frozenset[str] = field(default_factory=frozenset)

    def may(self, permission: str) -> bool:
        return permission in self.permissions

    def may_send_as(self, source: str) -> bool:
        if self.role == "admin":
            return True
        return any(source.startswith(prefix) for prefix in self.sources)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyStore:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        storage.create([
            f"CREATE TABLE IF NOT EXISTS {KEYS_TABLE} (key_hash TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, "
            "role TEXT NOT NULL, sources TEXT NOT NULL, rate_per_second REAL, created {bigint} NOT NULL, "
            "revoked {bigint})"
        ])
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    def add(self, name: str, role: str, sources: list[str] | None = None,
            rate_per_second: float | None = None) -> str:
        """Make a key; returns the secret, which is not kept and cannot be shown again."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        if role == "producer" and not sources:
            raise ValueError("a producer key must name the source prefixes it may send as (e.g. /outlet/OUT-0042)")
        secret = KEY_PREFIX + secrets.token_urlsafe(24)
        with self.storage.writing() as tx:
            if tx.one(f"SELECT 1 AS x FROM {KEYS_TABLE} WHERE name = {tx.q}", [name]):
                raise ValueError(f"a key named {name!r} exists already; revoke it first or pick another name")
            tx.execute(f"INSERT INTO {KEYS_TABLE} (key_hash, name, role, sources, rate_per_second, created) "
                       f"VALUES ({tx.marks(6)})",
                       [_hash(secret), name, role, orjson.dumps(sources or []).decode(), rate_per_second, now_ms()])
        return secret

    def revoke(self, name: str) -> bool:
        with self.storage.writing() as tx:
            tx.execute(f"UPDATE {KEYS_TABLE} SET revoked = {tx.q} WHERE name = {tx.q} AND revoked IS NULL",
                       [now_ms(), name])
            changed = tx.rowcount() == 1
        self._cache.clear()
        return changed

    def list(self) -> list[dict[str, Any]]:
        with self.storage.reading() as tx:
            rows = tx.all(f"SELECT name, role, sources, rate_per_second, created, revoked FROM {KEYS_TABLE} "
                          "ORDER BY name")
        return [{"name": r["name"], "role": r["role"], "sources": orjson.loads(r["sources"]),
                 "rate_per_second": r["rate_per_second"], "created": r["created"], "revoked": r["revoked"]}
                for r in rows]

    def count(self) -> int:
        with self.storage.reading() as tx:
            return int(tx.one(f"SELECT COUNT(*) AS n FROM {KEYS_TABLE} WHERE revoked IS NULL")["n"])

    def authenticate(self, secret: str) -> Principal | None:
        """The key's holder, or None; answers are cached for a few seconds (revocation is
        seen by other processes within that time)."""
        digest = _hash(secret)
        now = now_ms()
        hit = self._cache.get(digest)
        if hit and now - hit[0] < 5000:
            return hit[1]
        with self.storage.reading() as tx:
            row = tx.one(f"SELECT name, role, sources, rate_per_second FROM {KEYS_TABLE} "
                         f"WHERE key_hash = {tx.q} AND revoked IS NULL", [digest])
        principal = None
        if row:
            principal = Principal(row["name"], row["role"], tuple(orjson.loads(row["sources"])),
                                  row["rate_per_second"], PERMISSIONS[row["role"]])
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (now, principal)
        return principal


class RateLimiter:
    """A token bucket per producer: `rate` events a second, bursts of up to `burst` seconds' worth."""

    def __init__(self, burst_seconds: float = 5.0) -> None:
        self.burst_seconds = burst_seconds
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, who: str, rate: float | None, n: int, now: float) -> float:
        """0 when allowed; else how many seconds to wait before trying again."""
        if not rate:
            return 0.0
        capacity = rate * self.burst_seconds
        tokens, last = self._buckets.get(who, (capacity, now))
        tokens = min(capacity, tokens + (now - last) * rate)
        if n > capacity:
            return -1.0  # never fits: the batch is larger than the burst allowed
        if tokens < n:
            self._buckets[who] = (tokens, now)
            return (n - tokens) / rate
        self._buckets[who] = (tokens - n, now)
        return 0.0


PERSONAL_FIELDS = {"customer": ("name", "phone", "address", "id"), "_top": ("phone", "customer_id")}


def redact(data: Any) -> Any:
    """A copy of event data without the customer's personal data."""
    if not isinstance(data, dict):
        return data
    out = dict(data)
    for name in PERSONAL_FIELDS["_top"]:
        if name in out:
            out[name] = "[redacted]"
    customer = out.get("customer")
    if isinstance(customer, dict):
        out["customer"] = {k: ("[redacted]" if k in PERSONAL_FIELDS["customer"] and v is not None else v)
                           for k, v in customer.items()}
    return out
