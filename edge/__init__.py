"""Edge: video in, the patient's COCO-17 keypoints out (pose backends, subject tracking, worker)."""
