"""Migrations and repositories against the real MariaDB."""
import asyncio

import asyncmy

from rehab.records import Score
from rehab.reference import Reference
from rehab.storage.migrate import migrate
from rehab.storage.repository import Database

KPS = [[10.0 + i, 20.0 + i, 0.9] for i in range(17)]


def test_migrations_apply_once(isolated_settings):
    assert asyncio.run(migrate(isolated_settings)) == [], "a second run applies nothing"

    async def tables():
        conn = await asyncmy.connect(**isolated_settings.mysql_kwargs())
        async with conn.cursor() as cur:
            await cur.execute("SHOW TABLES")
            names = {r[0] for r in await cur.fetchall()}
        conn.close()
        return names

    assert {"exercises", "reference_recordings", "sessions", "scores", "schema_migrations"} <= asyncio.run(tables())


def _score(similarity: float) -> Score:
    return Score("s1", 0, 10, 1000, 1500, similarity, {"left_knee": 0.5}, [], 0.5, 0, "v", 1510, 1520, 1530, "ref")


def test_scores_are_upserted_never_duplicated(isolated_settings):
    async def run():
        async with Database.opened(isolated_settings) as db:
            await db.save_reference(Reference("ref", "Ref", 30.0, 640, 480, "m", "v", "0" * 64, [KPS, KPS]))
            await db.create_session("s1", "p1", "ref", "cloud")
            await db.upsert_scores([_score(0.4)])
            await db.upsert_scores([_score(0.6), _score(0.6)])  # a replay, and a duplicate in one batch
            count = await db.count_scores("s1")
            ref = await db.get_reference("Ref")  # by name too
            session = await db.get_session("s1")
            return count, ref, session

    count, ref, session = asyncio.run(run())
    assert count == 1
    assert ref.id == "ref" and ref.frames == [KPS, KPS]
    assert session["reference_id"] == "ref" and session["mode"] == "cloud"
