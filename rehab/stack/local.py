"""``rehab stack up|down|status``: the whole local stack in one call, safe to run twice."""
from __future__ import annotations

import asyncio

from rehab.settings import Settings
from rehab.stack.kafka import KafkaBroker
from rehab.stack.mariadb import MariaDB
from rehab.stack.proc import StackError
from rehab.adapters.kafka_admin import prepare_topics, wait_serving
from rehab.adapters.storage.migrate import migrate


def up(settings: Settings, log=print, only: str | None = None) -> None:
    """Starts what is not running (both, or ``only`` "kafka" / "mariadb"); then the topics on the broker
    and the schema in the database. Returns once both serve (not only accept connections)."""
    if only in (None, "mariadb"):
        log(MariaDB(settings).up())
    if only in (None, "kafka"):
        log(KafkaBroker(settings).up())
        created, grown = prepare_topics(settings)
        log(f"topics ready ({len(created)} created, {len(grown)} grown to {settings.partitions} partitions): "
            f"{', '.join(s.name for s in settings.topics.specs())}")
        try:
            waited = wait_serving(settings.kafka_bootstrap, [s.name for s in settings.topics.specs()],
                                  settings.processor_app_id)
        except TimeoutError as exc:
            raise StackError(f"{exc} (its log: {KafkaBroker(settings).log_file})") from exc
        if waited >= 0.5:  # a broker that has just (re)started: its partitions and groups take a while
            log(f"Kafka serving (partition leaders and the group coordinator answer) after {waited:.1f} s")
    if only in (None, "mariadb"):
        applied = asyncio.run(migrate(settings))
        log(f"database `{settings.mysql_db}` ready ({len(applied)} migrations applied)")


def down(settings: Settings, log=print, only: str | None = None) -> None:
    if only in (None, "kafka"):
        log(KafkaBroker(settings).down())
    if only in (None, "mariadb"):
        log(MariaDB(settings).down())


def status(settings: Settings) -> dict[str, bool]:
    return {"kafka": KafkaBroker(settings).running(), "mariadb": MariaDB(settings).running()}
