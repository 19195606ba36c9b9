"""A single-node Apache Kafka 4.x broker in KRaft mode, its jars fetched from Maven Central."""
from __future__ import annotations

import base64
import shutil
import subprocess
import uuid

from rehab.settings import REPO_ROOT, Settings
from rehab.stack.proc import StackError, port_open, read_pid, spawn, stop_pid, wait_until

POM = REPO_ROOT / "infra" / "kafka" / "pom.xml"
LOG4J = REPO_ROOT / "infra" / "kafka" / "log4j2.yaml"


def cluster_id() -> str:
    """A KRaft cluster id (22 URL-safe base64 characters of a random UUID) that never starts with '-':
    1 in 64 did, and the storage tool read it as an option ("--cluster-id expected one argument"), so
    one fresh machine in 64 could not start Kafka (Kafka's own Uuid.randomUuid skips those too)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


class KafkaBroker:
    def __init__(self, settings: Settings):
        self.settings = settings
        host, _, port = settings.kafka_bootstrap.split(",")[0].rpartition(":")
        self.host, self.port = host or "127.0.0.1", int(port)
        self.controller_port = self.port + 1
        self.home = settings.state_dir / "kafka"
        self.libs = self.home / "libs"
        self.data = self.home / "data"
        self.config = self.home / "server.properties"
        self.log_file = self.home / "kafka.log"
        self.pid_file = self.home / "kafka.pid"

    # -- install ---------------------------------------------------------------------------
    def ensure_jars(self) -> None:
        marker = self.libs / ".complete"
        if marker.exists() and marker.read_text() == POM.read_text():
            return
        if shutil.which("mvn") is None:
            raise StackError("Maven (mvn) is not installed; install it (apt-get install maven) to fetch Kafka's jars")
        self.libs.mkdir(parents=True, exist_ok=True)
        print(f"fetching Apache Kafka jars from Maven Central into {self.libs} ...", flush=True)
        proc = subprocess.run(
            ["mvn", "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
             f"-DoutputDirectory={self.libs}"],
            capture_output=True, text=True,
        )
        if proc.returncode != 0:
            raise StackError(f"mvn could not fetch Kafka's jars:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        marker.write_text(POM.read_text())

    def _java(self) -> str:
        java = shutil.which("java")
        if java is None:
            raise StackError("Java is not installed; Kafka 4 needs Java 17 or newer (apt-get install openjdk-17-jre-headless)")
        out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
        try:
            major = int(out.split('"')[1].split(".")[0])
        except (IndexError, ValueError):
            major = 0
        if major and major < 17:
            raise StackError(f"Kafka 4 needs Java 17 or newer; found: {out.splitlines()[0]}")
        return java

    def _write_config(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            "\n".join([
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@{self.host}:{self.controller_port}",
                f"listeners=PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self.controller_port}",
                f"advertised.listeners=PLAINTEXT://{self.host}:{self.port}",
                "controller.listener.names=CONTROLLER",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                f"log.dirs={self.data}",
                "num.partitions=4",
                "offsets.topic.replication.factor=1",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                # the log cleaner looks for logs to compact every second, not 15 s: on this development
                # broker the erasure test waits for it (rehab/ops/erasure.py)
                "log.cleaner.backoff.ms=1000",
                "auto.create.topics.enable=true",
                "",
            ])
        )

    def _classpath(self) -> str:
        return f"{self.libs}/*"

    def _format_once(self, java: str) -> None:
        if (self.data / "meta.properties").exists():
            return
        proc = subprocess.run(
            [java, f"-Dlog4j2.configurationFile={LOG4J}", "-cp", self._classpath(), "kafka.tools.StorageTool",
             "format", f"--cluster-id={cluster_id()}", "-c", str(self.config)],
            capture_output=True, text=True,
        )
        if proc.returncode != 0:
            raise StackError(f"formatting Kafka storage failed:\n{proc.stdout}{proc.stderr}")

    # -- lifecycle -------------------------------------------------------------------------
    def running(self) -> bool:
        return read_pid(self.pid_file) is not None

    def up(self) -> str:
        if self.running():
            wait_until(lambda: port_open(self.host, self.port), 60, "Kafka", self.log_file)
            return f"Kafka already running on {self.host}:{self.port}"
        for port in (self.port, self.controller_port):
            if port_open(self.host, port):
                raise StackError(
                    f"port {port} on {self.host} is taken by another program; stop it or set REHAB_KAFKA_BOOTSTRAP"
                )
        java = self._java()
        self.ensure_jars()
        self._write_config()
        self._format_once(java)
        pid = spawn(
            [java, "-Xms256m", "-Xmx768m", "-XX:+UseG1GC", f"-Dlog4j2.configurationFile={LOG4J}",
             f"-Dkafka.logs.dir={self.home}", "-cp", self._classpath(), "kafka.Kafka", str(self.config)],
            self.log_file, self.pid_file,
        )
        wait_until(lambda: port_open(self.host, self.port), 90, "Kafka", self.log_file, pid)
        return f"Kafka {self.host}:{self.port} started (log: {self.log_file})"

    def down(self) -> str:
        return "Kafka stopped" if stop_pid(self.pid_file, timeout=40) else "Kafka was not running"
