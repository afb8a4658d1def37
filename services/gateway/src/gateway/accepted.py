"""The answer to an accepted upload, the same for the one-shot route and both resumable
protocols: the job, its access token and where its progress streams (docs/architecture.md §2)."""

from fastapi import Request, Response
from pydantic import BaseModel, Field

from servicekit.tokens import COOKIE_NAME, JobTokens


class UploadAccepted(BaseModel):
    job_id: str = Field(description="The new job's id (a UUID).")
    status: str = Field(default="accepted", description="Always `accepted`.")
    progress: int = 0
    progress_url: str = Field(
        description="SSE stream of the job's progress. It carries the access token, so it "
        "works as it is (curl, EventSource from another origin); a same-origin page may "
        "also use `/tokens/analysis-progress/{job_id}` alone, with the cookie."
    )
    status_url: str = Field(description="JSON snapshot of the job's state.")
    access_token: str = Field(
        description="Grants read access to this job; also set as an HttpOnly cookie for "
        "the progress path. Pass it as `access_token` or a bearer token elsewhere."
    )
    filename: str
    content_type: str = Field(description="Media type detected from the file's bytes.")
    size: int = Field(description="Bytes received (for a resumable upload: so far).")
    sha256: str = Field(description="Hex sha256 of the bytes received (so far).")


def progress_path(job_id: str) -> str:
    return f"/tokens/analysis-progress/{job_id}"


def set_progress_cookie(
    request: Request, response: Response, tokens: JobTokens, job_id: str, token: str
) -> None:
    response.set_cookie(
        COOKIE_NAME,
        token,
        max_age=tokens.ttl_seconds,
        path=progress_path(job_id),
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )


def accepted_body(
    job_id: str, token: str, filename: str, content_type: str, size: int, sha256: str
) -> UploadAccepted:
    return UploadAccepted(
        job_id=job_id,
        progress_url=f"{progress_path(job_id)}?access_token={token}",
        status_url=f"/jobs/{job_id}",
        access_token=token,
        filename=filename,
        content_type=content_type,
        size=size,
        sha256=sha256,
    )
