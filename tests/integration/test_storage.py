"""Migrations and repositories against the real MariaDB."""
import asyncio

import asyncmy

from rehab.records import Score
from rehab.reference import Reference
from rehab.adapters.storage.migrate import migrate
from rehab.adapters.storage.repository import Database

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


def test_a_guide_with_takes_and_mistakes_is_registered_from_keypoint_files_and_replaced_whole(
        isolated_settings, tmp_path, monkeypatch, capsys):
    """`rehab reference add` with several keypoint files and a named mistake stores every take in order
    (migration 007); registering the guide again replaces its takes, and a stored guide with takes scores
    from `rehab score` as the same guide built from the files."""
    import json

    from rehab.cli import main
    from tests.unit.rehab.scoring.test_form import swaying
    from tests.unit.rehab.test_recordings import clip, write_jsonl
    from tests.unit.rehab.scoring.test_scoring import frames, pose_at

    for name, value in isolated_settings.as_env().items():
        monkeypatch.setenv(name, value)
    guide = write_jsonl(tmp_path / "g.jsonl", frames([pose_at(i / 60) for i in range(60)]))
    take2 = write_jsonl(tmp_path / "g2.jsonl", frames([pose_at(i / 50) for i in range(50)]))
    lean = write_jsonl(tmp_path / "lean.jsonl", frames([swaying(0.35)(pose_at(i / 60), i / 60) for i in range(60)]))
    assert main(["reference", "add", str(guide), str(take2), "--name", "Arm swing", "--id", "swing",
                 "--mistake", f"trunk leans={lean}"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["correct_takes"] == 2 and out["mistakes"] == ["trunk leans"]

    async def stored():
        async with Database.opened(isolated_settings) as db:
            return await db.get_reference("swing"), await db.list_references()

    ref, listing = asyncio.run(stored())
    assert [(t.label, len(t.frames)) for t in ref.takes] == [(None, 50), ("trunk leans", 60)]
    row = next(r for r in listing if r["id"] == "swing")
    assert row["correct_takes"] == 2 and row["mistakes"] == ["trunk leans"]

    attempt = write_jsonl(tmp_path / "a.jsonl", clip(swaying(0.35)))
    assert main(["score", "--reference", "swing", str(attempt), "--json"]) == 0
    from_store = json.loads(capsys.readouterr().out)
    assert main(["score", "--reference", str(guide), "--reference", str(take2), "--mistake", f"trunk leans={lean}",
                 str(attempt), "--json"]) == 0
    from_files = json.loads(capsys.readouterr().out)
    assert from_store["similarity"] == from_files["similarity"] and from_store["mistake"] == "trunk leans"

    assert main(["reference", "add", str(guide), "--name", "Arm swing", "--id", "swing"]) == 0
    capsys.readouterr()
    ref, _ = asyncio.run(stored())
    assert ref.takes == (), "a guide registered again is replaced whole, takes too"


def test_takes_added_at_once_are_all_kept_in_order_up_to_the_limit(isolated_settings):
    """Concurrent uploads of takes to one guide (two clinicians' tabs, a retrying client) each get their
    own position; none overwrites another (the route used to read the guide and write it back whole),
    and the limit holds however they interleave."""
    from rehab.reference import Take

    async def run():
        async with Database.opened(isolated_settings, maxsize=12) as db:
            await db.save_reference(Reference("ref", "Ref", 30.0, 640, 480, "m", "v", "0" * 64, [KPS, KPS]))
            takes = [Take(30.0, 640, 480, [KPS] * (i + 2), f"mistake {i}") for i in range(12)]
            added = await asyncio.gather(*(db.add_take("ref", t, max_takes=10) for t in takes))
            return added, await db.get_reference("ref")

    added, ref = asyncio.run(run())
    assert sorted(a for a in added if a is not None) == list(range(1, 11)), added
    assert added.count(None) == 2, "two refused at the limit"
    assert len(ref.takes) == 10 and len({t.label for t in ref.takes}) == 10
    kept = {t.label for t in ref.takes}
    refused = {f"mistake {i}" for i, a in enumerate(added) if a is None}
    assert kept.isdisjoint(refused) and len(kept | refused) == 12
