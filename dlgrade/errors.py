"""Distinct failures, each with its own message for the student (trusted side)."""

from __future__ import annotations


class GradingError(Exception):
    """Base: something a test could not get a trusted verdict for."""

    diagnosis: str | None = None


class SubmissionImportError(GradingError):
    """A submitted module could not be imported (missing file, syntax error, crash at import)."""


class MissingNameError(GradingError):
    """The submission lacks a class, function, method or attribute the interface requires."""


class StudentCodeError(GradingError):
    """The student's code raised an exception."""


class ForbiddenAPIError(GradingError):
    """The submission used an API the assignment forbids."""


class LimitExceeded(GradingError):
    """A time, memory or process limit was hit."""


class WorkerCrashed(GradingError):
    """The worker process died (exit at import, a hard crash, a kill)."""


class BadAnswer(GradingError):
    """The worker's answer failed validation (wrong type, shape, dtype, non-finite values)."""


class Feedback(GradingError):
    """A check failed: the message says what is wrong without revealing expected values."""

    def __init__(self, message: str, diagnosis: str | None = None) -> None:
        super().__init__(message)
        self.diagnosis = diagnosis


class GraderError(Exception):
    """The grader itself broke (a bug in a hidden test or the platform), not the student."""


class ConfigError(Exception):
    """An assignment or command-line setting is invalid; the message names where it came from."""


class SandboxUnavailable(RuntimeError):
    """The chosen sandbox cannot run at all here (no Docker engine, no image); the message says the fix."""
