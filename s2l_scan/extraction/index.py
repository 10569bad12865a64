"""A FAISS index of known images that finds eidetic matches exactly (README, probes).

Embedding: each image is area-downsampled (block means) to ``embed_size × embed_size`` pixels
and scaled by ``1/√(embed_size² · C)``, so the Euclidean distance between two embeddings is the
RMS difference of the downsampled [0, 1] images.

Why retrieval loses nothing: block averaging is linear and, by Jensen's inequality
(``mean(d)² ≤ mean(d²)`` inside each block of equal size), **non-expansive for RMS**:
RMS(pool(x) − pool(y)) ≤ RMS(x − y). The tiled distance is never below the plain RMS either
(the full mean square is the average of the tile ones). So every known image within δ of a
generation, plain or tiled, lies within δ of it in embedding space, and a FAISS **range search**
of radius δ returns a superset of the true matches. Verifying those candidates with the exact
pixel distance (:mod:`s2l_scan.functional.eidetic`) then gives exactly the brute-force answer,
at the cost of one range search instead of a full pairwise pass. The radius gets a small slack
for FAISS's float32 arithmetic; slack can only add candidates, which verification discards.

Index kind: below ``ivf_threshold`` known images an exact ``IndexFlatL2``; above it an
``IndexIVFFlat`` with nlist ≈ 4·√N lists and ``nprobe = nlist``, which visits every list and so
stays exact while keeping the vectors in cluster order. Lowering ``nprobe`` below ``nlist``
would trade exactness for speed (true matches in unvisited lists are silently missed); this
module never does that.

Other embedders (:mod:`s2l_scan.extraction.embedders`, e.g. open_clip) give no such bound:
their index is an inner-product one on L2-normalised features, each generation retrieves its
``candidates`` nearest known images by k-NN, and those are verified with the same exact pixel
distance. Matches found are real, but a true match outside the candidates is missed; with
``candidates ≥ len(index)`` every known image is verified and the answer is brute force again.
Copy counts (the k rule: training images within δ of a matched image, itself included) are
always exact: for such embedders they are computed by brute force over the known pixels, for
the few known images that some generation matched.

Saved indexes carry the embedder's fingerprint (spec, weights hash, versions) and a sha256 of
each file, checked on load, so a corrupt or mismatched folder is an error, never an answer.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from s2l_scan.errors import ScanError, UsageError, checked
from s2l_scan.extraction.embedders import Embedder, PixelEmbedder
from s2l_scan.functional.eidetic import (
    Images,
    Match,
    as_images,
    check_delta,
    check_k,
    check_tiles,
    check_training,
    match_order,
    rms_distance,
    tiled_rms_distance,
)
from s2l_scan.functional.pooling import check_embed_size
from s2l_scan.functional.pooling import pooled_embedding as _pooled
from s2l_scan.io.weights import sha256_file

__all__ = ["FORMAT_VERSION", "KnownImageIndex", "pooled_embedding"]

FORMAT_VERSION = 2
DEFAULT_CANDIDATES = 64
_META, _INDEX, _ARRAYS = "meta.json", "index.faiss", "known.npz"
_FORMAT_NAME = "s2l-scan known-image index"
_CHUNK_BYTES = 64 * 2**20  # float64 working memory per embedding chunk
# known images embedded per progress step of a build: a multiple of every embedder's own batch
# (open_clip's is 64), so the embeddings are those of one call
_BUILD_CHUNK = 1024
BUILD_STAGE = "building the known-image index (images embedded)"
PixelArray = npt.NDArray[np.uint8]
_Pairs = list[tuple[int, int, float]]


# ---------------------------------------------------------------------------------------------
# embedding


def _as_uint8(images: Images) -> PixelArray:
    """Embedders see uint8 pixels; float [0, 1] generations are rounded for retrieval only
    (exact verification still uses the floats)."""
    if images.dtype == np.uint8:
        return np.asarray(images, dtype=np.uint8)  # no copy; narrows the type
    return np.clip(np.rint(np.asarray(images, np.float64) * 255.0), 0, 255).astype(np.uint8)


def _check_embed_size(shape: tuple[int, ...], embed_size: int) -> int:
    """:func:`~s2l_scan.functional.pooling.check_embed_size` at the user's boundary."""
    return checked(check_embed_size, shape, embed_size)


def pooled_embedding(images: npt.ArrayLike, embed_size: int = 8) -> npt.NDArray[np.float32]:
    """:func:`~s2l_scan.functional.pooling.pooled_embedding` with its checks raised as
    :class:`~s2l_scan.errors.UsageError` (the pooling itself lives in ``functional/``).

    >>> x = np.zeros((2, 16, 16, 3), np.uint8); x[1] = 255
    >>> e = pooled_embedding(x)
    >>> e.shape, round(float(np.linalg.norm(e[0] - e[1])), 6)
    ((2, 192), 1.0)
    """
    batch = checked(as_images, images, "images")
    _check_embed_size(batch.shape[1:], embed_size)
    return _pooled(batch, embed_size)


def _radius(delta: float, dim: int) -> float:
    """Squared search radius: δ² plus room for float32 rounding in FAISS's distances.

    Embeddings have norm ≤ 1, so ‖x‖² + ‖y‖² − 2⟨x, y⟩ in float32 is off by at most about
    dim · ε₃₂ per term; four times that, plus the float32 cast of the embeddings, is ample.
    """
    return delta * delta + 4.0 * dim * float(np.finfo(np.float32).eps) + 1e-6


# ---------------------------------------------------------------------------------------------
# building


def _collect(images: Iterable[tuple[str | os.PathLike[str], npt.ArrayLike]],
             ) -> tuple[list[str], PixelArray]:
    """Validate (id, uint8 HWC pixels) pairs: common resolution, unique ids, at least one."""
    ids: list[str] = []
    arrays: list[PixelArray] = []
    for key, pixels in images:
        name = os.fspath(key)
        arr = np.asarray(pixels)
        if arr.dtype != np.uint8 or arr.ndim != 3:
            raise UsageError(f"known image {name!r} has dtype {arr.dtype} and shape {arr.shape};"
                             f" expected uint8 pixels shaped (H, W, C), as load_image returns")
        if arrays and arr.shape != arrays[0].shape:
            raise UsageError(f"known image {name!r} is {arr.shape}, but {ids[0]!r} is "
                             f"{arrays[0].shape}; load all known images at one resolution")
        ids.append(name)
        arrays.append(arr)
    if not arrays:
        raise UsageError("no known images were given; the index needs at least one (id, "
                         "pixels) pair, e.g. from AuditData.index_images()")
    _check_unique(ids)
    return ids, np.stack(arrays)


def _embed_reporting(embedder: Embedder, pixels: PixelArray) -> npt.NDArray[np.float32]:
    """``embedder.embed(pixels)``, in chunks of :data:`_BUILD_CHUNK` images, telling the scan's
    progress (:func:`s2l_scan.progress.report`) after each."""
    from s2l_scan.progress import report

    total = len(pixels)
    report(BUILD_STAGE, 0, total)
    parts = []
    for start in range(0, total, _BUILD_CHUNK):
        parts.append(np.asarray(embedder.embed(pixels[start:start + _BUILD_CHUNK])))
        report(BUILD_STAGE, min(start + _BUILD_CHUNK, total), total)
    return np.concatenate(parts).astype(np.float32, copy=False)


def _check_unique(ids: list[str]) -> None:
    twice = [key for key, times in Counter(ids).items() if times > 1]
    if twice:
        raise UsageError(f"{len(twice)} known image id(s) appear more than once (first: "
                         f"{twice[0]!r}); ids must be unique (use the file path) so that "
                         f"matches can name their image")


def _faiss_index(embeddings: npt.NDArray[np.float32], ivf_threshold: int, metric: str) -> Any:
    count, dim = embeddings.shape
    flat = faiss.IndexFlatL2 if metric == "l2" else faiss.IndexFlatIP
    index: Any  # faiss's generated stubs do not relate the index classes
    if count < ivf_threshold:
        index = flat(dim)
    else:
        nlist = max(1, min(count, round(4 * math.sqrt(count))))
        index = faiss.IndexIVFFlat(flat(dim), dim, nlist,
                                   faiss.METRIC_L2 if metric == "l2" else
                                   faiss.METRIC_INNER_PRODUCT)
        index.train(embeddings)
        index.nprobe = nlist  # visit every list: exact (see the module docstring)
    index.add(embeddings)
    return index


def check_candidates(candidates: int) -> int:
    """Known images verified per generation by a k-NN (approximate) embedder, ≥ 1."""
    if not isinstance(candidates, int) or isinstance(candidates, bool) or candidates < 1:
        raise UsageError(f"candidates (extraction_candidates) must be an integer >= 1, the "
                         f"known images verified per generation, got {candidates!r}")
    return candidates


# ---------------------------------------------------------------------------------------------
# the index


class KnownImageIndex:
    """Known images (ids + uint8 pixels) and a FAISS index of their pooled embeddings.

    >>> rng = np.random.default_rng(0)
    >>> known = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    >>> index = KnownImageIndex.build([(f"img{i}.png", x) for i, x in enumerate(known)])
    >>> index.matches(known[1:2], k=10, delta=0.1)
    [Match(generated_index=0, known_index=1, distance=0.0)]
    >>> index.ids[1]
    'img1.png'
    """

    def __init__(self, ids: list[str], pixels: PixelArray, index: Any, embedder: Embedder
                 ) -> None:
        """Wrap validated parts; use :meth:`build` or :meth:`load` instead."""
        self._ids = tuple(ids)
        self._pixels = pixels
        self._index = index
        self._embedder = embedder
        # The known images within delta of a known image (itself included), per (delta,
        # tiles), filled lazily: only known images that some generation lands near ever need
        # them, each is computed once, and any training mask then counts its copies.
        self._neighbours: dict[tuple[float, int], dict[int, npt.NDArray[np.int64]]] = {}

    @classmethod
    def build(cls, images: Iterable[tuple[str | os.PathLike[str], npt.ArrayLike]], *,
              embed_size: int = 8, ivf_threshold: int = 100_000,
              embedder: Embedder | None = None) -> KnownImageIndex:
        """Index (id, uint8 (H, W, C) pixels) pairs, all at one resolution.

        ``embedder`` defaults to pooled pixels of ``embed_size`` (which must divide H and W).
        At ``ivf_threshold`` images or more the index is an exhaustive IVF (still exact); below
        it a flat index.
        """
        if not isinstance(ivf_threshold, int) or ivf_threshold < 1:
            raise UsageError(f"ivf_threshold must be an integer >= 1 (the image count from which "
                             f"an IVF index is used), got {ivf_threshold!r}")
        ids, pixels = _collect(images)
        if embedder is None:
            embedder = PixelEmbedder(_check_embed_size(pixels.shape[1:], embed_size))
        embedder.check(pixels.shape[1:])
        index = _faiss_index(_embed_reporting(embedder, pixels), ivf_threshold,
                             embedder.metric)
        return cls(ids, pixels, index, embedder)

    @property
    def ids(self) -> tuple[str, ...]:
        """The known images' ids; ``Match.known_index`` indexes this."""
        return self._ids

    @property
    def pixels(self) -> PixelArray:
        """The known images, (N, H, W, C) uint8 (read-only use)."""
        return self._pixels

    @property
    def resolution(self) -> tuple[int, int, int]:
        """(H, W, C) of every known image; generations must match it."""
        height, width, channels = self._pixels.shape[1:]
        return height, width, channels

    @property
    def embed_size(self) -> int | None:
        """The pooled size of the pixel embedder (None for other embedders)."""
        return self._embedder.embed_size if isinstance(self._embedder, PixelEmbedder) else None

    @property
    def embedder(self) -> Embedder:
        return self._embedder

    @property
    def exact(self) -> bool:
        """True when retrieval provably returns every true match (the pixel embedder)."""
        return self._embedder.exact

    @property
    def kind(self) -> str:
        """``"flat"`` or ``"ivf"`` (exhaustive); both are exact."""
        return "ivf" if isinstance(self._index, faiss.IndexIVF) else "flat"

    def __len__(self) -> int:
        return len(self._ids)

    def __repr__(self) -> str:
        return (f"KnownImageIndex({len(self)} images at {self.resolution}, "
                f"embedder={self._embedder.fingerprint()!r}, kind={self.kind!r})")

    # -- search --------------------------------------------------------------------------------

    def candidates(self, generated: npt.ArrayLike, delta: float,
                   candidates: int = DEFAULT_CANDIDATES) -> list[list[int]]:
        """Per generation, the known indices retrieved for verification (ascending).

        Pixel embedder: those within ``delta`` in embedding space, a superset of the known
        images within ``delta`` in pixels, plain or tiled. Other embedders: the ``candidates``
        nearest by inner product (approximate).
        """
        gen = self._generated(generated)
        return self._retrieve(gen, checked(check_delta, delta), check_candidates(candidates))

    def near(self, generated: npt.ArrayLike, *, delta: float = 0.1, tiled: bool = False,
             tiles: int = 4, candidates: int = DEFAULT_CANDIDATES) -> list[Match]:
        """Every verified (generation, known image) pair within ``delta``, training image or
        not, whatever its copy count; with the pixel embedder equal to ``pairs_within(generated,
        index.pixels, ...)``, with others a subset of it. Sorted like :meth:`matches`."""
        gen = self._generated(generated)
        radius = checked(check_delta, delta)
        count = checked(check_tiles, self.resolution, tiles) if tiled else 1
        return sorted((Match(g, j, d) for g, j, d in
                       self._pairs(gen, radius, count, check_candidates(candidates))),
                      key=match_order)

    def matches(self, generated: npt.ArrayLike, *, k: int = 10, delta: float = 0.1,
                tiled: bool = False, tiles: int = 4, candidates: int = DEFAULT_CANDIDATES,
                training: npt.ArrayLike | None = None) -> list[Match]:
        """Eidetic matches; with the pixel embedder equal to ``eidetic_matches(generated,
        index.pixels, ...)``, with others a subset of it (see the module docstring).

        Retrieval, exact verification, then the k rule: a known image counts only when it is
        a training image (``training``, one bool per known image; None: every one) and at most
        k training images, itself included, lie within δ of it. Sorted by (generated_index,
        distance, known_index). ``candidates`` only matters for k-NN embedders.
        """
        gen = self._generated(generated)
        radius, k_max = checked(check_delta, delta), checked(check_k, k)
        count = checked(check_tiles, self.resolution, tiles) if tiled else 1
        mask = None if training is None else checked(check_training, training, len(self))
        pairs = [(g, j, d) for g, j, d in self._pairs(gen, radius, count,
                                                      check_candidates(candidates))
                 if mask is None or mask[j]]
        near = self._near_known({j for _, j, _ in pairs}, radius, count)
        copies = {j: len(rows) if mask is None else int(mask[rows].sum())
                  for j, rows in near.items()}
        return sorted((Match(g, j, d) for g, j, d in pairs if copies[j] <= k_max),
                      key=match_order)

    def copy_counts(self, rows: Iterable[int], *, delta: float = 0.1, tiled: bool = False,
                    tiles: int = 4, training: npt.ArrayLike | None = None) -> dict[int, int]:
        """For each known index in ``rows``, the training images (``training``; None: every
        known image) within δ of it, itself included: the count the k rule compares with k,
        the same :meth:`matches` uses."""
        radius = checked(check_delta, delta)
        count = checked(check_tiles, self.resolution, tiles) if tiled else 1
        mask = None if training is None else checked(check_training, training, len(self))
        near = self._near_known(set(rows), radius, count)
        return {j: len(found) if mask is None else int(mask[found].sum())
                for j, found in near.items()}

    def _pairs(self, gen: Images, radius: float, tiles: int, candidates: int) -> _Pairs:
        found = self._retrieve(gen, radius, candidates)
        return [(g, j, d) for g, hits in enumerate(found)
                for j, d in self._verify(gen[g], hits, radius, tiles)]

    def _generated(self, generated: npt.ArrayLike) -> Images:
        gen = checked(as_images, generated, "generated")
        if gen.shape[1:] != self.resolution:
            raise UsageError(f"generated images are {gen.shape[1:]} (H, W, C) but the index "
                             f"holds {self.resolution}; generate or resize to the index's "
                             f"resolution")
        return gen

    def _retrieve(self, gen: Images, delta: float, candidates: int) -> list[list[int]]:
        if not len(gen):
            return []
        if self._embedder.exact:  # pooling takes floats as they are: the bound must hold
            return self._range(self._embedder.embed(gen), delta)  # type: ignore[arg-type]  # pooling embeds float pixels too
        vectors = self._embedder.embed(_as_uint8(gen))
        _, labels = self._index.search(vectors, min(candidates, len(self)))
        return [sorted(j for j in row.tolist() if j >= 0) for row in labels]

    def _range(self, embeddings: npt.NDArray[np.float32], delta: float) -> list[list[int]]:
        if not len(embeddings):
            return []
        lims, _, labels = self._index.range_search(
            embeddings, _radius(delta, embeddings.shape[1]))
        return [sorted(labels[lims[i]:lims[i + 1]].tolist()) for i in range(len(embeddings))]

    def _verify(self, image: Images, hits: list[int], delta: float, tiles: int,
                ) -> list[tuple[int, float]]:
        """The (known index, exact distance) of the hits within delta."""
        if not hits:
            return []
        known = self._pixels[hits]
        dist = (tiled_rms_distance(image[None], known, tiles) if tiles > 1
                else rms_distance(image[None], known))[0]
        return [(j, float(d)) for j, d in zip(hits, dist.tolist(), strict=True) if d <= delta]

    def _near_known(self, rows: set[int], delta: float, tiles: int
                    ) -> dict[int, npt.NDArray[np.int64]]:
        """For each known image in ``rows``, the known images within delta, itself included."""
        cache = self._neighbours.setdefault((delta, tiles), {})
        missing = sorted(rows - cache.keys())
        if missing and self._embedder.exact:
            embeddings = self._embedder.embed(self._pixels[missing])
            for j, hits in zip(missing, self._range(embeddings, delta), strict=True):
                near = self._verify(self._pixels[j], hits, delta, tiles)
                cache[j] = np.array([other for other, _ in near], dtype=np.int64)
        else:
            # No bound from this embedding: compare exactly against every known image, in
            # chunks so that memory stays flat in the size of the known set.
            step = max(1, _CHUNK_BYTES // max(1, self._pixels[0].size * 8))
            for j in missing:
                cache[j] = np.array([other for start in range(0, len(self), step)
                                     for other, _ in self._verify(
                                         self._pixels[j],
                                         list(range(start, min(start + step, len(self)))),
                                         delta, tiles)], dtype=np.int64)
        return {j: cache[j] for j in rows}

    # -- persistence ---------------------------------------------------------------------------

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write the index to a new ``folder`` (refuses an existing one); returns its path.

        The files are written into a hidden sibling folder that is renamed into place at the
        end, so a crash never leaves a half-written index under ``folder``.
        """
        target = Path(folder)
        if target.exists():
            raise UsageError(f"{target} already exists; save the index to a new folder, or "
                             f"delete the old one first if it should be replaced")
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            self._write(staging)
            staging.rename(target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return target

    def _write(self, folder: Path) -> None:
        faiss.write_index(self._index, str(folder / _INDEX))
        with open(folder / _ARRAYS, "wb") as handle:
            np.savez(handle, ids=np.array(self._ids, dtype=str), pixels=self._pixels)
        meta = {"format": _FORMAT_NAME, "format_version": FORMAT_VERSION,
                "embedder": self._embedder.spec,
                "embedder_fingerprint": self._embedder.fingerprint(),
                "metric": self._embedder.metric, "dim": int(self._index.d),
                "embed_size": self.embed_size, "resolution": list(self.resolution),
                "count": len(self), "kind": self.kind,
                "sha256": {name: sha256_file(folder / name) for name in (_INDEX, _ARRAYS)}}
        (folder / _META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: str | os.PathLike[str], embedder: Embedder | None = None,
             ) -> KnownImageIndex:
        """Read an index written by :meth:`save`; a different format version is refused.

        ``embedder`` must be the one the index was built with (its fingerprint is checked);
        None means the pixel embedder recorded in the folder.
        """
        root = Path(folder)
        meta = _read_meta(root)
        if embedder is None:
            if meta.get("embed_size") is None:
                raise ScanError(f"{root} was built with embedder {meta['embedder']!r}; pass that "
                                f"embedder to KnownImageIndex.load")
            embedder = PixelEmbedder(meta["embed_size"])
        if embedder.fingerprint() != meta["embedder_fingerprint"]:
            raise ScanError(f"{root} was built with embedder {meta['embedder_fingerprint']!r}, "
                            f"not {embedder.fingerprint()!r}; rebuild the index")
        _check_files(root, meta)
        ids, pixels = _read_arrays(root, meta)
        index = _read_faiss(root, meta)
        return cls(ids, pixels, index, embedder)


# ---------------------------------------------------------------------------------------------
# loading


def _read_meta(root: Path) -> dict[str, Any]:
    path = root / _META
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ScanError(f"{root} is not a saved known-image index: cannot read {path.name} "
                        f"({exc}). Point at a folder written by KnownImageIndex.save") from exc
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT_NAME:
        raise ScanError(f"{path} does not describe a known-image index (expected format "
                        f"{_FORMAT_NAME!r}); point at a folder written by KnownImageIndex.save")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ScanError(f"{root} holds a known-image index in format version "
                        f"{meta.get('format_version')!r}, but this s2l-scan reads version "
                        f"{FORMAT_VERSION}; rebuild it with KnownImageIndex.build and save again")
    if not _meta_fields_ok(meta):
        raise ScanError(f"{path} lacks valid embedder, dim, embed_size, resolution [H, W, C], "
                        f"count and sha256 fields; the file was edited or truncated, rebuild "
                        f"the index")
    return meta


def _meta_fields_ok(meta: dict[str, Any]) -> bool:
    def positive(value: object) -> bool:
        return type(value) is int and value > 0

    shape = meta.get("resolution")
    digests = meta.get("sha256")
    size = meta.get("embed_size")
    return (positive(meta.get("dim")) and positive(meta.get("count"))
            and (size is None or positive(size))
            and isinstance(meta.get("embedder"), str)
            and isinstance(meta.get("embedder_fingerprint"), str)
            and meta.get("metric") in ("l2", "ip")
            and isinstance(shape, list) and len(shape) == 3 and all(map(positive, shape))
            and isinstance(digests, dict)
            and all(isinstance(digests.get(name), str) for name in (_INDEX, _ARRAYS)))


def _check_files(root: Path, meta: dict[str, Any]) -> None:
    """A flipped bit in the vectors would silently drop candidates: verify every byte."""
    for name in (_INDEX, _ARRAYS):
        try:
            actual = sha256_file(root / name)
        except OSError as exc:
            raise ScanError(f"{root / name} cannot be read ({exc}); rebuild the index") from exc
        if actual != meta["sha256"][name]:
            raise ScanError(f"{root / name} does not match the sha256 recorded in {_META}; the "
                            f"file is corrupt or truncated, rebuild the index")


def _read_arrays(root: Path, meta: dict[str, Any]) -> tuple[list[str], PixelArray]:
    try:
        # No pickles: the folder may come from elsewhere, and ids are stored as a str array.
        with np.load(root / _ARRAYS, allow_pickle=False) as arrays:
            ids, pixels = arrays["ids"], arrays["pixels"]
    except (OSError, ValueError, KeyError) as exc:
        raise ScanError(f"{root / _ARRAYS} cannot be read as the index's ids and pixels "
                        f"({exc}); rebuild the index") from exc
    expected = (meta["count"], *meta["resolution"])
    if pixels.dtype != np.uint8 or pixels.shape != tuple(expected) or ids.shape != expected[:1]:
        raise ScanError(f"{root / _ARRAYS} holds {ids.shape[0]} ids and {pixels.dtype} pixels "
                        f"{pixels.shape}, but {_META} promises {expected[0]} uint8 images of "
                        f"{tuple(expected[1:])}; the folder is inconsistent, rebuild the index")
    return [str(key) for key in ids.tolist()], pixels


def _read_faiss(root: Path, meta: dict[str, Any]) -> Any:
    try:
        index = faiss.read_index(str(root / _INDEX))  # already the concrete index class
    except RuntimeError as exc:
        raise ScanError(f"{root / _INDEX} cannot be read as a FAISS index ({exc}); "
                        f"rebuild the index") from exc
    channels = meta["resolution"][2]
    size = meta.get("embed_size")
    dim = meta["dim"] if size is None else size ** 2 * channels
    if index.ntotal != meta["count"] or index.d != dim:
        raise ScanError(f"{root / _INDEX} holds {index.ntotal} vectors of dimension {index.d}, "
                        f"expected {meta['count']} of dimension {dim}; rebuild the index")
    if isinstance(index, faiss.IndexIVF):
        index.nprobe = index.nlist  # exhaustive, whatever the file says: exactness first
    return index

