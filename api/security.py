"""Authentication and authorization for every route: API keys, roles, rate limits."""

from __future__ import annotations

import time
from typing import Annotated, Callable

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from closedloop.app.access import PERMISSIONS, Principal

# when authentication is switched off (CLOSEDLOOP_AUTH=off), every caller is this one
UNAUTHENTICATED_ADMIN = Principal("anonymous", "admin", ("",), None, PERMISSIONS["admin"])

# The two ways to show a key, declared as security schemes: the OpenAPI document names them and
# /docs' "Authorize" sends them. They never refuse by themselves (auto_error=False): the answer
# to a missing or unknown key is `authenticate`'s, in the API's error format.
_KEYS = "An API key made with `closedloop keys add` (the demo prints some)"
BEARER = HTTPBearer(scheme_name="bearer", auto_error=False, description=f"{_KEYS}: `Authorization: Bearer <key>`")
API_KEY = APIKeyHeader(name="X-API-Key", scheme_name="apiKey", auto_error=False, description=f"{_KEYS}, as a header")


def authenticate(request: Request,
                 bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)] = None,
                 api_key: Annotated[str | None, Depends(API_KEY)] = None) -> Principal:
    """Every call carries a key: `Authorization: Bearer <key>` or `X-API-Key: <key>`."""
    if not request.app.state.auth_required:
        principal = UNAUTHENTICATED_ADMIN
    else:
        secret = (bearer.credentials.strip() if bearer else "") or (api_key or "").strip()
        if not secret:
            raise HTTPException(401, "this API needs a key: send 'Authorization: Bearer <key>' "
                                "(make keys with `closedloop keys add`)", headers={"WWW-Authenticate": "Bearer"})
        principal = request.app.state.engine.keys.authenticate(secret)
        if principal is None:
            raise HTTPException(401, "that key is not known or has been revoked", headers={"WWW-Authenticate": "Bearer"})
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(authenticate)]


def require(permission: str) -> Callable[[Principal], Principal]:
    """A dependency that lets through only keys whose role has `permission`."""

    def check(principal: PrincipalDep) -> Principal:
        if not principal.may(permission):
            raise HTTPException(403, f"the key {principal.name!r} (role {principal.role}) may not "
                                f"{_WORDS.get(permission, permission)}")
        return principal

    return check


_WORDS = {
    "append": "append events",
    "read": "read the views",
    "quarantine": "see or change the quarantine",
    "operate": "operate the engine",
    "audit": "audit the log",
}


def check_sources(principal: Principal, events: list) -> None:
    """A producer appends only for its own sources; the first stranger is named."""
    for index, event in enumerate(events):
        source = event.get("source") if isinstance(event, dict) else None
        if isinstance(source, str) and not principal.may_send_as(source):
            where = f" (batch item {index})" if len(events) > 1 else ""
            raise HTTPException(403, f"the key {principal.name!r} may not send events from source {source!r}{where}; "
                                f"it may send from: {', '.join(principal.sources) or 'nowhere'}")


def check_rate(request: Request, principal: Principal, n: int) -> None:
    rate = principal.rate_per_second or request.app.state.default_rate
    wait = request.app.state.limiter.take(principal.name, rate, n, time.monotonic())
    if wait < 0:
        raise HTTPException(413, f"a batch of {n} events is larger than the key {principal.name!r} may ever send "
                            f"at once ({rate:g} events/s, bursts of {request.app.state.limiter.burst_seconds:g} s)")
    if wait > 0:
        raise HTTPException(429, f"the key {principal.name!r} is over its rate of {rate:g} events/s; "
                            f"try again in {wait:.1f} s", headers={"Retry-After": str(max(1, round(wait)))})
