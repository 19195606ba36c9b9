"""The tables behind sessions, references and scores, through an asyncmy connection pool."""
from __future__ import annotations

import asyncio
import contextlib
import json

import asyncmy

from rehab.records import Score
from rehab.reference import Reference, Take
from rehab.settings import Settings

_REF_COLUMNS = "id, name, exercise_id, fps, width, height, model, model_version, source_sha256, keypoints"
_INSERT_TAKE = ("INSERT INTO reference_takes (reference_id, position, label, fps, width, height, n_frames, keypoints) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)")


def _take_row(ref_id: str, position: int, take: Take) -> tuple:
    return (ref_id, position, take.label, take.fps, take.width, take.height, len(take.frames),
            json.dumps(take.frames, separators=(",", ":")))


class Database:
    """Constructed with a ready pool; ``await Database.connect(settings)`` builds one."""

    def __init__(self, pool):
        self.pool = pool

    @classmethod
    async def connect(cls, settings: Settings, maxsize: int = 5) -> "Database":
        pool = await asyncmy.create_pool(**settings.mysql_kwargs(), minsize=1, maxsize=maxsize, autocommit=True)
        return cls(pool)

    @classmethod
    @contextlib.asynccontextmanager
    async def opened(cls, settings: Settings, maxsize: int = 2):
        """``async with Database.opened(settings) as db:`` for one-off commands and tests."""
        db = await cls.connect(settings, maxsize=maxsize)
        try:
            yield db
        finally:
            await db.close()

    async def close(self) -> None:
        self.pool.close()
        await self.pool.wait_closed()

    async def execute(self, sql: str, args=None, fetch: str | None = None):
        async with self.pool.acquire() as conn:
            async with conn.cursor() as cur:
                await cur.execute(sql, args)
                if fetch == "one":
                    return await cur.fetchone()
                if fetch == "all":
                    return await cur.fetchall()
                return cur.rowcount

    async def execute_many(self, sql: str, rows: list) -> None:
        async with self.pool.acquire() as conn:
            async with conn.cursor() as cur:
                await cur.executemany(sql, rows)

    # -- references ------------------------------------------------------------------------
    async def save_reference(self, ref: Reference, clinician_id: str | None = None) -> None:
        """Insert or replace a reference (same id) with its keypoints and its other takes and recorded
        mistakes, in one transaction. ``clinician_id``: who registered it (it and their patients see it;
        None: the whole clinic); a replaced reference keeps its owner."""
        async with self.pool.acquire() as conn:
            await conn.begin()
            try:
                async with conn.cursor() as cur:
                    await cur.execute(
                        f"INSERT INTO reference_recordings ({_REF_COLUMNS}, n_frames, clinician_id) "
                        f"VALUES ({', '.join(['%s'] * 12)}) "
                        "ON DUPLICATE KEY UPDATE name=VALUES(name), exercise_id=VALUES(exercise_id), fps=VALUES(fps), "
                        "width=VALUES(width), height=VALUES(height), n_frames=VALUES(n_frames), model=VALUES(model), "
                        "model_version=VALUES(model_version), source_sha256=VALUES(source_sha256), "
                        "keypoints=VALUES(keypoints)",
                        (ref.id, ref.name, ref.exercise_id, ref.fps, ref.width, ref.height, ref.model,
                         ref.model_version, ref.source_sha256, ref.frames_json(), len(ref.frames), clinician_id),
                    )
                    await cur.execute("DELETE FROM reference_takes WHERE reference_id=%s", (ref.id,))
                    if ref.takes:
                        await cur.executemany(_INSERT_TAKE, [_take_row(ref.id, i, t) for i, t in enumerate(ref.takes)])
                await conn.commit()
            except BaseException:
                await conn.rollback()
                raise

    async def add_take(self, ref_id: str, take: Take, max_takes: int) -> int | None:
        """Appends a take (or a recorded mistake) to a stored guide; the guide's takes after it, or None
        when it already holds ``max_takes``. The guide's row is locked for the append, so concurrent
        uploads each get their own position and none is lost (a read, then a whole rewrite, lost one)."""
        async with self.pool.acquire() as conn:
            await conn.begin()
            try:
                async with conn.cursor() as cur:
                    await cur.execute("SELECT id FROM reference_recordings WHERE id=%s FOR UPDATE", (ref_id,))
                    if await cur.fetchone() is None:
                        raise LookupError(f"unknown reference {ref_id!r}")
                    await cur.execute("SELECT COUNT(*), COALESCE(MAX(position) + 1, 0) FROM reference_takes "
                                      "WHERE reference_id=%s", (ref_id,))
                    count, position = await cur.fetchone()
                    if count >= max_takes:
                        await conn.rollback()
                        return None
                    await cur.execute(_INSERT_TAKE, _take_row(ref_id, position, take))
                await conn.commit()
                return count + 1
            except BaseException:
                await conn.rollback()
                raise

    async def reference_owner(self, ref_id: str) -> tuple[bool, str | None]:
        """(whether a reference with this id or name exists, the clinician who registered it)."""
        row = await self.execute("SELECT clinician_id FROM reference_recordings WHERE id=%s OR name=%s LIMIT 1",
                                 (ref_id, ref_id), fetch="one")
        return (False, None) if row is None else (True, row[0])

    async def get_reference(self, ref_id: str) -> Reference | None:
        row = await self.execute(
            f"SELECT {_REF_COLUMNS} FROM reference_recordings WHERE id=%s OR name=%s ORDER BY id=%s DESC LIMIT 1",
            (ref_id, ref_id, ref_id), fetch="one",
        )
        if row is None:
            return None
        rid, name, ex, fps, w, h, model, ver, sha, kps = row
        takes = await self.execute("SELECT label, fps, width, height, keypoints FROM reference_takes "
                                   "WHERE reference_id=%s ORDER BY position", (rid,), fetch="all")
        return Reference(rid, name, fps, w, h, model, ver, sha, json.loads(kps), ex,
                         tuple(Take(t[1], t[2], t[3], json.loads(t[4]), t[0]) for t in takes))

    async def list_references(self, owners: set | None = None) -> list[dict]:
        """Every reference, or those registered by one of ``owners`` (None in it: the clinic's shared ones)."""
        where, args = "", ()
        if owners is not None:
            named = sorted(o for o in owners if o is not None)
            where = " WHERE clinician_id IS NULL" + (f" OR clinician_id IN ({', '.join(['%s'] * len(named))})"
                                                     if named else "")
            args = tuple(named)
        rows = await self.execute(
            "SELECT id, name, fps, n_frames, model, created_at, clinician_id, "
            "(SELECT COUNT(*) FROM reference_takes t WHERE t.reference_id=r.id AND t.label IS NULL), "
            "(SELECT GROUP_CONCAT(DISTINCT t.label ORDER BY t.label SEPARATOR '\\n') FROM reference_takes t "
            "WHERE t.reference_id=r.id AND t.label IS NOT NULL) "
            f"FROM reference_recordings r{where} ORDER BY created_at", args, fetch="all",
        )
        return [dict(id=r[0], name=r[1], fps=r[2], n_frames=r[3], model=r[4], created_at=str(r[5]), clinician_id=r[6],
                     correct_takes=1 + int(r[7] or 0), mistakes=r[8].split("\n") if r[8] else [])
                for r in rows]

    # -- sessions --------------------------------------------------------------------------
    async def create_session(self, session_id: str, patient_id: str, reference_id: str, mode: str) -> None:
        await self.execute(
            "INSERT INTO sessions (id, patient_id, reference_id, mode) VALUES (%s, %s, %s, %s)",
            (session_id, patient_id, reference_id, mode),
        )

    async def get_session(self, session_id: str) -> dict | None:
        row = await self.execute(
            "SELECT id, patient_id, reference_id, mode, started_at, ended_at FROM sessions WHERE id=%s",
            (session_id,), fetch="one",
        )
        if row is None:
            return None
        keys = ("id", "patient_id", "reference_id", "mode", "started_at", "ended_at")
        return dict(zip(keys, row))

    async def connect_session(self, session_id: str) -> tuple[int, float]:
        """Counts a new peer connection; returns (connections before this one, seconds since the session
        started, by the database's clock)."""
        await self.execute("UPDATE sessions SET connections = connections + 1 WHERE id=%s", (session_id,))
        row = await self.execute(
            "SELECT connections - 1, TIMESTAMPDIFF(MICROSECOND, started_at, CURRENT_TIMESTAMP(3)) / 1e6 "
            "FROM sessions WHERE id=%s", (session_id,), fetch="one")
        if row is None:
            raise LookupError(session_id)
        return int(row[0]), float(row[1])

    async def end_session(self, session_id: str, summary: dict) -> None:
        await self.execute(
            "UPDATE sessions SET ended_at=COALESCE(ended_at, CURRENT_TIMESTAMP(3)), summary=%s WHERE id=%s",
            (json.dumps(summary), session_id),
        )

    # -- scores ----------------------------------------------------------------------------
    async def upsert_scores(self, scores: list[Score]) -> None:
        """Inserts or replaces the windows' rows; rows of erased sessions (a score in flight when its
        patient was erased, rehab/ops/erasure.py) are dropped."""
        if not scores:
            return
        sids = sorted({s.session_id for s in scores})
        erased = await self.execute(
            f"SELECT session_id FROM erased_sessions WHERE session_id IN ({', '.join(['%s'] * len(sids))})",
            sids, fetch="all")
        if erased:
            gone = {row[0] for row in erased}
            scores = [s for s in scores if s.session_id not in gone]
            if not scores:
                return
        rows = [
            (s.session_id, s.window_start_seq, s.window_end_seq, s.window_start_ts_ms, s.window_end_ts_ms,
             s.similarity, s.phase, s.reps, s.scorer_version, s.score_ts_ms, s.to_json().decode())
            for s in scores
        ]
        async with self.pool.acquire() as conn:
            async with conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO scores (session_id, window_start_seq, window_end_seq, window_start_ts_ms, "
                    "window_end_ts_ms, similarity, phase, reps, scorer_version, score_ts_ms, detail) "
                    "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) ON DUPLICATE KEY UPDATE "
                    "similarity=VALUES(similarity), phase=VALUES(phase), reps=VALUES(reps), "
                    "scorer_version=VALUES(scorer_version), score_ts_ms=VALUES(score_ts_ms), detail=VALUES(detail)",
                    rows,
                )

    async def count_scores(self, session_id: str) -> int:
        row = await self.execute("SELECT COUNT(*) FROM scores WHERE session_id=%s", (session_id,), fetch="one")
        return int(row[0])

    async def wait_for_scores(self, session_id: str, at_least: int, timeout_s: float = 15.0) -> int:
        """The session's row count once it reaches ``at_least`` (or when ``timeout_s`` is up): the
        processor's writer puts rows in MySQL from the scores topic, a moment after the score is live."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            n = await self.count_scores(session_id)
            if n >= at_least or asyncio.get_running_loop().time() > deadline:
                return n
            await asyncio.sleep(0.1)
