"""Design, manufacturing, sales and the service network: feedback items, defect analytics,
settlement and penalties. Every list answers in JSON, or as CSV with `?format=csv` (or
`Accept: text/csv`)."""

from __future__ import annotations

import csv
import io

import orjson
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import Response

from closedloop.domain.quality import period_range
from closedloop.projections import defects
from closedloop.projections import feedback as feedback_view
from closedloop.projections import settlement as settlement_view

from .common import AsOf, EngineDep, Moment, Offset, moment_ms, view_position
from .schemas import (BatchesPublic, DefectCasesPublic, FeedbackItemDetailPublic, FeedbackItemsPublic,
                      FeedbackSummaryPublic, FirstVisitPublic, MonthsInServicePublic, OutletStatementPublic,
                      ParetoPublic, PartsPublic, PenaltiesPublic, ViewRoute, QualityRulesPublic, RepeatsPublic,
                      SettlementPublic, csv_too, errors)

router = APIRouter(route_class=ViewRoute, dependencies=[Depends(view_position)])

DAY = 86_400_000
Format = Annotated[Literal["json", "csv"] | None, Query(description="csv for a spreadsheet; default json "
                                                        "(or as the Accept header asks)")]


# --- shared parameters ---------------------------------------------------------------------
class Window:
    """[start, end) of the period asked about, judged at `at`."""

    def __init__(self, start: int, end: int, at: int) -> None:
        self.start, self.end, self.at = start, end, at


def window(
    engine: EngineDep,
    from_: Annotated[Moment | None, Query(alias="from", description="Start (default: 30 days before `to`)")] = None,
    to: Annotated[Moment | None, Query(description="End, exclusive (default: as_of)")] = None,
    period: Annotated[str | None, Query(description="Instead of from/to: 2026, 2026-10, 2026-W44 or 2026-10-30")] = None,
    as_of: AsOf = None,
) -> Window:
    at = moment_ms(as_of, engine.clock())
    if period is not None:
        if from_ is not None or to is not None:
            raise HTTPException(422, "give either period or from/to, not both")
        try:
            start, end = period_range(period)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        return Window(start, end, at)
    end = moment_ms(to, at)
    start = moment_ms(from_, end - 30 * DAY)
    if start >= end:
        raise HTTPException(422, "from must be before to")
    return Window(start, end, at)


WindowDep = Annotated[Window, Depends(window)]


def defect_filters(
    job: Annotated[Literal["repair", "install", "maintenance"] | None, Query(description="the kind of job")] = None,
    model: str | None = None,
    product_line: str | None = None,
    production_batch: str | None = None,
    plant: str | None = None,
    fault_code: str | None = None,
    cause: str | None = None,
    region: str | None = None,
    outlet_id: str | None = None,
    technician_id: str | None = None,
) -> dict[str, Any]:
    values = {"job": job, "model": model, "product_line": product_line, "production_batch": production_batch,
              "plant": plant, "fault_code": fault_code, "cause": cause, "region": region, "outlet_id": outlet_id,
              "technician_id": technician_id}
    return {k: v for k, v in values.items() if v is not None}


FiltersDep = Annotated[dict[str, Any], Depends(defect_filters)]
Cases = Annotated[bool, Query(description="list the cases behind each number inline")]


def tabular(request: Request, body: dict[str, Any], rows: list[dict[str, Any]], name: str,
            fmt: str | None) -> dict[str, Any] | Response:
    """JSON as it is; or the rows as CSV, when asked for."""
    wants_csv = fmt == "csv" or (fmt is None and "text/csv" in request.headers.get("accept", ""))
    if not wants_csv:
        return body
    out = io.StringIO()
    columns: list[str] = []
    for r in rows:
        for k in r:
            if k not in columns:
                columns.append(k)
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (" ".join(map(str, v)) if isinstance(v, list) else
                             orjson.dumps(v).decode() if isinstance(v, dict) else v) for k, v in r.items()})
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"content-disposition": f'attachment; filename="{name}.csv"'})


def _period(w: Window) -> defects.Period:
    return defects.Period(w.start, w.end, w.at)


def _checked(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None


# --- feedback items ----------------------------------------------------------------------
@router.get("/quality/feedback", tags=["feedback"], response_model=FeedbackItemsPublic,
            responses={**csv_too(), **errors(422)})
def list_feedback(
    engine: EngineDep, request: Request, as_of: AsOf = None,
    department: Literal["design", "manufacturing", "sales", "service"] | None = None,
    status: Annotated[Literal[feedback_view.FILTERS] | None,  # type: ignore[valid-type]
                      Query(description="open (owes an answer), overdue, closed, or a phase")] = None,
    case_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 100,
    offset: Offset = 0,
    format: Format = None,
) -> dict[str, Any] | Response:
    """A department's feedback items: where each stood at `as_of`, its named owner, due when."""
    at = moment_ms(as_of, engine.clock())
    body = feedback_view.items(engine.storage, at, department, status, case_id, limit, offset)
    rows = [{k: v for k, v in i.items() if k != "product"} | {f"product_{k}": v for k, v in i["product"].items()}
            for i in body["items"]]
    return tabular(request, body, rows, f"feedback-{department or 'all'}", format)


@router.get("/quality/feedback/summary", tags=["feedback"], response_model=FeedbackSummaryPublic, responses=errors(422))
def feedback_summary(engine: EngineDep, as_of: AsOf = None) -> dict[str, Any]:
    """How many items each department holds in each standing, and how many are overdue."""
    return feedback_view.summary(engine.storage, moment_ms(as_of, engine.clock()))


@router.get("/quality/feedback/{ident}", tags=["feedback"], response_model=FeedbackItemDetailPublic,
            responses=errors(404, 422, e404="No feedback item of that id had been routed by `as_of`"))
def get_feedback(engine: EngineDep, ident: Annotated[str, Path(min_length=1)], as_of: AsOf = None) -> dict[str, Any]:
    """One item (by any of its feedback ids): its history, its phases, where it stands."""
    found = feedback_view.item(engine.storage, ident, moment_ms(as_of, engine.clock()))
    if found is None:
        raise HTTPException(404, f"no feedback item {ident!r} had been routed by then")
    return found


# --- defect analytics -----------------------------------------------------------------------
@router.get("/quality/defects/pareto", tags=["defects"], response_model=ParetoPublic,
            responses={**csv_too(), **errors(422)})
def pareto(engine: EngineDep, request: Request, w: WindowDep, filters: FiltersDep,
           by: Literal["fault_code", "cause"] = "fault_code",
           per: Literal["model", "product_line"] | None = None, cases: Cases = False,
           format: Format = None) -> dict[str, Any] | Response:
    """Fault codes (or causes) of completed services, largest first, with cumulative shares."""
    body = _checked(defects.pareto, engine.storage, _period(w), by, per, filters, cases)
    return tabular(request, body, defects.flat(body["rows"]), f"pareto-{by}", format)


@router.get("/quality/defects/batches", tags=["defects"], response_model=BatchesPublic,
            responses={**csv_too(), **errors(422)})
def batches(engine: EngineDep, request: Request, w: WindowDep, filters: FiltersDep,
            by: Literal["batch", "plant"] = "batch", cases: Cases = False,
            sort: Annotated[Literal["failures", "rate"], Query(description="most failures, or highest rate, first")]
            = "failures", format: Format = None) -> dict[str, Any] | Response:
    """Failures by production batch (model, batch, plant) or plant, with failure rates where
    shipped quantities are known."""
    body = _checked(defects.failures_by_batch, engine.storage, _period(w), by, filters, cases, sort)
    return tabular(request, body, defects.flat(body["rows"]), f"failures-by-{by}", format)


@router.get("/quality/defects/months-in-service", tags=["defects"], response_model=MonthsInServicePublic,
            responses={**csv_too(), **errors(422)})
def months_in_service(engine: EngineDep, request: Request, w: WindowDep, filters: FiltersDep,
                      per: Literal["model", "product_line"] | None = None, cases: Cases = False,
                      format: Format = None) -> dict[str, Any] | Response:
    """Failures by whole months from purchase to failure."""
    body = _checked(defects.failures_by_months_in_service, engine.storage, _period(w), per, filters, cases)
    return tabular(request, body, defects.flat(body["rows"]), "failures-by-months-in-service", format)


@router.get("/quality/defects/repeats", tags=["defects"], response_model=RepeatsPublic,
            responses={**csv_too(), **errors(422)})
def repeats(engine: EngineDep, request: Request, w: WindowDep, filters: FiltersDep,
            per: Literal["model", "product_line", "outlet_id", "technician_id"] = "model", cases: Cases = False,
            format: Format = None) -> dict[str, Any] | Response:
    """Repeat repairs: the same unit repaired again within the repeat window."""
    body = _checked(defects.repeat_repairs, engine.storage, _period(w), engine.quality, per, filters, cases)
    return tabular(request, body, defects.flat(body["rows"]), f"repeat-repairs-by-{per}", format)


@router.get("/quality/defects/first-visit", tags=["defects"], response_model=FirstVisitPublic,
            responses={**csv_too(), **errors(422)})
def first_visit(engine: EngineDep, request: Request, w: WindowDep, filters: FiltersDep,
                per: Literal["model", "product_line", "outlet_id", "technician_id"] = "model",
                cases: Cases = False, format: Format = None) -> dict[str, Any] | Response:
    """First-visit fix rate of completed repairs."""
    body = _checked(defects.first_visit_fix, engine.storage, _period(w), per, filters, cases)
    return tabular(request, body, defects.flat(body["rows"]), f"first-visit-fix-by-{per}", format)


@router.get("/quality/defects/parts", tags=["defects"], response_model=PartsPublic,
            responses={**csv_too(), **errors(422)})
def parts(engine: EngineDep, request: Request, w: WindowDep, filters: FiltersDep, cases: Cases = False,
          format: Format = None) -> dict[str, Any] | Response:
    """Spare parts used, per model and part number."""
    body = _checked(defects.parts_by_model, engine.storage, _period(w), filters, cases)
    return tabular(request, body, defects.flat(body["rows"]), "parts-by-model", format)


@router.get("/quality/defects/cases", tags=["defects"], response_model=DefectCasesPublic,
            responses={**csv_too(), **errors(422)})
def defect_cases(
    engine: EngineDep, request: Request, w: WindowDep, filters: FiltersDep,
    months_in_service: Annotated[str | None, Query(description="whole months, or 'unknown'")] = None,
    first_visit: bool | None = None,
    repeat: Annotated[bool | None, Query(description="only repeat repairs (true) or only the others")] = None,
    part_no: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 100,
    offset: Offset = 0,
    format: Format = None,
) -> dict[str, Any] | Response:
    """The cases behind any number above: give the `filters` of its row."""
    more: dict[str, Any] = {}
    if months_in_service is not None:
        if months_in_service != "unknown" and not months_in_service.isdigit():
            raise HTTPException(422, "months_in_service must be a whole number of months, or 'unknown'")
        more["months_in_service"] = months_in_service if months_in_service == "unknown" else int(months_in_service)
    for name, value in (("first_visit", first_visit), ("repeat", repeat), ("part_no", part_no)):
        if value is not None:
            more[name] = value
    body = defects.case_list(engine.storage, _period(w), engine.quality, {**filters, **more}, limit, offset)
    return tabular(request, body, defects.flat(body["rows"]), "cases", format)


# --- settlement and penalties ---------------------------------------------------------------
def settlement_window(
    engine: EngineDep,
    period: Annotated[str | None, Query(description="2026-10 (a month; default: the month of as_of), "
                                        "2026-W44, 2026-10-30 or 2026")] = None,
    from_: Annotated[Moment | None, Query(alias="from", description="instead of period: start")] = None,
    to: Annotated[Moment | None, Query(description="instead of period: end, exclusive")] = None,
    as_of: AsOf = None,
) -> Window:
    at = moment_ms(as_of, engine.clock())
    if from_ is not None or to is not None:
        if period is not None:
            raise HTTPException(422, "give either period or from/to, not both")
        if from_ is None or to is None:
            raise HTTPException(422, "a settlement period needs both from and to")
        start, end = moment_ms(from_, at), moment_ms(to, at)
        if start >= end:
            raise HTTPException(422, "from must be before to")
        return Window(start, end, at)
    if period is None:
        from closedloop.domain.quality import bucket_of

        period = bucket_of(at, "month")
    try:
        start, end = period_range(period)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return Window(start, end, at)


SettlementWindow = Annotated[Window, Depends(settlement_window)]


def _statement_rows(body: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for st in body["statements"]:
        for line in st.get("lines", []):
            rows.append({"outlet_id": st["outlet_id"], "outlet": st["name"], "tier": st["tier"],
                         "case_id": line["case_id"], "kind": line["kind"], "job": line["job"],
                         "technician_id": line["technician_id"], "done": line["done"], "reviewed": line["reviewed"],
                         "price_cents": line["price_cents"], "penalty_cents": line["penalty_cents"],
                         "net_cents": line["net_cents"], "net": line["net"], "currency": st["currency"],
                         "penalties": " ".join(p["penalty_id"] for p in line["penalties"])})
    return rows


@router.get("/settlement", tags=["settlement"], response_model=SettlementPublic,
            responses={**csv_too("Every statement line as CSV"), **errors(422)})
def settlement(engine: EngineDep, request: Request, w: SettlementWindow, outlet_id: str | None = None,
               lines: Annotated[bool, Query(description="each statement's lines (false: totals only)")] = True,
               format: Format = None) -> dict[str, Any] | Response:
    """Every outlet's statement for the period: completed and reviewed cases priced by job, minus penalties."""
    body = settlement_view.statements(engine.storage, engine.quality, w.start, w.end, w.at, outlet_id,
                                      lines or format == "csv")
    return tabular(request, body, _statement_rows(body), "settlement", format)


@router.get("/settlement/{outlet_id}", tags=["settlement"], response_model=OutletStatementPublic,
            responses={**csv_too("The statement's lines as CSV"), **errors(422)})
def outlet_statement(engine: EngineDep, request: Request, w: SettlementWindow,
                     outlet_id: Annotated[str, Path(min_length=1)], format: Format = None) -> dict[str, Any] | Response:
    """One outlet's statement: a line per case, each with its price, penalties and net."""
    body = settlement_view.statements(engine.storage, engine.quality, w.start, w.end, w.at, outlet_id)
    if not body["statements"]:
        statement = {"outlet_id": outlet_id, "services": 0, "gross_cents": 0, "penalty_cents": 0, "net_cents": 0,
                     "gross": "0.00", "penalties": "0.00", "net": "0.00", "currency": engine.quality.currency,
                     "lines": []}
    else:
        statement = body["statements"][0]
    out = {k: v for k, v in body.items() if k not in ("statements", "total")} | statement
    return tabular(request, out, _statement_rows(body), f"statement-{outlet_id}", format)


@router.get("/penalties", tags=["settlement"], response_model=PenaltiesPublic,
            responses={**csv_too("Every owner's penalty lines as CSV"), **errors(422)})
def penalties(engine: EngineDep, request: Request, w: SettlementWindow, party: str | None = None,
              outlet_id: str | None = None, format: Format = None) -> dict[str, Any] | Response:
    """Penalties charged in the period, by the owner who pays them, with the case each is paid to."""
    body = settlement_view.penalties_by_owner(engine.storage, w.start, w.end, w.at, party, outlet_id)
    rows = [{"party": o["party"], "name": o["name"], "role": o["role"], "outlet_id": o["outlet_id"], **line}
            for o in body["owners"] for line in o["lines"]]
    return tabular(request, body, rows, "penalties", format)


@router.get("/quality/rules", tags=["settlement"], response_model=QualityRulesPublic)
def rules(engine: EngineDep) -> dict[str, Any]:
    """The rules in force: feedback routing, deadlines, prices, penalties."""
    p = engine.policy
    return {"routing": {"causes": p.feedback_departments, "intents": p.intent_departments},
            "feed_back_within_hours": p.feed_back_within / 3_600_000, **engine.quality.describe()}
