"""Prometheus metrics, the same names in every service (each service is its own process).

    rehab_hop_latency_ms{hop}            histogram: capture_to_gateway, gateway_to_inferred,
                                         inferred_to_scored, capture_to_scored, scored_to_pushed
    rehab_frames_dropped_total{service, reason}
    rehab_messages_total{service, kind}  frames published, keypoints out, scores, dead letters, ...
    rehab_sessions_active{service}
    rehab_websocket_subscribers
    rehab_consumer_lag{service, topic}   messages behind the end of the topic (the group's committed offsets)

The gateway serves them at GET /metrics; the worker and the processor on their own port
(REHAB_WORKER_METRICS_PORT, REHAB_PROCESSOR_METRICS_PORT; 0 turns it off).
"""
from __future__ import annotations

import logging
import threading

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from rehab.records import HOPS

log = logging.getLogger("rehab.metrics")

LATENCY_BUCKETS_MS = (2, 5, 10, 20, 35, 50, 75, 100, 150, 200, 300, 500, 1000, 2000, 5000)

HOP_LATENCY = Histogram("rehab_hop_latency_ms", "Latency of one hop of the pipeline, milliseconds", ["hop"],
                        buckets=LATENCY_BUCKETS_MS)
DROPPED = Counter("rehab_frames_dropped_total", "Frames or messages dropped on purpose", ["service", "reason"])
ERRORS = Counter("rehab_errors_total", "Errors a service survived (a background task retried, a session's failure contained)",
                 ["service", "where"])
SCORE_ROWS_PENDING = Gauge("rehab_processor_score_rows_pending",
                           "Score rows taken from the scores topic and not yet in MySQL (waiting while MySQL is away)")
MESSAGES = Counter("rehab_messages_total", "Messages handled", ["service", "kind"])
SESSIONS = Gauge("rehab_sessions_active", "Sessions with live state in this process", ["service"])
WORKER_FPS_BUDGET = Gauge("rehab_worker_session_fps_budget",
                          "Frames per second the pose worker infers per session now (its cap, or a fair share)")
SUBSCRIBERS = Gauge("rehab_websocket_subscribers", "Open score WebSocket subscriptions")
DEVICE_QUEUE = Gauge("rehab_gateway_device_frames_queued", "Accepted on-device keypoint frames not yet handed to Kafka (was rehab_gateway_edge_frames_queued)")
LAG = Gauge("rehab_consumer_lag", "Messages between the group's committed offset and the topic's end",
            ["service", "topic"])


def observe_hop(hop: str, ms: float) -> None:
    """``hop``: one of rehab.records.HOPS (the vocabulary a score's latency_ms uses too)."""
    if hop not in HOPS:
        raise ValueError(f"unknown hop {hop!r}: one of {HOPS}")
    if ms >= 0:
        HOP_LATENCY.labels(hop).observe(ms)


def serve(port: int, service: str) -> bool:
    """Starts the /metrics HTTP server on ``port`` (0: off). A busy port is logged, not fatal."""
    if not port:
        return False
    try:
        start_http_server(port, addr="0.0.0.0")
    except OSError as exc:
        log.warning("%s: metrics port %d unavailable (%s); metrics not served", service, port, exc)
        return False
    return True


def group_lag(bootstrap: str, group: str, topic: str, clients: dict | None = None) -> int | None:
    """The consumer group's lag on ``topic`` (sum over partitions), or None when unknown. ``clients``
    keeps the admin client and consumer between calls (made on first use)."""
    from kafka import TopicPartition

    from rehab.adapters.kafka_clients import admin, reader

    clients = {} if clients is None else clients
    if "admin" not in clients:
        clients["admin"] = admin(bootstrap, f"{group}-lag")
        clients["consumer"] = reader(bootstrap)
    consumer, admin = clients["consumer"], clients["admin"]
    parts = consumer.partitions_for_topic(topic) or set()
    tps = [TopicPartition(topic, p) for p in parts]
    ends = consumer.end_offsets(tps)
    committed = admin.list_group_offsets({group: None}).get(group, {})
    lag = 0
    for tp in tps:
        meta = committed.get(tp)
        lag += ends[tp] - (meta.offset if meta is not None and meta.offset >= 0 else 0)
    return lag


def watch_lag(bootstrap: str, group: str, topic: str, service: str, every_s: float = 5.0,
              stop: threading.Event | None = None) -> threading.Thread:
    """A daemon thread keeping rehab_consumer_lag{service, topic} current."""
    stop = stop or threading.Event()

    def loop() -> None:
        clients: dict = {}
        while not stop.wait(every_s):
            try:
                lag = group_lag(bootstrap, group, topic, clients)
                if lag is not None:
                    LAG.labels(service, topic).set(lag)
            except Exception as exc:  # the broker may be restarting: new clients next time
                log.debug("lag of %s on %s unknown: %s", group, topic, exc)
                for c in clients.values():
                    try:
                        c.close()
                    except Exception:
                        pass
                clients.clear()

    t = threading.Thread(target=loop, name=f"{service}-lag", daemon=True)
    t.start()
    return t
