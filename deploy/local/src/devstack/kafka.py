"""Apache Kafka 4.x in KRaft mode, run from its Maven Central jars with the machine's JDK.

One combined broker+controller node by default; with ``KAFKA_BROKERS=3`` three of them,
each one a voter of a static controller quorum, so that any one node may die (kill -9)
and the other two still elect leaders and accept ``acks=all`` writes.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import uuid
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from devstack.component import Component, Context, NotReady, run_coroutine, tcp_connect
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

REQUEST_LOG = "KAFKA_REQUEST_LOG"
"""Set to 1, the broker writes every request it completed (client id, API, ...) to
``<logs>/<node>-requests.log``: what ``bench.round_trips`` counts. It costs the broker CPU,
so it is off unless asked for."""


def log4j2(request_log: Path | None) -> str:
    """The broker's logging: the console, and its requests into ``request_log``."""
    if request_log is None:
        return LOG4J2
    return LOG4J2 + (
        "appender.requests.type = File\n"
        "appender.requests.name = REQUESTS\n"
        f"appender.requests.fileName = {request_log}\n"
        "appender.requests.layout.type = PatternLayout\n"
        "appender.requests.layout.pattern = %m%n\n"
        "logger.requests.name = kafka.request.logger\n"
        "logger.requests.level = DEBUG\n"
        "logger.requests.additivity = false\n"
        "logger.requests.appenderRef.requests.ref = REQUESTS\n"
    )


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


def replication(brokers: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) for a cluster of ``brokers`` nodes: three
    copies and two of them in sync where there are enough nodes (one may fail without
    losing an acknowledged write or refusing new ones), one copy on a single node."""
    factor = min(3, brokers)
    return factor, 2 if factor >= 3 else 1


def nodes(ctx: Context) -> list[Kafka]:
    return [Kafka(ctx, i) for i in range(ctx.settings.kafka_brokers)]


class Kafka(Component):
    def __init__(self, ctx: Context, index: int = 0) -> None:
        super().__init__(ctx)
        self.index = index
        self.name = ctx.settings.kafka_node_name(index)

    @property
    def port(self) -> int:
        return self.ctx.settings.kafka_node_port(self.index)

    @property
    def controller_port(self) -> int:
        return self.ctx.settings.kafka_node_controller_port(self.index)

    @property
    def clustered(self) -> bool:
        return self.ctx.settings.kafka_brokers > 1

    @property
    def libs(self) -> Path:
        return libs_dir(self.ctx.root)

    @property
    def properties_file(self) -> Path:
        return self.conf_dir / "server.properties"

    def properties(self) -> dict[str, str]:
        s = self.ctx.settings
        controller = f"{HOST}:{self.controller_port}"
        broker = f"{HOST}:{self.port}"
        factor, min_isr = (str(n) for n in replication(s.kafka_brokers))
        if self.clustered:
            # A static quorum of every node: nothing to bootstrap or add later.
            quorum = {
                "controller.quorum.voters": ",".join(
                    f"{i + 1}@{HOST}:{s.kafka_node_controller_port(i)}"
                    for i in range(s.kafka_brokers)
                )
            }
        else:
            quorum = {"controller.quorum.bootstrap.servers": controller}
        return {
            "process.roles": "broker,controller",
            "node.id": str(self.index + 1),
            **quorum,
            "listeners": f"PLAINTEXT://{broker},CONTROLLER://{controller}",
            "advertised.listeners": f"PLAINTEXT://{broker},CONTROLLER://{controller}",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            "default.replication.factor": factor,
            "min.insync.replicas": min_isr,
            # Only an in-sync replica may become leader: an acknowledged write is never
            # dropped for availability (the default, stated because it is the guarantee).
            "unclean.leader.election.enable": "false",
            "offsets.topic.replication.factor": factor,
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": factor,
            "transaction.state.log.min.isr": min_isr,
            "share.coordinator.state.topic.replication.factor": factor,
            "share.coordinator.state.topic.min.isr": min_isr,
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
        (self.conf_dir / "log4j2.properties").write_text(self.log_config())
        if not (self.data_dir / "meta.properties").exists():
            self._format()
            self._formatted_for.write_text(f"{self.ctx.settings.kafka_brokers}\n")
        else:
            self._check_formatted_for()

    def log_config(self) -> str:
        """log4j2.properties: with the request log when ``KAFKA_REQUEST_LOG=1``."""
        asked = self.ctx.environ.get(REQUEST_LOG) == "1"
        return log4j2(self.ctx.paths.log(f"{self.name}-requests") if asked else None)

    @property
    def _formatted_for(self) -> Path:
        """How many nodes the storage was formatted for (one quorum, one cluster id)."""
        return self.data_dir / ".audiopipe-brokers"

    def _check_formatted_for(self) -> None:
        path = self._formatted_for
        # Storage from before this file existed was always a single node.
        formatted = int(path.read_text()) if path.exists() else 1
        wanted = self.ctx.settings.kafka_brokers
        if formatted != wanted:
            raise ComponentError(
                self.name,
                f"its storage ({self.data_dir}) was formatted for {formatted} broker(s), "
                f"KAFKA_BROKERS asks for {wanted}: delete the run folder's data/kafka* "
                "folders (their topics go with them) or keep the old setting",
            )

    def _cluster_id(self) -> str:
        """One id for every node of the cluster, made once per run dir."""
        path = self.ctx.paths.conf_dir("kafka-cluster") / "cluster-id"
        with file_lock(path.with_name(".lock")):
            if not path.exists():
                path.write_text(cluster_id() + "\n")
            return path.read_text().strip()

    def _format(self) -> None:
        log = self.ctx.paths.log(f"{self.name}-format")
        # A single node is its own (dynamic) quorum; cluster nodes name the static one in
        # controller.quorum.voters, and then the format command takes no quorum flag.
        quorum = [] if self.clustered else ["--standalone"]
        with log.open("wb") as out:
            result = subprocess.run(
                [
                    *self._java(),
                    "kafka.tools.StorageTool",
                    "format",
                    *quorum,
                    "--cluster-id",
                    self._cluster_id() if self.clustered else cluster_id(),
                    "--config",
                    str(self.properties_file),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if result.returncode != 0:
            raise ComponentError(
                self.name, f"formatting the storage failed (log: {log})", tail(log)
            )

    def _java(self) -> list[str]:
        return [
            java_executable(),
            "-Xms256m",
            "-Xmx512m",
            # A single-node broker sharing a small machine with everything else: the
            # serial collector (no GC threads competing for its cores) and the C1
            # compiler only. C2's compilations cost as much CPU per job as the broker's
            # own request handling through the first minutes of load and never paid
            # back at this load; with these, the broker's CPU per job halves and ingest
            # through it is as fast (bench/results/throughput.md). A production broker
            # is its operator's to tune.
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.conf_dir / 'log4j2.properties'}",
            "-cp",
            f"{self.libs}/*",
        ]

    def command(self) -> list[str]:
        return [*self._java(), "kafka.Kafka", str(self.properties_file)]

    def probe(self, timeout: float) -> None:
        # This node alone: a broker opens its listener to clients only once it is unfenced.
        tcp_connect(HOST, self.port, timeout)
        topics = run_coroutine(lambda: list_topics(f"{HOST}:{self.port}", timeout))
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
