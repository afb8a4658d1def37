"""Settings every service shares, read from environment variables (pydantic-settings).

Each service subclasses :class:`ServiceSettings` once, in its own ``settings.py``.
Secrets have development defaults so that ``make run`` needs no setup; a service in
``production`` refuses to start with one of them, with a value from the repository's
examples, with a placeholder, or with a signing secret shorter than 32 bytes
(docs/architecture.md §6).
"""

import re
from typing import ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "DEV_DATABASE_URL",
    "DEV_JOB_TOKEN_SECRET",
    "DEV_S3_SECRET",
    "DEV_SECRETS",
    "DEV_WEBHOOK_CAPABILITY_SECRET",
    "EXAMPLE_SECRETS",
    "MIN_SIGNING_SECRET_BYTES",
    "PLACEHOLDER",
    "CoalescedCommitSettings",
    "DatabaseSettings",
    "OwnerAuthSettings",
    "S3Settings",
    "ServiceSettings",
    "production_problem",
]

DEV_JOB_TOKEN_SECRET = "dev-only-job-token-secret-change-me"
DEV_S3_SECRET = "audiopipe-secret"
DEV_WEBHOOK_CAPABILITY_SECRET = "dev-only-webhook-capability-secret-change-me"
DEV_DATABASE_URL = "postgresql://audiopipe:audiopipe@127.0.0.1:15432/audiopipe"
DEV_SECRETS = (
    DEV_JOB_TOKEN_SECRET,
    DEV_S3_SECRET,
    DEV_WEBHOOK_CAPABILITY_SECRET,
    DEV_DATABASE_URL,
)
EXAMPLE_SECRETS = frozenset(
    {
        *DEV_SECRETS,
        "audiopipe",  # the local stack's database password
        "change-me",
        # deploy/.env.example and the overlay's secrets.env.example: published, so known
        # to everyone (tests/deploy/test_example_secrets.py keeps this list complete).
        "whsec_Y2hhbmdlLW1lLWNoYW5nZS1tZS1jaGFuZ2UtbWUtMzI=",
    }
)
"""Values no production secret may have: the development defaults and every secret
value in the repository's example files."""
PLACEHOLDER = re.compile(r"change-?me|replace-?me|dev-only", re.IGNORECASE)
MIN_SIGNING_SECRET_BYTES = 32
"""HMAC keys at least as long as SHA-256's output (RFC 2104 §3, RFC 7518 §3.2)."""


def production_problem(name: str, value: str, *, signing: bool = False) -> str | None:
    """Why ``value`` may not be secret ``name`` in production, or None. A DSN is judged
    by its password; a ``signing`` secret (an HMAC key) also by its length."""
    candidates = [value]
    if "://" in value:
        candidates.append(urlsplit(value).password or "")
    for candidate in candidates:
        if candidate in EXAMPLE_SECRETS:
            return f"{name} has its development default or an example's value in production"
        if PLACEHOLDER.search(candidate):
            return f"{name} is a placeholder in production"
    if signing and len(value.encode()) < MIN_SIGNING_SECRET_BYTES:
        return f"{name} must be at least {MIN_SIGNING_SECRET_BYTES} bytes in production"
    return None


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    environment: Literal["development", "production"] = "development"
    http_host: str = "127.0.0.1"
    http_port: int = 8100
    log_level: str = "INFO"
    http_keep_alive_seconds: float = Field(
        default=75.0,
        gt=0,
        description="How long an idle keep-alive connection stays open. Longer than the "
        "proxy in front keeps its idle connections to this service (the edge: 60 s; "
        "ingress-nginx: 60 s), so that the proxy closes them, not the service: a service "
        "that closes one first races the proxy's next request on it, which the proxy "
        "then answers 502.",
    )
    trusted_proxies: str = Field(
        default="127.0.0.1,::1",
        description="Comma-separated addresses or networks (CIDR) of the proxies in front of "
        "this service (the edge, an ingress controller) whose `X-Forwarded-For` and "
        "`X-Forwarded-Proto` are believed: the client address that limits are keyed on, "
        "and the scheme that makes the progress cookie `Secure`. From any other peer the "
        "headers are ignored.",
    )

    kafka_bootstrap_servers: str = "127.0.0.1:19092"
    kafka_topic_partitions: int = Field(
        default=6, ge=1, description="Partitions for topics this service creates if missing."
    )
    kafka_replication_factor: int | None = Field(
        default=None,
        ge=1,
        description="Replicas of the topics this service creates; unset: min(3, brokers).",
    )
    kafka_min_insync_replicas: int | None = Field(
        default=None,
        ge=1,
        description="min.insync.replicas of the topics this service creates; unset: 2 with "
        "three replicas or more, else 1.",
    )
    kafka_wait_seconds: float = Field(
        default=10.0,
        gt=0,
        description="How long one attempt to reach Kafka at start (the cluster answers, "
        "the topics are there) may take; one that runs out counts as failed and is tried "
        "again (`START_RETRY_MAX_SECONDS`).",
    )
    start_retry_max_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Longest pause between two attempts at start to reach a dependency "
        "that does not answer (PostgreSQL, Kafka, S3): the pauses double from 1 s up to "
        "it, and the service waits, not ready, until it is stopped (docs/architecture.md "
        "§15).",
    )

    job_token_secret: SecretStr = SecretStr(DEV_JOB_TOKEN_SECRET)
    job_token_ttl_seconds: int = 24 * 3600

    signing_secrets: ClassVar[frozenset[str]] = frozenset({"job_token_secret"})
    """The secrets that are HMAC keys of ours: at least 32 bytes in production."""

    @model_validator(mode="after")
    def _no_development_secrets_in_production(self) -> "ServiceSettings":
        if self.environment == "production":
            for name, value in self.secrets().items():
                problem = production_problem(name, value, signing=name in self.signing_secrets)
                if problem:
                    raise ValueError(problem)
        return self

    def secrets(self) -> dict[str, str]:
        return {
            name: value.get_secret_value() for name, value in self if isinstance(value, SecretStr)
        }


class S3Settings(ServiceSettings):
    s3_endpoint_url: str | None = "http://127.0.0.1:18333"
    s3_access_key_id: str = "audiopipe"
    s3_secret_access_key: SecretStr = SecretStr(DEV_S3_SECRET)
    s3_region: str = "us-east-1"
    s3_bucket: str = "audio"
    s3_create_bucket: bool = Field(
        default=True, description="Create the bucket at start when it does not exist."
    )
    s3_sign_payload: bool = Field(
        default=False,
        description="Sign each request body's sha256 into SigV4 (`X-Amz-Content-SHA256`), "
        "botocore's default over plain HTTP. Off, bodies go as `UNSIGNED-PAYLOAD`: the "
        "uploader verifies every file's sha256 itself (docs/architecture.md §5.4), and "
        "signing costs one more pass over every byte in the client and one in the server.",
    )


class DatabaseSettings(ServiceSettings):
    """PostgreSQL, for the services that keep state there (docs/architecture.md §8). The
    DSN carries the password, so it is a secret: never logged, checked in production."""

    database_url: SecretStr = Field(
        default=SecretStr(DEV_DATABASE_URL),
        description="PostgreSQL DSN, `postgresql://user:password@host:port/database`.",
    )
    database_schema: str = Field(
        default="public",
        description="PostgreSQL schema owned by this service (tests use their own).",
    )
    database_pool_size: int = Field(default=10, ge=1)
    database_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        description="Bound on each PostgreSQL connect and statement; beyond it, or with the "
        "database down, requests get 503 with `Retry-After` and events are retried.",
    )

    @field_validator("database_schema")
    @classmethod
    def _plain_identifier(cls, value: str) -> str:
        # Interpolated into SQL, so a plain identifier; `<schema>_applied` (a NOTIFY
        # channel of the notifier's) must stay within PostgreSQL's 63 bytes.
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,54}", value):
            raise ValueError("database_schema must be a lowercase SQL identifier of <= 55 chars")
        return value

    @property
    def database_dsn(self) -> str:
        return self.database_url.get_secret_value()


class CoalescedCommitSettings(ServiceSettings):
    """A consumer whose effects are idempotent commits its offsets together, once per
    interval (``servicekit.kafka.CoalescedCommits``): the notifier's projection and the
    bridge's ``audio.stored``."""

    kafka_commit_interval_seconds: float = Field(
        default=1.0,
        gt=0,
        description="How often the consumer commits the offsets of the messages it handled "
        "(several at once: a round trip and a write to the broker each otherwise). A crash "
        "replays at most this much, which the service takes again without effect; a "
        "rebalance or a shutdown commits first.",
    )


class OwnerAuthSettings(ServiceSettings):
    """Who owns a job: the subject of a bearer JWT from the operator's identity provider,
    required to upload when ``UPLOAD_AUTH=jwt`` (docs/architecture.md §6). The services
    that check an owner's token (the gateway, and the notifier for an owner's jobs) read
    the same settings."""

    upload_auth: Literal["jwt", "anonymous"] | None = Field(
        default=None,
        description="Who may upload: `jwt` (a bearer JWT of the issuer below on every "
        "upload; its `sub` owns the job) or `anonymous` (anyone; limits keyed on the client "
        "address). Unset: `jwt` when an `UPLOAD_JWT_*` setting is given, else anonymous in "
        "development; production refuses to start until it is chosen.",
    )
    upload_jwt_issuer: str | None = Field(
        default=None,
        description="The tokens' `iss`, required with `jwt`; its OpenID "
        "Connect discovery document names the JWKS unless `UPLOAD_JWT_JWKS_URL` does.",
    )
    upload_jwt_audience: str | None = Field(
        default=None, description="The tokens' `aud`, required with `jwt`."
    )
    upload_jwt_jwks_url: str | None = Field(
        default=None, description="The issuer's JWK Set, when not found by discovery."
    )
    upload_jwt_key: SecretStr | None = Field(
        default=None,
        description="One static verification key instead of a JWKS: a PEM public key, or "
        "an HMAC secret of >= 32 bytes for HS256 (matching `UPLOAD_JWT_ALGORITHM`).",
    )
    upload_jwt_algorithm: str = Field(default="RS256", description="The static key's algorithm.")
    upload_jwt_leeway_seconds: float = Field(
        default=30.0, ge=0, description="Clock skew allowed on `exp` and `nbf`."
    )
    upload_jwks_cache_seconds: float = Field(
        default=900.0, gt=0, description="How long the issuer's keys are used before refetching."
    )
    upload_jwks_min_refresh_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Least time between two fetches of the issuer's keys; a token with an "
        "unknown `kid` refetches them (key rotation) no more often than this.",
    )
    _auth_chosen: bool = PrivateAttr(default=False)

    @property
    def upload_auth_chosen(self) -> bool:
        """Whether ``UPLOAD_AUTH`` was given, or implied by an ``UPLOAD_JWT_*`` setting."""
        return self._auth_chosen

    @model_validator(mode="after")
    def _owner_auth_is_coherent(self) -> "OwnerAuthSettings":
        """``UPLOAD_AUTH`` as given, or its default; coherent with the ``UPLOAD_JWT_*``."""
        jwt_given = [
            name
            for name in ("upload_jwt_issuer", "upload_jwt_audience", "upload_jwt_jwks_url")
            if getattr(self, name)
        ] + (["upload_jwt_key"] if self.upload_jwt_key else [])
        self._auth_chosen = self.upload_auth is not None or bool(jwt_given)
        if self.upload_auth is None:
            self.upload_auth = "jwt" if jwt_given else "anonymous"
        if self.upload_auth == "anonymous" and jwt_given:
            raise ValueError(f"UPLOAD_AUTH=anonymous, but {', '.join(jwt_given)} is set")
        if self.upload_auth == "jwt":
            if not (self.upload_jwt_issuer and self.upload_jwt_audience):
                raise ValueError("UPLOAD_AUTH=jwt needs UPLOAD_JWT_ISSUER and UPLOAD_JWT_AUDIENCE")
            if self.upload_jwt_key and self.upload_jwt_jwks_url:
                raise ValueError("give UPLOAD_JWT_KEY or UPLOAD_JWT_JWKS_URL, not both")
            key = self.upload_jwt_key
            hmac = self.upload_jwt_algorithm.startswith("HS")
            if key and hmac and len(key.get_secret_value().encode()) < 32:
                # RFC 7518 §3.2: an HMAC key at least as long as the hash.
                raise ValueError("an HS256 UPLOAD_JWT_KEY must be at least 32 bytes")
        return self

    @model_validator(mode="after")
    def _who_may_upload_is_chosen_in_production(self) -> "OwnerAuthSettings":
        """A public upload route is the operator's explicit choice (issue 19), and the
        notifier, which lets an owner list and delete its jobs, must make the same."""
        if self.environment == "production" and not self.upload_auth_chosen:
            raise ValueError(
                "choose who may upload: UPLOAD_AUTH=jwt (with UPLOAD_JWT_ISSUER and "
                "UPLOAD_JWT_AUDIENCE) or UPLOAD_AUTH=anonymous, the same for the gateway and "
                "the notifier"
            )
        return self
