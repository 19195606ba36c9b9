"""Applies ``infra/sql/migrations/NNN_name.sql`` in order, once each, recorded in ``schema_migrations``."""
from __future__ import annotations

import logging
import re
from pathlib import Path

import asyncmy

from rehab.settings import REPO_ROOT, Settings

MIGRATIONS = REPO_ROOT / "infra" / "sql" / "migrations"
_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


def migration_files(folder: Path = MIGRATIONS) -> list[tuple[int, Path]]:
    found = []
    for path in sorted(folder.glob("*.sql")):
        m = _NAME.match(path.name)
        if not m:
            raise ValueError(f"migration file name {path.name!r} must look like 001_description.sql")
        found.append((int(m.group(1)), path))
    versions = [v for v, _ in found]
    if len(set(versions)) != len(versions):
        raise ValueError("two migrations share a version number")
    return found


def split_statements(sql: str) -> list[str]:
    body = "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


async def migrate(settings: Settings) -> list[int]:
    """Creates the database if needed and applies pending migrations; returns the versions applied."""
    if not re.fullmatch(r"[A-Za-z0-9_]{1,64}", settings.mysql_db):
        raise ValueError("REHAB_MYSQL_DB may only contain letters, digits and _")
    logging.getLogger("asyncmy").setLevel(logging.ERROR)  # "database exists" notes are expected here
    conn = await asyncmy.connect(**settings.mysql_kwargs(db=False))
    applied: list[int] = []
    try:
        async with conn.cursor() as cur:
            await cur.execute(f"CREATE DATABASE IF NOT EXISTS `{settings.mysql_db}` CHARACTER SET utf8mb4")
            await cur.execute(f"USE `{settings.mysql_db}`")
            await cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INT PRIMARY KEY, name VARCHAR(200) NOT NULL,"
                " applied_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3))"
            )
            await cur.execute("SELECT version FROM schema_migrations")
            done = {row[0] for row in await cur.fetchall()}
            for version, path in migration_files():
                if version in done:
                    continue
                for statement in split_statements(path.read_text()):
                    await cur.execute(statement)
                await cur.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, path.name))
                applied.append(version)
        await conn.commit()
    finally:
        conn.close()
    return applied


async def drop_database(settings: Settings) -> None:
    """Removes the settings' database (tests and benchmarks clean up after themselves with it)."""
    conn = await asyncmy.connect(**settings.mysql_kwargs(db=False))
    try:
        async with conn.cursor() as cur:
            await cur.execute(f"DROP DATABASE IF EXISTS `{settings.mysql_db}`")
    finally:
        conn.close()
