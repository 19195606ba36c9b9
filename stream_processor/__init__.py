"""The stream processor (Faust): per-session windows of keypoints scored against the reference."""
