"""Which weight files of a diffusers folder a load reads: exactly those, and only those, are
checked, hashed, listed in the report and part of ``model_hash``.

A release folder often holds more than one copy of the weights (a full clone of an SD-1.5
repository has ``.fp16``, ``.non_ema`` and pickled copies beside the plain safetensors), and
some ship only a variant (``model.fp16.safetensors``) or shards with an index. diffusers loads
one set per component, by rules this module mirrors (diffusers 0.3x–0.4x, transformers 4–5):

* the pipeline is loaded with one ``variant`` (or none); a component loads that variant when one
  of its files is named ``<stem>.<variant>…`` (``_identify_model_variants``: the second dotted
  part starts with the variant), otherwise its plain files;
* a diffusers model (UNet, VAE) reads ``diffusion_pytorch_model.safetensors.index[.v].json``
  (or the legacy ``….safetensors.v.index.json``) and its shards when present, otherwise
  ``diffusion_pytorch_model[.v].safetensors`` (``ModelMixin.from_pretrained``);
* a transformers model (text encoders) reads ``model[.v].safetensors`` when present, otherwise
  ``model.safetensors.index[.v].json`` and its shards (``PreTrainedModel.from_pretrained``);
* pickled weights (``.bin``) only when a component has no safetensors and the caller allows it.

The variant s2l-scan asks for is the one the folder needs: none when every component has plain
weights, else the one variant every component without plain weights has
(:func:`choose_variant`); the user never has to name it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from s2l_scan.errors import ModelLoadError

# Pickled weight files (torch.load runs code): refused unless the user opts in.
PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl", ".pickle")
PICKLE_OPT_IN = "--allow-pickle (pytest: --s2l-allow-pickle)"

# library → (weight stem, index-first?) for safetensors, and the pickled fallback's stem
_SAFE = {"diffusers": ("diffusion_pytorch_model", True), "transformers": ("model", False)}
_PICKLED = {"diffusers": "diffusion_pytorch_model", "transformers": "pytorch_model"}
_WEIGHT_SUFFIXES = (".safetensors", ".bin")


def add_variant(name: str, variant: str | None) -> str:
    """``diffusion_pytorch_model.safetensors`` → ``diffusion_pytorch_model.fp16.safetensors``
    (both libraries' ``_add_variant``: the variant goes before the last suffix)."""
    if variant is None:
        return name
    head, _, suffix = name.rpartition(".")
    return f"{head}.{variant}.{suffix}"


def file_variant(name: str) -> str | None:
    """The variant a weight file belongs to, or None for a plain one:
    ``model.fp16.safetensors`` → ``fp16``, ``diffusion_pytorch_model.fp16-00001-of-00003.
    safetensors`` → ``fp16``, legacy ``…model-00001-of-00002.fp16.safetensors`` → ``fp16``."""
    if not name.endswith(_WEIGHT_SUFFIXES):
        return None
    parts = name.split(".")
    if len(parts) < 3:
        return None
    return parts[1].split("-")[0] or None


def component_uses_variant(folder: Path, variant: str | None) -> bool:
    """diffusers' ``_identify_model_variants`` for one component folder."""
    if variant is None:
        return False
    return any(len(p.name.split(".")) > 1 and p.name.split(".")[1].startswith(variant)
               for p in folder.iterdir())


def _from_index(index: Path) -> list[Path]:
    try:
        body = json.loads(index.read_text(encoding="utf-8"))
        shards = sorted(set(body["weight_map"].values()))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError,
            AttributeError) as error:
        raise ModelLoadError(f"{index}: not a readable shard index ({type(error).__name__}: "
                             f"{error}); it must map every weight to its shard file.") from None
    files = [index.parent / str(shard) for shard in shards]
    missing = [p.name for p in files if not p.is_file() or p.parent != index.parent]
    if missing:
        raise ModelLoadError(f"{index}: lists shard(s) {missing[:3]} that are not in "
                             f"{index.parent}; the download is incomplete.")
    return files


def _safetensors(folder: Path, library: str, variant: str | None) -> list[Path]:
    stem, index_first = _SAFE[library]
    single = folder / add_variant(f"{stem}.safetensors", variant)
    index = folder / add_variant(f"{stem}.safetensors.index.json", variant)
    if not index.is_file() and variant is not None and library == "diffusers":
        index = folder / f"{stem}.safetensors.{variant}.index.json"  # legacy naming
    order = (index, single) if index_first else (single, index)
    for candidate in order:
        if candidate.is_file():
            return _from_index(candidate) if candidate.name.endswith(".json") else [candidate]
    return []


def _pickled(folder: Path, library: str, variant: str | None) -> list[Path]:
    stem = _PICKLED[library]
    single = folder / add_variant(f"{stem}.bin", variant)
    index = folder / add_variant(f"{stem}.bin.index.json", variant)
    if single.is_file():
        return [single]
    return _from_index(index) if index.is_file() else []


def loaded_files(folder: Path, library: str, variant: str | None, *, pickles: bool = False
                 ) -> list[Path]:
    """The files ``library`` reads from a component ``folder`` loaded with the pipeline's
    ``variant`` (none when the component has no file of that variant); empty when there is
    none. ``pickles``: fall back to ``.bin`` weights when there are no safetensors."""
    if library not in _SAFE:
        raise ModelLoadError(f"{folder}: weights of a {library} component cannot be resolved.")
    used = variant if component_uses_variant(folder, variant) else None
    files = _safetensors(folder, library, used)
    if not files and pickles:
        files = _pickled(folder, library, used)
    return files


def choose_variant(root: Path, components: dict[str, str], *, pickles: bool = False
                   ) -> str | None:
    """The variant to load ``root`` with: None when every component (name → library) has
    plain weights (plain pickles count only when ``pickles`` are allowed), else the one
    variant that every component lacking them has."""
    lacking = {name: library for name, library in components.items()
               if not loaded_files(root / name, library, None, pickles=pickles)}
    if not lacking:
        return None
    shared: set[str] | None = None
    for name, library in lacking.items():
        folder = root / name
        offered = {v for p in folder.iterdir() if (v := file_variant(p.name)) is not None
                   and loaded_files(folder, library, v, pickles=pickles)}
        shared = offered if shared is None else shared & offered
        if not offered:
            return None  # the caller names the component with no weights
    if shared is not None and len(shared) == 1:
        return shared.pop()
    names = sorted(lacking)
    raise ModelLoadError(
        f"{root}: component(s) {names} have no plain weights, and no single variant serves "
        f"them all (found {sorted(shared or [])}); diffusers loads one variant per pipeline. "
        "Keep one variant's files (e.g. only *.fp16.safetensors), or add the plain weights.")


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, streamed (weights can be several GB)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()
