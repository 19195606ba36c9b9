"""rehab stack up|down|status, rehab migrate."""
from __future__ import annotations

import asyncio
import json

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
    from rehab.storage.migrate import migrate

    applied = asyncio.run(migrate(Settings.from_env()))
    print(f"applied migrations: {applied or 'none pending'}")
    return 0


def run_init(args) -> int:
    from rehab.stack.topics import prepare_topics
    from rehab.storage.migrate import migrate

    settings = Settings.from_env()
    created, grown = prepare_topics(settings)
    applied = asyncio.run(migrate(settings))
    print(json.dumps({"topics_created": created, "topics_grown": {n: list(c) for n, c in grown.items()},
                      "partitions": settings.partitions, "migrations_applied": applied}))
    return 0
