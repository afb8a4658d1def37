"""S3 objects, multipart or in one PutObject: :class:`uploader.ports.ObjectStore` over
aiobotocore.

The client is opened when the store is entered (``async with``) and closed on exit;
every botocore error leaves as :class:`uploader.ports.StorageError`.
"""

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING, cast

from botocore.exceptions import BotoCoreError, ClientError

from servicekit.resources import Resource
from servicekit.s3 import ensure_bucket, s3_client
from servicekit.settings import S3Settings
from uploader.ports import StorageError

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef


@asynccontextmanager
async def _storage_errors() -> AsyncIterator[None]:
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise StorageError(str(exc)) from exc


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3ObjectStore(Resource):
    def __init__(self, settings: S3Settings) -> None:
        super().__init__()
        self.bucket = settings.s3_bucket
        self._settings = settings
        self._client: S3Client | None = None

    async def open(self, stack: AsyncExitStack) -> None:
        async with _storage_errors():
            client = await stack.enter_async_context(s3_client(self._settings))
            self._client = client
            stack.callback(setattr, self, "_client", None)
            if self._settings.s3_create_bucket:
                await ensure_bucket(client, self.bucket)

    @property
    def _s3(self) -> "S3Client":
        assert self._client is not None, "enter the store (async with) before using it"
        return self._client

    async def start(self, key: str, content_type: str) -> str:
        async with _storage_errors():
            # A multipart upload left on this key by a crashed run of the same job.
            await self.abort_all(key)
            created = await self._s3.create_multipart_upload(
                Bucket=self.bucket, Key=key, ContentType=content_type
            )
            return created["UploadId"]

    async def put_part(self, key: str, upload_id: str, number: int, data: bytes | bytearray) -> str:
        async with _storage_errors():
            part = await self._s3.upload_part(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                # botocore takes a bytearray as a blob as it is (the stubs name only
                # bytes); a bytes body it would wrap in a BytesIO that aiohttp copies
                # (uploader.assembly.OpenJob.buffer).
                Body=cast("bytes", data),
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
        async with _storage_errors():
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

    async def put(
        self, key: str, data: bytes | bytearray, metadata: dict[str, str], content_type: str
    ) -> None:
        async with _storage_errors():
            # One request, and the metadata is on the object the moment it is visible.
            await self._s3.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=cast("bytes", data),  # a bytearray as it is (see put_part)
                Metadata=metadata,
                ContentType=content_type,
            )

    async def abort(self, key: str, upload_id: str) -> None:
        async with _storage_errors():
            try:
                await self._s3.abort_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id
                )
            except ClientError as exc:
                if _error_code(exc) != "NoSuchUpload":
                    raise

    async def stored_sha256(self, key: str) -> str | None:
        async with _storage_errors():
            try:
                head = await self._s3.head_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if _error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                    return None
                raise
            return head.get("Metadata", {}).get("sha256")

    async def delete(self, key: str) -> None:
        async with _storage_errors():
            await self._s3.delete_object(Bucket=self.bucket, Key=key)

    async def abort_all(self, key: str) -> int:
        aborted = 0
        async with _storage_errors():
            paginator = self._s3.get_paginator("list_multipart_uploads")
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=key):
                for upload in page.get("Uploads", []):
                    if upload.get("Key") == key and "UploadId" in upload:
                        await self.abort(key, upload["UploadId"])
                        aborted += 1
        return aborted

    async def stored_before(self, prefix: str, cutoff: datetime) -> AsyncIterator[str]:
        async with _storage_errors():
            paginator = self._s3.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    modified = item.get("LastModified")
                    if "Key" in item and modified is not None and modified < cutoff:
                        yield item["Key"]

    async def unfinished(self, prefix: str) -> list[tuple[str, str, datetime]]:
        found = []
        async with _storage_errors():
            paginator = self._s3.get_paginator("list_multipart_uploads")
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for upload in page.get("Uploads", []):
                    if "Key" in upload and "UploadId" in upload and "Initiated" in upload:
                        found.append((upload["Key"], upload["UploadId"], upload["Initiated"]))
        return found
