"""The Kafka clients the services build, one factory per client library (kafka-python: ``producer``,
``reader``; aiokafka: ``async_producer``, ``async_tail``), and the producers' partitioner.

The partitioner: a session's records in one partition whatever the rest of their key.

Keys are "SESSION/PART" (rehab.topics.record_key); Kafka's default partitioner would spread a session's
records over all partitions by the whole key, and the processor needs them in order in one. This one
hashes the session part only, as the default one (murmur2) hashes a key that is the session id alone,
so records keyed either way land in the same partition (``default_partition``).

One object for both client libraries: kafka-python calls ``partition(...)`` of a ``Partitioner``;
aiokafka (and Faust through it) calls the object with (key, all partitions, available partitions).
"""
from __future__ import annotations

import random

from kafka.partitioner.abc import Partitioner
from kafka.partitioner.default import murmur2


class SessionPartitioner(Partitioner):
    def __call__(self, key: bytes | None, all_partitions: list, available: list):
        if key is None:
            return random.choice(available or all_partitions)
        return all_partitions[(murmur2(key.split(b"/", 1)[0]) & 0x7FFFFFFF) % len(all_partitions)]

    def partition(self, topic, key, serialized_key, value, serialized_value, cluster):
        return self(serialized_key, sorted(cluster.partitions_for_topic(topic)),
                    list(cluster.available_partitions_for_topic(topic)))


session_partitioner = SessionPartitioner()


def default_partition(key: str, partitions: int) -> int:
    """The partition of session ``key``'s records: what Kafka's default partitioner gives a record keyed
    by the session id alone, and what ``session_partitioner`` gives every record of the session."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def producer(bootstrap: str, **options):
    """A kafka-python producer that keeps each session in one partition (every producer of keyed records)."""
    from kafka import KafkaProducer

    return KafkaProducer(bootstrap_servers=bootstrap, partitioner=session_partitioner, **options)


def reader(bootstrap: str):
    """A kafka-python consumer in no group that commits nothing: reads what it is assigned, from where it
    is told, and never disturbs a service's group (replay, erasure, the lag gauge)."""
    from kafka import KafkaConsumer

    return KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)


def group_consumer(topic: str, bootstrap: str, group: str, **options):
    """A kafka-python consumer in consumer group ``group`` (the pose workers')."""
    from kafka import KafkaConsumer

    return KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, **options)


def admin(bootstrap: str, client_id: str, **options):
    """A kafka-python admin client (topics, group offsets)."""
    from kafka import KafkaAdminClient

    return KafkaAdminClient(bootstrap_servers=bootstrap, client_id=client_id, **options)


def async_producer(bootstrap: str, **options):
    """An aiokafka producer with the same partitioner (the gateway's; start it before use)."""
    from aiokafka import AIOKafkaProducer

    return AIOKafkaProducer(bootstrap_servers=bootstrap, partitioner=session_partitioner, **options)


def async_tail(topic: str, bootstrap: str, **options):
    """An aiokafka consumer in no group from the topic's end: what arrives from now on (the gateway's
    fan-out; start it before use)."""
    from aiokafka import AIOKafkaConsumer

    return AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="latest", **options)
