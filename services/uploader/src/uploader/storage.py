"""The S3 side of the uploader: multipart uploads behind a small interface."""

from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef


class ObjectStore(Protocol):
    async def start(self, key: str, content_type: str) -> str:
        """Begin a multipart upload, first aborting any left on ``key``; its upload id."""

    async def put_part(self, key: str, upload_id: str, number: int, data: bytes) -> str:
        """Upload part ``number`` (1-based); its ETag."""

    async def complete(
        self,
        key: str,
        upload_id: str,
        etags: list[str],
        metadata: dict[str, str],
        content_type: str,
    ) -> None:
        """Assemble the parts into the object and record ``metadata`` on it."""

    async def abort(self, key: str, upload_id: str) -> None: ...

    async def stored_sha256(self, key: str) -> str | None:
        """The sha256 recorded on a complete object at ``key``, if there is one."""

    async def unfinished(self, prefix: str) -> list[tuple[str, str, datetime]]:
        """Multipart uploads in progress under ``prefix``: (key, upload id, initiated)."""


class S3ObjectStore:
    def __init__(self, bucket: str) -> None:
        self.bucket = bucket
        self.client: S3Client | None = None
        """Set once the service has opened its S3 client."""

    @property
    def _s3(self) -> "S3Client":
        assert self.client is not None, "the S3 client is not open yet"
        return self.client

    async def start(self, key: str, content_type: str) -> str:
        # A multipart upload left on this key by a crashed run of the same job.
        listing = await self._s3.list_multipart_uploads(Bucket=self.bucket, Prefix=key)
        for upload in listing.get("Uploads", []):
            if upload.get("Key") == key and "UploadId" in upload:
                await self.abort(key, upload["UploadId"])
        created = await self._s3.create_multipart_upload(
            Bucket=self.bucket, Key=key, ContentType=content_type
        )
        return created["UploadId"]

    async def put_part(self, key: str, upload_id: str, number: int, data: bytes) -> str:
        part = await self._s3.upload_part(
            Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
        )
        return part["ETag"]

    async def complete(
        self,
        key: str,
        upload_id: str,
        etags: list[str],
        metadata: dict[str, str],
        content_type: str,
    ) -> None:
        parts: list[CompletedPartTypeDef] = [
            {"ETag": etag, "PartNumber": n} for n, etag in enumerate(etags, start=1)
        ]
        await self._s3.complete_multipart_upload(
            Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
        # S3 takes user metadata only when an upload begins, before the checksum is
        # known; a server-side copy onto itself records it afterwards.
        await self._s3.copy_object(
            Bucket=self.bucket,
            Key=key,
            CopySource={"Bucket": self.bucket, "Key": key},
            Metadata=metadata,
            MetadataDirective="REPLACE",
            ContentType=content_type,
        )

    async def abort(self, key: str, upload_id: str) -> None:
        try:
            await self._s3.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
                raise

    async def stored_sha256(self, key: str) -> str | None:
        try:
            head = await self._s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return head.get("Metadata", {}).get("sha256")

    async def unfinished(self, prefix: str) -> list[tuple[str, str, datetime]]:
        found = []
        paginator = self._s3.get_paginator("list_multipart_uploads")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for upload in page.get("Uploads", []):
                if "Key" in upload and "UploadId" in upload and "Initiated" in upload:
                    found.append((upload["Key"], upload["UploadId"], upload["Initiated"]))
        return found
