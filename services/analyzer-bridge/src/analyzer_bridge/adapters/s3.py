"""Presigned GET URLs for the analysis server (docs/architecture.md §6, §11):
:class:`analyzer_bridge.ports.Presigner` over aiobotocore.

Short-lived, and signed for the S3 endpoint as the analysis server reaches it (the
Host header is signed). The client is opened when the presigner is entered
(``async with``); botocore's errors leave as :class:`~analyzer_bridge.ports.PresignError`.
"""

from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from analyzer_bridge.ports import PresignError
from servicekit.resources import Resource
from servicekit.s3 import s3_client
from servicekit.settings import S3Settings

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client


class S3Presigner(Resource):
    def __init__(
        self, settings: S3Settings, *, endpoint_url: str | None, expires_seconds: int
    ) -> None:
        super().__init__()
        self._settings = settings
        self._endpoint_url = endpoint_url
        self._expires = expires_seconds
        self._client: S3Client | None = None

    async def open(self, stack: AsyncExitStack) -> None:
        self._client = await stack.enter_async_context(
            s3_client(self._settings, endpoint_url=self._endpoint_url)
        )
        stack.callback(setattr, self, "_client", None)

    async def presign_get(self, bucket: str, key: str) -> str:
        assert self._client is not None, "enter the presigner (async with) before using it"
        try:
            return await self._client.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=self._expires
            )
        except (BotoCoreError, ClientError) as exc:
            raise PresignError(str(exc)) from exc
