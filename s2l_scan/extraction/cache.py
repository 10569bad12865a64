"""A cache of built known-image indexes, so a scan embeds its known images once per content.

An entry is keyed by the sha256 of (the known images' ids and decoded pixels, the embedder's
fingerprint — spec, weights hash, library version — and the index settings). The folder is
written atomically by :meth:`KnownImageIndex.save`; on load every file's sha256 is checked and
the ids and pixels are compared with the ones the scan holds, so a corrupt, truncated or stale
entry is rebuilt (with a warning), never trusted. Default location: ``<cache>/index`` where
``<cache>`` is ``$S2L_CACHE_DIR``, else ``$XDG_CACHE_HOME/s2l-scan``, else ``~/.cache/s2l-scan``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from s2l_scan.errors import ScanError, UsageError
from s2l_scan.extraction.embedders import Embedder
from s2l_scan.extraction.index import FORMAT_VERSION, KnownImageIndex

__all__ = ["IndexCacheWarning", "cached_index", "default_index_cache", "index_key"]

Known = Sequence[tuple[str, npt.NDArray[np.uint8]]]


class IndexCacheWarning(UserWarning):
    """A cached index could not be used and was rebuilt."""


def default_index_cache() -> Path:
    """``<cache root>/index`` (the cache root of the reference models and SP sets)."""
    from s2l_scan.reference.cache import cache_root

    return cache_root() / "index"


def index_key(images: Known, embedder: Embedder, *, ivf_threshold: int) -> str:
    """Hex sha256 naming the index of ``images`` under ``embedder`` and the settings."""
    digest = hashlib.sha256()
    settings = {"format_version": FORMAT_VERSION, "embedder": embedder.fingerprint(),
                "ivf_threshold": ivf_threshold, "count": len(images)}
    digest.update(json.dumps(settings, sort_keys=True).encode())
    for name, pixels in images:
        arr = np.ascontiguousarray(pixels)
        digest.update(f"\0{name}\0{arr.dtype.str}{arr.shape}\0".encode())
        digest.update(arr.data)
    return digest.hexdigest()


def cached_index(images: Known, embedder: Embedder, *, root: Path | None = None,
                 ivf_threshold: int = 100_000) -> tuple[KnownImageIndex, str]:
    """The index of ``images``: loaded from ``root`` when cached, else built and saved.

    Returns the index and what happened: ``"reused"``, ``"built"`` or ``"rebuilt"`` (a bad
    entry was replaced).
    """
    root = default_index_cache() if root is None else Path(root)
    folder = root / index_key(images, embedder, ivf_threshold=ivf_threshold)[:40]
    status = "built"
    if folder.exists():
        try:
            return _load_same(folder, images, embedder), "reused"
        except ScanError as error:
            warnings.warn(f"cached known-image index {folder} is unusable ({error}); "
                          f"rebuilding it", IndexCacheWarning, stacklevel=2)
            _discard(folder)
            status = "rebuilt"
    index = KnownImageIndex.build(images, ivf_threshold=ivf_threshold, embedder=embedder)
    _store(index, folder)
    return index, status


def _load_same(folder: Path, images: Known, embedder: Embedder) -> KnownImageIndex:
    index = KnownImageIndex.load(folder, embedder)
    ids = tuple(name for name, _ in images)
    if index.ids != ids or not all(np.array_equal(index.pixels[i], pixels)
                                   for i, (_, pixels) in enumerate(images)):
        raise ScanError("its ids or pixels differ from the known images of this scan")
    return index


def _discard(folder: Path) -> None:
    # Move aside first, so a concurrent scan never sees a half-deleted folder.
    trash = folder.parent / f".{folder.name}.trash-{uuid.uuid4().hex}"
    try:
        folder.rename(trash)
    except OSError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def _store(index: KnownImageIndex, folder: Path) -> None:
    try:
        index.save(folder)
    except UsageError:
        pass  # another scan saved the same content first; both builds are identical
    except OSError as error:  # a read-only or full cache costs time, not the scan
        warnings.warn(f"could not cache the known-image index in {folder} ({error}); the next "
                      f"scan rebuilds it", IndexCacheWarning, stacklevel=3)
