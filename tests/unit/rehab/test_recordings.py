"""Keypoint files (rehab/recordings.py) wherever a video is taken, and `rehab score` over many attempts:
one JSON object per attempt, in order, an unreadable attempt reported without losing the others."""
from __future__ import annotations

import json

import pytest

from rehab.cli import main
from rehab.recordings import KeypointFileError, is_keypoint_file, read_keypoints, reference_from_keypoints
from rehab.scoring import score_attempt
from tests.unit.rehab.scoring.test_form import swaying
from tests.unit.rehab.scoring.test_scoring import frames, pose_at, reference


def write_jsonl(path, fs, people=False):
    with open(path, "w") as fh:
        for f in fs:
            d = json.loads(f.to_json())
            if people:
                d["people"] = [{"track": 1, "keypoints": f.keypoints, "box": None}]
            fh.write(json.dumps(d) + "\n")
    return path


def write_document(path, fs, fps=30.0):
    path.write_text(json.dumps({"video": "x.mp4", "fps": fps, "frames": [json.loads(f.to_json()) for f in fs]}))
    return path


def clip(fn=lambda k, t: k, n=120, t0=1_700_000_000_000):
    fs = frames([fn(pose_at(i / 60), i / 60) for i in range(n)])
    # as `rehab extract` writes them: wall-clock capture times
    return [type(f)(**{**f.__dict__, "capture_ts_ms": f.capture_ts_ms + t0}) for f in fs]


def test_both_layouts_read_back_with_their_frame_rate(tmp_path):
    fs = clip()
    a, fps_a = read_keypoints(write_jsonl(tmp_path / "a.jsonl", fs, people=True))
    b, fps_b = read_keypoints(write_document(tmp_path / "b.json", fs, fps=29.97))
    assert [f.keypoints for f in a] == [f.keypoints for f in fs] == [f.keypoints for f in b]
    assert fps_a == pytest.approx(30.0, rel=0.001) and fps_b == 29.97
    assert is_keypoint_file(tmp_path / "a.jsonl") and is_keypoint_file(tmp_path / "b.json")
    video = tmp_path / "v.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)
    assert not is_keypoint_file(video)


def test_a_keypoint_file_scores_as_the_frames_it_holds(tmp_path):
    fs = clip()
    ref = reference_from_keypoints(write_jsonl(tmp_path / "guide.jsonl", frames([pose_at(i / 60) for i in range(60)])),
                                   "guide")
    assert ref.id == "guide" and len(ref.frames) == 60 and len(ref.source_sha256) == 64
    got, _ = read_keypoints(write_jsonl(tmp_path / "a.jsonl", fs))
    # (the file's frame rate, 59 steps over 1967 ms, is 29.995 frames/s: the same scores to within rounding)
    assert score_attempt(ref, got)["similarity"] == pytest.approx(score_attempt(reference(), fs)["similarity"], abs=0.005)


@pytest.mark.parametrize("content, where", [
    ('{"session_id": "s"}\nnot json\n', "line 1"),
    ('\n\n{"x": 1}\n', "line 3"),
    ('{"frames": 3}', "'frames' must be a list"),
    ("", "no keypoint frames"),
])
def test_a_broken_keypoint_file_says_what_and_where(tmp_path, content, where):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(KeypointFileError, match=where):
        read_keypoints(path)


def test_capture_times_must_not_go_backwards(tmp_path):
    fs = clip(n=10)
    with pytest.raises(KeypointFileError, match="backwards"):
        read_keypoints(write_jsonl(tmp_path / "b.jsonl", fs[5:] + fs[:5]))


def test_batch_scoring_prints_one_json_line_per_attempt_in_order(tmp_path, capsys):
    guide = write_jsonl(tmp_path / "guide.jsonl", frames([pose_at(i / 60) for i in range(60)]))
    good = write_jsonl(tmp_path / "good.jsonl", clip())
    still = write_jsonl(tmp_path / "still.jsonl", clip(lambda k, t: pose_at(0.0)))
    leaning = write_jsonl(tmp_path / "leaning.jsonl", clip(swaying(0.35)))
    mistake = write_jsonl(tmp_path / "lean.jsonl", frames([swaying(0.35)(pose_at(i / 60), i / 60) for i in range(60)]))
    assert main(["score", "--reference", str(guide), "--mistake", f"trunk leans={mistake}",
                 str(good), str(still), str(leaning), "--json"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["attempt"] for r in lines] == [str(good), str(still), str(leaning)]
    assert [r["verdict"] for r in lines[:2]] == ["good", "not the exercise"]
    assert lines[2]["mistake"] == "trunk leans" and lines[0]["mistake"] is None
    for r in lines:
        assert 0.0 <= r["similarity"] <= 1.0
        assert r["thresholds"] == {"good": 0.75, "not_the_exercise": 0.35}
        assert {"joints", "reps", "phase_coverage", "corrections", "scorer_version"} <= set(r)


def test_an_unreadable_attempt_is_reported_and_the_others_are_still_scored(tmp_path, capsys):
    guide = write_jsonl(tmp_path / "guide.jsonl", frames([pose_at(i / 60) for i in range(60)]))
    good = write_jsonl(tmp_path / "good.jsonl", clip())
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"session_id": 3}\n')
    assert main(["score", "--reference", str(guide), str(broken), str(tmp_path / "missing.jsonl"), str(good),
                 "--json"]) == 1
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["attempt"] for r in lines] == [str(broken), str(tmp_path / "missing.jsonl"), str(good)]
    assert "line 1" in lines[0]["error"] and "no such file" in lines[1]["error"]
    assert lines[2]["verdict"] == "good"


def test_a_second_reference_is_another_correct_take(tmp_path, capsys):
    guide = write_jsonl(tmp_path / "guide.jsonl", frames([pose_at(i / 60) for i in range(60)]))
    sway = write_jsonl(tmp_path / "sway.jsonl", frames([swaying(0.2)(pose_at(i / 60), i / 60) for i in range(60)]))
    attempt = write_jsonl(tmp_path / "a.jsonl", clip(swaying(0.2)))
    main(["score", "--reference", str(guide), str(attempt), "--json"])
    main(["score", "--reference", str(guide), "--reference", str(sway), str(attempt), "--json"])
    one, two = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert two["similarity"] > one["similarity"]


def test_a_mistake_needs_a_label(tmp_path, capsys):
    guide = write_jsonl(tmp_path / "guide.jsonl", frames([pose_at(i / 60) for i in range(60)]))
    assert main(["score", "--reference", str(guide), "--mistake", str(guide), str(guide)]) == 2
    assert "LABEL=FILE" in capsys.readouterr().err

