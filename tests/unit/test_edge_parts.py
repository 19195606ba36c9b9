import subprocess
import sys

import numpy as np
import pytest

from edge.backends.base import Person
from edge.tracking import SubjectTracker, iou
from edge.video import VideoError, frames, probe


def person(x1, y1, x2, y2, score=0.9) -> Person:
    return Person(np.zeros((17, 3), np.float32), (x1, y1, x2, y2), score)


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert abs(iou((0, 0, 10, 10), (5, 0, 15, 10)) - 1 / 3) < 1e-9


def test_tracker_stays_on_the_locked_person_when_a_bigger_one_appears():
    tracker = SubjectTracker()
    patient = person(100, 100, 200, 300)
    assert tracker.choose([patient]) is patient
    bystander = person(300, 50, 600, 470)  # bigger, nearer the camera
    moved = person(105, 100, 205, 300)
    assert tracker.choose([bystander, moved]) is moved


def test_tracker_reports_nobody_rather_than_someone_else_then_reacquires():
    tracker = SubjectTracker(lost_after=3)
    tracker.choose([person(100, 100, 200, 300)])
    other = person(400, 100, 500, 300)
    assert tracker.choose([other]) is None and tracker.choose([other]) is None
    assert tracker.choose([other]) is other, "after lost_after misses it re-acquires"


def test_missing_empty_and_corrupt_videos_get_clear_errors(tmp_path):
    with pytest.raises(VideoError, match="no such file"):
        probe(tmp_path / "nope.mp4")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoError, match="empty"):
        probe(empty)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 500)
    with pytest.raises(VideoError):
        list(frames(corrupt))
    bad_image = tmp_path / "x.jpg"
    bad_image.write_bytes(b"not an image")
    with pytest.raises(VideoError, match="not a readable image"):
        probe(bad_image)


def test_frames_are_downscaled(data_dir):
    first = next(frames(data_dir / "pose2sim_single_cam01.mp4", max_side=640))
    assert first.shape[:2] == (640, 360)


def test_exactly_one_opencv_wheel_provides_cv2_and_it_imports_headless():
    from importlib.metadata import distributions

    cv_dists = sorted(d.metadata["Name"] for d in distributions() if d.metadata["Name"].lower().startswith("opencv"))
    assert cv_dists == ["opencv-contrib-python-headless"], cv_dists
    proc = subprocess.run([sys.executable, "-c", "import cv2, mediapipe; print(cv2.__version__)"],
                          env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
