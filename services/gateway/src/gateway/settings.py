from pydantic import Field, SecretStr

from servicekit.settings import ServiceSettings


class Settings(ServiceSettings):
    http_port: int = 8101
    max_upload_bytes: int = Field(default=2 * 1024**3, description="Largest accepted file.")
    chunk_bytes: int = Field(
        default=512 * 1024, description="Size of the chunk messages on `audio.upload`."
    )
    max_chunks_in_flight: int = Field(
        default=8, description="Unacknowledged chunks per upload; bounds memory per upload."
    )
    kafka_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        description="Bound on every wait for Kafka during an upload (metadata, a free send "
        "slot, an acknowledgement, one request): with the broker down, an upload in "
        "progress is refused with 503 within about this long.",
    )
    kafka_probe_interval_seconds: float = Field(
        default=1.0,
        gt=0,
        description="How often the gateway asks whether Kafka answers; while it does not, "
        "uploads are refused with 503 before their body is read.",
    )
    cors_allowed_origins: list[str] = Field(
        default_factory=list, description="Origins allowed to call the API from a browser."
    )
    upload_jwt_key: SecretStr | None = Field(
        default=None,
        description="When set, uploads need a bearer JWT verified with this key (an HMAC "
        "secret or a PEM public key, matching upload_jwt_algorithm); its `sub` is the owner.",
    )
    upload_jwt_algorithm: str = "RS256"
    upload_jwt_audience: str | None = None
    upload_jwt_issuer: str | None = None
