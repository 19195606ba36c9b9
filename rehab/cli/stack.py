"""rehab stack up|down|status, rehab migrate."""
from __future__ import annotations

import asyncio
import json
import sys

from rehab.settings import Settings


def add_commands(sub) -> None:
    p = sub.add_parser("stack", help="start/stop the local Kafka broker and MariaDB")
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument("--only", choices=["kafka", "mariadb"],
                   help="start/stop one of the two (e.g. to restart the broker); up also creates topics and migrates")
    p.set_defaults(func=run_stack)
    m = sub.add_parser("migrate", help="apply pending SQL migrations")
    m.set_defaults(func=run_migrate)
    i = sub.add_parser("init", help="create the topics (or grow them to REHAB_PARTITIONS) and apply migrations "
                                    "on an existing Kafka and MySQL")
    i.add_argument("--compact-existing", action="store_true",
                   help="also compact keypoints/scores/dead-letter topics an older version created (needed for "
                        "erasure there; their records keyed by session alone keep only each session's last)")
    i.set_defaults(func=run_init)


def run_stack(args) -> int:
    from rehab.stack import local

    settings = Settings.from_env()
    if args.action == "up":
        local.up(settings, only=args.only)
    elif args.action == "down":
        local.down(settings, only=args.only)
    else:
        state = local.status(settings)
        print(json.dumps(state))
        return 0 if all(state.values()) else 1
    return 0


def run_migrate(args) -> int:
    from rehab.adapters.storage.migrate import migrate

    applied = asyncio.run(migrate(Settings.from_env()))
    print(f"applied migrations: {applied or 'none pending'}")
    return 0


def run_init(args) -> int:
    from rehab.adapters.kafka_admin import prepare_topics, uncompacted_topics
    from rehab.adapters.storage.migrate import migrate

    settings = Settings.from_env()
    created, grown = prepare_topics(settings, compact_existing=args.compact_existing)
    applied = asyncio.run(migrate(settings))
    left = uncompacted_topics(settings.kafka_bootstrap, settings.topics)
    print(json.dumps({"topics_created": created, "topics_grown": {n: list(c) for n, c in grown.items()},
                      "partitions": settings.partitions, "migrations_applied": applied,
                      "topics_not_compacted": left}))
    if left:
        print(f"note: {', '.join(left)} were created by an older version and are not compacted: erasing a "
              "patient cannot remove their records there until their retention (docs/operations.md, "
              "rehab init --compact-existing)", file=sys.stderr)
    return 0
