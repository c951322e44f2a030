"""Analysts: where each case stands, what leaked and who owns it, the three controls."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from datetime import datetime

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request

from closedloop.app.access import redact

from closedloop.projections import controls as controls_view
from closedloop.projections import leaks as leaks_view
from closedloop.domain.facts import iso
from closedloop.projections.standing import case_standing

from .common import AsOf, EngineDep, KnownAt, Moment, Offset, moment_ms, view_position, views_known_at
from .schemas import (CasePublic, ControlCasesPublic, ControlsPublic, LeaksPublic, LoopSummaryPublic, ViewRoute,
                      errors)

router = APIRouter(route_class=ViewRoute, dependencies=[Depends(view_position)])


@router.get("/cases/{case_id}", tags=["loop"], response_model=CasePublic,
            responses=errors(404, 422, e404="No case of that id has been recorded"))
def get_case(engine: EngineDep, request: Request, case_id: Annotated[str, Path(min_length=1)],
             as_of: AsOf = None, known_at: KnownAt = None) -> dict[str, Any]:
    """The case's timeline and where it stands at each of the four steps, with its owner.

    Customers' personal data is shown only to keys allowed to see it (auditors)."""
    now = engine.clock()
    known = moment_ms(known_at, now) if known_at else None
    found = case_standing(engine.log, engine.policy, case_id, moment_ms(as_of, now), known)
    if found is None:
        raise HTTPException(404, f"no case {case_id!r} has been recorded")
    if not request.state.principal.may("personal_data"):
        for entry in found["timeline"]:
            entry["data"] = redact(entry["data"])
    return found


@router.get("/loop/summary", tags=["loop"], response_model=LoopSummaryPublic, responses=errors(422))
def loop_summary(engine: EngineDep, as_of: AsOf = None, known_at: KnownAt = None) -> dict[str, Any]:
    """How many cases there are, and how many are open and overdue (leaked) at each step."""
    at = moment_ms(as_of, engine.clock())
    with views_known_at(engine, at, known_at) as storage:
        return leaks_view.summary(storage, at) | _known(known_at, at)


@router.get("/loop/leaks", tags=["loop"], response_model=LeaksPublic, responses=errors(422))
def loop_leaks(
    engine: EngineDep,
    as_of: AsOf = None,
    stage: Literal["recorded", "handled", "reviewed", "fed_back"] | None = None,
    region: str | None = None,
    outlet_id: str | None = None,
    owner: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Offset = 0,
    known_at: KnownAt = None,
) -> dict[str, Any]:
    """Steps overdue at the moment asked about: which case, which step, due when, owned by whom."""
    flt = leaks_view.LeakFilter(stage, region, outlet_id, owner)
    at = moment_ms(as_of, engine.clock())
    with views_known_at(engine, at, known_at) as storage:
        return leaks_view.leaks(storage, at, flt, limit, offset) | _known(known_at, at)


@router.get("/controls", tags=["controls"], response_model=ControlsPublic, responses=errors(422))
def get_controls(
    engine: EngineDep,
    from_: Annotated[Moment | None, Query(alias="from", description="Start of the period "
                                            "(default: 30 days before `to`)")] = None,
    to: Annotated[Moment | None, Query(description="End of the period, exclusive (default: as_of)")] = None,
    as_of: AsOf = None,
    by: Literal["region", "outlet", "product_line", "technician"] | None = None,
    period: Annotated[Literal["day", "week", "month"] | None,
                      Query(description="also the rates of each day, ISO week or month, each against the one before")] = None,
    compare: Annotated[bool, Query(description="also how each rate moved from the window just before")] = False,
    cases: Annotated[bool, Query(description="list the services behind each count")] = False,
    known_at: KnownAt = None,
) -> dict[str, Any]:
    """Complaint, dissatisfaction and omission rates in PPM against the 10 PPM target."""
    at, start, end = _window(engine, as_of, from_, to)
    if period == "day" and end - start > 400 * 24 * 3_600_000:
        raise HTTPException(422, "period=day covers at most 400 days: narrow from/to or use week or month")
    with views_known_at(engine, at, known_at) as storage:
        return controls_view.controls(storage, start, end, at, by, period=period, cases=cases,
                                      compare=compare) | _known(known_at, at)


def _window(engine: Any, as_of: datetime | None, from_: datetime | None,
            to: datetime | None) -> tuple[int, int, int]:
    """The moment asked about and the period [start, end): by default the 30 days up to it."""
    at = moment_ms(as_of, engine.clock())
    end = moment_ms(to, at)
    start = moment_ms(from_, end - 30 * 24 * 3_600_000)
    if start >= end:
        raise HTTPException(422, "from must be before to")
    return at, start, end


def _known(known_at: datetime | None, at: int) -> dict[str, Any]:
    return {"known_at": iso(moment_ms(known_at, at))} if known_at is not None else {}


@router.get("/controls/cases", tags=["controls"], response_model=ControlCasesPublic, responses=errors(422))
def get_control_cases(
    engine: EngineDep,
    measure: Literal["complaint", "dissatisfaction", "omission"],
    from_: Annotated[Moment | None, Query(alias="from", description="Start of the period "
                                            "(default: 30 days before `to`)")] = None,
    to: Annotated[Moment | None, Query(description="End of the period, exclusive (default: as_of)")] = None,
    as_of: AsOf = None,
    region: str | None = None,
    outlet: str | None = None,
    product_line: str | None = None,
    technician: str | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    """The services behind one control's count: which, when, and for an omission the step that leaked."""
    from closedloop.projections.control_periods import control_cases

    at, start, end = _window(engine, as_of, from_, to)
    filters = {"region": region, "outlet": outlet, "product_line": product_line, "technician": technician}
    return control_cases(engine.storage, start, end, at, measure, {k: v for k, v in filters.items() if v is not None},
                         limit, offset)
