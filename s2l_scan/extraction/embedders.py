"""Embedders for the known-image index (README, probes): how images become FAISS vectors.

An embedder is chosen by a spec string (option ``embedder``), looked up in :data:`EMBEDDERS`:

* ``pixels`` (default): area-pooled pixels (:func:`~s2l_scan.functional.pooling.pooled_embedding`).
  Its Euclidean distance never exceeds the pixel RMS, so a range search of radius δ returns a
  **superset** of the true matches and the indexed answer equals brute force.
* ``open_clip:ARCH:PATH``: the image tower of ``open_clip.create_model(ARCH, pretrained=PATH)``
  from a **local** weights file, open_clip's own evaluation transform, L2-normalised features,
  inner-product k-NN. Embedding similarity does **not** bound pixel RMS, so retrieval is
  approximate: only the ``extraction_candidates`` nearest known images per generation are
  verified, and a true match outside them is missed. Verification is the same exact pixel RMS,
  so nothing is ever reported that is not a match.

Weights are untrusted input: safetensors load directly; pickled files (``.bin``, ``.pt``, ...)
are refused unless ``allow_pickle`` is set, and then read with ``torch.load(weights_only=True)``.
Nothing is ever downloaded: the weights must be an existing file, and architectures whose
construction needs a Hugging Face text model (``hf_model_name``) are refused.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from s2l_scan.errors import ScanError, UsageError, checked
from s2l_scan.functional.eidetic import as_images
from s2l_scan.functional.pooling import check_embed_size, pooled_embedding

__all__ = ["EMBEDDERS", "Embedder", "OpenClipEmbedder", "PixelEmbedder", "check_embedder_inputs",
           "check_embedder_spec", "make_embedder"]

Vectors = npt.NDArray[np.float32]
_SAFE_SUFFIXES = (".safetensors",)
_LIST_HINT = "python -c 'import open_clip; print(open_clip.list_models())'"


class Embedder(Protocol):
    """What the index needs from an embedder."""

    @property
    def spec(self) -> str:
        """The spec string it was made from (echoed in reports)."""

    @property
    def exact(self) -> bool:
        """True when embedding distance ≤ pixel RMS, so a δ range search loses no match."""

    @property
    def metric(self) -> str:
        """``"l2"`` (squared Euclidean, range search) or ``"ip"`` (inner product, k-NN)."""

    def fingerprint(self) -> str:
        """Everything that changes the vectors (spec, weights hash, versions): a cache key."""

    def check(self, shape: tuple[int, int, int]) -> None:
        """Raise a :class:`UsageError` when images of (H, W, C) ``shape`` cannot be embedded."""

    def embed(self, images: npt.NDArray[np.uint8]) -> Vectors:
        """(N, D) float32 vectors of uint8 (N, H, W, C) images."""


# ---------------------------------------------------------------------------------------------
# pixels


@dataclass(frozen=True)
class PixelEmbedder:
    """Area-pooled pixels, scaled so that Euclidean distance is the pooled RMS (exact)."""

    embed_size: int = 8

    @property
    def spec(self) -> str:
        return "pixels"

    @property
    def exact(self) -> bool:
        return True

    @property
    def metric(self) -> str:
        return "l2"

    def fingerprint(self) -> str:
        return f"pixels:embed_size={self.embed_size}"

    def check(self, shape: tuple[int, int, int]) -> None:
        checked(check_embed_size, shape, self.embed_size)

    def embed(self, images: npt.NDArray[np.uint8]) -> Vectors:
        batch = checked(as_images, images, "images")  # as extraction.index.pooled_embedding
        checked(check_embed_size, batch.shape[1:], self.embed_size)
        return pooled_embedding(batch, self.embed_size)


# ---------------------------------------------------------------------------------------------
# open_clip


class OpenClipEmbedder:
    """The image tower of a locally stored open_clip model (approximate retrieval)."""

    def __init__(self, arch: str, path: Path, *, allow_pickle: bool = False,
                 batch_size: int = 64, device: str = "cpu") -> None:
        self._arch = arch
        self._path = path
        self._batch_size = batch_size
        self._device = device
        self._weights_hash: str | None = None
        self._model, self._preprocess = _load_open_clip(arch, path, allow_pickle, device)

    @property
    def spec(self) -> str:
        return f"open_clip:{self._arch}:{self._path}"

    @property
    def exact(self) -> bool:
        return False

    @property
    def metric(self) -> str:
        return "ip"

    def fingerprint(self) -> str:
        import open_clip
        import torch

        from s2l_scan.io.weights import sha256_file

        if self._weights_hash is None:
            self._weights_hash = sha256_file(self._path)
        # The path itself is left out: the same weights elsewhere give the same vectors. The
        # library versions are in: they can change preprocessing or kernels, hence the vectors.
        return (f"open_clip:{self._arch}:sha256={self._weights_hash}:"
                f"open_clip={open_clip.__version__}:torch={torch.__version__}")

    def check(self, shape: tuple[int, int, int]) -> None:
        if shape[2] not in (1, 3):
            raise UsageError(f"the open_clip embedder needs grayscale or RGB images, got "
                             f"{shape[2]} channels")

    def embed(self, images: npt.NDArray[np.uint8]) -> Vectors:
        import torch
        from PIL import Image

        batch = np.asarray(images)
        out = np.empty((0, 0), np.float32)
        parts = []
        for start in range(0, len(batch), self._batch_size):
            chunk = batch[start:start + self._batch_size]
            pixels = torch.stack([self._preprocess(Image.fromarray(_rgb(x))) for x in chunk])
            with torch.inference_mode():
                features = self._model.encode_image(pixels.to(self._device)).float()
            features = torch.nn.functional.normalize(features, dim=-1)
            parts.append(features.cpu().numpy().astype(np.float32))
        if parts:
            out = np.concatenate(parts)
        if not np.isfinite(out).all():
            raise ScanError(f"open_clip model {self._arch} ({self._path}) produced non-finite "
                            f"image features; check the weights file")
        return out


def _rgb(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image


def _parse_open_clip(rest: str) -> tuple[str, Path]:
    arch, sep, path = rest.partition(":")
    if not sep or not arch or not path:
        raise UsageError(f"embedder 'open_clip:{rest}' must be open_clip:ARCH:PATH, e.g. "
                         f"open_clip:ViT-B-32:/models/clip-vit-b-32.safetensors (PATH: a local "
                         f"weights file; nothing is downloaded)")
    return arch, Path(path).expanduser()


def _check_weights_path(path: Path, allow_pickle: bool) -> Path:
    from s2l_scan.io.weights import PICKLE_OPT_IN, PICKLE_SUFFIXES

    if not path.is_file():
        raise UsageError(f"open_clip weights {str(path)!r} is not an existing local file; give "
                         f"the path of a downloaded .safetensors file (s2l-scan never downloads "
                         f"weights, and pretrained tags such as 'openai' are not accepted)")
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        if not allow_pickle:
            raise UsageError(f"open_clip weights {path}: pickled weights can run arbitrary code "
                             f"when loaded, so s2l-scan refuses them. Convert them to "
                             f".safetensors, or pass {PICKLE_OPT_IN} to read them with "
                             f"torch.load(weights_only=True)")
    elif suffix not in _SAFE_SUFFIXES:
        raise UsageError(f"open_clip weights {path}: unknown file type {suffix or '(none)'!r}; "
                         f"expected .safetensors (or, with {PICKLE_OPT_IN}, one of "
                         f"{', '.join(PICKLE_SUFFIXES)})")
    return path.resolve()  # absolute: open_clip would read a bare name as a pretrained tag


def _check_arch(arch: str) -> dict[str, Any]:
    import open_clip

    known = open_clip.list_models()
    if arch not in known:
        near = difflib.get_close_matches(arch, known, n=3)
        hint = f" Closest: {', '.join(near)}." if near else ""
        raise UsageError(f"unknown open_clip architecture {arch!r}.{hint} List the known ones "
                         f"with: {_LIST_HINT}")
    config = open_clip.get_model_config(arch) or {}
    if "hf_model_name" in config.get("text_cfg", {}):
        raise UsageError(f"open_clip architecture {arch!r} builds its text tower from a Hugging "
                         f"Face model ({config['text_cfg']['hf_model_name']}), which would be "
                         f"downloaded; pick an architecture with a built-in text tower")
    return config


def _load_open_clip(arch: str, path: Path, allow_pickle: bool, device: str
                    ) -> tuple[Any, Callable[[Any], Any]]:
    from s2l_scan.io.model import _offline

    weights = _check_weights_path(path, allow_pickle)
    _check_arch(arch)
    _offline()
    import open_clip

    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            arch, pretrained=str(weights), device=device, weights_only=True,
            pretrained_image=False, pretrained_text=False, load_weights=True)
    except Exception as exc:  # open_clip raises RuntimeError, AssertionError, KeyError, ...
        detail = " ".join(str(exc).split())
        detail = detail if len(detail) <= 300 else detail[:300] + "…"
        raise ScanError(f"open_clip could not load {weights} as architecture {arch!r} "
                        f"({type(exc).__name__}: {detail}); check that the weights file was "
                        f"saved from this architecture") from exc
    model.eval()
    return model, preprocess


# ---------------------------------------------------------------------------------------------
# registry


@dataclass(frozen=True)
class _Kind:
    syntax: str
    check: Callable[[str], None]
    make: Callable[[str, bool, int, str], Embedder]


def _check_pixels(rest: str) -> None:
    if rest:
        raise UsageError(f"embedder 'pixels:{rest}' takes no argument; use 'pixels'")


def _make_pixels(rest: str, allow_pickle: bool, embed_size: int, device: str) -> Embedder:
    _check_pixels(rest)
    return PixelEmbedder(embed_size)


def _make_open_clip(rest: str, allow_pickle: bool, embed_size: int, device: str) -> Embedder:
    arch, path = _parse_open_clip(rest)
    return OpenClipEmbedder(arch, path, allow_pickle=allow_pickle, device=device)


def _check_open_clip(rest: str) -> None:
    _parse_open_clip(rest)


EMBEDDERS: dict[str, _Kind] = {
    "pixels": _Kind("pixels", _check_pixels, _make_pixels),
    "open_clip": _Kind("open_clip:ARCH:PATH", _check_open_clip, _make_open_clip),
}


def _split(spec: object) -> tuple[_Kind, str]:
    if not isinstance(spec, str) or not spec.strip():
        raise UsageError(f"embedder must be a non-empty string, got {spec!r}; known: "
                         f"{', '.join(k.syntax for k in EMBEDDERS.values())}")
    kind, _, rest = spec.strip().partition(":")
    if kind not in EMBEDDERS:
        raise UsageError(f"unknown embedder {spec!r}; known: "
                         f"{', '.join(k.syntax for k in EMBEDDERS.values())}")
    return EMBEDDERS[kind], rest


def check_embedder_spec(spec: object) -> None:
    """Syntax check only (cheap, no imports): for config validation."""
    kind, rest = _split(spec)
    kind.check(rest)


def check_embedder_inputs(spec: str, *, allow_pickle: bool = False) -> None:
    """Fail fast, before any compute: the spec's syntax, its weights file and architecture."""
    kind, rest = _split(spec)
    kind.check(rest)
    if kind is EMBEDDERS["open_clip"]:
        arch, path = _parse_open_clip(rest)
        _check_weights_path(path, allow_pickle)
        _check_arch(arch)


def make_embedder(spec: str, *, allow_pickle: bool = False, embed_size: int = 8,
                  device: str = "cpu") -> Embedder:
    """The embedder for ``spec``; loading errors are :class:`UsageError` / :class:`ScanError`.

    >>> make_embedder("pixels").fingerprint()
    'pixels:embed_size=8'
    """
    kind, rest = _split(spec)
    return kind.make(rest, allow_pickle, embed_size, device)

