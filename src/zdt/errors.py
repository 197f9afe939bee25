"""One exception tree for zdt. Every error a user sees derives from ZdtError and carries
the exit code the command-line contract gives it (DESIGN.md, "Command-line contract")."""

from __future__ import annotations

from zdt.result import Result


class ZdtError(Exception):
    """Something zdt cannot do; the message says what, where, and what to do."""

    exit_code = 1


class ConfigError(ZdtError):
    """Bad input (config, arguments, archive, app spec); nothing was changed."""

    exit_code = 2


class PreconditionError(ZdtError):
    """A precondition of a workflow is not met; nothing was changed."""

    exit_code = 3


class LockedError(ZdtError):
    """The domain is locked by another workflow."""

    exit_code = 4




class NothingToDo(ZdtError):
    """What was asked needs no change (a restart of the stale servers when none is)."""

    exit_code = 0


class NotFoundError(ZdtError):
    """A workflow id, node or server that zdt does not know."""

    exit_code = 2


class StepError(ZdtError):
    """A step could not do its work on a node; `retryable` says whether trying again helps."""

    exit_code = 1

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class AdapterError(StepError):
    """A service manager, load balancer or transport refused or failed an operation."""


class CommandError(AdapterError):
    """A command run on a node exited non-zero; carries its result."""

    def __init__(self, message: str, result: Result) -> None:
        super().__init__(message)
        self.result = result


def socket_problem(exc: BaseException, daemon: str) -> str:
    """Why a unix socket of `daemon` (HAProxy, supervisord) could not be used, in words."""
    if isinstance(exc, FileNotFoundError):
        return "the socket does not exist"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused (stale socket, {daemon} is not running)"
    if isinstance(exc, PermissionError):
        return "permission denied (run zdt as the user that owns the socket)"
    return (exc.strerror if isinstance(exc, OSError) else None) or str(exc) or \
        type(exc).__name__
