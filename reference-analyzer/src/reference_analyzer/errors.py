"""The one way an analysis fails: an :class:`AnalysisError` with a stable code."""

from contracts import ErrorCode


class AnalysisError(Exception):
    """The analysis of a job failed for a reason worth telling the caller."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
