"""devstack without the infrastructure: config, signing, process bookkeeping."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

import pytest

from devstack import process
from devstack.component import Context
from devstack.config import DEFAULT_APPS, LIFECYCLE_DEFAULTS, Settings, resolve_env
from devstack.edge import Edge
from devstack.errors import StackError
from devstack.kafka import nodes as kafka_nodes
from devstack.s3 import sigv4_headers
from devstack.stack import Stack

pytestmark = pytest.mark.unit


def test_defaults_name_the_local_stack() -> None:
    env = resolve_env(Settings(), environ={})
    assert env.external == frozenset()
    assert env.values == {
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:19092",
        "S3_ENDPOINT_URL": "http://127.0.0.1:18333",
        "S3_ACCESS_KEY_ID": "audiopipe",
        "S3_SECRET_ACCESS_KEY": "audiopipe-secret",
        "S3_REGION": "us-east-1",
        "DATABASE_URL": "postgresql://audiopipe:audiopipe@127.0.0.1:15432/audiopipe",
        "ANALYSIS_SERVER_URL": "http://127.0.0.1:8105",
        "PUBLIC_BASE_URL": "http://127.0.0.1:8000",
        **LIFECYCLE_DEFAULTS,
    }


def test_the_lifecycle_defaults_are_short_and_the_environment_overrides_them() -> None:
    env = resolve_env(Settings(), environ={"AUDIO_RETENTION_SECONDS": "86400"})
    assert env.values["AUDIO_RETENTION_SECONDS"] == "86400"
    assert env.values["UPLOAD_MAX_AGE_SECONDS"] == LIFECYCLE_DEFAULTS["UPLOAD_MAX_AGE_SECONDS"]
    # The services refuse an audio.upload retention that an upload could outlive.
    retention = int(LIFECYCLE_DEFAULTS["AUDIO_UPLOAD_RETENTION_SECONDS"])
    assert retention > int(LIFECYCLE_DEFAULTS["UPLOAD_MAX_AGE_SECONDS"])
    assert all(int(value) <= 3600 for value in LIFECYCLE_DEFAULTS.values())
    # The audio goes no later than the job it belongs to.
    audio = int(LIFECYCLE_DEFAULTS["AUDIO_RETENTION_SECONDS"])
    assert audio <= int(LIFECYCLE_DEFAULTS["JOB_RETENTION_SECONDS"])


def test_configured_services_are_external_and_passed_through() -> None:
    environ = {
        "KAFKA_BOOTSTRAP_SERVERS": "kafka:9092",
        "S3_ENDPOINT_URL": "http://s3:9000",
        "S3_ACCESS_KEY_ID": "k",
        "S3_SECRET_ACCESS_KEY": "s",
        "DATABASE_URL": "postgresql://u:p@db/x",
        "ANALYSIS_SERVER_URL": "http://analyzer",
    }
    env = resolve_env(Settings(), environ=environ)
    assert env.external == {"kafka", "s3", "postgres", "reference-analyzer"}
    for key, value in environ.items():
        assert env.values[key] == value


def test_external_s3_without_keys_is_refused() -> None:
    with pytest.raises(StackError, match="S3_ACCESS_KEY_ID"):
        resolve_env(Settings(), environ={"S3_ENDPOINT_URL": "http://s3:9000"})


def test_port_offset_moves_every_port_and_edge_port_wins() -> None:
    settings = Settings.from_environ({"AUDIOPIPE_PORT_OFFSET": "1000", "EDGE_PORT": "8080"})
    assert settings.kafka_bootstrap == "127.0.0.1:20092"
    assert settings.kafka_controller_port == 20093
    assert settings.s3_endpoint == "http://127.0.0.1:19333"
    assert all(19000 <= p < 20000 for p in settings.s3_internal_ports.values())
    assert settings.postgres_port == 16432
    assert settings.edge_url == "http://127.0.0.1:8080"
    assert [a.port for a in settings.apps] == [9101, 9102, 9103, 9104, 9105, 9106]


def test_weed_mini_ports_stay_in_the_18xxx_range() -> None:
    ports = [Settings().s3_port, *Settings().s3_internal_ports.values()]
    assert all(18000 <= p < 19000 for p in ports)
    assert len(set(ports)) == len(ports)


def test_sigv4_matches_botocore() -> None:
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = "http://127.0.0.1:18333/"
    request = AWSRequest(method="GET", url=url)
    S3SigV4Auth(Credentials("audiopipe", "audiopipe-secret"), "s3", "us-east-1").add_auth(request)
    when = dt.datetime.strptime(request.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
    mine = sigv4_headers(
        "GET", url, "audiopipe", "audiopipe-secret", "us-east-1", now=when.replace(tzinfo=dt.UTC)
    )
    assert mine["authorization"] == request.headers["Authorization"]


def test_down_on_an_empty_run_dir_stops_nothing(tmp_path: Path) -> None:
    stack = Stack(run_dir=tmp_path, environ={})
    assert stack.down() == []
    assert stack.run_dir == tmp_path.resolve()


def _sleeper(paths: process.RunPaths, name: str = "sleeper") -> process.ProcessRecord:
    code = "import time; print('up', flush=True); time.sleep(60)"
    return process.spawn(paths, name, [sys.executable, "-c", code], env=dict(os.environ))


def test_spawn_records_and_stop_ends_the_process_group(tmp_path: Path) -> None:
    paths = process.RunPaths(tmp_path)
    record = _sleeper(paths)
    assert process.is_running(record)
    assert paths.pid_file("sleeper").read_text().strip() == str(record.pid)
    assert json.loads(paths.meta_file("sleeper").read_text())["argv"][0] == sys.executable
    assert os.getpgid(record.pid) == record.pid
    assert process.wait_until(lambda: "up" in paths.log("sleeper").read_text(), timeout=10)

    assert process.stop(paths, "sleeper", timeout=5)
    assert not process.is_running(record)
    assert not paths.pid_file("sleeper").exists()
    assert not paths.meta_file("sleeper").exists()
    assert process.stop(paths, "sleeper") is False


def test_stop_falls_back_to_sigkill(tmp_path: Path) -> None:
    paths = process.RunPaths(tmp_path)
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    record = process.spawn(paths, "stubborn", [sys.executable, "-c", code], env=dict(os.environ))
    time.sleep(0.3)
    started = time.monotonic()
    assert process.stop(paths, "stubborn", timeout=1)
    assert time.monotonic() - started < 5
    assert not process.is_running(record)


def test_a_stale_or_foreign_pid_is_never_signalled(tmp_path: Path) -> None:
    paths = process.RunPaths(tmp_path)
    paths.ensure()
    # Our own pid, but with another start time: a recycled pid must not be signalled.
    paths.pid_file("ghost").write_text(f"{os.getpid()}\n")
    paths.meta_file("ghost").write_text(json.dumps({"argv": [sys.executable], "start_time": 1}))
    record = process.read_record(paths, "ghost")
    assert record is not None
    assert not process.is_running(record)
    assert process.stop(paths, "ghost") is False
    assert not paths.pid_file("ghost").exists()

    # A pid file without its record is stale too.
    paths.pid_file("half").write_text("1\n")
    assert process.read_record(paths, "half") is None
    assert process.stop(paths, "half") is False
    assert not paths.pid_file("half").exists()


def test_tail_returns_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert process.tail(log, 3).splitlines() == ["line 97", "line 98", "line 99"]
    assert "no log file" in process.tail(tmp_path / "missing.log")


def test_wait_until_stops_early_when_the_process_died() -> None:
    started = time.monotonic()
    assert not process.wait_until(lambda: False, timeout=30, alive=lambda: False)
    assert time.monotonic() - started < 1


def _context(tmp_path: Path, environ: dict[str, str]) -> Context:
    stack = Stack(run_dir=tmp_path, environ=environ)
    return stack._context()


def test_three_brokers_get_their_own_ports_and_one_static_quorum(tmp_path: Path) -> None:
    environ = {"KAFKA_BROKERS": "3", "AUDIOPIPE_PORT_OFFSET": "6000"}
    settings = Settings.from_environ(environ)
    assert settings.kafka_bootstrap == "127.0.0.1:25092,127.0.0.1:25094,127.0.0.1:25096"
    assert resolve_env(settings, environ={}).values["KAFKA_BOOTSTRAP_SERVERS"] == (
        settings.kafka_bootstrap
    )
    nodes = kafka_nodes(_context(tmp_path, environ))
    assert [n.name for n in nodes] == ["kafka", "kafka-2", "kafka-3"]
    props = [n.properties() for n in nodes]
    voters = "1@127.0.0.1:25093,2@127.0.0.1:25095,3@127.0.0.1:25097"
    assert {p["controller.quorum.voters"] for p in props} == {voters}
    assert [p["node.id"] for p in props] == ["1", "2", "3"]
    assert [p["listeners"] for p in props] == [
        f"PLAINTEXT://127.0.0.1:{b},CONTROLLER://127.0.0.1:{b + 1}" for b in (25092, 25094, 25096)
    ]
    assert len({p["log.dirs"] for p in props}) == 3
    for p in props:
        assert p["default.replication.factor"] == "3"
        assert p["offsets.topic.replication.factor"] == "3"
        assert p["min.insync.replicas"] == "2"
        assert p["unclean.leader.election.enable"] == "false"


def test_a_single_broker_keeps_its_standalone_quorum_and_one_replica(tmp_path: Path) -> None:
    (node,) = kafka_nodes(_context(tmp_path, {}))
    props = node.properties()
    assert node.name == "kafka"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:19093"
    assert "controller.quorum.voters" not in props
    assert props["default.replication.factor"] == props["min.insync.replicas"] == "1"


def test_the_broker_logs_its_requests_only_when_asked(tmp_path: Path) -> None:
    (quiet,) = kafka_nodes(_context(tmp_path, {}))
    assert "kafka.request.logger" not in quiet.log_config()
    (asked,) = kafka_nodes(_context(tmp_path, {"KAFKA_REQUEST_LOG": "1"}))
    config = asked.log_config()
    assert "logger.requests.name = kafka.request.logger" in config
    assert "logger.requests.level = DEBUG" in config
    assert f"fileName = {asked.ctx.paths.log('kafka-requests')}" in config


@pytest.mark.parametrize("value", ["0", "ten", "10"])
def test_a_wrong_broker_count_is_refused(value: str) -> None:
    with pytest.raises(StackError, match="KAFKA_BROKERS"):
        Settings.from_environ({"KAFKA_BROKERS": value})


@pytest.mark.parametrize("offset", [0, 6000])
def test_no_two_components_share_a_port(offset: int) -> None:
    settings = Settings.from_environ({"KAFKA_BROKERS": "3", "AUDIOPIPE_PORT_OFFSET": str(offset)})
    ports = settings.ports()
    assert len(set(ports.values())) == len(ports), ports
    kafka = [port for name, port in ports.items() if name.startswith("kafka")]
    assert kafka == list(range(19092 + offset, 19098 + offset))


def test_external_kafka_means_every_node_is_external() -> None:
    settings = Settings.from_environ({"KAFKA_BROKERS": "3"})
    env = resolve_env(settings, environ={"KAFKA_BOOTSTRAP_SERVERS": "kafka:9092"})
    assert {"kafka", "kafka-2", "kafka-3"} <= env.external


def test_the_edge_balances_over_every_notifier_replica(tmp_path: Path) -> None:
    edge = Edge(_context(tmp_path, {"AUDIOPIPE_PORT_OFFSET": "6000"}))
    assert edge.process_env()["NOTIFIER_ADDR"] == "127.0.0.1:14104 127.0.0.1:14106"
    assert [a.name for a in DEFAULT_APPS if a.module == "notifier"] == ["notifier", "notifier-2"]


def test_storage_formatted_for_one_broker_is_not_reused_by_a_cluster(tmp_path: Path) -> None:
    (single,) = kafka_nodes(_context(tmp_path, {}))
    single.data_dir.mkdir(parents=True)
    (single.data_dir / "meta.properties").write_text("node.id=1\n")
    first = kafka_nodes(_context(tmp_path, {"KAFKA_BROKERS": "3"}))[0]
    with pytest.raises(StackError, match="formatted for 1 broker"):
        first._check_formatted_for()
    single._check_formatted_for()  # the setting it was made with is fine


def test_a_process_between_two_execs_still_counts_as_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = process.RunPaths(tmp_path)
    record = _sleeper(paths)
    try:
        # /proc/<pid>/cmdline reads empty while an exec replaces the program.
        monkeypatch.setattr(process, "_proc_cmdline", lambda pid: ())
        assert process.is_running(record)
        monkeypatch.setattr(process, "_proc_cmdline", lambda pid: ("/bin/other",))
        assert not process.is_running(record)
    finally:
        monkeypatch.undo()
        process.stop(paths, "sleeper", timeout=5)


def test_the_edge_runs_go_on_one_thread_unless_the_environment_says(tmp_path: Path) -> None:
    assert Edge(_context(tmp_path, {})).process_env()["GOMAXPROCS"] == "1"
    assert Edge(_context(tmp_path, {"GOMAXPROCS": "2"})).process_env()["GOMAXPROCS"] == "2"
