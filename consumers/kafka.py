"""Kafka brokers: connecting, topics, end offsets and producing, shared by the consumer and the publisher.

The message format itself (the CloudEvents Kafka binding, its content modes and the message
key) is `closedloop.contract.kafka`.
"""

from __future__ import annotations

import time
from typing import Any, Iterable, Mapping, Sequence

from closedloop.contract.kafka import encode_binary, encode_structured
from closedloop.app.settings import Settings, load_settings
from closedloop.log.storage import ConfigurationError

BOOTSTRAP_ENV = "CLOSEDLOOP_KAFKA_BOOTSTRAP"
DEFAULT_TOPIC = "closedloop.events"
DEFAULT_DLQ_TOPIC = "closedloop.events.dlq"
DEFAULT_ALERTS_TOPIC = "closedloop.alerts"
DEFAULT_FEEDBACK_PREFIX = "closedloop.feedback."

# Headers the consumer adds to a message it sends to the dead-letter topic.
DLQ_REASON = "closedloop_dlq_reason"
DLQ_ERRORS = "closedloop_dlq_errors"
DLQ_TOPIC = "closedloop_dlq_topic"
DLQ_PARTITION = "closedloop_dlq_partition"
DLQ_OFFSET = "closedloop_dlq_offset"
DLQ_QUARANTINE_ID = "closedloop_dlq_quarantine_id"


def bootstrap_servers(value: str | None = None, settings: Settings | None = None) -> list[str]:
    """Brokers from the flag, else the settings' CLOSEDLOOP_KAFKA_BOOTSTRAP (None: `load_settings()`);
    a clear error without either."""
    text = value or (settings if settings is not None else load_settings()).kafka_bootstrap or ""
    servers = [s.strip() for s in text.split(",") if s.strip()]
    if not servers:
        raise ConfigurationError(f"no Kafka brokers given: set {BOOTSTRAP_ENV}=host:port[,host:port] "
                                 "or pass --bootstrap")
    for s in servers:
        host, _, port = s.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigurationError(f"Kafka broker {s!r} is not host:port (e.g. 127.0.0.1:9092)")
    return servers


def client_options(settings: Settings | None = None) -> dict[str, Any]:
    """Connection settings every client shares: the settings' CLOSEDLOOP_KAFKA_SECURITY_PROTOCOL,
    _SASL_MECHANISM, _SASL_USERNAME, _SASL_PASSWORD, _SSL_CAFILE, when set (None: `load_settings()`)."""
    return (settings if settings is not None else load_settings()).kafka_client_options()


def _options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict(options) if options is not None else client_options()


def no_brokers(bootstrap: Sequence[str], exc: Exception) -> ConfigurationError:
    return ConfigurationError(f"no Kafka broker answered at {','.join(bootstrap)} ({type(exc).__name__}): "
                              f"is it running, and is {BOOTSTRAP_ENV} right?")


def topic_partitions(value: str, default: int = 3) -> int:
    try:
        n = int(value) if value else default
    except ValueError:
        raise ConfigurationError(f"partitions must be a whole number, got {value!r}") from None
    if n < 1:
        raise ConfigurationError(f"partitions must be at least 1, got {n}")
    return n


def ensure_topics(bootstrap: Sequence[str], topics: Iterable[str], partitions: int = 3,
                  options: Mapping[str, Any] | None = None) -> None:
    """Create the topics that do not exist yet (brokers often refuse to auto-create them);
    `options`: the clients' connection settings (None: `client_options()`)."""
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaTimeoutError as NoBrokersAvailable

    try:
        admin = KafkaAdminClient(bootstrap_servers=list(bootstrap), client_id="closedloop-admin",
                                 **_options(options))
    except NoBrokersAvailable as exc:
        raise no_brokers(bootstrap, exc) from None
    try:
        existing = set(admin.list_topics())
        missing = [t for t in dict.fromkeys(topics) if t not in existing]
        if missing:
            # replication -1: the broker's default, so a real cluster gets its usual copies
            answer = admin.create_topics({t: {"num_partitions": partitions, "replication_factor": -1}
                                          for t in missing}, raise_errors=False)
            for t in answer.get("topics", []):
                if t["error_code"] not in (0, 36):  # 36: created meanwhile by someone else
                    raise RuntimeError(f"Kafka refused to create topic {t['name']!r}: {t['error_message']}")
    finally:
        admin.close()


def end_offsets(consumer: Any, partitions: Sequence[Any], timeout: float = 5.0) -> dict[Any, int]:
    """The offset after the last message of each partition, as the broker's fetches report it.

    `end_offsets` (ListOffsets) alone is not enough: some Kafka-compatible brokers (tansu)
    answer it with the base offset of the last batch plus one. A fetch from the offset
    before that returns the partition's true high watermark, which a lag must be against."""
    listed = consumer.end_offsets(list(partitions))
    if not partitions:
        return {}
    consumer.assign(list(partitions))
    for tp in partitions:
        consumer.seek(tp, max(listed[tp] - 1, 0))
    found: dict[Any, int] = {}
    deadline = time.monotonic() + timeout
    while len(found) < len(partitions) and time.monotonic() < deadline:
        consumer.poll(timeout_ms=200, max_records=1, update_offsets=False)
        for tp in partitions:
            hw = consumer.highwater(tp)
            if hw is not None:
                found[tp] = hw
        if all(listed[tp] == 0 for tp in partitions):
            break
    return {tp: max(found.get(tp, 0), listed[tp]) for tp in partitions}


# --- producing: what a producer (or `closedloop generate --kafka-topic`) puts on a topic -------
def produce(bootstrap: Sequence[str], topic: str, events: Iterable[dict[str, Any]], mode: str = "structured",
            progress: Any = None, every: int = 5000, options: Mapping[str, Any] | None = None) -> int:
    """Send contract events to `topic`, one message each, keyed by `subject` (the case, call
    or unit: one entity's events land on one partition, in the order given). Waits for every
    acknowledgement; raises if the broker refused any. Returns how many were sent.

    The producer is idempotent (kafka-python's default) with acks from all replicas, so a
    retry neither duplicates nor reorders a partition's messages."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaTimeoutError as NoBrokersAvailable

    encoder = {"structured": encode_structured, "binary": encode_binary}.get(mode)
    if encoder is None:
        raise ValueError(f"content mode {mode!r} is not one of: structured, binary")
    try:
        producer = KafkaProducer(bootstrap_servers=list(bootstrap), client_id="closedloop-generate", acks="all",
                                 linger_ms=20, batch_size=256 * 1024, **_options(options))
    except NoBrokersAvailable as exc:
        raise no_brokers(bootstrap, exc) from None
    failed: list[BaseException] = []
    n = 0
    try:
        for event in events:
            value, headers = encoder(event)
            subject = event.get("subject")
            producer.send(topic, value=value, key=subject.encode() if subject else None,
                          headers=headers).add_errback(failed.append)
            n += 1
            if progress is not None and n % every == 0:
                progress(every)
            if failed:
                break
        producer.flush()
    finally:
        producer.close(timeout=30)
    if failed:
        raise RuntimeError(f"Kafka refused a message for {topic!r}: {failed[0]!r}")
    if progress is not None and n % every:
        progress(n % every)
    return n
