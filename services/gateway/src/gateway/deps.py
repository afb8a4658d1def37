"""What the HTTP routes take, provided by type by :mod:`gateway.app`
(``servicekit.service.provided``): one ``Annotated`` dependency each, declared here once."""

from typing import Annotated

from fastapi import Depends

from gateway.ingest import UploadLimits
from gateway.ports import Quota, UploadSink
from gateway.resumable.uploads import Resumable
from servicekit.auth import OwnerAuth
from servicekit.service import provided
from servicekit.tokens import JobTokens

SinkDep = Annotated[UploadSink, Depends(provided(UploadSink))]
LimitsDep = Annotated[UploadLimits, Depends(provided(UploadLimits))]
TokensDep = Annotated[JobTokens, Depends(provided(JobTokens))]
QuotaDep = Annotated[Quota, Depends(provided(Quota))]
AuthDep = Annotated[OwnerAuth, Depends(provided(OwnerAuth))]
ResumableDep = Annotated[Resumable, Depends(provided(Resumable))]
