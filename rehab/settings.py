"""Settings, read from the environment first, then a default that works on a laptop (localhost).

Every service reads the same variables (docker-compose.yml sets them); ``Settings.from_env()`` is
the only place that touches ``os.environ``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from rehab.topics import (ERASURE_DEADLINE_MS, RETENTION_DEAD_LETTER_MS, RETENTION_FRAMES_MS, RETENTION_KEYPOINTS_MS,
                          RETENTION_SCORES_MS, Topics)

REPO_ROOT = Path(__file__).resolve().parent.parent
MAX_SESSION_FPS = 120  # the highest frame budget a gateway can give a session
MAX_PARTITIONS = 1024
MIN_RETENTION_MS = 60_000  # a shorter retention would roll a segment more often than Kafka can sensibly
MAX_INT_MS = (1 << 63) - 1  # Kafka's retention.ms is a Java long


class SettingsError(ValueError):
    pass


def _parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(raw)


def _parse(type_name: str, raw: str):
    return {"int": int, "float": float, "Path": Path, "bool": _parse_bool}.get(type_name, str)(raw)


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str = "127.0.0.1:19092"
    topic_namespace: str = ""
    mysql_host: str = "127.0.0.1"
    mysql_port: int = 13306
    mysql_user: str = "rehab"
    mysql_password: str = field(default="rehab", repr=False)
    mysql_db: str = "rehab"
    state_dir: Path = REPO_ROOT / ".state"
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8080
    gateway_url: str = "http://127.0.0.1:8080"
    frame_max_side: int = 640
    jpeg_quality: int = 80
    pose_backend: str = "blazepose"
    pose_device: str = "cpu"
    pose_weights: str = ""
    worker_max_frame_age_ms: int = 500
    worker_max_fps: int = 30
    worker_threads: int = 1
    pose_smoothing: float = 0.0
    pose_complexity: int = 1
    pose_score_threshold: float = 0.85
    worker_group: str = "rehab-pose-workers"
    processor_app_id: str = "rehab-stream-processor"
    # partitions of the frames, keypoints and scores topics (and the processor's changelogs): the most
    # processors or workers of one group that have work; growing it: docs/operations.md
    partitions: int = 4
    processor_window_ms: int = 1000
    processor_min_interval_ms: int = 100
    processor_web_port: int = 6066
    processor_coalesce_after: int = 8
    processor_idle_evict_s: int = 300  # a session silent this long is forgotten (state tombstoned)
    admin_api_key: str = field(default="", repr=False)
    auth_secret: str = field(default="", repr=False)
    token_ttl_s: int = 900
    # demo mode: anyone who reaches the gateway may start a session for any patient_id and read the
    # references, no credential (the local main job, `rehab demo`, and the test suite turn it on for their
    # own gateway). Off: sessions need a patient credential from a clinician's invitation (gateway/auth.py)
    demo_mode: bool = False
    invitation_ttl_s: int = 7 * 86_400  # how long an invitation code can be exchanged for a credential
    allowed_origins: str = ""
    upload_max_bytes: int = 200 * 1024 * 1024
    session_max_fps: int = 30
    session_idle_s: int = 30
    client_sessions_per_min: int = 120  # per client address; 0: no limit
    client_offers_per_min: int = 240
    client_max_websockets: int = 100
    client_errors_per_min: int = 300  # error replies (4xx, refused WebSockets) per client; 0: no limit
    worker_metrics_port: int = 9101
    processor_metrics_port: int = 9102
    # how long each topic keeps its records, in ms (-1: forever), enforced by the broker with segments
    # rolled every sixth of it (rehab.topics.TopicSpec.configs); `rehab init` applies a change
    retention_frames_ms: int = RETENTION_FRAMES_MS
    retention_keypoints_ms: int = RETENTION_KEYPOINTS_MS
    retention_scores_ms: int = RETENTION_SCORES_MS
    retention_dead_letter_ms: int = RETENTION_DEAD_LETTER_MS
    # an erased patient's records leave the broker's disks within this (rehab/ops/erasure.py): the compacted
    # topics roll and compact their segments at least this often (tests use 1 s; hours to a day in a clinic)
    erasure_deadline_ms: int = ERASURE_DEADLINE_MS
    # STUN/TURN servers for WebRTC, as a JSON list of RTCIceServer dictionaries, e.g.
    # [{"urls": "turn:turn.example.org:3478", "username": "u", "credential": "p"}]; handed to the
    # browser app and `rehab stream` with each session. Empty: none (host candidates only: same machine
    # or network); no public server is ever contacted by default (aiortc's own default is Google's STUN)
    ice_servers: str = field(default="", repr=False)
    # a TURN server with credentials per session that expire (coturn's use-auth-secret, gateway/turn.py):
    # its turn:/turns: URLs (comma-separated), the secret it shares with the gateway, and how long a
    # session's TURN credential lasts (a token refresh hands out a new one)
    turn_urls: str = ""
    turn_secret: str = field(default="", repr=False)
    turn_ttl_s: int = 86_400
    # the gateway serves HTTPS and WSS with this certificate chain and key (PEM files); the browser
    # grants the camera only to a secure origin off localhost. Behind a TLS proxy instead: leave empty
    # and set REHAB_FORWARDED_ALLOW_IPS to the proxy's address (docs/operations.md)
    tls_cert_file: str = ""
    tls_key_file: str = ""
    forwarded_allow_ips: str = "127.0.0.1"  # proxies whose X-Forwarded-Proto/-For the gateway believes

    ENV = {
        "kafka_bootstrap": "REHAB_KAFKA_BOOTSTRAP",
        "topic_namespace": "REHAB_TOPIC_NAMESPACE",
        "mysql_host": "REHAB_MYSQL_HOST",
        "mysql_port": "REHAB_MYSQL_PORT",
        "mysql_user": "REHAB_MYSQL_USER",
        "mysql_password": "REHAB_MYSQL_PASSWORD",
        "mysql_db": "REHAB_MYSQL_DB",
        "state_dir": "REHAB_STATE_DIR",
        "gateway_host": "REHAB_GATEWAY_HOST",
        "gateway_port": "REHAB_GATEWAY_PORT",
        "gateway_url": "REHAB_GATEWAY_URL",
        "frame_max_side": "REHAB_FRAME_MAX_SIDE",
        "jpeg_quality": "REHAB_JPEG_QUALITY",
        "pose_backend": "REHAB_POSE_BACKEND",
        "pose_device": "REHAB_POSE_DEVICE",
        "pose_weights": "REHAB_POSE_WEIGHTS",
        "worker_max_frame_age_ms": "REHAB_WORKER_MAX_FRAME_AGE_MS",
        "worker_max_fps": "REHAB_WORKER_MAX_FPS",
        "worker_threads": "REHAB_WORKER_THREADS",
        "pose_smoothing": "REHAB_POSE_SMOOTHING",
        "pose_complexity": "REHAB_POSE_COMPLEXITY",
        "pose_score_threshold": "REHAB_POSE_SCORE_THRESHOLD",
        "worker_group": "REHAB_WORKER_GROUP",
        "processor_app_id": "REHAB_PROCESSOR_APP_ID",
        "partitions": "REHAB_PARTITIONS",
        "processor_window_ms": "REHAB_PROCESSOR_WINDOW_MS",
        "processor_min_interval_ms": "REHAB_PROCESSOR_MIN_INTERVAL_MS",
        "processor_web_port": "REHAB_PROCESSOR_WEB_PORT",
        "processor_coalesce_after": "REHAB_PROCESSOR_COALESCE_AFTER",
        "processor_idle_evict_s": "REHAB_PROCESSOR_IDLE_EVICT_S",
        "admin_api_key": "REHAB_ADMIN_API_KEY",
        "auth_secret": "REHAB_AUTH_SECRET",
        "token_ttl_s": "REHAB_TOKEN_TTL_S",
        "demo_mode": "REHAB_DEMO_MODE",
        "invitation_ttl_s": "REHAB_INVITATION_TTL_S",
        "allowed_origins": "REHAB_ALLOWED_ORIGINS",
        "upload_max_bytes": "REHAB_UPLOAD_MAX_BYTES",
        "session_max_fps": "REHAB_SESSION_MAX_FPS",
        "session_idle_s": "REHAB_SESSION_IDLE_S",
        "client_sessions_per_min": "REHAB_CLIENT_SESSIONS_PER_MIN",
        "client_offers_per_min": "REHAB_CLIENT_OFFERS_PER_MIN",
        "client_max_websockets": "REHAB_CLIENT_MAX_WEBSOCKETS",
        "client_errors_per_min": "REHAB_CLIENT_ERRORS_PER_MIN",
        "worker_metrics_port": "REHAB_WORKER_METRICS_PORT",
        "processor_metrics_port": "REHAB_PROCESSOR_METRICS_PORT",
        "retention_frames_ms": "REHAB_RETENTION_FRAMES_MS",
        "retention_keypoints_ms": "REHAB_RETENTION_KEYPOINTS_MS",
        "retention_scores_ms": "REHAB_RETENTION_SCORES_MS",
        "retention_dead_letter_ms": "REHAB_RETENTION_DEAD_LETTER_MS",
        "erasure_deadline_ms": "REHAB_ERASURE_DEADLINE_MS",
        "ice_servers": "REHAB_ICE_SERVERS",
        "turn_urls": "REHAB_TURN_URLS",
        "turn_secret": "REHAB_TURN_SECRET",
        "turn_ttl_s": "REHAB_TURN_TTL_S",
        "tls_cert_file": "REHAB_TLS_CERT_FILE",
        "tls_key_file": "REHAB_TLS_KEY_FILE",
        "forwarded_allow_ips": "REHAB_FORWARDED_ALLOW_IPS",
    }

    def __post_init__(self) -> None:
        if not 64 <= self.frame_max_side <= 4096:
            raise SettingsError("REHAB_FRAME_MAX_SIDE must be between 64 and 4096")
        if not 10 <= self.jpeg_quality <= 100:
            raise SettingsError("REHAB_JPEG_QUALITY must be between 10 and 100")
        if self.pose_backend not in ("blazepose", "keypoint_rcnn"):
            raise SettingsError("REHAB_POSE_BACKEND must be 'blazepose' or 'keypoint_rcnn'")
        if not 200 <= self.processor_window_ms <= 10_000:
            raise SettingsError("REHAB_PROCESSOR_WINDOW_MS must be between 200 and 10000")
        if not 0 <= self.processor_min_interval_ms <= 5_000:
            raise SettingsError("REHAB_PROCESSOR_MIN_INTERVAL_MS must be between 0 and 5000")
        if not 0.0 <= self.pose_smoothing <= 1.0:
            raise SettingsError("REHAB_POSE_SMOOTHING must be between 0 (off) and 1 (strongest)")
        if self.pose_complexity not in (0, 1, 2):
            raise SettingsError("REHAB_POSE_COMPLEXITY must be 0 (lite), 1 (full) or 2 (heavy)")
        if not 0.0 <= self.pose_score_threshold <= 1.0:
            raise SettingsError("REHAB_POSE_SCORE_THRESHOLD must be between 0 and 1")
        if not 0 <= self.processor_coalesce_after <= 100_000:
            raise SettingsError("REHAB_PROCESSOR_COALESCE_AFTER must be >= 0 (0: score every due window)")
        if not 1 <= self.worker_threads <= 16:
            raise SettingsError("REHAB_WORKER_THREADS must be between 1 and 16")
        if not 1 <= self.worker_max_fps <= 240:
            raise SettingsError("REHAB_WORKER_MAX_FPS must be between 1 and 240")
        if not 10 <= self.token_ttl_s <= 86_400:
            raise SettingsError("REHAB_TOKEN_TTL_S must be between 10 and 86400 seconds")
        if not 60 <= self.invitation_ttl_s <= 90 * 86_400:
            raise SettingsError("REHAB_INVITATION_TTL_S must be between 60 seconds and 90 days")
        if not 1024 <= self.upload_max_bytes <= 2 * 1024**3:
            raise SettingsError("REHAB_UPLOAD_MAX_BYTES must be between 1 KiB and 2 GiB")
        if not 1 <= self.session_max_fps <= MAX_SESSION_FPS:
            raise SettingsError(f"REHAB_SESSION_MAX_FPS must be between 1 and {MAX_SESSION_FPS}")
        if not 2 <= self.session_idle_s <= 3600:
            raise SettingsError("REHAB_SESSION_IDLE_S must be between 2 and 3600 seconds")
        if self.admin_api_key and len(self.admin_api_key) < 16:
            raise SettingsError("REHAB_ADMIN_API_KEY must be at least 16 characters")
        if not 1 <= self.partitions <= MAX_PARTITIONS:
            raise SettingsError(f"REHAB_PARTITIONS must be between 1 and {MAX_PARTITIONS}")
        if not self.kafka_bootstrap:
            raise SettingsError("REHAB_KAFKA_BOOTSTRAP must not be empty")
        self.ice_server_list  # noqa: B018 - validates REHAB_ICE_SERVERS
        if bool(self.turn_url_list) != bool(self.turn_secret):
            raise SettingsError("REHAB_TURN_URLS and REHAB_TURN_SECRET go together (both or neither)")
        if self.turn_secret and len(self.turn_secret) < 16:
            raise SettingsError("REHAB_TURN_SECRET must be at least 16 characters")
        if not 60 <= self.turn_ttl_s <= 7 * 86_400:
            raise SettingsError("REHAB_TURN_TTL_S must be between 60 seconds and 7 days")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise SettingsError("REHAB_TLS_CERT_FILE and REHAB_TLS_KEY_FILE go together (both or neither)")
        if not 1000 <= self.erasure_deadline_ms <= 30 * 86_400_000:
            raise SettingsError("REHAB_ERASURE_DEADLINE_MS must be between 1000 ms and 30 days")
        for name in ("frames", "keypoints", "scores", "dead_letter"):
            value = getattr(self, f"retention_{name}_ms")
            if value != -1 and not MIN_RETENTION_MS <= value <= MAX_INT_MS:
                raise SettingsError(f"REHAB_RETENTION_{name.upper()}_MS must be -1 (keep forever) or between "
                                    f"{MIN_RETENTION_MS} (one minute) and {MAX_INT_MS} ms, got {value}")

    @property
    def ice_server_list(self) -> list[dict]:
        """REHAB_ICE_SERVERS parsed and checked: [{"urls": [...], "username"?, "credential"?}]."""
        if not self.ice_servers.strip():
            return []
        what = "REHAB_ICE_SERVERS must be a JSON list of {\"urls\": ..., \"username\"?, \"credential\"?}"
        try:
            servers = json.loads(self.ice_servers)
        except ValueError:
            raise SettingsError(f"{what}: not JSON") from None
        if not isinstance(servers, list):
            raise SettingsError(what)
        out = []
        for server in servers:
            if not isinstance(server, dict) or set(server) - {"urls", "username", "credential"} or "urls" not in server:
                raise SettingsError(f"{what}, got {server!r:.80}")
            urls = [server["urls"]] if isinstance(server["urls"], str) else server["urls"]
            if not urls or not all(isinstance(u, str) and u.split(":", 1)[0] in ("stun", "turn", "turns")
                                   for u in urls):
                raise SettingsError(f"REHAB_ICE_SERVERS: every url is stun:, turn: or turns:, got {urls!r:.80}")
            turn = any(u.startswith("turn") for u in urls)
            if turn and not (isinstance(server.get("username"), str) and isinstance(server.get("credential"), str)):
                raise SettingsError("REHAB_ICE_SERVERS: a TURN server needs a username and a credential")
            out.append({"urls": urls, **{k: server[k] for k in ("username", "credential") if k in server}})
        return out

    @property
    def turn_url_list(self) -> list[str]:
        urls = [u.strip() for u in self.turn_urls.split(",") if u.strip()]
        for u in urls:
            if u.split(":", 1)[0] not in ("turn", "turns"):
                raise SettingsError(f"REHAB_TURN_URLS: every url is turn: or turns:, got {u!r:.80}")
        return urls

    def check_tls_files(self) -> None:
        """A clear error before the gateway starts when a configured certificate or key is unreadable."""
        for var, path in (("REHAB_TLS_CERT_FILE", self.tls_cert_file), ("REHAB_TLS_KEY_FILE", self.tls_key_file)):
            if path and not os.access(path, os.R_OK):
                raise SettingsError(f"{var}: cannot read {path}")

    @property
    def origins(self) -> tuple[str, ...]:
        return tuple(o.strip().rstrip("/") for o in self.allowed_origins.split(",") if o.strip())

    @classmethod
    def env_names(cls) -> list[str]:
        return list(cls.ENV.values())

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        kwargs = {}
        for f in fields(cls):
            var = cls.ENV.get(f.name)
            if var is None or var not in env:
                continue
            raw = env[var]
            try:
                kwargs[f.name] = _parse(f.type, raw)
            except ValueError:
                what = {"int": "an integer", "bool": "true or false"}.get(f.type, "a number")
                raise SettingsError(f"{var} must be {what}, got {raw!r}") from None
        return cls(**kwargs)

    def with_(self, **changes) -> "Settings":
        return replace(self, **changes)

    @property
    def topics(self) -> Topics:
        return Topics(self.topic_namespace, self.partitions, self.retention_frames_ms, self.retention_keypoints_ms,
                      self.retention_scores_ms, self.retention_dead_letter_ms, self.erasure_deadline_ms)

    def mysql_kwargs(self, db: bool = True) -> dict:
        kw = dict(host=self.mysql_host, port=self.mysql_port, user=self.mysql_user, password=self.mysql_password)
        if db:
            kw["db"] = self.mysql_db
        return kw

    def as_env(self) -> dict[str, str]:
        """The settings as environment variables, for child processes."""
        return {var: str(getattr(self, name)) for name, var in self.ENV.items()}
