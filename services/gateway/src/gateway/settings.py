from typing import Literal

from pydantic import Field, SecretStr, model_validator

from servicekit.settings import DatabaseSettings


class Settings(DatabaseSettings):
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

    upload_rate_per_minute: float = Field(
        default=30.0,
        ge=0,
        description="New uploads per minute per owner (or client address), on average; 0: "
        "no limit. Beyond it and the burst: 429 before the body is read.",
    )
    upload_rate_burst: int = Field(
        default=10, ge=1, description="New uploads allowed at once before the rate applies."
    )
    uploads_open_per_client: int = Field(
        default=4,
        ge=0,
        description="Uploads of one owner (or client address) open at once: one-shot bodies "
        "being received and resumable uploads not ended; 0: no limit.",
    )
    upload_bytes_per_day: int = Field(
        default=4 * 1024**3,
        ge=0,
        description="Bytes one owner (or client address) may upload per UTC day, counted "
        "as declared (Content-Length, Upload-Length) and settled to what arrived; 0: no limit.",
    )
    upload_bytes_in_flight: int = Field(
        default=8 * 1024**3,
        ge=0,
        description="Bytes of every client's request bodies being received at once, as "
        "declared, across the gateway replicas; 0: no limit.",
    )
    upload_lease_seconds: float = Field(
        default=60.0,
        gt=0,
        description="A replica renews its uploads' hold on the limits this often (/3); a "
        "killed replica's uploads stop counting after it.",
    )

    database_schema: str = Field(
        default="gateway",
        description="PostgreSQL schema of the resumable uploads' offsets (`uploads`).",
    )
    upload_expiry_seconds: int = Field(
        default=24 * 3600,
        gt=0,
        description="A resumable upload idle this long is ended with `upload_expired`.",
    )
    upload_expiry_sweep_seconds: float = Field(default=30.0, gt=0)
    upload_lock_wait_seconds: float = Field(
        default=10.0,
        gt=0,
        description="How long a new request waits for the append it ends to let go.",
    )
    tus_checksum_max_bytes: int = Field(
        default=16 * 1024 * 1024,
        description="Largest tus PATCH with an Upload-Checksum (it is read whole first).",
    )

    @model_validator(mode="after")
    def _upload_auth_is_chosen(self) -> "Settings":
        """``UPLOAD_AUTH``: explicit in production, coherent everywhere (issue 19)."""
        jwt_given = [
            name
            for name in ("upload_jwt_issuer", "upload_jwt_audience", "upload_jwt_jwks_url")
            if getattr(self, name)
        ] + (["upload_jwt_key"] if self.upload_jwt_key else [])
        if self.upload_auth is None:
            if jwt_given:
                self.upload_auth = "jwt"
            elif self.environment == "production":
                raise ValueError(
                    "choose who may upload: UPLOAD_AUTH=jwt (with UPLOAD_JWT_ISSUER and "
                    "UPLOAD_JWT_AUDIENCE) or UPLOAD_AUTH=anonymous"
                )
            else:
                self.upload_auth = "anonymous"
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
