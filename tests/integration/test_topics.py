"""Topic retention is real on the broker: a short-lived topic rolls its segments often enough that
Kafka can delete them (by default a segment closes after 7 days, so a "1 h" topic kept camera
frames for up to a week)."""
import time
import uuid

from kafka.admin import NewTopic

from rehab.settings import Settings
from rehab.stack.topics import admin, delete_topics, ensure_topics, topic_configs
from rehab.topics import Topics


def test_the_frames_topic_rolls_segments_within_its_retention(isolated_settings):
    s = isolated_settings
    frames = topic_configs(s.kafka_bootstrap, s.topics.frames)
    assert int(frames["retention.ms"]) == 3_600_000
    assert int(frames["segment.ms"]) <= 3_600_000 // 6
    keypoints = topic_configs(s.kafka_bootstrap, s.topics.keypoints)
    assert keypoints["retention.ms"] == "-1"


def test_an_existing_deployments_topics_get_the_configs_too():
    """A frames topic as an older version created it (retention only, 7-day segments): ``ensure_topics``
    (``rehab init`` / ``stack up``) sets its segment roll."""
    topics = Topics(f"t{uuid.uuid4().hex[:10]}")
    bootstrap = Settings.from_env().kafka_bootstrap
    client = admin(bootstrap)
    try:
        client.create_topics([NewTopic(topics.frames, 1, 1, topic_configs={"retention.ms": "3600000"})])
    finally:
        client.close()
    try:
        assert _eventually(lambda: "segment.ms" not in topic_configs(bootstrap, topics.frames)
                           or int(topic_configs(bootstrap, topics.frames)["segment.ms"]) == 7 * 24 * 3_600_000)
        assert topics.frames not in ensure_topics(bootstrap, topics)
        assert _eventually(lambda: int(topic_configs(bootstrap, topics.frames)["segment.ms"]) <= 600_000)
    finally:
        delete_topics(bootstrap, [spec.name for spec in topics.specs()])


def _eventually(check, timeout_s: float = 10.0) -> bool:
    """A config change reaches the broker's metadata a moment after the call returns."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True
