"""The one error hierarchy of s2l-scan.

Every error a user can cause is an :class:`S2LError`. Each carries an ``exit_code``
(:class:`ExitCode`; README, exit codes) so the CLI and the pytest plugin map it without
guessing, and each message says what was received, what was expected and how to fix it.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum
from typing import ParamSpec, TypeVar

_P = ParamSpec("_P")
_T = TypeVar("_T")


class ExitCode(IntEnum):
    """Every exit status of s2l-scan, the same in both doors (``s2l-scan`` and the pytest
    session). 5 is skipped on purpose: it is pytest's "no tests collected" (every check
    deselected), which s2l-scan's pytest session keeps for that meaning."""

    PASSED = 0  # every gating check showed safety
    FAILED = 1  # a leak is shown (or a regression, a dropped check)
    SCAN_ERROR = 2  # the scan could not run (or an internal error)
    NOTHING_SCANNED = 3  # valid inputs that held nothing to scan
    USAGE = 4  # bad options or configuration
    INCONCLUSIVE = 6  # no leak shown, but safety not shown either (on_inconclusive = "fail")


class S2LError(Exception):
    """Base class: a problem s2l-scan can explain to its user."""

    exit_code: int = ExitCode.SCAN_ERROR


class UsageError(S2LError):
    """Bad options or configuration (CLI exit 4, a pytest usage error)."""

    exit_code = ExitCode.USAGE


class ScanError(S2LError):
    """The scan could not run on the inputs given (CLI exit 2)."""

    exit_code = ExitCode.SCAN_ERROR


class ModelLoadError(ScanError):
    """A checkpoint folder or file is missing, malformed or unsafe to load."""


class UnsafeCheckpointError(ModelLoadError):
    """A checkpoint would execute code when loaded (pickles, custom classes)."""


class AuditDataError(ScanError):
    """The audit-data folder does not follow the documented layout."""


class NothingToScanError(S2LError):
    """The inputs were valid but held nothing to scan (CLI exit 3)."""

    exit_code = ExitCode.NOTHING_SCANNED


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
