"""The answer to an accepted upload, the same for the one-shot route and both resumable
protocols: the job, its access token and where its progress streams (docs/architecture.md §2)."""

from dataclasses import dataclass

from fastapi import Request, Response
from pydantic import BaseModel, Field

from servicekit.tokens import COOKIE_NAME, JobTokens


@dataclass(frozen=True)
class JobGrant:
    """What an accepted upload hands out (docs/architecture.md §6): ``access_token``
    reads the job and also appends to or cancels its upload, for the client that
    uploads; ``progress_token`` only reads it, for what is made to be shared (the
    progress URL, the cookie)."""

    job_id: str
    access_token: str
    progress_token: str

    @classmethod
    def issue(cls, tokens: JobTokens, job_id: str, owner: str | None) -> "JobGrant":
        return cls(job_id, tokens.issue(job_id, owner), tokens.issue_progress(job_id, owner))


class UploadAccepted(BaseModel):
    job_id: str = Field(description="The new job's id (a UUID).")
    status: str = Field(default="accepted", description="Always `accepted`.")
    progress: int = 0
    progress_url: str = Field(
        description="SSE stream of the job's progress. It carries a token that only reads "
        "the job, so it works as it is (curl, EventSource from another origin) and may be "
        "shared; a same-origin page may also use `/tokens/analysis-progress/{job_id}` "
        "alone, with the cookie (the same read-only token)."
    )
    status_url: str = Field(description="JSON snapshot of the job's state.")
    access_token: str = Field(
        description="The job's own token: reads the job and also appends to or cancels "
        "its upload. Keep it; share `progress_url` instead. Pass it as `access_token` or "
        "a bearer token."
    )
    filename: str
    content_type: str = Field(description="Media type detected from the file's bytes.")
    size: int = Field(description="Bytes received (for a resumable upload: so far).")
    sha256: str = Field(description="Hex sha256 of the bytes received (so far).")


def progress_path(job_id: str) -> str:
    return f"/tokens/analysis-progress/{job_id}"


def set_progress_cookie(
    request: Request, response: Response, tokens: JobTokens, grant: JobGrant
) -> None:
    """The read-only token as an HttpOnly cookie for the job's progress path. ``Secure``
    whenever the client spoke HTTPS to the edge: the scheme uvicorn takes from a trusted
    proxy's ``X-Forwarded-Proto`` (``TRUSTED_PROXIES``)."""
    response.set_cookie(
        COOKIE_NAME,
        grant.progress_token,
        max_age=tokens.ttl_seconds,
        path=progress_path(grant.job_id),
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )


def accepted_body(
    grant: JobGrant, filename: str, content_type: str, size: int, sha256: str
) -> UploadAccepted:
    job_id = grant.job_id
    return UploadAccepted(
        job_id=job_id,
        progress_url=f"{progress_path(job_id)}?access_token={grant.progress_token}",
        status_url=f"/jobs/{job_id}",
        access_token=grant.access_token,
        filename=filename,
        content_type=content_type,
        size=size,
        sha256=sha256,
    )
