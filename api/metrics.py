"""Metrics in the Prometheus text format: what the engine took in, how far behind it is,
how fast it answers, and how much has leaked out of the loop.

Two kinds of numbers:
- counted as they happen (events ingested, rejected and resent by type and source; request
  latencies), kept by this process since it started, as Prometheus counters expect;
- read at scrape time from the database (the log's head, each view's and reactor's lag,
  the quarantine, the loop's open and overdue steps; consumer positions where consumers
  keep them), so every process of a deployment reports the same truth.

A new reading is a function `(engine) -> iterable of metric families` appended to
`READINGS`; a failing reading is reported as `closedloop_metrics_reading_ok{reading} 0`
and logged, never as a failed scrape.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client import GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from closedloop.contract.events import DATA_MODELS

if TYPE_CHECKING:
    from closedloop.app.engine import Engine, Submitted
    from closedloop.log.eventlog import Appended

log = logging.getLogger("closedloop.metrics")

# `*_created` series double every counter's lines for a start time Prometheus ignores
disable_created_metrics()

# request latencies, seconds: a view answers in milliseconds, a batch of thousands in seconds
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class SourceLabels:
    """A source as a metric label: its first `depth` path segments (`/outlet/OUT-0042`,
    `/callcenter/qingdao`), so a label names a producer, not each seat or device; past
    `limit` distinct labels, new ones fold into their first segment (`/outlet/*`), so a
    network of thousands of outlets cannot swamp the monitoring with series."""

    def __init__(self, depth: int = 2, limit: int = 500) -> None:
        # from the settings: CLOSEDLOOP_METRICS_SOURCE_DEPTH, CLOSEDLOOP_METRICS_MAX_SOURCES
        self.depth = depth
        self.limit = limit
        if self.depth < 1 or self.limit < 1:
            raise ValueError("CLOSEDLOOP_METRICS_SOURCE_DEPTH and CLOSEDLOOP_METRICS_MAX_SOURCES must be at least 1")
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, source: str | None) -> str:
        if not source or not isinstance(source, str):
            return "(none)"
        parts = [p for p in source.split("/") if p]
        label = "/" + "/".join(parts[: self.depth])
        if label in self._seen:
            return label
        with self._lock:
            if len(self._seen) < self.limit:
                self._seen.add(label)
                return label
        return "/" + (parts[0] if parts else "") + "/*"


def type_label(type_: str | None) -> str:
    """Contract types as they are; anything else (a typo, a stranger) as one label."""
    if not type_:
        return "(none)"
    return type_ if type_ in DATA_MODELS else "(unknown)"


# --- readings taken at scrape time --------------------------------------------------------
def _gauge(name: str, doc: str, labels: list[str], samples: Iterable[tuple[list[str], float]]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=labels)
    for values, value in samples:
        family.add_metric(values, value)
    return family


def engine_positions(engine: "Engine") -> Iterable[Metric]:
    head = engine.log.head()
    yield _gauge("closedloop_log_head", "Position of the last event in the log.", [], [([], head)])
    yield _gauge("closedloop_projection_lag_events", "Events in the log that the view has not applied yet.",
                 ["view"], [([name], lag) for name, lag in engine.projector.lag().items()])
    if engine.reactors:
        yield _gauge("closedloop_reactor_lag_events", "Events in the log that the reactor has not answered yet.",
                     ["reactor"], [([name], max(head - pos, 0)) for name, pos in engine.reactions.positions().items()])
    followers = engine.followers()
    yield _gauge("closedloop_follower_failed", "1 when the follower stopped on a stored fact it could not take.",
                 ["kind", "name"], [([f.kind, f.name], 1 if f.state == "failed" else 0) for f in followers])
    yield _gauge("closedloop_follower_lag_events", "Events in the log the follower has not taken yet.",
                 ["kind", "name"], [([f.kind, f.name], f.lag) for f in followers])


def quarantine(engine: "Engine") -> Iterable[Metric]:
    yield _gauge("closedloop_quarantine_open", "Rejected events waiting for an operator.", [],
                 [([], engine.quarantine.list("open", 1, 0)["total"])])


def loop_now(engine: "Engine") -> Iterable[Metric]:
    from closedloop.projections import leaks as leaks_view

    summary = leaks_view.summary(engine.storage, engine.clock())
    yield _gauge("closedloop_loop_open_steps", "Steps of the four nothing-missed open now, by stage.", ["stage"],
                 [([stage], n) for stage, n in summary["open"].items()])
    yield _gauge("closedloop_loop_leaks_open", "Steps open now past their due time (leaks), by stage.", ["stage"],
                 [([stage], n) for stage, n in summary["leaks"].items()])
    yield _gauge("closedloop_loop_cases", "Cases registered so far.", [], [([], summary["cases"])])
    yield _gauge("closedloop_loop_closed_loops", "Registered cases with every step closed.", [],
                 [([], summary["closed_loops"])])


class _ConsumerLag:
    """Kafka consumers' positions and lag per partition, when the Kafka consumer is part of
    this installation; asking the brokers for their ends costs a round trip, so the answer
    is kept for a few seconds."""

    def __init__(self, keep_seconds: float = 10.0) -> None:
        self.keep_seconds = keep_seconds
        self._kept: tuple[float, dict[str, Any]] | None = None
        self.__name__ = "consumer_lag"

    def __call__(self, engine: "Engine") -> Iterable[Metric]:
        try:
            from closedloop.consumers import kafka as binding
            from closedloop.consumers.kafka_consumer import lag_report
        except ImportError:
            return []
        now = time.monotonic()
        if self._kept is None or now - self._kept[0] > self.keep_seconds:
            settings = engine.settings
            bootstrap = binding.bootstrap_servers(settings.kafka_bootstrap) if settings.kafka_bootstrap else None
            self._kept = (now, lag_report(engine.storage, bootstrap, None, timeout=2.0,
                                          options=settings.kafka_client_options()))
        return consumer_families(self._kept[1])


def consumer_families(report: dict[str, Any]) -> list[Metric]:
    """A consumer lag report (`partitions`: topic, partition, position, lag) as gauges."""
    parts = report.get("partitions") or []
    return [
        _gauge("closedloop_consumer_position", "Next offset the consumer will read, per partition.",
               ["topic", "partition"],
               [([p["topic"], str(p["partition"])], p["position"]) for p in parts if p.get("position") is not None]),
        _gauge("closedloop_consumer_lag_messages", "Messages on the broker the consumer has not read, per partition.",
               ["topic", "partition"],
               [([p["topic"], str(p["partition"])], p["lag"]) for p in parts if p.get("lag") is not None]),
    ]


consumer_lag = _ConsumerLag()

# each reading: a function of the engine giving metric families; add new ones here
READINGS: list[Callable[["Engine"], Iterable[Metric]]] = [engine_positions, quarantine, loop_now, consumer_lag]


class _Readings(Collector):
    def __init__(self, engine: "Engine") -> None:
        self.engine = engine

    def collect(self) -> Iterable[Metric]:
        ok = GaugeMetricFamily("closedloop_metrics_reading_ok", "1 when the reading was taken at this scrape, "
                               "0 when it failed (see the logs).", labels=["reading"])
        for reading in list(READINGS):
            name = getattr(reading, "__name__", type(reading).__name__)
            try:
                families = list(reading(self.engine))
            except Exception:  # noqa: BLE001 - one broken reading must not hide the others
                log.exception("metrics reading %s failed", name, extra={"reading": name})
                ok.add_metric([name], 0)
                continue
            ok.add_metric([name], 1)
            yield from families
        yield ok


class Metrics:
    """The metrics of one API process over one engine."""

    def __init__(self, engine: "Engine", sources: SourceLabels | None = None) -> None:
        self.registry = CollectorRegistry()
        self.sources = sources or SourceLabels()
        self.ingested = Counter("closedloop_events_ingested", "Events recorded in the log, by type and source.",
                                ["type", "source"], registry=self.registry)
        self.duplicates = Counter("closedloop_events_duplicate", "Resends of events already recorded (no-ops), "
                                  "by type and source.", ["type", "source"], registry=self.registry)
        self.rejected = Counter("closedloop_events_rejected", "Events refused by the contract and quarantined, "
                                "by type and source.", ["type", "source"], registry=self.registry)
        self.requests = Histogram("closedloop_http_request_duration_seconds", "Time to answer an HTTP request, "
                                  "by method, route and status.", ["method", "route", "status"],
                                  buckets=LATENCY_BUCKETS, registry=self.registry)
        self.registry.register(_Readings(engine))
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=self.registry)
        engine.watchers.append(self.on_submit)

    def on_submit(self, channel: str, appended: "Appended", out: "Submitted") -> None:
        for facts, counter in ((appended.stored, self.ingested), (appended.duplicates, self.duplicates)):
            tally: dict[tuple[str, str], int] = {}
            for f in facts:
                key = (type_label(f.type), self.sources(f.source))
                tally[key] = tally.get(key, 0) + 1
            for (t, s), n in tally.items():
                counter.labels(t, s).inc(n)
        for r in out.rejected:
            self.rejected.labels(type_label(r.type), self.sources(r.source)).inc()

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).observe(seconds)
