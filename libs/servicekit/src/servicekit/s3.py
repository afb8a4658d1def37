"""An S3 client configured for any S3-compatible server (docs/architecture.md §11)."""

from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from servicekit.settings import S3Settings

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

__all__ = ["ensure_bucket", "s3_client"]


def s3_client(
    settings: S3Settings, endpoint_url: str | None = None
) -> "AbstractAsyncContextManager[S3Client]":
    """Open with ``async with``. ``endpoint_url`` overrides the configured one, e.g. to
    presign for the host another party reaches (the Host header is signed)."""
    config = AioConfig(
        signature_version="s3v4",
        # payload_signing_enabled=False sends UNSIGNED-PAYLOAD even over plain HTTP,
        # where botocore otherwise hashes every body once more (S3Settings.s3_sign_payload).
        s3={"addressing_style": "path", "payload_signing_enabled": settings.s3_sign_payload},
        # Non-AWS servers reject or miscompute the newer default CRC checksums.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"max_attempts": 5, "mode": "standard"},
        max_pool_connections=32,
    )
    return get_session().create_client(
        "s3",
        endpoint_url=endpoint_url or settings.s3_endpoint_url,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=settings.s3_secret_access_key.get_secret_value(),
        config=config,
    )


async def ensure_bucket(client: "S3Client", bucket: str) -> None:
    try:
        await client.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise
        try:
            await client.create_bucket(Bucket=bucket)
        except ClientError as create_exc:
            code = create_exc.response.get("Error", {}).get("Code")
            if code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
