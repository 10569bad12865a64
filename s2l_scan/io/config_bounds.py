"""Config sizes bounded before anything is allocated: against the weights actually present.

A config file is a few bytes that can claim any size: a UNet ``block_out_channels`` of 10⁵
(149 GiB of parameters), a tokenizer ``model_max_length`` of 10⁹ (every prompt padded to it), a
``sample_size`` of 10⁶ (every audit image resized to 8·10⁶ pixels), a peft adapter of rank
3·10⁷. Each is refused here, naming the file and the field, before diffusers, transformers or
peft build a module from it:

* each weighted component is built on the ``meta`` device (shapes, no memory) and every
  parameter's shape compared with the shape its safetensors file holds (headers only);
* sizes no weight holds (the UNet's ``sample_size``, the tokenizer's ``model_max_length``)
  are bounded by the text encoder's position table and a fixed pixel limit;
* a counted field (layers, blocks) is bounded before the meta build, which would otherwise
  spend its time creating millions of empty modules.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from s2l_scan.errors import ModelLoadError

MAX_SAMPLE_SIZE = 512
"""Largest UNet ``sample_size`` (latent side) accepted: 4096 pixels at the usual VAE factor of 8
(SD-1.x is 64, SD-2.x 96, SDXL 128)."""

MAX_COUNT = 1024
"""Largest layer or block count a config may claim (SD and SDXL use at most a few dozen)."""

_COUNTED = ("layers_per_block", "num_hidden_layers", "transformer_layers_per_block")
"""Config fields whose every value counts modules."""
_LISTED = ("down_block_types", "up_block_types", "block_out_channels", "attention_head_dim",
           "num_attention_heads")
"""Config fields whose length counts blocks (their values are sizes: checked by shape)."""


def _shapes(files: Iterable[Path]) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape in ``files``, read from the safetensors headers only."""
    from safetensors import safe_open

    shapes: dict[str, tuple[int, ...]] = {}
    for path in files:
        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 - safe_open handles are not iterable
                shapes[key] = tuple(handle.get_slice(key).get_shape())
    return shapes


def _counts(value: Any) -> list[int]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, list | tuple):
        return [len(value), *(n for item in value for n in _counts(item))]
    return []


def _check_counts(config: dict[str, Any], where: Path) -> None:
    for field in (*_COUNTED, *_LISTED):
        value = config.get(field)
        counts = _counts(value) if field in _COUNTED else \
            [len(value)] if isinstance(value, list | tuple) else []
        if any(n > MAX_COUNT or n < 0 for n in counts):
            raise ModelLoadError(f"{where}: {field} is {str(value)[:80]}; s2l-scan accepts at "
                                 f"most {MAX_COUNT} layers or blocks before building the "
                                 "model. The config is damaged or not this model's.")


def _meta_shapes(folder: Path, library: str, class_name: str) -> dict[str, tuple[int, ...]]:
    """Parameter shapes of the component the config in ``folder`` describes, built on the
    meta device (no memory)."""
    import importlib

    import torch

    cls = getattr(importlib.import_module(library), class_name)
    with torch.device("meta"):
        if library == "diffusers":
            model = cls.from_config(cls.load_config(folder))
        else:
            model = cls(cls.config_class.from_pretrained(folder))
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def check_component_sizes(folder: Path, library: str, class_name: str,
                          files: list[Path]) -> None:
    """A :class:`ModelLoadError` naming ``folder``'s config when the shapes it implies differ
    from those its safetensors ``files`` hold, or it claims far more parameters than they do."""
    where = folder / "config.json"
    try:
        config = json.loads(where.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # the loader names an unreadable config
    if not isinstance(config, dict):
        return
    _check_counts(config, where)
    present = _shapes(p for p in files if p.name.endswith(".safetensors"))
    if not present:
        return  # pickled weights (opt-in): no header to compare with
    try:
        expected = _meta_shapes(folder, library, class_name)
    except Exception as error:  # a config the class cannot take: the loader says why
        raise ModelLoadError(f"{where}: {class_name} cannot be built from it "
                             f"({type(error).__name__}: {str(error)[:200]}).") from None
    for key, shape in expected.items():
        if key in present and present[key] != shape:
            raise ModelLoadError(
                f"{where}: its sizes do not match the weights: {key} is {list(shape)} by the "
                f"config (block_out_channels, hidden_size, ...) but {list(present[key])} in "
                "the weight file. The config or the weights are damaged or not each other's; "
                "nothing was loaded.")
    claimed = sum(_numel(shape) for shape in expected.values())
    held = sum(_numel(shape) for shape in present.values())
    if claimed > 2 * held + 1_000_000:
        raise ModelLoadError(f"{where}: claims {claimed:,} parameters but its weight files "
                             f"hold {held:,}; the config is not these weights'.")


def _numel(shape: tuple[int, ...]) -> int:
    count = 1
    for side in shape:
        count *= side
    return count


def check_unbacked_sizes(root: Path, family_weights: Iterable[str]) -> None:
    """Sizes no weight file holds: the UNet's ``sample_size`` (a fixed pixel bound) and each
    tokenizer's ``model_max_length`` (its text encoder's position table)."""
    unet = _json(root / "unet" / "config.json")
    size = unet.get("sample_size")
    sides = size if isinstance(size, list) else [size]
    if any(isinstance(s, int) and not isinstance(s, bool) and s > MAX_SAMPLE_SIZE
           for s in sides):
        raise ModelLoadError(f"{root / 'unet' / 'config.json'}: sample_size is {size}; "
                             f"s2l-scan accepts at most {MAX_SAMPLE_SIZE} (latent side, "
                             f"{MAX_SAMPLE_SIZE * 8} pixels). Fix the config.")
    for tokenizer, encoder in (("tokenizer", "text_encoder"), ("tokenizer_2", "text_encoder_2")):
        if encoder not in family_weights:
            continue
        claimed = _json(root / tokenizer / "tokenizer_config.json").get("model_max_length")
        table = _json(root / encoder / "config.json").get("max_position_embeddings")
        if isinstance(claimed, int | float) and isinstance(table, int) and claimed > table:
            raise ModelLoadError(
                f"{root / tokenizer / 'tokenizer_config.json'}: model_max_length is {claimed}, "
                f"but {encoder} has {table} positions (max_position_embeddings); prompts "
                f"would be padded past what it can read. Set it to {table}.")


def _json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
