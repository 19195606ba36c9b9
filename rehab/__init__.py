"""ReHab Live: what every service shares (records, topics, keypoint layout, settings, scoring)."""

__version__ = "0.1.0"
