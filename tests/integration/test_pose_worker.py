"""The pose worker on the real Kafka broker: frames in, keypoints and dead letters out."""
import json
import time

import cv2
from kafka import KafkaConsumer, KafkaProducer

from edge.worker import PoseWorker
from rehab.records import FrameRecord, KeypointFrame, now_ms
from tests.kafka_helpers import consume


def test_worker_publishes_keypoints_and_dead_letters_bad_frames(isolated_settings, blazepose, data_dir):
    s = isolated_settings
    topics = s.topics
    jpeg = cv2.imencode(".jpg", cv2.imread(str(data_dir / "opencv_messi5.jpg")))[1].tobytes()
    producer = KafkaProducer(bootstrap_servers=s.kafka_bootstrap)
    consumer = KafkaConsumer(topics.frames, bootstrap_servers=s.kafka_bootstrap, group_id=s.worker_group,
                             auto_offset_reset="earliest")
    worker = PoseWorker(consumer, producer, blazepose, topics, max_frame_age_ms=60_000)

    def send(record: FrameRecord):
        key, value, headers = record.to_kafka()
        producer.send(topics.frames, key=key, value=value, headers=headers)

    send(FrameRecord("old", 0, now_ms() - 120_000, now_ms() - 120_000, 548, 342, "ref", jpeg))  # stale
    producer.send(topics.frames, key=b"bad", value=b"\xff\xd8 no header")  # malformed
    send(FrameRecord("corrupt", 0, now_ms(), now_ms(), 548, 342, "ref", b"\xff\xd8 not really a jpeg"))
    for seq in range(3):  # same session, one poll: only the newest is worth inferring
        send(FrameRecord("s1", seq, now_ms(), now_ms(), 548, 342, "ref", jpeg))
    producer.flush()

    deadline = time.monotonic() + 30
    published = []
    while worker.counters["frames_in"] < 6 and time.monotonic() < deadline:
        published += worker.run_once(timeout_ms=500)
    consumer.close()

    assert worker.counters["frames_in"] == 6
    assert worker.counters["dropped_stale"] == 1
    assert worker.counters["dead_letter"] == 2
    assert {k.session_id for k in published} == {"s1"}
    assert published[-1].seq == 2, "the newest frame of the session is the one inferred"

    out = [KeypointFrame.from_json(m.value) for m in consume(s, topics.keypoints, lambda ms: len(ms) >= len(published), 20)]
    assert len(out) == len(published) and out[-1].keypoints is not None and len(out[-1].keypoints) == 17
    assert out[-1].infer_ts_ms >= out[-1].gateway_ts_ms
    letters = [json.loads(m.value) for m in consume(s, topics.dead_letter, lambda ms: len(ms) >= 2, 20)]
    reasons = sorted(letter["reason"] for letter in letters)
    assert reasons == ["JPEG could not be decoded", "frame has no rehab-meta header"], reasons
    producer.close()


def test_two_inference_lanes_give_each_session_the_keypoints_one_lane_gives(blazepose, data_dir):
    """Sessions are spread over lanes (threads, one model instance each) and stay on theirs, so the
    keypoints are the same as with one lane, frame for frame."""
    from edge.backends import create_backend
    from edge.video import frames
    from edge.worker import Decoded
    from rehab.topics import Topics

    class Sink:
        def send(self, *a, **k):
            pass

        def flush(self):
            pass

    images = list(frames(data_dir / "pose2sim_single_cam02.mp4", 480))[:20]
    sessions = ["alpha", "beta", "gamma", "delta"]

    def run(extra):
        worker = PoseWorker(None, Sink(), create_backend("blazepose"), Topics("t"), extra_backends=extra)
        out = {}
        for i, image in enumerate(images):
            batch = [Decoded(FrameRecord(s, i, 1000 + i * 66, 1000 + i * 66, 480, 270, "ref", b"\xff\xd8"), image)
                     for s in sessions]
            for kf in worker.process(batch):
                out.setdefault(kf.session_id, []).append(kf.keypoints)
        lanes = {s: worker._lane(s) for s in sessions}
        worker.close_backends()
        return out, lanes

    one, _ = run([])
    two, lanes = run([create_backend("blazepose")])
    assert set(lanes.values()) == {0, 1}, "both lanes are used"
    assert two == one
