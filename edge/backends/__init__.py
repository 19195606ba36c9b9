"""Pose backends behind one interface. torch and mediapipe are imported only inside their modules."""
from __future__ import annotations

from edge.backends.base import BackendError, Person, PoseBackend

BACKENDS = ("blazepose", "keypoint_rcnn")


def create_backend(name: str, device: str = "cpu", weights: str | None = None, **options) -> PoseBackend:
    """The factory: builds a ready backend by name (the worker and the CLI call this)."""
    if name == "blazepose":  # every person in view (edge/backends/blazepose_people.py)
        from edge.backends.blazepose_people import BlazePosePeopleBackend

        return BlazePosePeopleBackend(**options)
    if name == "blazepose_single":  # MediaPipe's own graph: the most prominent person only (benchmarks)
        from edge.backends.blazepose import BlazePoseBackend

        return BlazePoseBackend(**options)
    if name == "keypoint_rcnn":
        from edge.backends.keypoint_rcnn import KeypointRCNNBackend

        return KeypointRCNNBackend.load(device=device, weights=weights or None, **options)
    raise BackendError(f"unknown pose backend {name!r}; choose one of {', '.join(BACKENDS)}")


def backend_from_settings(settings) -> PoseBackend:
    """The one place a backend is built from settings (REHAB_POSE_BACKEND, _DEVICE, _WEIGHTS and the
    backend's own options): the worker, the gateway's uploads and the CLI."""
    if settings.pose_backend == "blazepose":
        options = {"complexity": settings.pose_complexity}
    else:
        options = {"score_threshold": settings.pose_score_threshold, "max_side": settings.frame_max_side}
    return create_backend(settings.pose_backend, device=settings.pose_device, weights=settings.pose_weights or None,
                          **options)


__all__ = ["BACKENDS", "BackendError", "Person", "PoseBackend", "backend_from_settings", "create_backend"]
