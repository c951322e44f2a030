"""The service network: outlets and their load, technicians and their permits, warehouses and
their stock, open part requests, dispatch alarms, and the rules the engine applies."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query

from closedloop.projections import alarms as alarms_view
from closedloop.projections import outlets as outlets_view
from closedloop.projections import stock as stock_view

from .common import AsOf, EngineDep, Offset, moment_ms, view_position
from .schemas import (AlarmsPublic, NetworkRulesPublic, OutletDetailPublic, OutletsPublic, PartRequestsPublic,
                      ViewRoute, TechnicianDetailPublic, TechniciansPublic, WarehouseDetailPublic,
                      WarehousesPublic, errors)

router = APIRouter(tags=["network"], route_class=ViewRoute, dependencies=[Depends(view_position)])

Limit = Annotated[int, Query(ge=1, le=1000)]
Id = Annotated[str, Path(min_length=1, max_length=200)]


@router.get("/outlets", response_model=OutletsPublic, responses=errors(422))
def list_outlets(engine: EngineDep, as_of: AsOf = None, region: str | None = None, product_line: str | None = None,
                 tier: Literal["authorized", "specialized", "center"] | None = None, limit: Limit = 100,
                 offset: Offset = 0) -> dict[str, Any]:
    """Outlets covering a region and product line, with their load and capacity on the day of `as_of`."""
    net = engine.network
    return outlets_view.outlets(engine.storage, moment_ms(as_of, engine.clock()), net.dispatch, net.permit, region,
                                product_line, tier, limit, offset)


@router.get("/outlets/{outlet_id}", response_model=OutletDetailPublic,
            responses=errors(404, 422, e404="No outlet of that id was registered by `as_of`"))
def get_outlet(engine: EngineDep, outlet_id: Id, as_of: AsOf = None) -> dict[str, Any]:
    """One outlet: tier, coverage, today's load and capacity, its technicians and their permits."""
    at = moment_ms(as_of, engine.clock())
    found = outlets_view.outlet(engine.storage, outlet_id, at, engine.network.dispatch, engine.network.permit)
    if found is None:
        raise HTTPException(404, f"no outlet {outlet_id!r} was registered by {as_of or 'now'}")
    found["open_part_requests"] = stock_view.part_requests(engine.storage, at, outlet_id=outlet_id)["items"]
    found["open_alarms"] = alarms_view.alarms(engine.storage, at, outlet_id=outlet_id)["items"]
    return found


@router.get("/technicians", response_model=TechniciansPublic, responses=errors(422))
def list_technicians(engine: EngineDep, as_of: AsOf = None, outlet_id: str | None = None,
                     status: Literal["normal", "warning", "eliminated"] | None = None, limit: Limit = 100,
                     offset: Offset = 0) -> dict[str, Any]:
    """Technicians with their permit's status and points."""
    return outlets_view.technicians(engine.storage, moment_ms(as_of, engine.clock()), engine.network.permit,
                                    outlet_id, status, limit, offset)


@router.get("/technicians/{technician_id}", response_model=TechnicianDetailPublic,
            responses=errors(404, 422, e404="No technician of that id is known by `as_of`"))
def get_technician(engine: EngineDep, technician_id: Id, as_of: AsOf = None) -> dict[str, Any]:
    """A technician's permit: status, points, and the ledger of every change with its case and rule."""
    found = outlets_view.technician(engine.storage, technician_id, moment_ms(as_of, engine.clock()),
                                    engine.network.dispatch, engine.network.permit)
    if found is None:
        raise HTTPException(404, f"no technician {technician_id!r} is known by {as_of or 'now'}")
    return found


@router.get("/warehouses", response_model=WarehousesPublic, responses=errors(422))
def list_warehouses(engine: EngineDep, as_of: AsOf = None, level: Annotated[int | None, Query(ge=1, le=3)] = None,
                    region: str | None = None, limit: Limit = 100, offset: Offset = 0) -> dict[str, Any]:
    """Warehouses with their stock per part: on hand, reserved by approvals, available."""
    return stock_view.warehouses(engine.storage, moment_ms(as_of, engine.clock()), level, region, limit, offset)


@router.get("/warehouses/{warehouse_id}", response_model=WarehouseDetailPublic,
            responses=errors(404, 422, e404="No warehouse of that id had received stock by `as_of`"))
def get_warehouse(engine: EngineDep, warehouse_id: Id, as_of: AsOf = None) -> dict[str, Any]:
    """One warehouse's stock per part."""
    found = stock_view.warehouse(engine.storage, warehouse_id, moment_ms(as_of, engine.clock()))
    if found is None:
        raise HTTPException(404, f"no warehouse {warehouse_id!r} had received stock by {as_of or 'now'}")
    return found


@router.get("/part-requests", response_model=PartRequestsPublic, responses=errors(422))
def list_part_requests(
    engine: EngineDep, as_of: AsOf = None, outlet_id: str | None = None, case_id: str | None = None,
    state: Literal["open", "all", "requested", "held", "approved", "denied", "shipped", "delivered"] = "open",
    limit: Limit = 100, offset: Offset = 0,
) -> dict[str, Any]:
    """Part requests and where each stands (open: not yet delivered nor denied), with counts per outlet."""
    return stock_view.part_requests(engine.storage, moment_ms(as_of, engine.clock()), outlet_id, case_id, state,
                                    limit, offset)


@router.get("/alarms", response_model=AlarmsPublic, responses=errors(422))
def list_alarms(engine: EngineDep, as_of: AsOf = None, state: Literal["open", "resolved", "all"] = "open",
                outlet_id: str | None = None, case_id: str | None = None,
                level: Annotated[int | None, Query(ge=1, le=2)] = None, limit: Limit = 100,
                offset: Offset = 0) -> dict[str, Any]:
    """Dispatch alarms: jobs not accepted in time (level 1) and their escalations (level 2)."""
    return alarms_view.alarms(engine.storage, moment_ms(as_of, engine.clock()), state, outlet_id, case_id, level,
                              limit, offset)


@router.get("/network/rules", response_model=NetworkRulesPublic)
def network_rules(engine: EngineDep) -> dict[str, Any]:
    """The rules the engine applies by itself: dispatch deadlines and shares, part approval, permit points."""
    return engine.network.describe()
