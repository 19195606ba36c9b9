"""Reading a topic from its start in tests (a consumer with no group: it never disturbs the services)."""
import time

from kafka import KafkaConsumer


def consume(settings, topic: str, until, timeout: float = 60.0) -> list:
    """Messages of ``topic`` from the start, until ``until(messages)`` holds or the timeout."""
    consumer = KafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest",
                             group_id=None)
    out, deadline = [], time.monotonic() + timeout
    while not until(out) and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=200).values():
            out += batch
    consumer.close()
    return out
