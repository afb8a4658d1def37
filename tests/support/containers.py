"""Kafka, S3 and PostgreSQL from testcontainers, for machines where a Docker engine
answers. The root conftest uses this before falling back to the local stack; set
``AUDIOPIPE_TESTCONTAINERS=off`` to skip it."""

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

S3_USER = "audiopipe"
S3_SECRET = "audiopipe-secret"


@contextmanager
def containers_env() -> Iterator[dict[str, str]]:
    from testcontainers.community.kafka import KafkaContainer
    from testcontainers.community.postgres import PostgresContainer
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    with ExitStack() as stack:
        kafka = stack.enter_context(KafkaContainer().with_kraft())
        postgres = stack.enter_context(
            PostgresContainer(
                "postgres:17", username="audiopipe", password="audiopipe", dbname="audiopipe"
            )
        )
        s3 = (
            DockerContainer("minio/minio:latest")
            .with_env("MINIO_ROOT_USER", S3_USER)
            .with_env("MINIO_ROOT_PASSWORD", S3_SECRET)
            .with_command("server /data")
            .with_exposed_ports(9000)
        )
        stack.enter_context(s3)
        wait_for_logs(s3, "API:")
        yield {
            "KAFKA_BOOTSTRAP_SERVERS": kafka.get_bootstrap_server(),
            "DATABASE_URL": postgres.get_connection_url(driver=None),
            "S3_ENDPOINT_URL": f"http://{s3.get_container_host_ip()}:{s3.get_exposed_port(9000)}",
            "S3_ACCESS_KEY_ID": S3_USER,
            "S3_SECRET_ACCESS_KEY": S3_SECRET,
            "S3_REGION": "us-east-1",
        }
