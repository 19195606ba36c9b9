"""A deployment of its own on a running stack, for the tests and the benchmarks: a unique topic
namespace, database, worker group and processor app id, created on entry and removed on exit, so that
runs sharing one Kafka and one MariaDB never see each other's records."""
from __future__ import annotations

import asyncio
import contextlib
import uuid

from rehab.adapters.kafka_admin import delete_topics, ensure_topics
from rehab.adapters.storage.migrate import drop_database, migrate
from rehab.settings import Settings


@contextlib.contextmanager
def isolated_deployment(base: Settings, prefix: str = "t", **overrides):
    tag = f"{prefix}{uuid.uuid4().hex[:10]}"
    settings = base.with_(topic_namespace=tag, mysql_db=f"rehab_{tag}", worker_group=f"{tag}-workers",
                          processor_app_id=f"{tag}-processor", **overrides)
    ensure_topics(settings.kafka_bootstrap, settings.topics)
    asyncio.run(migrate(settings))
    try:
        yield settings
    finally:
        # its topics and those the processor's Faust app made (changelogs, the assignor's): "TAG." / "TAG-"
        delete_topics(settings.kafka_bootstrap, prefixes=(f"{tag}.", f"{tag}-"))
        asyncio.run(drop_database(settings))
