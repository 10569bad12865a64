"""An on-disk, sharded known-image index for millions of known images (README, probes).

:class:`~s2l_scan.extraction.index.KnownImageIndex` holds every known image's pixels and
embedding in memory: fine up to about a million 32×32 images. Beyond that,
:func:`build_sharded` streams (id, pixels) pairs into a folder of shards of at most
``shard_size`` images, each with its own exact FAISS index (flat, or exhaustive IVF), its
pixels as a ``.npy`` file and its ids, so building needs memory for one shard only.
:func:`open_sharded` returns a :class:`ShardedKnownImageIndex`: the same ``matches`` /
``candidates`` API, with each shard's FAISS index memory-mapped and searched in turn and the
pixels read from memory-mapped files only for the candidates being verified.

Exactness is the in-memory index's: every shard's range search is exact, the union of exact
range searches over a partition is the exact range search of the whole, and verification and
the k rule (copy counts) are shared code. A sharded index and an in-memory one over the same
images give identical matches (tested).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, overload

import faiss
import numpy as np
import numpy.typing as npt

from s2l_scan.errors import UsageError
from s2l_scan.extraction.embedders import PixelEmbedder
from s2l_scan.extraction.index import (
    KnownImageIndex,
    PixelArray,
    _check_embed_size,
    _faiss_index,
    pooled_embedding,
)
from s2l_scan.io.audit_data import (
    DEFAULT_MAX_IMAGE_PIXELS,
    IMAGE_KINDS,
    _check_resolution,
    image_folder,
    load_image,
)

__all__ = ["ShardedKnownImageIndex", "build_from_folder", "build_sharded", "open_sharded",
           "read_meta"]

_FORMAT = "s2l-scan sharded known-image index"
_VERSION = 1
_SHARD_FILES = ("ids.json", "index.faiss", "pixels.npy")
_EMBED_SIZE = 8  # PixelEmbedder's default: pooled 8×8 pixels


def build_sharded(images: Iterable[tuple[str | os.PathLike[str], npt.ArrayLike]],
                  folder: str | os.PathLike[str], *, shard_size: int = 250_000,
                  embed_size: int = 8, ivf_threshold: int = 100_000) -> Path:
    """Stream (id, uint8 (H, W, C) pixels) pairs into a new sharded index ``folder``.

    Memory: one shard of pixels and embeddings. Written into a hidden sibling folder renamed
    into place at the end, so a crash never leaves a half-written index.
    """
    if not isinstance(shard_size, int) or shard_size < 1:
        raise UsageError(f"shard_size must be a positive integer, got {shard_size!r}")
    target = Path(folder)
    if target.exists():
        raise UsageError(f"{target} already exists; build the sharded index into a new folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        meta = _write_shards(images, staging, shard_size, embed_size, ivf_threshold)
        (staging / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _write_shards(images: Iterable[tuple[str | os.PathLike[str], npt.ArrayLike]],
                  folder: Path, shard_size: int, embed_size: int, ivf_threshold: int
                  ) -> dict[str, Any]:
    seen: set[bytes] = set()
    counts: list[int] = []
    shape: tuple[int, ...] | None = None
    for ids, pixels in _chunks(images, shard_size):
        if shape is None:
            shape = pixels.shape[1:]
            _check_embed_size(shape, embed_size)
        elif pixels.shape[1:] != shape:
            raise UsageError(f"known image {ids[0]!r} is {pixels.shape[1:]}, but earlier ones are "
                             f"{shape}; load all known images at one resolution")
        for key in ids:
            digest = hashlib.blake2b(key.encode(), digest_size=16).digest()
            if digest in seen:
                raise UsageError(f"known image id {key!r} appears more than once; ids must be "
                                 f"unique (use the file path) so that matches can name their image")
            seen.add(digest)
        shard = folder / f"shard-{len(counts):05d}"
        shard.mkdir()
        np.save(shard / "pixels.npy", pixels)
        (shard / "ids.json").write_text(json.dumps(ids), encoding="utf-8")
        faiss.write_index(_faiss_index(pooled_embedding(pixels, embed_size), ivf_threshold, "l2"),
                          str(shard / "index.faiss"))
        counts.append(len(ids))
    if shape is None:
        raise UsageError("no known images were given; the index needs at least one (id, pixels)")
    return {"format": _FORMAT, "format_version": _VERSION, "embed_size": embed_size,
            "resolution": list(shape), "count": sum(counts), "shards": counts}


def _chunks(images: Iterable[tuple[str | os.PathLike[str], npt.ArrayLike]], size: int
            ) -> Iterator[tuple[list[str], PixelArray]]:
    ids: list[str] = []
    arrays: list[PixelArray] = []
    for key, pixels in images:
        arr = np.asarray(pixels)
        if arr.dtype != np.uint8 or arr.ndim != 3:
            raise UsageError(f"known image {os.fspath(key)!r} has dtype {arr.dtype} and shape "
                             f"{arr.shape}; expected uint8 pixels shaped (H, W, C)")
        ids.append(os.fspath(key))
        arrays.append(arr)
        if len(ids) == size:
            yield ids, np.stack(arrays)
            ids, arrays = [], []
    if ids:
        yield ids, np.stack(arrays)


class _ShardedPixels:
    """The shards' pixel files, memory-mapped, indexed like one (N, H, W, C) uint8 array."""

    def __init__(self, files: list[Path], counts: list[int], shape: tuple[int, ...]) -> None:
        self._arrays = [np.load(f, mmap_mode="r") for f in files]
        self._starts = np.cumsum([0, *counts])
        self.shape = (int(self._starts[-1]), *shape)
        self.dtype = np.dtype(np.uint8)

    def __len__(self) -> int:
        return self.shape[0]

    @overload
    def __getitem__(self, rows: int) -> PixelArray: ...
    @overload
    def __getitem__(self, rows: Sequence[int] | npt.NDArray[np.integer[Any]]) -> PixelArray: ...

    def __getitem__(self, rows: Any) -> PixelArray:
        if isinstance(rows, int | np.integer):
            shard = int(np.searchsorted(self._starts, rows, side="right")) - 1
            return np.asarray(self._arrays[shard][int(rows) - self._starts[shard]])
        wanted = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(wanted), *self.shape[1:]), dtype=np.uint8)
        shards = np.searchsorted(self._starts, wanted, side="right") - 1
        for shard in np.unique(shards):
            at = shards == shard
            out[at] = self._arrays[shard][wanted[at] - self._starts[shard]]
        return out


class _ShardedIds(Sequence[str]):
    """The shards' ids, read per shard on first use."""

    def __init__(self, files: list[Path], counts: list[int]) -> None:
        self._files, self._starts = files, np.cumsum([0, *counts])
        self._loaded: dict[int, list[str]] = {}

    def __len__(self) -> int:
        return int(self._starts[-1])

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[str]: ...

    def __getitem__(self, i: int | slice) -> str | Sequence[str]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        shard = int(np.searchsorted(self._starts, i, side="right")) - 1
        if shard not in self._loaded:
            self._loaded[shard] = json.loads(self._files[shard].read_text(encoding="utf-8"))
        return self._loaded[shard][i - int(self._starts[shard])]


class _ShardSearch:
    """Range search over the shards' FAISS indexes (memory-mapped), labels made global."""

    def __init__(self, files: list[Path], counts: list[int], dim: int) -> None:
        self._files, self._starts = files, np.cumsum([0, *counts])
        self.ntotal, self.d = int(self._starts[-1]), dim

    def range_search(self, queries: npt.NDArray[np.float32], radius: float
                     ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32],
                                npt.NDArray[np.int64]]:
        labels: list[list[npt.NDArray[np.int64]]] = [[] for _ in range(len(queries))]
        dists: list[list[npt.NDArray[np.float32]]] = [[] for _ in range(len(queries))]
        for shard, path in enumerate(self._files):
            index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
            if isinstance(index, faiss.IndexIVF):
                index.nprobe = index.nlist  # exhaustive: exact
            lims, dist, found = index.range_search(queries, radius)
            for q in range(len(queries)):
                labels[q].append(found[lims[q]:lims[q + 1]] + self._starts[shard])
                dists[q].append(dist[lims[q]:lims[q + 1]])
            del index
        flat_labels = [np.concatenate(parts) for parts in labels]
        lims_out = np.cumsum([0, *(len(part) for part in flat_labels)]).astype(np.int64)
        return (lims_out, np.concatenate([np.concatenate(d) for d in dists]),
                np.concatenate(flat_labels).astype(np.int64))


class ShardedKnownImageIndex(KnownImageIndex):
    """A :class:`KnownImageIndex` whose shards stay on disk (see :func:`open_sharded`)."""

    def __init__(self, ids: Sequence[str], pixels: Any, index: Any, embed_size: int) -> None:
        super().__init__([], pixels, index, PixelEmbedder(embed_size))
        self._ids = ids  # type: ignore[assignment]  # lazy: never materialised as a tuple

    @property
    def kind(self) -> str:
        return "sharded"

    def save(self, folder: str | os.PathLike[str]) -> Path:
        raise UsageError("a sharded index already lives on disk; copy its folder instead")


def read_meta(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The checked ``meta.json`` of a sharded index folder; a :class:`UsageError` naming the
    problem when ``folder`` is missing, is not a sharded index of a supported version or lacks
    a shard. Cheap (no shard is read), so a scan calls it before any model work."""
    root = Path(folder)
    if not root.is_dir():
        raise UsageError(f"known-image index {root} does not exist or is not a folder; build "
                         f"one with `s2l-scan index build --images DIR --out {root}`")
    try:
        meta = json.loads((root / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{root} is not a sharded known-image index: its meta.json cannot be "
                         f"read ({exc}); build one with `s2l-scan index build`") from exc
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise UsageError(f"{root / 'meta.json'} does not describe a sharded known-image index "
                         f"(expected format {_FORMAT!r}); build one with `s2l-scan index build`")
    if meta.get("format_version") != _VERSION:
        raise UsageError(f"{root / 'meta.json'} is a version-{meta.get('format_version')!r} "
                         f"sharded index; this s2l-scan reads version {_VERSION}. Rebuild it "
                         f"with `s2l-scan index build`")
    try:
        counts = [int(c) for c in meta["shards"]]
        shape = [int(n) for n in meta["resolution"]]
        embed_size, count = int(meta["embed_size"]), int(meta["count"])
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"{root / 'meta.json'} is damaged ({type(exc).__name__}: {exc}); "
                         f"rebuild the index with `s2l-scan index build`") from exc
    if len(shape) != 3 or sum(counts) != count or not counts:
        raise UsageError(f"{root / 'meta.json'} is damaged (resolution {shape}, {count} images "
                         f"in shards of {counts}); rebuild the index with `s2l-scan index build`")
    for i in range(len(counts)):
        for name in _SHARD_FILES:
            if not (root / f"shard-{i:05d}" / name).is_file():
                raise UsageError(f"{root / f'shard-{i:05d}' / name} is missing; the sharded "
                                 f"index is incomplete. Rebuild it with `s2l-scan index build`")
    return {**meta, "shards": counts, "resolution": shape, "embed_size": embed_size,
            "count": count}


def open_sharded(folder: str | os.PathLike[str]) -> ShardedKnownImageIndex:
    """Open a folder written by :func:`build_sharded` (checked by :func:`read_meta`)."""
    root = Path(folder)
    meta = read_meta(root)
    counts = meta["shards"]
    shards = [root / f"shard-{i:05d}" for i in range(len(counts))]
    shape = tuple(meta["resolution"])
    dim = meta["embed_size"] ** 2 * int(shape[2])
    return ShardedKnownImageIndex(
        _ShardedIds([s / "ids.json" for s in shards], counts),
        _ShardedPixels([s / "pixels.npy" for s in shards], counts, shape),
        _ShardSearch([s / "index.faiss" for s in shards], counts, dim), meta["embed_size"])


def build_from_folder(images: str | os.PathLike[str], folder: str | os.PathLike[str], *,
                      resolution: int, shard_size: int = 250_000,
                      max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
                      progress: Callable[[str, int, int], None] | None = None
                      ) -> dict[str, Any]:
    """Index every .png/.jpg/.jpeg/.webp under ``images`` (recursively, by the rules of the audit
    data's ``known/``) into a new sharded ``folder``; returns its checked meta.

    Each file is decoded with the audit-data image policy at ``resolution`` while it streams
    into :func:`build_sharded` (memory: one shard). Ids are the paths relative to ``images``.
    A file that is not an intact PNG or JPEG fails the build (no folder is left behind).
    """
    _check_resolution(resolution)
    if resolution % _EMBED_SIZE:  # checked by build_sharded too, but only after a whole shard
        raise UsageError(f"resolution {resolution} is not a multiple of {_EMBED_SIZE}: the index "
                         f"pools {_EMBED_SIZE}×{_EMBED_SIZE} blocks of pixels; give the "
                         f"resolution of the model to scan (e.g. 32, 256, 512)")
    source, target = Path(images).expanduser(), Path(folder).expanduser()
    if target.exists() or target.is_symlink():
        raise UsageError(f"index folder {target}: already exists; s2l-scan never overwrites a "
                         f"folder. Choose a new path or remove it yourself.")
    if not source.exists():
        raise UsageError(f"image folder {source}: does not exist; give a folder of "
                         f"{IMAGE_KINDS} images")
    files = image_folder(source)
    if not files:
        raise UsageError(f"image folder {source}: holds no {IMAGE_KINDS} image (searched "
                         f"recursively; hidden files are skipped); the index needs at least one")

    def stream() -> Iterator[tuple[str, PixelArray]]:
        for done, path in enumerate(files):
            yield (str(path.relative_to(source)),
                   load_image(path, resolution, max_image_pixels=max_image_pixels))
            if progress is not None:
                progress("index", done + 1, len(files))

    build_sharded(stream(), target, shard_size=shard_size, embed_size=_EMBED_SIZE)
    return read_meta(target)
