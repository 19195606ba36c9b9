"""Pose throughput at 640 px, printed as JSON:
- each backend's bare model call (frames/s; Keypoint R-CNN at several batch sizes),
- the pose worker's path on the same frames in the same run (JPEG decode, subject policy, message,
  Kafka produce when the broker is up), as a ratio of the bare BlazePose call.

    ./dev bench pose_throughput [--device cuda] [--frames 100] [--rcnn-frames 8] [--weights PATH]
On a GPU machine this is the one command for the Keypoint R-CNN figures; on a CPU, R-CNN runs on a few
frames only (seconds each) and untrained weights unless --weights is given.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cv2  # noqa: E402
import torch  # noqa: E402

from edge.backends import create_backend  # noqa: E402
from edge.video import frames as read_frames  # noqa: E402
from edge.worker import PoseWorker  # noqa: E402
from rehab.records import FrameRecord, now_ms  # noqa: E402
from rehab.settings import REPO_ROOT, Settings  # noqa: E402


class NullProducer:
    def send(self, *a, **k):
        return None

    def flush(self):
        return None


def bare_blazepose(images) -> float:
    """MediaPipe's own graph on one tracked stream: the model's cost, with no search for other people."""
    backend = create_backend("blazepose_single")
    backend.infer(images[:5], ["warm"] * 5)
    t0 = time.perf_counter()
    for im in images:
        backend.infer([im], ["bench"])
    dt = time.perf_counter() - t0
    backend.close()
    return len(images) / dt


def worker_path(images, producer) -> float:
    """The worker's per-frame work on the same frames: decode, find people and choose the patient (the
    multi-person BlazePose stage, edge/subject.py), publish."""
    backend = create_backend("blazepose")
    worker = PoseWorker(SimpleNamespace(), producer, backend, Settings.from_env().with_(topic_namespace="bench").topics,
                        max_frame_age_ms=10**9, max_fps_per_session=1000)
    jpegs = [cv2.imencode(".jpg", im, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes() for im in images]

    def record(i, jpeg):
        key, value, headers = FrameRecord("bench", i, 1000 * i, now_ms(), 640, 360, "ref", jpeg).to_kafka()
        return SimpleNamespace(value=value, headers=headers, key=key, topic="bench", partition=0, offset=i)

    for i, jpeg in enumerate(jpegs[:10]):  # warm-up: the subject policy's acquisition is not steady state
        worker.process(worker.select([record(i, jpeg)]))
    t0 = time.perf_counter()
    for i, jpeg in enumerate(jpegs, start=10):
        worker.process(worker.select([record(i, jpeg)]))
    dt = time.perf_counter() - t0
    backend.close()
    return len(images) / dt


def keypoint_rcnn(images, device: str, batch_sizes, weights: str | None) -> list[dict]:
    out = []
    for fp16 in ((False, True) if device.startswith("cuda") else (False,)):
        backend = create_backend("keypoint_rcnn", device=device, weights=weights or "random", max_side=640)
        backend.fp16 = fp16
        for bs in batch_sizes:
            batches = [images[i:i + bs] for i in range(0, len(images) - bs + 1, bs)]
            backend.infer(batches[0], [None] * bs)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for b in batches:
                backend.infer(b, [None] * len(b))
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            out.append({"backend": "keypoint_rcnn", "device": device, "precision": "fp16" if fp16 else "fp32",
                        "batch": bs, "frames": sum(len(b) for b in batches),
                        "frames_per_s": round(sum(len(b) for b in batches) / dt, 2)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--rcnn-frames", type=int, default=None)
    ap.add_argument("--weights", default=os.environ.get("REHAB_POSE_WEIGHTS") or None)
    args = ap.parse_args()
    images = list(read_frames(REPO_ROOT / "data" / "pose2sim_single_cam02.mp4", 640))
    images = (images * (1 + args.frames // len(images)))[:args.frames]
    try:
        from kafka import KafkaProducer

        producer, sink = KafkaProducer(bootstrap_servers=Settings.from_env().kafka_bootstrap), "kafka"
    except Exception:  # noqa: BLE001 - no broker: measure the rest of the path
        producer, sink = NullProducer(), "none (broker not reachable)"
    bare = bare_blazepose(images)
    worker = worker_path(images, producer)
    rcnn_n = args.rcnn_frames or (400 if args.device.startswith("cuda") else 8)
    rcnn_images = (images * (1 + rcnn_n // len(images)))[:rcnn_n]
    batches = (1, 4, 8, 16, 32) if args.device.startswith("cuda") else (1, 2, 4)
    report = {
        "input": "pose2sim_single_cam02.mp4 at 640 px (360x640)", "cpu_threads": torch.get_num_threads(),
        "blazepose": {"bare_frames_per_s": round(bare, 2), "worker_frames_per_s": round(worker, 2),
                      "worker_vs_bare": round(worker / bare, 3), "worker_sink": sink},
        "keypoint_rcnn": keypoint_rcnn(rcnn_images, args.device, batches, args.weights),
        "keypoint_rcnn_weights": args.weights or "random (architecture only: no download here)",
    }
    rc = report["keypoint_rcnn"]
    base = next(r for r in rc if r["batch"] == 1 and r["precision"] == "fp32")["frames_per_s"]
    best = max(rc, key=lambda r: r["frames_per_s"])
    report["keypoint_rcnn_best_vs_batch1_fp32"] = {"best": best, "speedup": round(best["frames_per_s"] / base, 2)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
