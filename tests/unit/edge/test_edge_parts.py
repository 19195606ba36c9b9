import subprocess
import sys

import numpy as np
import pytest

from edge.backends.base import Person, PoseBackend
from edge.backends.base import box_iou as iou
from edge.subject import SubjectSelector
from edge.video import VideoError, frames, probe


class ScriptedBackend(PoseBackend):
    """Sees everyone (like Keypoint R-CNN); returns the people scripted for each call."""

    name, version, multi_person = "scripted", "1", True

    def __init__(self, script):
        self.script = iter(script)

    def infer(self, images, streams):
        return [next(self.script) for _ in images]


def person(x: float, y: float, h: float, wiggle: float = 0.0) -> Person:
    """A stick figure of height h at (x, y), its elbows and wrists raised by ``wiggle`` pixels."""
    kps = np.zeros((17, 3), np.float32)
    kps[:, 0] = x + np.linspace(-h / 6, h / 6, 17)
    kps[:, 1] = y + np.linspace(0, h, 17)
    kps[:, 2] = 0.9
    kps[7:11, 1] -= wiggle  # elbows and wrists: an arm exercise
    return Person(kps, (x - h / 4, y, x + h / 4, y + h), 0.9)


IMAGE = np.zeros((480, 640, 3), np.uint8)


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert abs(iou((0, 0, 10, 10), (5, 0, 15, 10)) - 1 / 3) < 1e-9


def test_the_patient_is_the_one_moving_not_the_bigger_bystander():
    frames = [[person(500, 20, 440), person(150, 200, 200, wiggle=30.0 * (i % 2))] for i in range(60)]
    sel = SubjectSelector(ScriptedBackend(frames), "s", acquire_ms=1000)
    chosen = [sel.step(IMAGE, i * 33.3) for i in range(60)]
    # one frame cannot tell who moves: the most prominent is shown until the patient's movement shows
    first = next(i for i, c in enumerate(chosen) if c is not None and c.box[0] < 300)
    assert first <= 4, "the patient's movement takes over within a few frames"
    assert all(c is not None and c.box[0] < 300 for c in chosen[first:]), "never the bystander once the patient moved"
    assert sel.patient is not None and sel.patient.person.box[0] < 300


def test_nobody_rather_than_someone_else_when_the_patient_leaves_then_reacquired():
    moving = [[person(150, 200, 200, wiggle=30.0 * (i % 2))] for i in range(40)]
    gone = [[person(500, 20, 440)] for _ in range(10)]
    back = [[person(500, 20, 440), person(150, 200, 200, wiggle=30.0 * (i % 2))] for i in range(40)]
    sel = SubjectSelector(ScriptedBackend(moving + gone + back), "s", acquire_ms=500, lost_after=5)
    out = [sel.step(IMAGE, i * 33.3) for i in range(90)]
    assert out[39] is not None and out[39].box[0] < 300
    assert all(o is None for o in out[40:50]), "while the patient is away, no keypoints at all"
    assert out[-1] is not None and out[-1].box[0] < 300, "the patient is re-acquired"


def test_a_lone_still_person_is_reported_at_once_and_locked_at_the_end_of_acquisition():
    sel = SubjectSelector(ScriptedBackend([[person(300, 100, 300)]] * 40), "s", acquire_ms=1000)
    out = [sel.step(IMAGE, i * 33.3) for i in range(29)]
    assert all(o is not None for o in out) and sel.patient is None
    for i in range(29, 40):
        sel.step(IMAGE, i * 33.3)
    assert sel.patient is not None


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


def test_the_worker_loads_a_guide_in_the_background_and_goes_on_without_it_meanwhile():
    import threading
    import time

    from edge.guides import Guides
    from rehab.reference import Reference

    release = threading.Event()
    calls = []

    def load(ref_id):
        calls.append(ref_id)
        if ref_id == "broken":
            raise ConnectionError("database away")
        release.wait(5)
        frames = [person(150, 200, 200, wiggle=10.0 * (i % 5)).keypoints.tolist() for i in range(30)]
        return Reference(ref_id, ref_id, 30.0, 640, 480, "m", "v", "-", frames)

    guides = Guides(load, retry_s=60)
    try:
        assert guides.get(None) is None
        assert guides.get("g") is None, "not loaded yet: the policy runs without it, the worker never waits"
        release.set()
        deadline = time.monotonic() + 5
        while guides.get("g") is None and time.monotonic() < deadline:
            time.sleep(0.01)
        matcher = guides.get("g")
        assert matcher is not None and calls.count("g") == 1
        assert guides.get("broken") is None
        while guides.pending and time.monotonic() < deadline:
            guides.get("broken")
            time.sleep(0.01)
        assert guides.get("broken") is None and calls.count("broken") == 1, "a failed load waits retry_s"
    finally:
        guides.close()


def test_the_detector_anchors_and_regions_follow_mediapipes_pose_graph():
    from edge.backends.blazepose_people import Region, ssd_anchors, weighted_nms

    anchors = ssd_anchors()
    assert anchors.shape == (2254, 2), "the model's 2,254 outputs, one per anchor"
    assert np.allclose(anchors[0], [0.5 / 28, 0.5 / 28]) and np.allclose(anchors[-1], [6.5 / 7, 6.5 / 7])
    upright = Region.from_points(np.array([100.0, 200.0]), np.array([100.0, 100.0]))
    assert upright.rotation == pytest.approx(0.0) and upright.size == pytest.approx(250.0)
    m = upright.matrix(256)
    assert np.allclose(m @ [128, 128, 1], [100, 200]), "the crop's centre is the hip centre"
    lying = Region.from_points(np.array([100.0, 200.0]), np.array([200.0, 200.0]))
    assert abs(lying.rotation) == pytest.approx(np.pi / 2), "a person lying down is turned upright"
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], float)
    kept = weighted_nms(boxes, np.array([0.9, 0.8, 0.7]), np.zeros((3, 2)), 0.3)
    assert len(kept) == 2, "two overlapping boxes are one person, the third another"


def test_extract_keeps_wild_keypoints_publishable_like_the_worker(data_dir):
    """A model's joint extrapolated far outside the picture must not stop `rehab extract` (the worker
    already publishes such a joint at the records' margin with confidence 0)."""
    from edge.extract import extract

    wild = person(100, 50, 200)
    wild.keypoints[15] = [1e7, -1e7, 0.9]  # an ankle a kilometre away
    frames = list(extract(data_dir / "opencv_messi5.jpg", ScriptedBackend([[wild]] * 5)))
    assert len(frames) == 1 and frames[0].keypoints is not None
    assert frames[0].keypoints[15][2] == 0.0, "kept at the margin, with confidence 0"


def test_with_a_guide_nobody_matches_the_mover_is_still_locked_after_three_windows():
    """A patient who performs poorly (the guide's similarity stays low) is still locked, after three
    acquisition windows, rather than everyone being tracked for ever; the still bystander never."""
    frames = [[person(500, 20, 440), person(150, 200, 200, wiggle=30.0 * (i % 2))] for i in range(120)]
    sel = SubjectSelector(ScriptedBackend(frames), "s", matcher=lambda ts, kps: 0.1, acquire_ms=1000)
    out, locked_at = [], None
    for i in range(120):
        out.append(sel.step(IMAGE, i * 33.3))
        if locked_at is None and sel.patient is not None:
            locked_at = i * 33.3
    assert sel.patient is not None and sel.patient.person.box[0] < 300
    assert 3000 <= locked_at < 3100, f"locked at {locked_at} ms: not before three windows, and at once then"
    assert all(o is not None and o.box[0] < 300 for o in out[10:]), "the mover, never the bystander"


def _texture(seed: int = 0) -> np.ndarray:
    import cv2

    noise = np.random.default_rng(seed).integers(0, 255, (480, 640), np.uint8)
    return cv2.cvtColor(cv2.GaussianBlur(noise, (0, 0), 2.0), cv2.COLOR_GRAY2BGR)


def test_keypoints_follow_the_picture_by_optical_flow_and_not_through_a_cut():
    from edge.subject import follow_points

    image = _texture()
    moved = np.roll(image, (3, 5), axis=(0, 1))  # the picture moves 5 px right, 3 px down
    kps = person(300, 100, 300).keypoints
    kps[16, 2] = 0.1  # not confident: not followed
    out = follow_points(image, moved, kps)
    assert out is not None
    np.testing.assert_allclose(out[:16, :2], kps[:16, :2] + [5, 3], atol=0.5)
    assert out[16, 2] == 0.0 and (out[:16, 2] == kps[:16, 2]).all()
    assert follow_points(image, _texture(1), kps) is None, "another picture altogether: nothing flows back"


@pytest.mark.parametrize("behind", [True, False], ids=["crossing-behind", "crossing-in-front"])
def test_a_patient_hidden_by_someone_crossing_is_followed_briefly_never_swapped_for_them(behind):
    """Locked, then for 30 frames only a bystander whose box covers the patient's is found (the landmark
    model slides onto whoever is more visible). Someone passing behind the patient (feet higher in the
    picture): the patient's keypoints follow the picture for COAST_MS, then nobody. Someone passing in
    front hides the patient: nobody at once (flow would follow the one in front). Never the bystander."""
    from edge.subject import COAST_MS

    moving = [[person(300, 100, 300, wiggle=30.0 * (i % 2))] for i in range(40)]
    # their box covers 30 % of the patient's; their feet at y 390 (behind) or 420 (in front) against 400
    crossing = [[person(400, 110, 280) if behind else person(400, 120, 300)] for _ in range(30)]
    sel = SubjectSelector(ScriptedBackend(moving + crossing), "s", acquire_ms=500, lost_after=5)
    image = _texture()
    image[:, 350:, 0] //= 4  # the bystander's torso in other colours than the patient's
    out = [sel.step(image, i * 33.3) for i in range(70)]
    assert sel.patient is None and out[39] is not None
    assert sel.prev_image is None, "no frame kept once nobody is locked (a worker holds one per session)"
    last = out[39].keypoints
    followed = [i for i in range(40, 70) if out[i] is not None]
    if not behind:
        assert followed == []
        return
    assert followed == list(range(40, 40 + len(followed))) and 0.8 * COAST_MS <= len(followed) * 33.3 <= COAST_MS + 34
    for i in followed:
        np.testing.assert_allclose(out[i].keypoints[:, :2], last[:, :2], atol=1.0)  # (a still picture)
    assert all(o is None for o in out[40 + len(followed):])
