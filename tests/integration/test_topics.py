"""Topic retention is real on the broker: a short-lived topic rolls its segments often enough that
Kafka can delete them (by default a segment closes after 7 days, so a "1 h" topic kept camera
frames for up to a week). Partition counts come from REHAB_PARTITIONS and can be grown."""
import time
import uuid

import pytest
from kafka.admin import NewTopic

from rehab.settings import Settings, SettingsError
from rehab.adapters.kafka_admin import (admin, delete_topics, ensure_topics, grow_topics, partition_counts, topic_configs,
                                uncompacted_topics)
from rehab.topics import Topics, changelog_topics


def test_the_frames_topic_rolls_segments_within_its_retention(isolated_settings):
    s = isolated_settings
    frames = topic_configs(s.kafka_bootstrap, s.topics.frames)
    assert int(frames["retention.ms"]) == 3_600_000
    assert int(frames["segment.ms"]) <= 3_600_000 // 6
    keypoints = topic_configs(s.kafka_bootstrap, s.topics.keypoints)
    assert keypoints["retention.ms"] == "-1"


def test_an_existing_deployments_topics_get_the_configs_too():
    """A frames topic as an older version created it (retention only, 7-day segments): ``ensure_topics``
    (``rehab init`` / ``stack up``) sets its segment roll. A keypoints topic created then without
    compaction stays so (its records, keyed by session alone, would collapse to one per session) and is
    reported, until ``compact_existing`` (``rehab init --compact-existing``)."""
    topics = Topics(f"t{uuid.uuid4().hex[:10]}")
    bootstrap = Settings.from_env().kafka_bootstrap
    client = admin(bootstrap)
    try:
        client.create_topics([NewTopic(topics.frames, 1, 1, topic_configs={"retention.ms": "3600000"}),
                              NewTopic(topics.keypoints, 1, 1, topic_configs={"retention.ms": "-1"})])
    finally:
        client.close()
    try:
        assert _eventually(lambda: "segment.ms" not in topic_configs(bootstrap, topics.frames)
                           or int(topic_configs(bootstrap, topics.frames)["segment.ms"]) == 7 * 24 * 3_600_000)
        assert topics.frames not in ensure_topics(bootstrap, topics)
        assert _eventually(lambda: int(topic_configs(bootstrap, topics.frames)["segment.ms"]) <= 600_000)
        assert topic_configs(bootstrap, topics.keypoints).get("cleanup.policy", "delete") == "delete"
        assert uncompacted_topics(bootstrap, topics) == [topics.keypoints]
        ensure_topics(bootstrap, topics, compact_existing=True)
        assert _eventually(lambda: topic_configs(bootstrap, topics.keypoints).get("cleanup.policy") == "compact")
        assert uncompacted_topics(bootstrap, topics) == []
    finally:
        delete_topics(bootstrap, [spec.name for spec in topics.specs()])


def test_a_changed_retention_reaches_the_existing_topics():
    """A clinic shortens how long scores are kept: ``rehab init`` with the new REHAB_RETENTION_SCORES_MS
    (ensure_topics) sets it, with its segment roll, on the topic that already holds the scores."""
    settings = Settings.from_env().with_(topic_namespace=f"t{uuid.uuid4().hex[:10]}", partitions=1)
    bootstrap, day = settings.kafka_bootstrap, 86_400_000
    try:
        ensure_topics(bootstrap, settings.topics)
        assert topic_configs(bootstrap, settings.topics.scores)["retention.ms"] == "-1"
        shorter = settings.with_(retention_scores_ms=90 * day).topics
        assert ensure_topics(bootstrap, shorter) == [], "nothing created: the topics exist"
        assert _eventually(lambda: topic_configs(bootstrap, shorter.scores)["retention.ms"] == str(90 * day))
        # segments roll at the erasure deadline (a day), sooner than a sixth of 90 days
        assert int(topic_configs(bootstrap, shorter.scores)["segment.ms"]) == day
        assert topic_configs(bootstrap, shorter.scores)["cleanup.policy"] == "compact,delete"
        assert int(topic_configs(bootstrap, shorter.frames)["retention.ms"]) == settings.retention_frames_ms
    finally:
        delete_topics(bootstrap, [spec.name for spec in settings.topics.specs()])


def _eventually(check, timeout_s: float = 10.0) -> bool:
    """A config change reaches the broker's metadata a moment after the call returns."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_partitions_come_from_the_settings_and_grow_with_the_changelogs():
    """``rehab init`` creates the topics with REHAB_PARTITIONS, later grows them and the processor's
    changelogs to a larger count, refuses a smaller one; the processor refuses to start on a mismatch."""
    from stream_processor.app import check_partitions

    settings = Settings.from_env().with_(topic_namespace=f"t{uuid.uuid4().hex[:10]}", partitions=3,
                                         processor_app_id=f"p{uuid.uuid4().hex[:10]}")
    bootstrap, topics = settings.kafka_bootstrap, settings.topics
    changelogs = changelog_topics(settings.processor_app_id)
    names = [topics.frames, topics.keypoints, topics.scores]
    try:
        ensure_topics(bootstrap, topics)
        client = admin(bootstrap)
        try:  # the processor's changelogs as a 3-partition processor created them
            client.create_topics([NewTopic(name, 3, 1) for name in changelogs])
        finally:
            client.close()
        assert partition_counts(bootstrap, names + [topics.dead_letter]) == {**dict.fromkeys(names, 3),
                                                                              topics.dead_letter: 1}
        check_partitions(settings)  # agrees: no error

        bigger = settings.with_(partitions=5)
        with pytest.raises(SettingsError, match="REHAB_PARTITIONS is 5"):
            check_partitions(bigger)  # before the topics grew
        grown = grow_topics(bootstrap, bigger.topics, changelogs)
        assert grown == dict.fromkeys(names + changelogs, (3, 5))
        assert _eventually(lambda: partition_counts(bootstrap, names + changelogs) == dict.fromkeys(names + changelogs, 5))
        assert grow_topics(bootstrap, bigger.topics, changelogs) == {}  # idempotent
        check_partitions(bigger)
        with pytest.raises(ValueError, match="cannot remove partitions"):
            grow_topics(bootstrap, settings.topics, changelogs)
    finally:
        delete_topics(bootstrap, [spec.name for spec in topics.specs()] + changelogs)


def test_an_isolated_deployment_leaves_no_topic_behind():
    """The tests' and benchmarks' deployments delete on exit every topic they made, also those the
    processor's Faust app creates itself (its changelogs and the assignor's): left behind, they piled
    up to thousands of partitions on a development broker, which then took seconds longer to serve
    after a restart. A neighbouring deployment's topics stay."""
    from rehab.stack.isolation import isolated_deployment

    base = Settings.from_env()
    with isolated_deployment(base) as neighbour:
        with isolated_deployment(base) as s:
            faust_made = [*changelog_topics(s.processor_app_id), f"{s.processor_app_id}-__assignor-__leader"]
            client = admin(s.kafka_bootstrap)
            try:
                client.create_topics([NewTopic(name, 1, 1) for name in faust_made])
            finally:
                client.close()
            mine = [spec.name for spec in s.topics.specs()] + faust_made
            assert set(partition_counts(s.kafka_bootstrap, mine)) == set(mine)
        assert _eventually(lambda: partition_counts(s.kafka_bootstrap, mine) == {}), \
            f"left behind: {partition_counts(s.kafka_bootstrap, mine)}"
        theirs = [spec.name for spec in neighbour.topics.specs()]
        assert set(partition_counts(s.kafka_bootstrap, theirs)) == set(theirs)


def test_waiting_for_the_broker_to_serve(isolated_settings):
    """``wait_serving`` (``rehab stack up`` ends with it) returns at once on a broker that serves the
    topics, and names what it waited for when it gives up (a topic that does not exist never has a
    leader)."""
    from rehab.adapters.kafka_admin import wait_serving

    s = isolated_settings
    waited = wait_serving(s.kafka_bootstrap, [spec.name for spec in s.topics.specs()], s.processor_app_id)
    assert waited >= 0  # (it returned: no TimeoutError)
    missing = f"{s.topic_namespace}.no-such-topic"
    with pytest.raises(TimeoutError, match="did not serve.*no-such-topic"):
        wait_serving(s.kafka_bootstrap, [missing], s.processor_app_id, timeout=2)
