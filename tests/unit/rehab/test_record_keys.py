"""Record keys and the producers' partitioner (rehab/topics.py, rehab/adapters/kafka_clients.py): every record
has a key of its own (the compacted topics keep each one and erasure can tombstone each one), while a
session's records all land in the partition its id alone would get."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rehab.adapters.kafka_clients import session_partitioner
from rehab.adapters.kafka_clients import default_partition
from rehab.topics import dead_letter_key, record_key, session_of

SESSION_IDS = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,40}", fullmatch=True)


@given(SESSION_IDS, st.integers(0, 2**53), st.integers(1, 64))
def test_every_record_of_a_session_goes_where_the_session_id_alone_goes(sid, seq, partitions):
    everyone = list(range(partitions))
    expected = default_partition(sid, partitions)
    assert session_partitioner(record_key(sid, seq), everyone, everyone) == expected
    assert session_partitioner(sid.encode(), everyone, everyone) == expected  # keys from before
    assert session_of(record_key(sid, seq)) == session_of(sid.encode()) == sid


def test_keys_are_unique_per_record_and_dead_letters_keep_their_session():
    assert record_key("s1", 7) != record_key("s1", 8) and record_key("s1", 7) == b"s1/7"
    letter = dead_letter_key(b"s1/7", "t.rehab.keypoints.v1", 2, 40)
    assert session_of(letter) == "s1" and letter != dead_letter_key(b"s1/7", "t.rehab.keypoints.v1", 2, 41)
    assert session_of(dead_letter_key(None, "frames", 0, 1)) == "-" and session_of(None) is None


def test_kafka_python_producers_use_the_same_rule():
    """kafka-python asks ``partition(...)`` with its cluster metadata; aiokafka and Faust call the object."""
    class Cluster:
        def partitions_for_topic(self, topic):
            return {3, 0, 2, 1}

        def available_partitions_for_topic(self, topic):
            return {0, 1}

    for sid in ("a", "patient-7", "0f3c9e"):
        key = record_key(sid, 1)
        assert session_partitioner.partition("t", None, key, None, None, Cluster()) == default_partition(sid, 4)
