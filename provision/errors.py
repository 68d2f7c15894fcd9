"""One error hierarchy for the CLI: each class carries the exit code documented in DESIGN.md."""

from __future__ import annotations


class AcaInferError(Exception):
    """An expected failure: the CLI prints its message on one line, without a traceback."""

    exit_code = 1


class InputError(AcaInferError):
    """Bad input or configuration; nothing was changed."""

    exit_code = 2


class PrerequisiteError(AcaInferError):
    """Something the command needs is missing (credentials, a CLI, a package, provisioning)."""

    exit_code = 3


class OperationError(AcaInferError):
    """An Azure or target operation failed."""

    exit_code = 4


class NotReadyError(AcaInferError):
    """The replica did not become ready (the previous release was restored when there was one)."""

    exit_code = 5
