"""Creates the deployment's topics (idempotent) with kafka-python's admin client."""
from __future__ import annotations

import dataclasses
import time

from kafka import KafkaAdminClient, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions, NewTopic, OffsetSpec
from kafka.errors import KafkaError, TopicAlreadyExistsError

from rehab.adapters import kafka_clients
from rehab.settings import Settings
from rehab.topics import Topics, changelog_topics


def admin(bootstrap: str, timeout: float = 60.0) -> KafkaAdminClient:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return kafka_clients.admin(bootstrap, "rehab-admin", request_timeout_ms=15000)
        except KafkaError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def ensure_topics(bootstrap: str, topics: Topics, compact_existing: bool = False) -> list[str]:
    """Creates missing topics and sets the configs of existing ones (retention and segment roll, so
    an older deployment gets them too); returns the names created. (Partition counts of existing
    topics: ``grow_topics``.)

    An existing topic that is not compacted yet stays so unless ``compact_existing``: it may hold
    records of an older version, keyed by the session id alone, and compaction would keep only the
    last of each session's (``uncompacted_topics`` lists them; docs/operations.md)."""
    client = admin(bootstrap)
    try:
        existing = set(client.list_topics())
        new = [
            NewTopic(s.name, s.partitions, 1, topic_configs=s.configs)
            for s in topics.specs() if s.name not in existing
        ]
        present = [s for s in topics.specs() if s.name in existing]
        if present:
            keep = set() if compact_existing else _not_compacted(client, [s.name for s in present if s.compacted])
            client.alter_configs([ConfigResource(ConfigResourceType.TOPIC, s.name, configs=(
                dataclasses.replace(s, compacted=False) if s.name in keep else s).configs) for s in present])
        created = []
        for topic in new:  # one by one: a concurrent creator must not fail the others
            try:
                client.create_topics([topic])
                created.append(topic.name)
            except TopicAlreadyExistsError:
                pass
            except KafkaError as exc:
                if "TopicAlreadyExists" not in repr(exc):
                    raise
        return created
    finally:
        client.close()


def _not_compacted(client: KafkaAdminClient, names: list[str]) -> set[str]:
    if not names:
        return set()
    response = client.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
    return {n for n in names if "compact" not in response["topic"][n].get("cleanup.policy", {}).get("value", "")}


def uncompacted_topics(bootstrap: str, topics: Topics) -> list[str]:
    """The deployment's topics meant to be compacted that are not (created by an older version and left
    so by ``ensure_topics``): an erasure's tombstones do not remove records there."""
    client = admin(bootstrap)
    try:
        existing = set(client.list_topics())
        return sorted(_not_compacted(client, [s.name for s in topics.specs() if s.compacted and s.name in existing]))
    finally:
        client.close()


def _partition_counts(client: KafkaAdminClient, names: list[str]) -> dict[str, int]:
    existing = set(client.list_topics())
    wanted = [n for n in names if n in existing]
    return {t["name"]: len(t["partitions"]) for t in client.describe_topics(wanted)} if wanted else {}


def partition_counts(bootstrap: str, names: list[str]) -> dict[str, int]:
    """How many partitions each of ``names`` has (topics that do not exist are left out)."""
    client = admin(bootstrap)
    try:
        return _partition_counts(client, names)
    finally:
        client.close()


def grow_topics(bootstrap: str, topics: Topics, changelogs: list[str] = ()) -> dict[str, tuple[int, int]]:
    """Raises the partitions of the deployment's topics (and of the processor's changelog topics,
    which must stay co-partitioned with the keypoints) to ``topics.partitions``; Kafka cannot lower
    them, so fewer than there are is an error. Returns {name: (before, after)} for each one grown.
    Keys move to other partitions: run it with the processors stopped (docs/operations.md)."""
    wanted = {s.name: s.partitions for s in topics.specs() if s.name != topics.dead_letter}
    wanted.update({name: topics.partitions for name in changelogs})
    client = admin(bootstrap)
    try:
        have = _partition_counts(client, list(wanted))
        fewer = {n: c for n, c in have.items() if c > wanted[n]}
        if fewer:
            raise ValueError(f"these topics have more partitions than REHAB_PARTITIONS={topics.partitions} "
                             f"(Kafka cannot remove partitions): {fewer}")
        grow = {n: NewPartitions(total_count=wanted[n]) for n, c in have.items() if c < wanted[n]}
        if grow:
            client.create_partitions(grow)
    finally:
        client.close()
    return {n: (have[n], wanted[n]) for n in grow}


def prepare_topics(settings: Settings, compact_existing: bool = False) -> tuple[list[str], dict[str, tuple[int, int]]]:
    """The deployment's topics as ``rehab init`` and ``rehab stack up`` leave them: created, configured
    and grown (with the processor's changelogs) to REHAB_PARTITIONS. Returns (created, grown)."""
    created = ensure_topics(settings.kafka_bootstrap, settings.topics, compact_existing)
    grown = grow_topics(settings.kafka_bootstrap, settings.topics, changelog_topics(settings.processor_app_id))
    return created, grown


def topic_configs(bootstrap: str, name: str) -> dict[str, str]:
    """The topic's configs as the broker reports them."""
    client = admin(bootstrap)
    try:
        response = client.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
        return {k: v["value"] for k, v in response["topic"][name].items()}
    finally:
        client.close()


def delete_topics(bootstrap: str, names: list[str] = (), prefixes: tuple[str, ...] = ()) -> None:
    """Deletes the topics ``names`` and every topic whose name starts with one of ``prefixes`` (those
    that do not exist are left alone)."""
    client = admin(bootstrap)
    try:
        existing = set(client.list_topics())
        doomed = [n for n in existing if n in names or n.startswith(tuple(prefixes))]
        if doomed:
            client.delete_topics(doomed)
    finally:
        client.close()


def wait_serving(bootstrap: str, topics: list[str], group: str, timeout: float = 90.0) -> float:
    """Blocks until the broker serves: every partition of ``topics`` has a leader that answers (a
    ListOffsets request) and the coordinator of consumer group ``group`` answers. A broker accepts
    connections before that: after a restart it still takes over its partitions and loads the groups'
    offsets, seconds on a busy machine, and clients see "not leader" and "coordinator not available"
    meanwhile. Returns the seconds waited; raises ``TimeoutError``."""
    start = time.monotonic()
    deadline = start + timeout
    client = admin(bootstrap, timeout)

    def leaders_answer():
        client.wait_for_topics(topics, timeout_ms=5000)  # in the metadata, each partition with a leader
        counts = _partition_counts(client, topics)
        client.list_partition_offsets({TopicPartition(name, p): OffsetSpec.LATEST
                                       for name, count in counts.items() for p in range(count)}, timeout_ms=5000)

    try:
        for check in (leaders_answer, lambda: client.describe_groups([group])):
            while True:
                try:
                    check()
                    break
                except KafkaError as exc:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"the Kafka broker at {bootstrap} did not serve {topics} and group "
                                           f"{group!r} within {timeout:.0f} s: {exc!r}") from exc
                    time.sleep(0.2)
    finally:
        client.close()
    return time.monotonic() - start
