"""Auditors: the log's hash chain, verified on demand, and its checkpoints for export."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from closedloop.log import chain
from closedloop.domain.facts import iso

from .common import EngineDep
from .schemas import CheckpointPublic, PublicRoute, VerdictPublic

router = APIRouter(tags=["audit"], route_class=PublicRoute)


@router.get("/audit/verify", response_model=VerdictPublic)
async def verify(engine: EngineDep) -> dict[str, Any]:
    """Walk the whole log against its hash chain (and the checkpoints taken); the first
    position where an event was altered, removed, inserted or moved is named."""
    points = chain.checkpoints(engine.storage)
    verdict = await run_in_threadpool(chain.verify, engine.storage, None, 20_000, points)
    return verdict.to_json() | {"checkpoints_checked": len(points)}


@router.get("/audit/checkpoints", response_model=list[CheckpointPublic])
def list_checkpoints(engine: EngineDep) -> list[dict[str, Any]]:
    """Every checkpoint taken: export them to a party that cannot change this database."""
    return [dict(c, taken=iso(c["taken"])) for c in chain.checkpoints(engine.storage)]


@router.post("/audit/checkpoints", status_code=201, response_model=CheckpointPublic)
def take_checkpoint(engine: EngineDep) -> dict[str, Any]:
    """Record the chain's tip now (position, hash, time)."""
    point = chain.take_checkpoint(engine.storage, engine.clock())
    return dict(point, taken=iso(point["taken"]))
