"""Apache Kafka 4.x, single KRaft node, run from its Maven Central jars with the machine's JDK."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import uuid
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from devstack.component import Component, NotReady, run_coroutine, tcp_connect
from devstack.config import HOST
from devstack.errors import ComponentError
from devstack.process import file_lock, tail

STAMP = ".pom-sha256"

LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.state.name = state.change.logger
logger.state.level = WARN
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = WARN
"""


def pom_file(root: Path) -> Path:
    return root / "deploy" / "local" / "kafka" / "pom.xml"


def libs_dir(root: Path) -> Path:
    return root / ".cache" / "kafka" / "libs"


def ensure_libs(root: Path, log: Path) -> Path:
    """Resolve the broker's class path with Maven once; again only when the pom changes."""
    libs = libs_dir(root)
    pom = pom_file(root)
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()
    stamp = libs / STAMP
    if stamp.exists() and stamp.read_text().strip() == digest:
        return libs
    with file_lock(libs.parent / ".lock"):
        if stamp.exists() and stamp.read_text().strip() == digest:
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise ComponentError("kafka", "Maven (`mvn`) is not on PATH; it resolves the jars")
        partial = libs.with_name("libs.partial")
        shutil.rmtree(partial, ignore_errors=True)
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as out:
            result = subprocess.run(
                [
                    mvn,
                    "-q",
                    "-B",
                    "-Dstyle.color=never",
                    "-f",
                    str(pom),
                    "dependency:copy-dependencies",
                    f"-DoutputDirectory={partial}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if result.returncode != 0 or not any(partial.glob("kafka_2.13-*.jar")):
            raise ComponentError("kafka", f"Maven could not resolve {pom} (log: {log})", tail(log))
        (partial / STAMP).write_text(digest + "\n")
        shutil.rmtree(libs, ignore_errors=True)
        partial.rename(libs)
    return libs


def java_executable() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise ComponentError("kafka", "no `java` on PATH (JDK 17 or newer is needed)")
    return found


def cluster_id() -> str:
    """A Kafka Uuid in its base64 form; Kafka never hands out ids starting with '-'."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


class Kafka(Component):
    name = "kafka"

    @property
    def port(self) -> int:
        return self.ctx.settings.kafka_port

    @property
    def libs(self) -> Path:
        return libs_dir(self.ctx.root)

    @property
    def properties_file(self) -> Path:
        return self.conf_dir / "server.properties"

    def properties(self) -> dict[str, str]:
        s = self.ctx.settings
        controller = f"{HOST}:{s.kafka_controller_port}"
        return {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": controller,
            "listeners": f"PLAINTEXT://{HOST}:{s.kafka_port},CONTROLLER://{controller}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{s.kafka_port},CONTROLLER://{controller}",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "message.max.bytes": "4194304",
            "replica.fetch.max.bytes": "4194304",
            "auto.create.topics.enable": "false",
            # After a crash (kill -9) the restarted broker cannot register until the old
            # registration's session expires: 9 s by default, 4 s here.
            "broker.heartbeat.interval.ms": "1000",
            "broker.session.timeout.ms": "4000",
        }

    def prepare(self) -> None:
        ensure_libs(self.ctx.root, self.ctx.paths.log("kafka-maven"))
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lines = [f"{k}={v}" for k, v in self.properties().items()]
        self.properties_file.write_text("\n".join(lines) + "\n")
        (self.conf_dir / "log4j2.properties").write_text(LOG4J2)
        if not (self.data_dir / "meta.properties").exists():
            self._format()

    def _format(self) -> None:
        log = self.ctx.paths.log("kafka-format")
        with log.open("wb") as out:
            result = subprocess.run(
                [
                    *self._java(),
                    "kafka.tools.StorageTool",
                    "format",
                    "--standalone",
                    "--cluster-id",
                    cluster_id(),
                    "--config",
                    str(self.properties_file),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if result.returncode != 0:
            raise ComponentError("kafka", f"formatting the storage failed (log: {log})", tail(log))

    def _java(self) -> list[str]:
        return [
            java_executable(),
            "-Xms256m",
            "-Xmx512m",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.conf_dir / 'log4j2.properties'}",
            "-cp",
            f"{self.libs}/*",
        ]

    def command(self) -> list[str]:
        return [*self._java(), "kafka.Kafka", str(self.properties_file)]

    def probe(self, timeout: float) -> None:
        tcp_connect(HOST, self.port, timeout)
        topics = run_coroutine(lambda: list_topics(self.ctx.settings.kafka_bootstrap, timeout))
        if topics is None:
            raise NotReady("the broker did not answer a metadata request")


async def list_topics(bootstrap: str, request_timeout: float) -> list[str] | None:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=max(1000, int(request_timeout * 1000)),
        client_id="devstack-health",
    )
    try:
        await admin.start()
        return list(await admin.list_topics())
    finally:
        await admin.close()
