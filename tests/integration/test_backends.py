"""Both pose backends through the one interface. Keypoint R-CNN runs with random weights (no
internet here); BlazePose runs for real on the bundled photo."""
import cv2
import numpy as np
import pytest
import torch

from edge.backends import BackendError, create_backend
from rehab.coco import INDEX


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (120, 160, 3), dtype=np.uint8) for _ in range(2)]


@pytest.fixture(scope="module")
def rcnn():
    torch.manual_seed(0)
    return create_backend("keypoint_rcnn", weights="random", score_threshold=0.05, max_side=160)


def test_keypoint_rcnn_outputs_coco17_pixels_and_confidences(rcnn, images):
    people = rcnn.infer(images, [None, None])
    assert len(people) == 2 and people[0], "random weights with threshold 0 still detect boxes"
    p = people[0][0]
    assert p.keypoints.shape == (17, 3) and p.keypoints.dtype == np.float32
    assert ((p.keypoints[:, 2] >= 0) & (p.keypoints[:, 2] <= 1)).all()
    assert (p.keypoints[:, 0] >= -1).all() and (p.keypoints[:, 0] <= 161).all()


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def test_keypoint_rcnn_batched_equals_one_by_one(rcnn, images):
    """Batching runs the same model on the same input: the same people, up to float rounding. (Not
    bit-equal: convolution kernels sum in another order for another batch size, and which order
    depends on the CPU; with random weights near-equal scores can swap ranks and near-flat heatmaps
    move a keypoint by a cell. Compared as a detector's result: each of the single run's top people
    found in the batched run, same box, keypoints within a pixel for most joints.)"""
    batched = rcnn.infer(images, [None, None])
    single = [rcnn.infer([im], [None])[0] for im in images]
    for b, s in zip(batched, single):
        assert abs(len(b) - len(s)) <= max(2, len(s) // 10)
        matched = 0
        for p in s[:5]:
            best = max(b, key=lambda q: _iou(q.box, p.box), default=None)
            if best is None or _iou(best.box, p.box) < 0.9:
                continue
            close = np.linalg.norm(best.keypoints[:, :2] - p.keypoints[:, :2], axis=1) <= 1.0
            matched += close.mean() >= 0.8
        assert matched >= min(4, len(s)), "batching must not change who is found, nor where their joints are"


def test_keypoint_rcnn_loads_a_weights_file(rcnn, images, tmp_path):
    path = tmp_path / "keypointrcnn.pth"
    torch.save(rcnn.model.state_dict(), path)
    loaded = create_backend("keypoint_rcnn", weights=str(path), score_threshold=0.05, max_side=160)
    a = rcnn.infer(images[:1], [None])[0][0].keypoints
    b = loaded.infer(images[:1], [None])[0][0].keypoints
    assert np.allclose(a, b, atol=1e-4) and path.name in loaded.version


def test_keypoint_rcnn_weights_errors_name_the_file(tmp_path, monkeypatch):
    with pytest.raises(BackendError, match="does not exist"):
        create_backend("keypoint_rcnn", weights=str(tmp_path / "missing.pth"))
    junk = tmp_path / "junk.pth"
    torch.save({"not": torch.zeros(1)}, junk)
    with pytest.raises(BackendError, match="not a keypointrcnn_resnet50_fpn state dict"):
        create_backend("keypoint_rcnn", weights=str(junk))

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(BackendError) as err:
        create_backend("keypoint_rcnn")
    assert "keypointrcnn_resnet50_fpn_coco" in str(err.value) and "--weights" in str(err.value)


def test_unknown_backend_and_missing_cuda_are_clear_errors():
    with pytest.raises(BackendError, match="unknown pose backend"):
        create_backend("openpose")
    if not torch.cuda.is_available():
        with pytest.raises(BackendError, match="CUDA is not available"):
            create_backend("keypoint_rcnn", device="cuda", weights="random")


def test_blazepose_finds_an_anatomically_plausible_person(blazepose, data_dir):
    image = cv2.imread(str(data_dir / "opencv_messi5.jpg"))
    people = blazepose.infer([image], [None])[0]
    assert people, "the player is found"
    k = max(people, key=lambda p: (p.box[3] - p.box[1]) * (p.box[2] - p.box[0])).keypoints  # the player in full view
    y = lambda name: k[INDEX[name], 1]  # noqa: E731
    assert y("nose") < y("left_shoulder") < y("left_hip") < y("left_knee") < y("left_ankle")
    assert y("nose") < y("right_shoulder") < y("right_hip") < y("right_knee") < y("right_ankle")
    assert (k[:, 2] > 0.5).sum() >= 12, "most joints of a full-body photo are confidently found"
    h, w = image.shape[:2]
    assert (k[:, 0] > 0).all() and (k[:, 0] < w).all()


@pytest.mark.parametrize("complexity", [0, 2])
def test_blazepose_lite_and_heavy_run_offline(complexity, data_dir):
    backend = create_backend("blazepose", complexity=complexity)
    image = cv2.imread(str(data_dir / "opencv_messi5.jpg"))
    people = backend.infer([image], [None])[0]
    k = max(people, key=lambda p: (p.box[3] - p.box[1]) * (p.box[2] - p.box[0])).keypoints
    backend.close()
    assert y_order(k), "head above hips above ankles"
    assert backend.version.endswith(f"c{complexity}")


def y_order(k: np.ndarray) -> bool:
    return k[INDEX["nose"], 1] < k[INDEX["left_hip"], 1] < k[INDEX["left_ankle"], 1]


def test_rehab_score_loads_the_pose_model_once_for_many_video_attempts(clip_keypoints, tmp_path, capsys,
                                                                       monkeypatch, data_dir):
    """Batch scoring of videos (analysts score dozens): one pose model for all of them, and an attempt
    scored after another gives what it gives alone (each video is its own stream for the model)."""
    import json

    from rehab.cli import main, offline
    from tests.unit.rehab.test_recordings import write_jsonl

    guide = write_jsonl(tmp_path / "guide.jsonl", clip_keypoints("pose2sim_single_cam02.mp4"))
    made, closed = [], []
    real = offline._backend

    def counting(args):
        backend = real(args)
        made.append(backend)
        close = backend.close
        backend.close = lambda: (closed.append(backend), close())[1]
        return backend

    monkeypatch.setattr(offline, "_backend", counting)
    cam01, cam02 = str(data_dir / "pose2sim_single_cam01.mp4"), str(data_dir / "pose2sim_single_cam02.mp4")
    assert main(["score", "--reference", str(guide), cam02, cam01, "--json"]) == 0
    batch = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(made) == 1 and closed == made, "one model for both videos, closed at the end"
    assert [r["attempt"] for r in batch] == [cam02, cam01]
    assert main(["score", "--reference", str(guide), cam01, "--json"]) == 0
    alone = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")][0]
    assert alone["similarity"] == pytest.approx(batch[1]["similarity"], abs=1e-3)
    assert alone["reps"] == batch[1]["reps"] and alone["windows"] == batch[1]["windows"]
