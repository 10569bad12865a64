"""A content-addressed store of finished scan units, so an interrupted scan resumes.

A *unit* is a piece of work whose result depends only on its inputs: the scores of one attack on
one sample set, an SP set, the outcome of one probe on one domain, a batch of generated images.
Its key is the sha256 of everything that changes the result (model hash, unit kind, settings,
a digest of the input tensors, the s2l-scan version); its value is one ``.npz`` file of arrays
(never a pickle: read with ``allow_pickle=False``), with any JSON metadata stored as UTF-8 bytes.

Each value is written to a temporary file beside its final place and renamed into it, so a scan
killed at any moment (SIGTERM, SIGKILL, power loss) leaves only complete units, plus perhaps a
hidden ``.tmp-*`` file that is never read. A rerun with the same inputs finds the finished units
and computes only the rest. Layout: ``ROOT/<kind>/<key[:2]>/<key>.npz``.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from s2l_scan import __version__
from s2l_scan.errors import ScanError, UsageError

_JSON = "__json__"
_DIGEST = "__sha256__"  # hex sha256 of every other array of the unit (_unit_digest)
Arrays = dict[str, np.ndarray]


def _unit_digest(arrays: Arrays) -> str:
    """sha256 over a unit's arrays (names, dtypes, shapes and bytes, in name order), stored
    with the unit and checked on every read."""
    return digest(*(part for name in sorted(arrays) for part in (name, arrays[name])))


def unit_key(kind: str, **settings: Any) -> str:
    """The sha256 key of a unit of ``kind`` given everything that changes its result."""
    blob = json.dumps({"kind": kind, "s2l-scan": __version__, **settings}, sort_keys=True,
                      default=_jsonable, allow_nan=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"unit settings must be JSON data, got {type(value).__name__}")


def digest(*values: Any) -> str:
    """sha256 of arrays / tensors (dtype, shape and bytes) and JSON-able values, in order."""
    hasher = hashlib.sha256()
    for value in values:
        if hasattr(value, "detach"):  # a torch tensor
            value = value.detach().cpu().contiguous().numpy()
        if isinstance(value, np.ndarray):
            array = np.ascontiguousarray(value)
            hasher.update(f"{array.dtype.str}{array.shape}".encode())
            hasher.update(array.tobytes())
        else:
            hasher.update(json.dumps(value, sort_keys=True, default=_jsonable).encode())
        hasher.update(b"\x00")
    return hasher.hexdigest()


def writable_folder(folder: Path, what: str, hint: str = "") -> None:
    """Create ``folder`` and a file in it now, so that an output folder that cannot be written
    is a usage error before any work (``os.access`` says yes to root on read-only mounts)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise UsageError(f"{what} {folder} cannot be written ({error.strerror or error})"
                         f"{hint}") from None


class UnitStore:
    """Finished units under ``root`` (``None``: caching off, every unit is computed).

    ``reused`` and ``computed`` count units per run; the report's run block records them.
    """

    def __init__(self, root: Path | None) -> None:
        self.root = None if root is None else Path(root)
        self.reused = 0
        self.computed = 0

    def check(self) -> None:
        """Create the store's folder now: an unusable cache is a usage error before any work."""
        if self.root is not None:
            writable_folder(self.root, "unit cache folder", "; pass --cache-dir DIR (pytest: "
                            "--s2l-cache-dir=DIR) or --cache off")

    def path(self, kind: str, key: str) -> Path:
        """Where the unit ``key`` of ``kind`` lives (whether or not it exists yet)."""
        if self.root is None:
            raise ValueError("the unit store is off")
        return self.root / kind / key[:2] / f"{key}.npz"

    def load(self, kind: str, key: str) -> tuple[Arrays, Any] | None:
        """The stored arrays and JSON metadata of a unit, or None when it is not stored."""
        if self.root is None:
            return None
        path = self.path(kind, key)
        try:
            with np.load(path, allow_pickle=False) as stored:
                arrays = {name: np.asarray(stored[name]) for name in stored.files}
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError, zipfile.BadZipFile):
            # a unit that cannot be read (another version's format, a damaged disk) is recomputed
            # and replaced; units are written atomically, so a killed scan never leaves one
            return None
        stored_digest = arrays.pop(_DIGEST, None)
        if stored_digest is None or stored_digest.dtype != np.uint8 \
                or stored_digest.tobytes().decode("ascii", "replace") != _unit_digest(arrays):
            # altered after it was written (a restored CI cache, a flipped bit, an edited
            # header that still parses), or written before units carried a digest: recomputed
            return None
        meta = arrays.pop(_JSON, None)
        try:
            return arrays, None if meta is None else json.loads(meta.tobytes().decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None

    def save(self, kind: str, key: str, arrays: Arrays, meta: Any = None) -> None:
        """Store a finished unit atomically (temporary file + rename); no-op when off.

        ``meta`` is JSON data; its key order is kept, so a report built from a stored unit is
        byte-identical to one built from a fresh computation.
        """
        if self.root is None:
            return
        path = self.path(kind, key)
        body = {name: np.asarray(value) for name, value in arrays.items()}
        if any(value.dtype.hasobject for value in body.values()):
            # np.savez would pickle them; units are plain arrays, read with allow_pickle=False
            raise ValueError(f"unit {kind}/{key}: object arrays cannot be stored")
        if meta is not None:
            body[_JSON] = np.frombuffer(json.dumps(meta).encode("utf-8"),
                                        dtype=np.uint8)
        body[_DIGEST] = np.frombuffer(_unit_digest(body).encode("ascii"), dtype=np.uint8)
        temp: str | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, temp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=path.parent)
            with os.fdopen(handle, "wb") as out:
                np.savez(out, **body)  # type: ignore[arg-type]  # numpy's stub types **kwds as bool
            os.replace(temp, path)
            temp = None
        except OSError as error:
            hint = " (disk full)" if error.errno == errno.ENOSPC else ""
            raise ScanError(f"cannot write the unit cache {self.root}: "
                            f"{error.strerror or error}{hint}. Free space there, point "
                            "cache_dir (--cache-dir) elsewhere, or pass --cache off.") from None
        finally:
            if temp is not None:
                Path(temp).unlink(missing_ok=True)

    def get_or_compute(self, kind: str, key: str, compute: Callable[[], tuple[Arrays, Any]]
                       ) -> tuple[Arrays, Any]:
        """The stored unit, or ``compute()``'s (arrays, metadata), stored before returning."""
        found = self.load(kind, key)
        if found is not None:
            self.reused += 1
            return found
        arrays, meta = compute()
        self.save(kind, key, arrays, meta)
        self.computed += 1
        return arrays, meta

    def record(self, *, reused: int = 0, computed: int = 0) -> None:
        """Count units reused or computed outside :meth:`get_or_compute`: several at once, or
        by the other processes of a data-parallel scan."""
        self.reused += reused
        self.computed += computed

    def stats(self) -> dict[str, str]:
        """What this run reused and computed (strings: the report's run block holds strings)."""
        where = "off" if self.root is None else str(self.root)
        return {"unit_cache": where, "units_reused": str(self.reused),
                "units_computed": str(self.computed)}
