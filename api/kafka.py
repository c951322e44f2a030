"""Kafka: how far the consumers are behind each partition, and the publisher behind the log."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from closedloop.consumers import kafka as binding
from closedloop.consumers.kafka_consumer import lag_report
from closedloop.consumers.kafka_publisher import publisher_status

from .common import EngineDep
from .schemas import KafkaLagPublic, PublicRoute, errors

router = APIRouter(tags=["operations"], route_class=PublicRoute)


@router.get("/kafka/lag", response_model=KafkaLagPublic, responses=errors(422))
def kafka_lag(engine: EngineDep, request: Request,
              topic: Annotated[list[str] | None, Query(description="Topics to report (default: those consumed)")] = None,
              ) -> dict[str, Any]:
    """Each partition's stored position, the broker's end and the lag; the publisher's position."""
    settings = request.app.state.settings
    bootstrap = binding.bootstrap_servers(settings.kafka_bootstrap) if settings.kafka_bootstrap else None
    report = lag_report(engine.storage, bootstrap, topic, timeout=3.0, options=settings.kafka_client_options())
    report["publisher"] = publisher_status(engine)
    return report
