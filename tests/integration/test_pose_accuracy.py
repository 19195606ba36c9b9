"""BlazePose and the subject policy on the real clips: the subject in every frame, anatomically
plausible keypoints, the patient rather than a bigger still bystander, one pedestrian kept."""
import numpy as np
import pytest

from benchmarks.variants import with_bystander, write
from edge.extract import extract
from edge.video import frames as read_frames
from rehab.coco import INDEX


def _y(f, name):
    return f.keypoints[INDEX[name]][1]


@pytest.mark.parametrize("clip", ["pose2sim_single_cam01.mp4", "pose2sim_single_cam02.mp4"])
def test_every_frame_has_the_subject_with_plausible_keypoints(clip, clip_keypoints):
    frames = clip_keypoints(clip)
    missing = [f.seq for f in frames if f.keypoints is None]
    assert missing in ([], [0]), f"frames without the subject: {missing} (frame 0 cannot show who moves)"
    for f in frames[1:]:
        for side in ("left", "right"):
            assert _y(f, "nose") < _y(f, f"{side}_hip"), f"frame {f.seq}: head below the {side} hip"
            assert _y(f, f"{side}_shoulder") < _y(f, f"{side}_hip") < _y(f, f"{side}_ankle"), f"frame {f.seq}"
        sizes = np.ptp(np.array(f.keypoints)[:, :2], axis=0)
        assert sizes[1] > 0.2 * f.height, f"frame {f.seq}: a body shorter than a fifth of the picture"


def test_the_patient_is_chosen_over_a_bigger_still_bystander(blazepose, data_dir, tmp_path):
    patient = list(read_frames(data_dir / "pose2sim_single_cam02.mp4", 640))
    bystander = next(read_frames(data_dir / "pose2sim_single_cam01.mp4", 640))
    clip = write(tmp_path / "bystander.mp4", [with_bystander(p, bystander) for p in patient], 60.0)
    patient_right_edge = patient[0].shape[1] * 0.6
    frames = list(extract(clip, blazepose))
    side = ["." if f.keypoints is None else "P" if np.mean(np.array(f.keypoints)[:, 0]) < patient_right_edge
            else "B" for f in frames]
    trace = "".join(side)
    first_patient = trace.index("P")
    # until someone moves the most prominent person is reported (docs/pose.md); the patient's first
    # movement takes over within a few frames (~8 at 60 fps here)
    assert first_patient <= 12, f"the patient was found late: {trace}"
    assert "B" not in trace[first_patient:], f"the bystander was reported once the patient was seen: {trace}"
    assert trace.count("P") >= 0.6 * len(frames), f"the patient found too rarely: {trace}"
    assert "." not in trace[-35:], f"once locked, the patient is followed in every frame: {trace}"


def test_one_pedestrian_is_kept_frame_to_frame(blazepose, data_dir):
    frames = list(extract(data_dir / "opencv_vtest.avi", blazepose))
    boxes = [f.box for f in frames]
    assert sum(b is not None for b in boxes) > 200
    for i, (a, b) in enumerate(zip(boxes, boxes[1:])):
        if a is None or b is None:
            continue
        shift = np.hypot((a[0] + a[2] - b[0] - b[2]) / 2, (a[1] + a[3] - b[1] - b[3]) / 2)
        assert shift < 0.5 * (a[3] - a[1]), f"frame {i + 1}: the subject jumped {shift:.0f} px to someone else"
