"""Reading reports back and writing rendered files safely (atomic, never over an input)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import MISSING, fields
from importlib import resources
from pathlib import Path
from typing import Any

from s2l_scan.checks import Outcome, Reason
from s2l_scan.errors import ScanError, UsageError
from s2l_scan.report.model import (
    SCHEMA_VERSION,
    ComparisonCheck,
    ExtractionRecord,
    MemorizationRecord,
    ResultRow,
    ScanReport,
    check_writable,
)

SCHEMA_FILE = f"schema-v{SCHEMA_VERSION}.json"
READABLE_VERSIONS = ("2", SCHEMA_VERSION)
"""Report schema versions read back: 2 (``passed`` booleans, reason strings) and this one."""


def schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of this version's JSON report, shipped in the package."""
    text = resources.files("s2l_scan.report").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def read_report_dict(path: Path, what: str = "report") -> dict[str, Any]:
    """The JSON body of a report file, checked enough to compare with or render.

    Every problem is a usage error naming the file: it was given on the command line.
    """
    path = Path(path)
    try:
        body = json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constant)
    except _NonFinite as error:
        raise UsageError(f"{what} {path} holds {error} where a number belongs; s2l-scan "
                         "writes only finite numbers (a NaN AUC would compare as passed), so "
                         "the file was edited or corrupted. Re-run the scan.") from None
    except FileNotFoundError:
        raise UsageError(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"{what} {path} cannot be read: {error}") from None
    except json.JSONDecodeError as error:
        raise UsageError(f"{what} {path} is not JSON ({error}); give an s2l-scan JSON report "
                         "(--report-json)") from None
    if not isinstance(body, dict) or "schema_version" not in body:
        raise UsageError(f"{what} {path} is not an s2l-scan JSON report (no schema_version); "
                         "give a file written by --report-json")
    if body["schema_version"] not in READABLE_VERSIONS:
        raise UsageError(f"{what} {path} has report schema version "
                         f"{body['schema_version']!r}; this s2l-scan reads versions "
                         f"{', '.join(READABLE_VERSIONS)}. Re-run the scan of that release with "
                         "this version.")
    problem = _shape_problem(body)
    if problem:
        raise UsageError(f"{what} {path} does not match report schema v{SCHEMA_VERSION}: "
                         f"{problem}")
    return body


class _NonFinite(ValueError):
    """A NaN or ±Infinity in a report file (Python's json reads them by default)."""


def _no_constant(name: str) -> Any:
    raise _NonFinite(name)


def _shape_problem(body: dict[str, Any]) -> str | None:
    """The first structural problem a renderer or the comparison would trip over, if any."""
    for key in ("model", "config", "results"):
        if key not in body:
            return f"missing {key!r}"
    if not isinstance(body["results"], list):
        return "'results' is not a list"
    required = {f.name for f in fields(ResultRow)
                if f.default is MISSING and f.default_factory is MISSING}
    for index, row in enumerate(body["results"]):
        if not isinstance(row, dict):
            return f"results[{index}] is not an object"
        missing = sorted(required - set(row))
        if missing:
            return f"results[{index}] lacks {', '.join(missing)}"
        if not isinstance(row["auc"], int | float) or isinstance(row["auc"], bool):
            return f"results[{index}].auc is not a number"
    if not isinstance(body.get("extraction", []), list):
        return "'extraction' is not a list"
    return None


def load_report(path: Path) -> ScanReport:
    """A :class:`ScanReport` read back from a JSON report file (usage error when it is not one)."""
    body = read_report_dict(path)
    try:
        return report_from_dict(body)
    except (KeyError, TypeError, ValueError) as error:
        raise UsageError(f"report {path} does not match report schema v{SCHEMA_VERSION}: "
                         f"{type(error).__name__}: {error}") from None


def report_from_dict(body: dict[str, Any]) -> ScanReport:
    """Rebuild a report from ``ScanReport.to_dict()`` output (``verdict`` is derived: dropped)."""
    row_fields = {f.name for f in fields(ResultRow)}
    rows = []
    for raw in body["results"]:
        row = {key: value for key, value in _judged(raw).items() if key in row_fields}
        row["auc_ci"] = tuple(row["auc_ci"])
        if row.get("delta_auc_ci") is not None:
            row["delta_auc_ci"] = tuple(row["delta_auc_ci"])
        rows.append(ResultRow(**row))
    known = {f.name for f in fields(ScanReport)} - {"results", "extraction", "comparison",
                                                     "memorization"}
    return ScanReport(results=rows,
                      extraction=[_record(ExtractionRecord, raw)
                                  for raw in body.get("extraction") or []],
                      comparison=[_record(ComparisonCheck, raw)
                                  for raw in body.get("comparison") or []],
                      memorization=[_record(MemorizationRecord, raw)
                                    for raw in body.get("memorization") or []],
                      **{key: value for key, value in body.items()
                         if key in known and key != "schema_version"})


def _judged(raw: dict[str, Any]) -> dict[str, Any]:
    """A check's JSON object with its ``outcome`` and ``reasons`` typed: schema 3's as
    written; schema 2's ``passed`` boolean read as passed / failed (what it meant then) and
    its reason strings as ``legacy`` reasons."""
    out = dict(raw)
    if "outcome" in raw:
        out["outcome"] = Outcome(raw["outcome"])
    elif "passed" in raw:
        out["outcome"] = Outcome.PASSED if raw["passed"] else Outcome.FAILED
    out["reasons"] = [Reason.from_dict(reason) for reason in raw.get("reasons") or []]
    return out


def _record(kind: type[Any], raw: dict[str, Any]) -> Any:
    """A typed record from its JSON object (keys it does not know are dropped)."""
    names = {f.name for f in fields(kind)}
    return kind(**{key: value for key, value in _judged(raw).items() if key in names})


def check_outputs(outputs: dict[str, Path], inputs: Sequence[Path | str]) -> None:
    """Usage errors, before any work: an output over an input file or inside an input folder
    (symlinks resolved), two outputs on one path, or a path that cannot be written.
    ``outputs`` maps an option name to its path."""
    seen: dict[Path, str] = {}
    for option, path in outputs.items():
        check_writable(path)
        real = Path(os.path.realpath(path))
        given = inside_input(real, inputs)
        if given is not None:
            where = "is also an input" if real == given[1] else "is inside the input"
            raise UsageError(f"{option} {path} {where} ({given[0]}); s2l-scan never overwrites "
                             "an input. Choose a file outside the model, the adapters, the "
                             "base model, the audit data and the config.")
        if real in seen:
            raise UsageError(f"{option} {path} is also given to {seen[real]}; give each report "
                             "its own file")
        seen[real] = option


def inside_input(real: Path, inputs: Sequence[Path | str]) -> tuple[Path | str, Path] | None:
    """The first input (and its resolved path) that the resolved path ``real`` is, or lies
    inside when that input is a folder; None when it touches none."""
    for given in inputs:
        target = Path(os.path.realpath(Path(given).expanduser()))
        if real == target or (target.is_dir() and real.is_relative_to(target)):
            return given, target
    return None


def write_text_atomic(path: Path, text: str) -> None:
    """Write UTF-8 text so that readers never see a partial file (temp file + rename)."""
    path = Path(path)
    if path.is_symlink():  # e.g. a model card linked from elsewhere: update the real file
        path = Path(os.path.realpath(path))
    if path.is_dir():
        raise UsageError(f"report path {path} is a folder; give a file name")
    try:
        handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as error:
        raise UsageError(f"cannot write report {path}: {error.strerror or error}") from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as out:
            out.write(text)
        # mkstemp creates 0600; a report is an ordinary file that CI uploads and people open
        os.chmod(temp, 0o666 & ~_umask())
        os.replace(temp, path)
    except OSError as error:  # e.g. a full disk: no partial file is left behind
        Path(temp).unlink(missing_ok=True)
        raise ScanError(f"cannot write report {path}: {error.strerror or error}") from None
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
