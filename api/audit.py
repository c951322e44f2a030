"""Auditors: the log's hash chain, verified on demand, and its checkpoints for export."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from closedloop.log import chain
from closedloop.domain.facts import iso

from .common import EngineDep

router = APIRouter(tags=["audit"])


@router.get("/audit/verify")
async def verify(engine: EngineDep) -> Any:
    """Walk the whole log against its hash chain (and the checkpoints taken); the first
    position where an event was altered, removed, inserted or moved is named."""
    points = chain.checkpoints(engine.storage)
    verdict = await run_in_threadpool(chain.verify, engine.storage, None, 20_000, points)
    return verdict.to_json() | {"checkpoints_checked": len(points)}


@router.get("/audit/checkpoints")
def list_checkpoints(engine: EngineDep) -> Any:
    """Every checkpoint taken: export them to a party that cannot change this database."""
    return [dict(c, taken=iso(c["taken"])) for c in chain.checkpoints(engine.storage)]


@router.post("/audit/checkpoints", status_code=201)
def take_checkpoint(engine: EngineDep) -> Any:
    """Record the chain's tip now (position, hash, time)."""
    point = chain.take_checkpoint(engine.storage, engine.clock())
    return dict(point, taken=iso(point["taken"]))
