"""Department feedback and loop alerts out: the log, followed like a view, onto topics.

The departments that must act on feedback (design, manufacturing, sales, service) subscribe
to their own topic; whoever minds the loop subscribes to the alerts. The publisher follows
the log from a tracked position (`closedloop_publisher_positions`), sends each routed fact
as a CloudEvent, waits until the brokers have acknowledged every message of the batch, and
only then moves its position. A crash in between republishes the batch: harmless, because
each message keeps its fact's (source, id), the CloudEvents identity consumers dedupe on,
and its key (case or feedback id) keeps it on the same partition, in order.

Routes are a table by event type, so a type another part of the engine adds (the dispatch
alarms, `dispatch.alarmed`) flows as soon as it is in the log.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from closedloop.contract.events import to_cloudevent
from closedloop.domain.facts import Fact
from closedloop.app.engine import Engine
from closedloop.app.settings import Settings
from closedloop.log.followers import Failure, Followers
from closedloop.log.followers import position as follower_position

from closedloop.contract import kafka as wire

from . import kafka as binding

log = logging.getLogger("closedloop.kafka")

KIND = "publisher"
DEPARTMENTS = ("design", "manufacturing", "sales", "service")


@dataclass(frozen=True)
class Topics:
    """Where each kind of message goes (the settings' CLOSEDLOOP_KAFKA_ALERTS_TOPIC and
    CLOSEDLOOP_KAFKA_FEEDBACK_PREFIX unless given)."""

    alerts: str = binding.DEFAULT_ALERTS_TOPIC
    feedback_prefix: str = binding.DEFAULT_FEEDBACK_PREFIX

    @classmethod
    def from_settings(cls, settings: Settings) -> "Topics":
        return cls(settings.kafka_alerts_topic or binding.DEFAULT_ALERTS_TOPIC,
                   settings.kafka_feedback_prefix or binding.DEFAULT_FEEDBACK_PREFIX)

    def feedback(self, department: str) -> str:
        return f"{self.feedback_prefix}{department}"

    def all(self) -> list[str]:
        return [self.feedback(d) for d in DEPARTMENTS] + [self.alerts]


Route = Callable[[Fact, Topics], "tuple[str, str] | None"]


def _feedback(fact: Fact, topics: Topics) -> tuple[str, str]:
    return topics.feedback(fact.data["department"]), fact.subject


def _leak(fact: Fact, topics: Topics) -> tuple[str, str]:
    return topics.alerts, fact.data.get("case_id") or fact.data.get("call_id") or fact.subject


def _dispatch_alarm(fact: Fact, topics: Topics) -> tuple[str, str]:
    return topics.alerts, fact.data.get("case_id") or fact.subject


# event type -> (topic, key); add a row to publish another type
ROUTES: dict[str, Route] = {
    "feedback.routed": _feedback,
    "loop.leaked": _leak,
    "dispatch.alarmed": _dispatch_alarm,
}


@dataclass
class Published:
    messages: int = 0
    read: int = 0
    by_topic: dict[str, int] = field(default_factory=dict)


class KafkaPublisher:
    name = "kafka"

    def __init__(self, engine: Engine, bootstrap: Sequence[str], topics: Topics | None = None,
                 mode: str = "structured", batch_size: int = 5000, partitions: int = 3) -> None:
        wire.encode({}, mode)  # a wrong mode is said before anything starts
        self.engine = engine
        self.bootstrap = list(bootstrap)
        self.topics = topics or Topics.from_settings(engine.settings)
        self.mode = mode
        self.batch_size = batch_size
        self.partitions = partitions
        self.totals = Published()
        self.followers = Followers(engine.storage, KIND, [self.name])
        from kafka import KafkaProducer

        options = engine.settings.kafka_client_options()
        binding.ensure_topics(self.bootstrap, self.topics.all(), partitions, options)
        self.producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=5,
                                      client_id="closedloop-publish", **options)

    def position(self) -> int:
        return self.followers.positions()[self.name]

    def start_at_head(self) -> bool:
        """A first start that skips history: only what is appended from now on is sent."""
        with self.engine.storage.writing() as tx:
            if self.followers.fingerprint(tx, self.name) is not None:
                return False
            self.followers.ensure(tx, self.name, position=self.engine.log.head())
        return True

    def publish_once(self) -> int:
        """Send what the log holds beyond the position, batch by batch; returns messages sent."""
        sent = 0
        if self.name not in self.followers.running():
            return 0  # stopped on a fact it could not send, until resumed
        start = self.position()
        for facts in self.engine.log.follow(start, self.batch_size):
            futures = []
            failure: Failure | None = None
            for fact in facts:
                try:
                    route = ROUTES.get(fact.type)
                    target = route(fact, self.topics) if route else None
                    if target is None:
                        continue
                    topic, key = target
                    event = to_cloudevent(fact)
                    event["partitionkey"] = key  # the binding's name for the message key
                    value, headers = wire.encode(event, self.mode)
                except Exception as exc:  # noqa: BLE001 - a fact that cannot be sent stops the publisher alone
                    failure = Failure(fact, exc)
                    facts = facts[: facts.index(fact)]
                    break
                futures.append((topic, self.producer.send(topic, value=value, key=key.encode(), headers=headers)))
            if failure is not None:
                log.error("the publisher stopped at position %s: %s", failure.fact.position, failure.describe())
            if futures:
                self.producer.flush()
                for topic, f in futures:
                    f.get(timeout=60)  # not acknowledged: the position stays, the batch is sent again
                    self.totals.by_topic[topic] = self.totals.by_topic.get(topic, 0) + 1
            if facts:
                self._advance(facts[-1].position)
                start = facts[-1].position
            sent += len(futures)
            self.totals.messages += len(futures)
            self.totals.read += len(facts)
            if failure is not None:
                with self.engine.storage.writing() as tx:
                    self.followers.fail(tx, self.name, failure)
                break
        return sent

    def _advance(self, to: int) -> None:
        with self.engine.storage.writing() as tx:
            self.followers.ensure(tx, self.name)
            place = self.followers.places(tx)[self.name]
            if place.position < to:
                # another publisher may have gone further meanwhile: never move back
                self.followers.advance(tx, self.name, to)

    def run(self, stop: threading.Event | None = None, interval: float = 1.0, tick: bool = True,
            until_idle: bool = False, progress: Callable[[int, Published], None] | None = None) -> Published:
        """Publish until `stop` is set; with `tick`, also let deadlines pass into leak alerts
        (so that alerts flow without an API server running)."""
        stop = stop or threading.Event()
        while not stop.is_set():
            try:
                if tick:
                    self.engine.catch_up()
                    self.engine.tick()
                n = self.publish_once()
            except Exception:
                if until_idle:
                    raise
                log.exception("publishing to Kafka failed; retrying")
                stop.wait(interval)
                continue
            if progress:
                progress(n, self.totals)
            if until_idle and self.position() >= self.engine.log.head():
                break
            if not n:
                stop.wait(interval)
        return self.totals

    def close(self) -> None:
        self.producer.close(timeout=10)


def publisher_position(engine: Engine, name: str = KafkaPublisher.name) -> int:
    """The publisher's position, only reading (asked by /kafka/lag and the metrics)."""
    return follower_position(engine.storage, KIND, name)


def publisher_status(engine: Engine) -> dict[str, Any]:
    head = engine.log.head()
    position = publisher_position(engine)
    return {"position": position, "log_head": head, "behind": head - position,
            "routes": {t: ("alerts" if t != "feedback.routed" else "feedback.<department>") for t in ROUTES}}


def start_in_thread(engine: Engine, bootstrap: Sequence[str], stop: threading.Event) -> threading.Thread:
    """For `closedloop serve`: the publisher alongside the API (which already ticks)."""
    def work() -> None:
        publisher = None
        while not stop.is_set():
            try:
                publisher = publisher or KafkaPublisher(engine, bootstrap)
                publisher.run(stop, tick=False)
            except Exception:  # brokers away at start-up: try again shortly
                log.exception("the Kafka publisher could not start; retrying")
                stop.wait(5)
        if publisher:
            publisher.close()

    thread = threading.Thread(target=work, name="closedloop-publish", daemon=True)
    thread.start()
    return thread
