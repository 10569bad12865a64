"""Fuse adapters (LoRA and kin) into a loaded pipeline, and prove that they changed it.

An adapter is a folder or a bare ``.safetensors`` file, in one of the formats people share:

* ``diffusers``: ``pytorch_lora_weights.safetensors`` (keys ``unet.…lora_A.weight``, or the
  older ``…to_q_lora.down.weight``), fused by diffusers' ``load_lora_weights``;
* ``kohya``: the kohya-ss / civitai layout (``lora_unet_…lora_down.weight`` with ``.alpha``),
  converted and fused by diffusers;
* ``peft``: ``adapter_model.safetensors`` + ``adapter_config.json`` as ``PeftModel.save_pretrained``
  writes them, LoRA, LoHa or LoKr (peft's own types), fused by peft into the component whose
  module names the adapter's keys match.

LyCORIS LoHa / LoKr files in kohya naming (``hada_w1_a``, ``lokr_w1``) are refused by name: no
library here reads them, and guessing their maths would be a silent wrong answer.

Every adapter is verified: each layer it was placed in is fingerprinted before and after fusing,
and an adapter that changed none is refused ("matched no layer of this model"). diffusers skips
keys it cannot place with a log warning only, which is how a peft folder used to be "applied"
while the scan measured the base model.

Every fused LoRA layer is also checked *by how much* it changed: its measured delta against the
format's own maths, ``weight · alpha / rank · up @ down`` with the layer's own alpha read from
the file (kohya ``.alpha`` keys, peft ``lora_alpha`` / ``alpha_pattern``). A library's
conversion that gives a layer another's scale is a named refusal, never a silent scale. kohya
files are handed to diffusers with each layer's ``alpha / rank`` folded into its ``lora_down``
(and no ``.alpha`` keys): diffusers 0.3x–0.4x looks alphas up by splitting names on ``.lora.``,
which kohya attention names lack, so files whose alphas differ between layers (LoCon
``block_alphas``, ``resize_lora.py --dynamic_method``) were fused at 0.5× / 0.25× on some layers.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from s2l_scan.errors import ModelLoadError, UnsafeCheckpointError, UsageError
from s2l_scan.io.weights import PICKLE_SUFFIXES, sha256_file

PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
PEFT_TYPES = ("LORA", "LOHA", "LOKR")
FORMATS = ("diffusers", "kohya", "peft", "textual-inversion")
NO_MATCH = "the adapter matched no layer of this model"
# key fragments of LyCORIS algorithms that no library here can fuse from a bare file
_LYCORIS = {"hada_w1": "LyCORIS LoHa", "lokr_w1": "LyCORIS LoKr", "oft_blocks": "LyCORIS OFT",
            "oft_diag": "LyCORIS OFT", "lora_mid": "LyCORIS LoCon (Tucker)",
            "diff_b": "LyCORIS full/diff", "dora_scale": "DoRA (kohya naming)"}


@dataclass(frozen=True)
class AdapterSpec:
    """One adapter to fuse: its path and weight (``PATH`` or ``PATH:WEIGHT``)."""

    path: Path
    weight: float = 1.0

    @classmethod
    def parse(cls, text: str | Path) -> AdapterSpec:
        """``lora.safetensors:0.8`` → (lora.safetensors, 0.8); a plain path has weight 1.

        A path that exists as given wins over a ``PATH:WEIGHT`` reading (a folder named
        ``v1:2.0`` is that folder at weight 1, never ``v1`` at 2.0); given both, ``v1:2.0:1.5``
        is that folder at 1.5. Text after the last ':' that is not a number is a usage error
        when the whole text is no existing path (``X:abc``)."""
        text = str(text)
        head, sep, tail = text.rpartition(":")
        if not sep or not head or Path(text).exists():
            return cls(Path(text))
        try:
            weight = float(tail)
        except ValueError:
            if "/" in tail or "\\" in tail:  # e.g. C:/x/lora: a path, judged when it loads
                return cls(Path(text))
            raise UsageError(f"--lora {text}: no such file or folder, and {tail!r} after the "
                             f"last ':' is not a weight (PATH:WEIGHT, e.g. {head}:0.8)."
                             ) from None
        if weight != weight or weight in (float("inf"), float("-inf")):
            raise UsageError(f"--lora {text}: the weight after ':' must be a finite number.")
        return cls(Path(head), weight)


@dataclass(frozen=True)
class AppliedAdapter:
    """What the report records of one fused adapter."""

    path: str
    format: str
    weight: float
    sha256: str
    file: str
    layers_changed: int
    tokens: tuple[str, ...] = ()  # a textual inversion's tokens, as prompts write them

    def to_dict(self) -> dict[str, Any]:
        body = {"path": self.path, "format": self.format, "weight": self.weight,
                "sha256": self.sha256, "file": self.file, "layers_changed": self.layers_changed}
        return {**body, "tokens": list(self.tokens)} if self.tokens else body


@dataclass(frozen=True)
class _Found:
    weights: Path  # the safetensors file
    format: str
    config: Path | None = None  # adapter_config.json (peft)


def _keys(path: Path) -> list[str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return list(handle.keys())
    except Exception as error:  # safetensors raises its own untyped errors
        raise ModelLoadError(f"{path}: not a valid safetensors file ({error}). The file may be "
                             "truncated or corrupted; re-export or re-download it.") from None


def _refuse_pickle(path: Path) -> None:
    raise UnsafeCheckpointError(f"{path}: a pickled adapter can run arbitrary code when loaded; "
                                "s2l-scan reads adapters only as .safetensors. Convert it.")


def _classify(path: Path) -> str:
    keys = _keys(path)
    if not keys:
        raise ModelLoadError(f"{path}: the adapter file holds no tensors.")
    for fragment, name in _LYCORIS.items():
        if any(fragment in key for key in keys):
            raise ModelLoadError(
                f"{path}: a {name} adapter ({fragment}* weights in kohya naming). s2l-scan fuses "
                "LoRA in diffusers, peft or kohya format, and LoHa / LoKr only as a peft adapter "
                f"folder ({PEFT_WEIGHTS} + {PEFT_CONFIG} with peft_type LOHA or LOKR). Convert "
                "it, or scan the model with the adapter already merged.")
    from s2l_scan.io.embeddings import is_embedding

    if is_embedding(keys):
        return "textual-inversion"
    if any(key.startswith("base_model.model.") for key in keys):
        raise ModelLoadError(f"{path}: peft adapter weights without their {PEFT_CONFIG}; peft "
                             "needs it for the adapter's rank and scale. Pass the folder that "
                             "holds both.")
    if any(key.startswith(("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_")) for key in keys):
        return "kohya"
    return "diffusers"


def find_adapter(path: Path) -> tuple[Path, str, Path | None]:
    """(weights file, format, peft config or None) of an adapter folder or bare file."""
    if path.is_dir():
        weights = path / PEFT_WEIGHTS
        if (path / PEFT_CONFIG).is_file() and weights.is_file():
            _keys(weights)
            return weights, "peft", path / PEFT_CONFIG
        files = sorted(path.glob("*.safetensors"))
        if not files:
            pickles = [p for p in path.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES]
            culprit = f" (found pickled {pickles[0].name}; convert it)" if pickles else ""
            raise ModelLoadError(f"{path}: no *.safetensors LoRA weights{culprit}.")
        if len(files) > 1:
            raise ModelLoadError(f"{path}: several .safetensors files {[p.name for p in files]};"
                                 " keep exactly one adapter per folder, or pass the file.")
        return files[0], _classify(files[0]), None
    if path.is_file():
        if path.suffix.lower() in PICKLE_SUFFIXES:
            _refuse_pickle(path)
        if path.suffix.lower() != ".safetensors":
            raise ModelLoadError(f"{path}: not an adapter; expected a .safetensors file or an "
                                 "adapter folder.")
        if path.name == PEFT_WEIGHTS and (path.parent / PEFT_CONFIG).is_file():
            return find_adapter(path.parent)
        return path, _classify(path), None
    raise ModelLoadError(f"{path}: no such adapter file or folder.")


# --- fingerprints: which layers did fusing change ---

def _modules(pipeline: Any) -> dict[str, Any]:
    import torch

    components = getattr(pipeline, "components", {}) or {}
    return {name: module for name, module in sorted(components.items())
            if isinstance(module, torch.nn.Module)}


def layer_print(layer: Any) -> str:
    """A digest of a layer's own floating tensors (weight, bias), bytes and all."""
    import torch

    digest = hashlib.blake2b(digest_size=16)
    for key, tensor in sorted(layer.state_dict().items()):
        if tensor.is_floating_point():
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().contiguous().reshape(-1)
                          .view(torch.uint8).numpy().data)
    return digest.hexdigest()


def _adapted_layers(pipeline: Any) -> dict[str, Any]:
    """``component.module`` → each peft adapter layer now injected in the pipeline: the
    layers fusing may change, and the only ones it can."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return {f"{name}.{path}": layer for name, module in _modules(pipeline).items()
            for path, layer in module.named_modules() if isinstance(layer, BaseTunerLayer)}


def _layer_at(pipeline: Any, name: str) -> Any:
    component, _, path = name.partition(".")
    return _modules(pipeline)[component].get_submodule(path)


_TARGET = re.compile(r"(\.lora_[AB]\b|\.lora_(down|up|mid)\b|[._]lora\.(down|up)\b|\.alpha$|"
                     r"\.lora_magnitude_vector|\.dora_scale|\.(hada|lokr)_\w+)")


def targeted_layers(keys: list[str]) -> list[str]:
    """The distinct layers an adapter's tensors update (``…to_q.lora_A.weight`` → ``…to_q``)."""
    return sorted({_TARGET.split(key, maxsplit=1)[0] for key in keys if _TARGET.search(key)})


# --- magnitudes: did each layer change by the format's own maths ---

@dataclass(frozen=True)
class _Factors:
    """One layer's update as the file states it: ``scale · up @ down`` (scale = alpha / rank)."""

    stem: str
    up: Any
    down: Any
    scale: float


# kohya, peft / diffusers, diffusers' older text-encoder and attention-processor names
_DOWN = re.compile(r"(\.lora_down|\.lora_A|\.lora_linear_layer\.down|[._]lora\.down)"
                   r"(\.weight)?$")


def _pattern_value(patterns: dict[str, Any], module: str, default: float) -> float:
    r"""peft's ``alpha_pattern`` / ``rank_pattern`` lookup: a key matches a module name ending
    with it (``(.*\.)?KEY$``)."""
    for pattern, value in patterns.items():
        if re.fullmatch(rf"(.*\.)?{pattern}", module):
            return float(value)
    return default


def _scale_rule(form: str, weights: Path, config: Path | None) -> Any:
    """``(module, rank, file alpha) → alpha / rank`` by the format's own convention."""
    body: dict[str, Any] = {}
    if config is not None:
        body = json.loads(config.read_text(encoding="utf-8"))
    elif form == "diffusers":  # diffusers >= 0.34 writes the peft config into the metadata
        from safetensors import safe_open

        with safe_open(str(weights), framework="pt") as handle:
            meta = (handle.metadata() or {}).get("lora_adapter_metadata")
        body = json.loads(meta) if meta else {}

    def rule(module: str, rank: int, alpha: float | None) -> float:
        if alpha is not None:  # an .alpha key: kohya, or diffusers' network alphas
            return (alpha if alpha != 0 else rank) / rank
        if not body:
            return 1.0  # kohya: no alpha means alpha = rank; diffusers/peft: lora_alpha = r
        own = _pattern_value(body.get("alpha_pattern") or {}, module,
                             float(body.get("lora_alpha", body.get("r", rank))))
        return own / (rank ** 0.5 if body.get("use_rslora") else rank)
    return rule


def file_factors(weights: Path, form: str, config: Path | None) -> list[_Factors]:
    """Every LoRA layer's ``(up, down, alpha / rank)`` as the adapter file states them."""
    from safetensors.torch import load_file

    state = load_file(weights)
    rule = _scale_rule(form, weights, config)
    factors: list[_Factors] = []
    for key, down in state.items():
        found = _DOWN.search(key)
        if not found:
            continue
        stem = key[:found.start()]
        up_key = stem + found[1].replace("down", "up").replace("lora_A", "lora_B") + (
            found[2] or "")
        if up_key not in state:
            continue
        alpha = state.get(f"{stem}.alpha")
        module = re.sub(r"^(base_model\.model|unet|text_encoder(_2)?)\.", "", stem)
        factors.append(_Factors(stem, state[up_key], down, rule(
            module, int(down.shape[0]), None if alpha is None else float(alpha))))
    return factors


def _values_key(tensor: Any, dtype: Any) -> tuple[int, str]:
    """A tensor's values (cast to ``dtype``, any shape) as a lookup key."""
    flat = tensor.detach().to(dtype).float().cpu().contiguous().reshape(-1)
    return flat.numel(), hashlib.blake2b(flat.numpy().tobytes(), digest_size=16).hexdigest()


@dataclass(frozen=True)
class _Watched:
    """A LoRA layer before fusing: its weight then, and the file's factors its ``up`` is."""

    before: Any
    candidates: tuple[_Factors, ...]


def watch_magnitudes(layers: dict[str, Any], factors: list[_Factors], name: str
                     ) -> dict[str, _Watched]:
    """For each injected LoRA layer (not DoRA, whose update is renormalised): its weight
    before fusing and the file's factors whose ``up`` it holds, found by value, not by name,
    so a library's renaming cannot hide a misplaced scale."""
    by_up: dict[tuple[int, str], list[_Factors]] = {}
    watched: dict[str, _Watched] = {}
    for key, layer in layers.items():
        lora_b = getattr(layer, "lora_B", None)
        if lora_b is None or name not in lora_b or getattr(layer, "use_dora", {}).get(name):
            continue
        dtype = lora_b[name].weight.dtype
        if not by_up or next(iter(by_up.values()))[0].up.dtype != dtype:
            by_up = {}
            for factor in factors:
                by_up.setdefault(_values_key(factor.up, dtype), []).append(factor)
        watched[key] = _Watched(layer.get_base_layer().weight.detach().float().cpu().clone(),
                                tuple(by_up.get(_values_key(lora_b[name].weight, dtype), ())))
    return watched


def check_magnitudes(pipeline: Any, watched: dict[str, _Watched], weight: float, form: str,
                     adapter: Path) -> int:
    """Refuse, naming the layer, any fused LoRA layer whose change is not ``weight · alpha /
    rank · up @ down`` by the file's own numbers; returns how many layers were checked."""
    from s2l_scan.functional.lora import delta_error, lora_delta

    for key, seen in sorted(watched.items()):
        fused = _layer_at(pipeline, key).weight.detach()
        measured = fused.float().cpu() - seen.before
        errors = [(delta_error(measured, lora_delta(f.up, f.down, weight * f.scale,
                                                    measured.shape), fused.cpu()), f)
                  for f in seen.candidates
                  if f.up.shape[0] * f.down[0].numel() == measured.numel()]
        if not errors:
            raise ModelLoadError(
                f"{adapter}: layer {key} was changed by factors that are not in the {form} "
                "file, so its update cannot be checked against the file's maths. s2l-scan "
                "refuses it rather than scan a model nobody released.")
        error, best = min(errors, key=lambda pair: pair[0])
        if error > 1.0:
            expected = float(lora_delta(best.up, best.down, weight * best.scale,
                                        measured.shape).norm())
            ratio = float(measured.norm()) / expected if expected else float("inf")
            raise ModelLoadError(
                f"{adapter}: layer {key} changed by {ratio:.3g}× the update the {form} file "
                f"states for {best.stem} (weight {weight:g} · alpha/rank {best.scale:g} · "
                "up @ down). The library's conversion mis-scaled it; scanning on would "
                "measure a model nobody released. Merge the adapter with its trainer's own "
                "tool and scan the merged model.")
    return len(watched)


# --- fusing ---

def _split_param(name: str) -> tuple[str, str]:
    """``m.to_q.lora_A.s2l_scan_0.weight`` → (``m.to_q``, ``lora_A``)."""
    found = re.search(r"\.((lora|hada|lokr)_\w+?)(\.s2l_scan_\d+)?(\.weight)?$", name)
    return (name[:found.start()], found[1]) if found else (name, "weight")


def _shape(text: str) -> str:
    return "[" + text.removeprefix("torch.Size([").removesuffix("])") + "]"


def _mismatch(adapter: Path, error: Exception) -> ModelLoadError:
    text = str(error)
    found = re.search(r"size mismatch for ([\w.\[\]]+): copying a param with shape "
                      r"(torch\.Size\(\[[^\]]*\]\)) from checkpoint, the shape in current model "
                      r"is (torch\.Size\(\[[^\]]*\]\))", text)
    if found:
        layer, theirs, ours = found.groups()
        module, part = _split_param(layer)
        return ModelLoadError(
            f"{adapter}: the adapter does not fit this model: at layer {module} its {part} has "
            f"shape {_shape(theirs)} but this model needs {_shape(ours)}. It was made for "
            "another base model; scan it with the base it belongs to.")
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return ModelLoadError(f"{adapter}: could not fuse this adapter ({type(error).__name__}: "
                          f"{first[:400]}).")


def _load_with_diffusers(pipeline: Any, weights: Path, name: str, form: str) -> None:
    if form == "kohya":  # each layer's own alpha / rank, folded in (see the module docstring)
        from safetensors.torch import load_file

        pipeline.load_lora_weights(fold_kohya_alphas(load_file(weights)), adapter_name=name)
        return
    pipeline.load_lora_weights(str(weights.parent), weight_name=weights.name, adapter_name=name)


def fold_kohya_alphas(state: dict[str, Any]) -> dict[str, Any]:
    """A kohya state dict with each layer's ``alpha / rank`` multiplied into its ``lora_down``
    and the ``.alpha`` keys dropped: the same update (kohya's ``scale = alpha / lora_dim``;
    no alpha means alpha = rank), which no library can then misplace."""
    folded = {key: value for key, value in state.items() if not key.endswith(".alpha")}
    for key, down in state.items():
        if not key.endswith(".lora_down.weight"):
            continue
        alpha = state.get(key.removesuffix(".lora_down.weight") + ".alpha")
        if alpha is not None and float(alpha) != 0.0:  # sd-scripts: alpha 0 or None → rank
            folded[key] = down.float() * (float(alpha) / down.shape[0])
    return folded


def _merge_with_diffusers(pipeline: Any, weight: float, name: str) -> None:
    loaded = {n for names in pipeline.get_list_adapters().values() for n in names}
    if name in loaded:  # else diffusers placed no key: nothing changes, and that is refused
        pipeline.fuse_lora(lora_scale=weight, adapter_names=[name])
    pipeline.unload_lora_weights()


def _peft_target(pipeline: Any, keys: list[str]) -> tuple[str, Any]:
    """The component whose module names the most adapter keys match."""
    paths = {re.split(r"\.(lora_|hada_|lokr_|oft_|boft_|ia3_)", key.removeprefix(
        "base_model.model."), maxsplit=1)[0] for key in keys}
    best: tuple[int, str, Any] | None = None
    for name, module in _modules(pipeline).items():
        names = {n for n, _ in module.named_modules()}
        hits = len(paths & names)
        if hits and (best is None or hits > best[0]):
            best = (hits, name, module)
    if best is None:
        raise ModelLoadError(f"{NO_MATCH} (none of its {len(paths)} target module(s), e.g. "
                             f"{sorted(paths)[0]!r}, is a module of {sorted(_modules(pipeline))}).")
    return best[1], best[2]


def _load_with_peft(pipeline: Any, weights: Path, config_file: Path, name: str) -> Any:
    """Inject the adapter into the component it names; returns that component."""
    from peft import PeftConfig, inject_adapter_in_model, set_peft_model_state_dict
    from safetensors.torch import load_file

    try:
        body = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelLoadError(f"{config_file}: not readable JSON ({error}).") from None
    kind = str(body.get("peft_type", "")).upper()
    if kind not in PEFT_TYPES:
        raise ModelLoadError(f"{config_file}: peft_type {body.get('peft_type')!r}; s2l-scan fuses "
                             f"{list(PEFT_TYPES)} adapters.")
    if body.get("modules_to_save"):
        raise ModelLoadError(f"{config_file}: modules_to_save {body['modules_to_save']} (whole "
                             "layers stored beside the adapter) is not supported; merge them "
                             "into the model first.")
    for field in ("base_model_name_or_path", "revision", "auto_mapping"):
        body.pop(field, None)  # never fetch or resolve anything named there
    try:
        config = PeftConfig.from_peft_type(**body)
    except (TypeError, ValueError) as error:
        raise ModelLoadError(f"{config_file}: not a valid {kind} config ({error}).") from None
    state = load_file(weights)
    _check_peft_ranks(body, state, config_file)
    _, module = _peft_target(pipeline, list(state))
    state = {k.removeprefix("base_model.model."): v for k, v in state.items()}
    inject_adapter_in_model(config, module, adapter_name=name)
    set_peft_model_state_dict(module, state, adapter_name=name)
    return module


def _check_peft_ranks(body: dict[str, Any], state: dict[str, Any], config_file: Path) -> None:
    """A rank the config claims (``r``, ``rank_pattern``, LoKr's ``decompose_factor`` aside) is
    at most the largest side of any tensor the adapter holds: peft allocates every layer at the
    claimed rank before it reads a weight (a rank of 3·10⁷ grew past 4 GB)."""
    largest = max((max(tensor.shape, default=1) for tensor in state.values()), default=0)
    claims: list[tuple[str, Any]] = [("r", body.get("r"))]
    pattern = body.get("rank_pattern")
    if isinstance(pattern, dict):
        claims += [(f"rank_pattern[{key!r}]", value) for key, value in pattern.items()]
    for field, value in claims:
        if isinstance(value, int) and not isinstance(value, bool) and value > largest:
            raise ModelLoadError(f"{config_file}: {field} is {value}, but no tensor of the "
                                 f"adapter has a side longer than {largest}; the config "
                                 "claims a rank its weights do not have.")


def _merge_with_peft(module: Any, weight: float, name: str) -> None:
    """Scale, merge and unload (peft's merge_and_unload, on a plain module)."""
    try:
        for _, _, layer in _tuner_layers(module):
            layer.scale_layer(weight)
            layer.merge(adapter_names=[name])
    finally:  # back to plain layers, the merged weights in them
        for parent, child_name, layer in _tuner_layers(module):
            setattr(parent, child_name, layer.get_base_layer())
        if isinstance(getattr(module, "peft_config", None), dict):
            module.peft_config.pop(name, None)


def _tuner_layers(module: Any) -> list[tuple[Any, str, Any]]:
    """(parent, attribute, layer) of every peft adapter layer injected in ``module``."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [(parent, child_name, child) for parent in list(module.modules())
            for child_name, child in list(parent.named_children())
            if isinstance(child, BaseTunerLayer)]


def _embed(pipeline: Any, spec: AdapterSpec, weights: Path) -> AppliedAdapter:
    """A textual-inversion file given as ``--lora``: its token(s) added and verified."""
    from s2l_scan.io.embeddings import apply_embedding

    if spec.weight != 1.0:
        raise UsageError(f"--lora {spec.path}:{spec.weight:g}: a textual-inversion embedding "
                         "has no weight; pass it without ':WEIGHT'.")
    tokens = apply_embedding(pipeline, weights)  # its errors name the file
    return AppliedAdapter(str(spec.path), "textual-inversion", 1.0, sha256_file(weights),
                          weights.name, len(tokens), tuple(tokens))


def fuse_adapters(pipeline: Any, specs: list[AdapterSpec]) -> list[AppliedAdapter]:
    """Fuse each adapter into ``pipeline`` (in order, each at its weight); refuse one that
    changes no weight, or that does not fit the model, naming it."""
    applied: list[AppliedAdapter] = []
    for number, spec in enumerate(specs):
        weights, form, config = find_adapter(spec.path)
        if form == "textual-inversion":
            applied.append(_embed(pipeline, spec, weights))
            continue
        name = f"s2l_scan_{number}"
        try:
            if form == "peft":
                assert config is not None
                module = _load_with_peft(pipeline, weights, config, name)
            else:
                _load_with_diffusers(pipeline, weights, name, form)
            # fingerprints of the layers the adapter was placed in, before and after fusing
            layers = _adapted_layers(pipeline)
            before = {key: layer_print(layer.get_base_layer()) for key, layer in layers.items()}
            watched = watch_magnitudes(layers, file_factors(weights, form, config), name)
            if form == "peft":
                _merge_with_peft(module, spec.weight, name)
            else:
                _merge_with_diffusers(pipeline, spec.weight, name)
        except ModelLoadError as error:
            raise ModelLoadError(f"{spec.path}: {error}") from None
        except Exception as error:  # diffusers / peft raise many unrelated types
            raise _mismatch(spec.path, error) from None
        if _adapted_layers(pipeline):
            raise ModelLoadError(f"{spec.path}: adapter layers are left after fusing; "
                                 "s2l-scan scans plain, merged weights only.")
        changed = sorted(key for key in before
                         if layer_print(_layer_at(pipeline, key)) != before[key])
        targeted = targeted_layers(_keys(weights))
        if changed and len(changed) < len(targeted):
            short = {name.split(".", 1)[-1] for name in changed}
            missed = [t for t in targeted if t.split(".", 1)[-1] not in short
                      and t.removeprefix("base_model.model.") not in short]
            example = f" (e.g. {missed[0]!r})" if missed else ""
            raise ModelLoadError(
                f"{spec.path}: only {len(changed)} of the {len(targeted)} layers this {form} "
                f"adapter updates changed in this model; the others{example} name no layer of "
                "it (or hold an all-zero update). Fusing part of an adapter would scan a model "
                "nobody released; use the base model it was made for.")
        if not changed:
            raise ModelLoadError(
                f"{spec.path}: {NO_MATCH} ({form} format: none of its weights names a layer "
                "of this model, so fusing it changed nothing). It was made for another base "
                "model or in a layout s2l-scan does not read; scanning on would measure the "
                "base model, not the adapted one.")
        check_magnitudes(pipeline, watched, spec.weight, form, spec.path)
        applied.append(AppliedAdapter(str(spec.path), form, spec.weight, sha256_file(weights),
                                      weights.name, len(changed)))
    return applied
