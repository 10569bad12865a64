"""The one error hierarchy of s2l-scan.

Every error a user can cause is an :class:`S2LError`. Each carries an ``exit_code``
(README, exit codes) so the CLI and the pytest plugin map it without guessing, and each
message says what was received, what was expected and how to fix it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

_P = ParamSpec("_P")
_T = TypeVar("_T")


class S2LError(Exception):
    """Base class: a problem s2l-scan can explain to its user."""

    exit_code: int = 2


class UsageError(S2LError):
    """Bad options or configuration (CLI exit 4, a pytest usage error)."""

    exit_code = 4


class ScanError(S2LError):
    """The scan could not run on the inputs given (CLI exit 2)."""

    exit_code = 2


class ModelLoadError(ScanError):
    """A checkpoint folder or file is missing, malformed or unsafe to load."""


class UnsafeCheckpointError(ModelLoadError):
    """A checkpoint would execute code when loaded (pickles, custom classes)."""


class AuditDataError(ScanError):
    """The audit-data folder does not follow the documented layout."""


class NothingToScanError(S2LError):
    """The inputs were valid but held nothing to scan (CLI exit 3)."""

    exit_code = 3


def checked(check: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """``check(*args, **kwargs)`` at the configuration or data boundary, its ValueError raised
    again as a :class:`UsageError` with the same message.

    The pure maths of ``s2l_scan.functional`` refuses bad arguments with ValueError; a caller
    passing the user's input runs that function's validator through this first. Wrap only
    validators (``as_images``, ``check_delta``, ...), never the maths itself, so that a
    ValueError from a bug still surfaces as an internal error.

    >>> checked(int, "7")
    7
    """
    try:
        return check(*args, **kwargs)
    except ValueError as error:
        raise UsageError(str(error)) from error
