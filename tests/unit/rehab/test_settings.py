import pytest

from rehab.settings import Settings, SettingsError
from rehab.topics import Topics


def test_defaults_point_at_localhost():
    s = Settings.from_env({})
    assert s.kafka_bootstrap.startswith("127.0.0.1") and s.mysql_host == "127.0.0.1"


def test_environment_overrides_defaults_with_types():
    s = Settings.from_env({"REHAB_MYSQL_PORT": "3307", "REHAB_POSE_BACKEND": "keypoint_rcnn",
                           "REHAB_TOPIC_NAMESPACE": "t1"})
    assert s.mysql_port == 3307 and s.pose_backend == "keypoint_rcnn"
    assert s.topics.keypoints == "t1.rehab.keypoints.v1"


@pytest.mark.parametrize("env, message", [
    ({"REHAB_MYSQL_PORT": "abc"}, "REHAB_MYSQL_PORT"),
    ({"REHAB_POSE_BACKEND": "openpose"}, "REHAB_POSE_BACKEND"),
    ({"REHAB_FRAME_MAX_SIDE": "10"}, "REHAB_FRAME_MAX_SIDE"),
    ({"REHAB_PARTITIONS": "0"}, "REHAB_PARTITIONS"),
    ({"REHAB_PARTITIONS": "5000"}, "REHAB_PARTITIONS"),
])
def test_bad_values_name_the_variable(env, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_password_is_hidden_in_repr():
    s = Settings.from_env({"REHAB_MYSQL_PASSWORD": "s3cret"})
    assert "s3cret" not in repr(s) and s.mysql_password == "s3cret"


def test_as_env_round_trips():
    s = Settings.from_env({"REHAB_MYSQL_PORT": "3307", "REHAB_TOPIC_NAMESPACE": "x"})
    assert Settings.from_env(s.as_env()) == s


def test_topic_names_are_versioned():
    names = [spec.name for spec in Topics().specs()]
    assert names == ["rehab.frames.v1", "rehab.keypoints.v1", "rehab.scores.v1", "rehab.deadletter.v1"]
    assert Topics().specs()[1].retention_ms == -1, "keypoints must be kept for replay"


def test_float_settings_parse_and_validate():
    assert Settings.from_env({"REHAB_POSE_SMOOTHING": "0.4"}).pose_smoothing == 0.4
    with pytest.raises(SettingsError, match="a number"):
        Settings.from_env({"REHAB_POSE_SMOOTHING": "lots"})
    with pytest.raises(SettingsError, match="REHAB_POSE_SMOOTHING"):
        Settings.from_env({"REHAB_POSE_SMOOTHING": "3"})


def test_a_kafka_cluster_id_never_starts_with_a_dash():
    """The storage tool takes an id starting with '-' for an option: 1 fresh machine in 64 failed."""
    import base64

    from rehab.stack.kafka import cluster_id

    ids = [cluster_id() for _ in range(3000)]
    assert not any(i.startswith("-") for i in ids)
    assert all(len(base64.urlsafe_b64decode(i + "==")) == 16 for i in ids[:50])


def test_the_partitions_setting_sizes_every_topic_but_the_dead_letters():
    specs = {spec.name: spec.partitions for spec in Settings.from_env({"REHAB_PARTITIONS": "12"}).topics.specs()}
    assert specs == {"rehab.frames.v1": 12, "rehab.keypoints.v1": 12, "rehab.scores.v1": 12, "rehab.deadletter.v1": 1}
    assert Settings.from_env({}).partitions == 4


def test_each_topic_keeps_records_as_long_as_the_clinic_sets():
    month = 30 * 86_400_000
    s = Settings.from_env({"REHAB_RETENTION_FRAMES_MS": "600000", "REHAB_RETENTION_KEYPOINTS_MS": str(month),
                           "REHAB_RETENTION_SCORES_MS": "-1"})
    frames, keypoints, scores, dead = s.topics.specs()
    assert (frames.retention_ms, keypoints.retention_ms, scores.retention_ms) == (600_000, month, -1)
    assert dead.retention_ms == Settings().retention_dead_letter_ms
    # a finite retention rolls segments often enough for the broker to delete them; the compacted
    # topics roll at least once per erasure deadline (a day), so an erasure reaches the disks in time
    assert int(frames.configs["segment.ms"]) == 100_000 and "cleanup.policy" not in frames.configs
    day = 86_400_000
    assert keypoints.configs | {"retention.ms": "x"} == {
        "retention.ms": "x", "cleanup.policy": "compact,delete", "segment.ms": str(day),
        "max.compaction.lag.ms": str(day), "delete.retention.ms": str(day)}
    assert scores.configs["cleanup.policy"] == "compact" and scores.configs["segment.ms"] == str(day)
    assert dead.configs["cleanup.policy"] == "compact,delete"
    hour = Settings.from_env({"REHAB_ERASURE_DEADLINE_MS": "3600000"}).topics.specs()[1].configs
    assert hour["max.compaction.lag.ms"] == hour["segment.ms"] == "3600000"


@pytest.mark.parametrize("value", ["999", "soon", str(31 * 86_400_000)])
def test_an_erasure_deadline_is_a_second_to_a_month(value):
    with pytest.raises(SettingsError, match="REHAB_ERASURE_DEADLINE_MS"):
        Settings.from_env({"REHAB_ERASURE_DEADLINE_MS": value})


def test_demo_mode_is_off_unless_set_and_parses_as_a_boolean():
    assert Settings().demo_mode is False
    assert Settings.from_env({"REHAB_DEMO_MODE": "true"}).demo_mode is True
    assert Settings.from_env({"REHAB_DEMO_MODE": "0"}).demo_mode is False
    assert Settings.from_env(Settings(demo_mode=True).as_env()).demo_mode is True
    with pytest.raises(SettingsError, match="REHAB_DEMO_MODE must be true or false"):
        Settings.from_env({"REHAB_DEMO_MODE": "sometimes"})


@pytest.mark.parametrize("value", ["0", "-2", "59999", "soon"])
def test_a_retention_is_forever_or_at_least_a_minute(value):
    with pytest.raises(SettingsError, match="REHAB_RETENTION_SCORES_MS"):
        Settings.from_env({"REHAB_RETENTION_SCORES_MS": value})


def test_ice_servers_are_none_by_default_and_parsed_from_json():
    assert Settings().ice_server_list == []
    s = Settings.from_env({"REHAB_ICE_SERVERS": '[{"urls": "stun:stun.clinic.example:3478"}, '
                                                 '{"urls": ["turns:turn.clinic.example:5349?transport=tcp"], '
                                                 '"username": "app", "credential": "pw"}]'})
    assert s.ice_server_list == [{"urls": ["stun:stun.clinic.example:3478"]},
                                 {"urls": ["turns:turn.clinic.example:5349?transport=tcp"], "username": "app",
                                  "credential": "pw"}]
    assert "pw" not in repr(s), "TURN credentials stay out of logs"


@pytest.mark.parametrize("value, message", [
    ("stun:x:3478", "not JSON"), ('{"urls": "stun:x"}', "JSON list"), ('[{"url": "stun:x"}]', "JSON list"),
    ('[{"urls": "https://x"}]', "stun:, turn: or turns:"), ('[{"urls": []}]', "stun:, turn: or turns:"),
    ('[{"urls": "turn:x:3478"}]', "username and a credential"),
])
def test_bad_ice_servers_are_refused_with_the_reason(value, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env({"REHAB_ICE_SERVERS": value})


@pytest.mark.parametrize("env, message", [
    ({"REHAB_TURN_URLS": "turn:t.example:3478"}, "go together"),
    ({"REHAB_TURN_SECRET": "s" * 20}, "go together"),
    ({"REHAB_TURN_URLS": "stun:t.example:3478", "REHAB_TURN_SECRET": "s" * 20}, "turn: or turns:"),
    ({"REHAB_TURN_URLS": "turn:t.example:3478", "REHAB_TURN_SECRET": "short"}, "at least 16"),
    ({"REHAB_TURN_TTL_S": "10"}, "REHAB_TURN_TTL_S"),
])
def test_turn_settings_are_checked(env, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_a_session_gets_turn_credentials_of_its_own_that_expire():
    """coturn's use-auth-secret scheme: username EXPIRY:USER, password base64(HMAC-SHA1(secret, username))
    (the real coturn accepting them: tests/integration/test_turn.py)."""
    import base64
    import hashlib
    import hmac

    from gateway.turn import IceServers, turn_credentials

    user, credential = turn_credentials("s" * 20, "sess-1", 600, now=1_000_000.0)
    assert user == "1000600:sess-1"
    assert base64.b64decode(credential) == hmac.new(b"s" * 20, b"1000600:sess-1", hashlib.sha1).digest()
    ice = IceServers([{"urls": ["stun:s.example"]}], ["turn:t.example:3478"], "s" * 20, 600)
    a, b = ice.for_session("a"), ice.for_session("b")
    assert a[0] == {"urls": ["stun:s.example"]} and a[1]["urls"] == ["turn:t.example:3478"]
    assert a[1]["username"].endswith(":a") and a[1]["credential"] != b[1]["credential"]
    assert IceServers([], [], "", 600).for_session("a") == []
