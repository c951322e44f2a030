"""Kafka: how far the consumers are behind each partition, and the publisher behind the log."""

from __future__ import annotations

import os
from typing import Annotated, Any

from fastapi import APIRouter, Query

from closedloop.consumers import kafka as binding
from closedloop.consumers.kafka_consumer import lag_report
from closedloop.consumers.kafka_publisher import publisher_status

from .common import EngineDep

router = APIRouter(tags=["operations"])


@router.get("/kafka/lag")
def kafka_lag(engine: EngineDep,
              topic: Annotated[list[str] | None, Query(description="Topics to report (default: those consumed)")] = None,
              ) -> Any:
    """Each partition's stored position, the broker's end and the lag; the publisher's position."""
    bootstrap = None
    if os.environ.get(binding.BOOTSTRAP_ENV):
        bootstrap = binding.bootstrap_servers()
    report = lag_report(engine.storage, bootstrap, topic, timeout=3.0)
    report["publisher"] = publisher_status(engine)
    return report
