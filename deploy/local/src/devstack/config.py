"""Ports, credentials and the environment the stack hands to the services."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from devstack.errors import StackError

HOST = "127.0.0.1"


@dataclass(frozen=True)
class AppSpec:
    """One service of the project, run as `python -m <module>` with HTTP_PORT=<port>."""

    name: str
    module: str
    port: int
    # When this variable is already set in the environment, the app is external: not started.
    external_env: str | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


DEFAULT_APPS: tuple[AppSpec, ...] = (
    AppSpec("gateway", "gateway", 8101),
    AppSpec("uploader", "uploader", 8102),
    AppSpec("analyzer-bridge", "analyzer_bridge", 8103),
    AppSpec("notifier", "notifier", 8104),
    AppSpec("reference-analyzer", "reference_analyzer", 8105, external_env="ANALYSIS_SERVER_URL"),
    # A second notifier replica: the edge balances streams over both and holds a reconnect
    # while one restarts, so a browser's EventSource never sees a 502 (issue 11).
    AppSpec("notifier-2", "notifier", 8106),
)

MAX_KAFKA_BROKERS = 9

LIFECYCLE_DEFAULTS: Mapping[str, str] = {
    # What `make run` keeps, and for how long (docs/architecture.md §8): minutes instead
    # of the services' production defaults (days), so that a person can watch audio go,
    # rows of ended uploads and analyses go, and an abandoned upload expire. Each is
    # overridden by the same variable in the environment.
    # notifier: a finished job is deleted everywhere an hour after its end (production:
    # 30 days); the audio goes before it, as AUDIO_RETENTION_SECONDS must.
    "JOB_RETENTION_SECONDS": "3600",
    "AUDIO_RETENTION_SECONDS": "900",  # uploader: a recording is erased after 15 min
    # Each sweep lists the whole bucket (uploader/retention.py): every 2 min, not every
    # 30 s, which cost the uploader a tenth of its CPU under the benchmarks' load.
    "AUDIO_RETENTION_SWEEP_SECONDS": "120",
    "STALE_UPLOAD_SECONDS": "600",  # uploader: multipart uploads nobody owns
    "STALE_SWEEP_INTERVAL_SECONDS": "60",
    "UPLOAD_MAX_AGE_SECONDS": "900",  # gateway and uploader: a resumable upload's life
    "ENDED_UPLOAD_RETENTION_SECONDS": "600",  # gateway: rows of ended uploads
    "ANALYSIS_RETENTION_SECONDS": "600",  # analyzer-bridge: rows of finished analyses
    "RETENTION_SWEEP_SECONDS": "30",
    # Created with it when the stack's Kafka is new: past a resumable upload's life.
    "AUDIO_UPLOAD_RETENTION_SECONDS": "1800",
}


@dataclass(frozen=True)
class Settings:
    kafka_port: int = 19092
    kafka_controller_port: int = 19093
    # KAFKA_BROKERS=3 runs a cluster of combined broker+controller nodes; node i (from 0)
    # listens on kafka_port + 2i and kafka_controller_port + 2i (19092..19097 for three).
    kafka_brokers: int = 1
    s3_port: int = 18333
    # weed mini opens many more ports than S3; all of them live in 18xxx.
    s3_internal_ports: Mapping[str, int] = field(
        default_factory=lambda: {
            "s3.port.grpc": 18334,
            "master.port": 18340,
            "master.port.grpc": 18341,
            "volume.port": 18342,
            "volume.port.grpc": 18343,
            "filer.port": 18344,
            "filer.port.grpc": 18345,
            "admin.port": 18346,
            "admin.port.grpc": 18347,
        }
    )
    postgres_port: int = 15432
    edge_port: int = 8000
    s3_access_key: str = "audiopipe"
    s3_secret_key: str = "audiopipe-secret"
    s3_region: str = "us-east-1"
    pg_user: str = "audiopipe"
    pg_password: str = "audiopipe"
    pg_database: str = "audiopipe"
    apps: tuple[AppSpec, ...] = DEFAULT_APPS
    port_offset: int = 0

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Defaults, shifted by AUDIOPIPE_PORT_OFFSET, with the edge on EDGE_PORT if set."""
        environ = os.environ if environ is None else environ
        settings = cls()
        offset = _given(environ, "AUDIOPIPE_PORT_OFFSET")
        if offset:
            settings = settings.shifted(int(offset))
        edge_port = _given(environ, "EDGE_PORT")
        if edge_port:
            settings = dataclasses.replace(settings, edge_port=int(edge_port))
        # Credentials for the stack's own SeaweedFS (with S3_ENDPOINT_URL they name an
        # external S3 instead): a stack whose services run in production mode, which
        # refuses the development secret (the container tests, tests/containers).
        secret = _given(environ, "S3_SECRET_ACCESS_KEY")
        if secret and not _given(environ, "S3_ENDPOINT_URL"):
            key = _given(environ, "S3_ACCESS_KEY_ID") or settings.s3_access_key
            settings = dataclasses.replace(settings, s3_access_key=key, s3_secret_key=secret)
        brokers = _given(environ, "KAFKA_BROKERS")
        if brokers:
            if not brokers.isdigit() or not 1 <= int(brokers) <= MAX_KAFKA_BROKERS:
                raise StackError(f"KAFKA_BROKERS must be 1..{MAX_KAFKA_BROKERS}, not {brokers!r}")
            settings = dataclasses.replace(settings, kafka_brokers=int(brokers))
        return settings

    def shifted(self, offset: int) -> Settings:
        """Every port moved by `offset`, so that a second stack can run beside the first."""
        return dataclasses.replace(
            self,
            kafka_port=self.kafka_port + offset,
            kafka_controller_port=self.kafka_controller_port + offset,
            s3_port=self.s3_port + offset,
            s3_internal_ports={k: v + offset for k, v in self.s3_internal_ports.items()},
            postgres_port=self.postgres_port + offset,
            edge_port=self.edge_port + offset,
            apps=tuple(dataclasses.replace(a, port=a.port + offset) for a in self.apps),
            port_offset=self.port_offset + offset,
        )

    def kafka_node_name(self, index: int) -> str:
        """``kafka`` for the first node (the single-node name stays), ``kafka-2``... after it."""
        return "kafka" if index == 0 else f"kafka-{index + 1}"

    def kafka_node_names(self) -> list[str]:
        return [self.kafka_node_name(i) for i in range(self.kafka_brokers)]

    def kafka_node_port(self, index: int) -> int:
        return self.kafka_port + 2 * index

    def kafka_node_controller_port(self, index: int) -> int:
        return self.kafka_controller_port + 2 * index

    @property
    def kafka_bootstrap(self) -> str:
        return ",".join(f"{HOST}:{self.kafka_node_port(i)}" for i in range(self.kafka_brokers))

    def ports(self) -> dict[str, int]:
        """Every port the stack listens on, by what listens there (to check for collisions)."""
        ports: dict[str, int] = {}
        for i, name in enumerate(self.kafka_node_names()):
            ports[name] = self.kafka_node_port(i)
            ports[f"{name} controller"] = self.kafka_node_controller_port(i)
        ports["s3"] = self.s3_port
        ports.update({f"s3 {k}": v for k, v in self.s3_internal_ports.items()})
        ports["postgres"] = self.postgres_port
        ports["edge"] = self.edge_port
        ports.update({spec.name: spec.port for spec in self.apps})
        return ports

    @property
    def s3_endpoint(self) -> str:
        return f"http://{HOST}:{self.s3_port}"

    @property
    def database_url(self) -> str:
        return (
            f"postgresql://{self.pg_user}:{self.pg_password}@{HOST}:{self.postgres_port}"
            f"/{self.pg_database}"
        )

    @property
    def edge_url(self) -> str:
        return f"http://{HOST}:{self.edge_port}"

    def app_port(self, name: str) -> int:
        """The port of an app, also when a custom app list leaves it out (the edge routes it)."""
        for spec in self.apps:
            if spec.name == name:
                return spec.port
        for spec in DEFAULT_APPS:
            if spec.name == name:
                return spec.port + self.port_offset
        raise KeyError(name)

    def app_ports(self, module: str) -> list[int]:
        """The ports of every replica of a module (the edge balances over them); the default
        ones when a custom app list leaves the module out."""
        ports = [spec.port for spec in self.apps if spec.module == module]
        return ports or [s.port + self.port_offset for s in DEFAULT_APPS if s.module == module]


def _given(environ: Mapping[str, str], key: str) -> str | None:
    value = environ.get(key, "").strip()
    return value or None


@dataclass(frozen=True)
class StackEnv:
    """The variables the services get, and which infrastructure is external."""

    values: dict[str, str]
    external: frozenset[str]


def resolve_env(settings: Settings, environ: Mapping[str, str] | None = None) -> StackEnv:
    environ = os.environ if environ is None else environ
    values: dict[str, str] = {}
    external: set[str] = set()

    kafka = _given(environ, "KAFKA_BOOTSTRAP_SERVERS")
    if kafka:
        external.update(settings.kafka_node_names())
    values["KAFKA_BOOTSTRAP_SERVERS"] = kafka or settings.kafka_bootstrap

    s3 = _given(environ, "S3_ENDPOINT_URL")
    if s3:
        external.add("s3")
        key = _given(environ, "S3_ACCESS_KEY_ID") or _given(environ, "AWS_ACCESS_KEY_ID")
        secret = _given(environ, "S3_SECRET_ACCESS_KEY") or _given(environ, "AWS_SECRET_ACCESS_KEY")
        if not key or not secret:
            raise StackError(
                "S3_ENDPOINT_URL is set, but S3_ACCESS_KEY_ID / S3_SECRET_ACCESS_KEY are not"
            )
        values["S3_ENDPOINT_URL"] = s3
        values["S3_ACCESS_KEY_ID"] = key
        values["S3_SECRET_ACCESS_KEY"] = secret
    else:
        values["S3_ENDPOINT_URL"] = settings.s3_endpoint
        values["S3_ACCESS_KEY_ID"] = settings.s3_access_key
        values["S3_SECRET_ACCESS_KEY"] = settings.s3_secret_key
    values["S3_REGION"] = _given(environ, "S3_REGION") or settings.s3_region

    database = _given(environ, "DATABASE_URL")
    if database:
        external.add("postgres")
    values["DATABASE_URL"] = database or settings.database_url

    for spec in settings.apps:
        if spec.external_env and _given(environ, spec.external_env):
            external.add(spec.name)
    analyzer = _given(environ, "ANALYSIS_SERVER_URL")
    values["ANALYSIS_SERVER_URL"] = analyzer or _reference_analyzer_url(settings)
    values["PUBLIC_BASE_URL"] = _given(environ, "PUBLIC_BASE_URL") or settings.edge_url
    for name, default in LIFECYCLE_DEFAULTS.items():
        values[name] = _given(environ, name) or default
    return StackEnv(values=values, external=frozenset(external))


def _reference_analyzer_url(settings: Settings) -> str:
    return f"http://{HOST}:{settings.app_port('reference-analyzer')}"


def default_run_dir(root: Path, environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    given = _given(environ, "AUDIOPIPE_RUN_DIR")
    return Path(given).resolve() if given else root / ".run"
