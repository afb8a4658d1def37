"""A test's own bucket, gone after it: SeaweedFS gives every bucket volumes of its own,
and a server has only so many, so a bucket left behind by each run of a test (the test
stack's data is kept between sessions) ends in `No writable volumes` some runs later."""

from servicekit.s3 import s3_client
from servicekit.settings import S3Settings


async def drop_bucket(settings: S3Settings) -> None:
    """Empty ``settings.s3_bucket`` (objects and multipart uploads) and delete it; nothing
    when it does not exist."""
    async with s3_client(settings) as s3:
        try:
            listing = await s3.list_multipart_uploads(Bucket=settings.s3_bucket)
        except s3.exceptions.NoSuchBucket:
            return
        for upload in listing.get("Uploads", []):
            await s3.abort_multipart_upload(
                Bucket=settings.s3_bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )
        paginator = s3.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=settings.s3_bucket):
            for item in page.get("Contents", []):
                await s3.delete_object(Bucket=settings.s3_bucket, Key=item["Key"])
        await s3.delete_bucket(Bucket=settings.s3_bucket)
