"""Creates the deployment's topics (idempotent) with kafka-python's admin client."""
from __future__ import annotations

import time

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from rehab.topics import Topics


def admin(bootstrap: str, timeout: float = 60.0) -> KafkaAdminClient:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return KafkaAdminClient(bootstrap_servers=bootstrap, client_id="rehab-admin", request_timeout_ms=15000)
        except KafkaError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def ensure_topics(bootstrap: str, topics: Topics, partitions: int = 4) -> list[str]:
    """Creates missing topics and sets the configs of existing ones (retention and segment roll, so
    an older deployment gets them too); returns the names created."""
    client = admin(bootstrap)
    try:
        existing = set(client.list_topics())
        new = [
            NewTopic(s.name, s.partitions, 1, topic_configs=s.configs)
            for s in topics.specs(partitions) if s.name not in existing
        ]
        present = [s for s in topics.specs(partitions) if s.name in existing]
        if present:
            client.alter_configs([ConfigResource(ConfigResourceType.TOPIC, s.name, configs=s.configs)
                                  for s in present])
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


def topic_configs(bootstrap: str, name: str) -> dict[str, str]:
    """The topic's configs as the broker reports them."""
    client = admin(bootstrap)
    try:
        response = client.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
        return {k: v["value"] for k, v in response["topic"][name].items()}
    finally:
        client.close()


def delete_topics(bootstrap: str, names: list[str]) -> None:
    client = admin(bootstrap)
    try:
        existing = set(client.list_topics())
        doomed = [n for n in names if n in existing]
        if doomed:
            client.delete_topics(doomed)
    finally:
        client.close()
