"""Keypoint R-CNN (torchvision ``keypointrcnn_resnet50_fpn``, COCO_V1 weights): the old service's model.

Weights come from torchvision's weights enum (downloaded once into torch's cache), or from a file
(``--weights PATH``) for offline installs. ``weights="random"`` builds the architecture untrained,
for tests. Batches of frames go through one forward call; on CUDA under fp16 autocast.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torchvision
from torchvision.models.detection import KeypointRCNN_ResNet50_FPN_Weights, keypointrcnn_resnet50_fpn

from edge.backends.base import BackendError, Person, PoseBackend

WEIGHTS = KeypointRCNN_ResNet50_FPN_Weights.COCO_V1


def cached_weights_path() -> Path:
    """Where torchvision keeps the downloaded COCO_V1 weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(WEIGHTS.url)


class KeypointRCNNBackend(PoseBackend):
    name = "keypoint_rcnn"
    multi_person = True
    batched = True

    def __init__(self, model: torch.nn.Module, device: torch.device, version: str,
                 score_threshold: float = 0.85, fp16: bool = True, max_side: int = 640):
        self.model = model.eval().to(device)
        if device.type == "cuda":  # NHWC convolutions run on tensor cores under fp16
            self.model = self.model.to(memory_format=torch.channels_last)
        self.device = device
        self.version = version
        self.score_threshold = score_threshold
        self.fp16 = fp16 and device.type == "cuda"
        self.max_side = max_side

    @classmethod
    def load(cls, device: str = "cpu", weights: str | None = None, score_threshold: float = 0.85,
             max_side: int = 640, **_) -> "KeypointRCNNBackend":
        """``weights``: None (torchvision's COCO_V1, cached or downloaded), a file path, or "random"."""
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError(f"device {device!r} requested but CUDA is not available; use --device cpu")
        dev = torch.device(device)
        # The model resizes every image so its short side is min_size, capped at max_size: a fixed policy.
        # Boxes under the score threshold are dropped before the keypoint head runs on them.
        common = dict(min_size=min(max_side, 800), max_size=max_side, box_score_thresh=score_threshold)
        if weights == "random":
            model = keypointrcnn_resnet50_fpn(weights=None, weights_backbone=None, **common)
            version = f"torchvision-{torchvision.__version__}-random"
        elif weights:
            path = Path(weights)
            if not path.is_file():
                raise BackendError(f"weights file {path} does not exist")
            model = keypointrcnn_resnet50_fpn(weights=None, weights_backbone=None, **common)
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
                model.load_state_dict(state)
            except Exception as exc:
                raise BackendError(f"{path} is not a keypointrcnn_resnet50_fpn state dict: {exc}") from None
            version = f"torchvision-{torchvision.__version__}-{path.name}"
        else:
            try:
                model = keypointrcnn_resnet50_fpn(weights=WEIGHTS, **common)
            except Exception as exc:
                raise BackendError(
                    f"could not load Keypoint R-CNN COCO_V1 weights ({type(exc).__name__}: {exc}). Offline? "
                    f"Download {WEIGHTS.url} elsewhere and either put it at {cached_weights_path()} "
                    "or pass --weights PATH (REHAB_POSE_WEIGHTS)."
                ) from None
            version = f"torchvision-{torchvision.__version__}-coco_v1"
        return cls(model, dev, version, score_threshold=score_threshold, max_side=max_side)

    def _to_tensor(self, image: np.ndarray) -> torch.Tensor:
        host = torch.from_numpy(np.ascontiguousarray(image[:, :, ::-1]))
        if self.device.type == "cuda":
            host = host.pin_memory()  # page-locked: the copy overlaps with work already queued
        return host.to(self.device, non_blocking=True).permute(2, 0, 1).float().div_(255.0)

    @torch.inference_mode()
    def infer(self, images: Sequence[np.ndarray], streams: Sequence[str | None]) -> list[list[Person]]:
        if not images:
            return []
        tensors = [self._to_tensor(im) for im in images]
        with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.fp16):
            outputs = self.model(tensors)
        people: list[list[Person]] = []
        for out in outputs:
            keep = out["scores"] >= self.score_threshold
            kps = out["keypoints"][keep].float().cpu().numpy()  # (n, 17, 3): x, y, visibility flag
            kscores = out["keypoints_scores"][keep].float().cpu().numpy()  # (n, 17) logits
            boxes = out["boxes"][keep].float().cpu().numpy()
            scores = out["scores"][keep].float().cpu().numpy()
            found = []
            for k, ks, b, s in zip(kps, kscores, boxes, scores):
                conf = 1.0 / (1.0 + np.exp(-ks))  # keypoint logits -> [0, 1]
                arr = np.concatenate([k[:, :2], conf[:, None]], axis=1).astype(np.float32)
                found.append(Person(arr, tuple(float(v) for v in b), float(s)))
            people.append(found)
        return people
