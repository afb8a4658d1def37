"""Presigned GET URLs for the analysis server (docs/architecture.md §6, §11):
short-lived, and signed for the S3 endpoint as the analysis server reaches it (the Host
header is signed)."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client


class S3Presigner:
    def __init__(self, client: "S3Client", expires_seconds: int) -> None:
        self._client = client
        self._expires = expires_seconds

    async def presign_get(self, bucket: str, key: str) -> str:
        return await self._client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=self._expires
        )
