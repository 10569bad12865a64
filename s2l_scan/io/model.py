"""Load a checkpoint to scan: offline, safetensors-first, and never running the checkpoint's code.

Three forms are accepted (README, loading):

* a diffusers pipeline folder (``model_index.json``, ``unet/``, ``vae/``, ``text_encoder/``,
  ``tokenizer/``, ``scheduler/``; SDXL adds ``text_encoder_2/`` and ``tokenizer_2/``);
* a single-file ``.safetensors`` checkpoint plus a local diffusers config folder;
* either of those plus a LoRA adapter folder, fused into the weights before scanning.

Checkpoints are untrusted input. Before diffusers sees a folder, :func:`inspect_pipeline_folder`
checks that every component is a known library class (no custom or remote code) and that
weights are safetensors; pickled weights (``.bin``, ``.ckpt``, ``.pt``, ...) are refused unless the
caller opts in with ``allow_pickle=True``, and even then they are read only by loaders that use
``torch.load(weights_only=True)``. After loading, every weight is checked to be finite, and the
scheduler is checked to be one the attacks can interpret (:func:`check_scheduler`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from s2l_scan.errors import ModelLoadError, UnsafeCheckpointError
from s2l_scan.io.config_bounds import check_component_sizes, check_unbacked_sizes
from s2l_scan.io.weights import (
    PICKLE_OPT_IN,
    PICKLE_SUFFIXES,
    add_variant,
    choose_variant,
    loaded_files,
    sha256_file,
)

# PICKLE_SUFFIXES, PICKLE_OPT_IN and sha256_file live in io/weights.py (below io/adapters.py,
# which needs them); imported here, they keep the old `from s2l_scan.io.model import ...` paths.
WEIGHT_COMPONENTS = ("unet", "vae", "text_encoder")
REQUIRED_COMPONENTS = (*WEIGHT_COMPONENTS, "tokenizer", "scheduler")


@dataclass(frozen=True)
class Family:
    """A model family s2l-scan scans: its diffusers pipeline class and its components."""

    name: str  # "sd" | "sdxl" (s2l_scan.conditioning.FAMILIES)
    weights: tuple[str, ...]  # components with weight files
    required: tuple[str, ...]  # components a folder must list and hold


FAMILIES_BY_PIPELINE = {
    "StableDiffusionPipeline": Family("sd", WEIGHT_COMPONENTS, REQUIRED_COMPONENTS),
    "StableDiffusionXLPipeline": Family(
        "sdxl", (*WEIGHT_COMPONENTS, "text_encoder_2"),
        (*REQUIRED_COMPONENTS, "text_encoder_2", "tokenizer_2")),
}
SUPPORTED_PIPELINES = tuple(FAMILIES_BY_PIPELINE)
_SCHEDULERS = (
    "DDIMScheduler", "DDPMScheduler", "PNDMScheduler", "LMSDiscreteScheduler",
    "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler", "DPMSolverMultistepScheduler",
    "DPMSolverSinglestepScheduler", "UniPCMultistepScheduler", "HeunDiscreteScheduler",
    "KDPM2DiscreteScheduler", "KDPM2AncestralDiscreteScheduler", "DEISMultistepScheduler",
)
ALLOWED_CLASSES: dict[str, set[tuple[str, str]]] = {
    "unet": {("diffusers", "UNet2DConditionModel")},
    "vae": {("diffusers", "AutoencoderKL")},
    "text_encoder": {("transformers", "CLIPTextModel")},
    "text_encoder_2": {("transformers", "CLIPTextModelWithProjection")},
    "tokenizer": {("transformers", "CLIPTokenizer"), ("transformers", "CLIPTokenizerFast")},
    "tokenizer_2": {("transformers", "CLIPTokenizer"), ("transformers", "CLIPTokenizerFast")},
    "scheduler": {("diffusers", name) for name in _SCHEDULERS},
}
# Components a scan never needs; listed so they are skipped rather than refused.
IGNORED_COMPONENTS = ("safety_checker", "feature_extractor", "image_encoder")


@dataclass(frozen=True)
class FolderReport:
    """What :func:`inspect_pipeline_folder` found: enough to load the folder safely."""

    root: Path
    pipeline_class: str
    variant: str | None
    safetensors: tuple[Path, ...]
    pickles: tuple[Path, ...] = field(default=())

    @property
    def family(self) -> Family:
        """The model family its pipeline class names."""
        return FAMILIES_BY_PIPELINE[self.pipeline_class]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if path.is_symlink():
            raise ModelLoadError(f"{path}: a broken link (to {os.readlink(path)}); the folder "
                                 "was copied without the files its links point to (a hub cache "
                                 "snapshot links into ../../blobs). Copy it with the links "
                                 "followed (cp -rL).") from None
        raise ModelLoadError(f"{path}: missing. A diffusers pipeline folder needs it.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelLoadError(f"{path}: not readable JSON ({error}).") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: expected a JSON object, got {type(data).__name__}.")
    return data


def _check_component_entry(root: Path, name: str, entry: Any) -> None:
    if name in IGNORED_COMPONENTS:
        return
    if not (isinstance(entry, list) and len(entry) == 2):
        raise ModelLoadError(f"{root / 'model_index.json'}: component {name!r} should be "
                             f"[library, class], got {entry!r}.")
    library, class_name = entry
    if name == "scheduler" and library == "diffusers" and is_diffusers_scheduler(class_name):
        return  # any scheduler diffusers ships; check_scheduler judges its noise model
    allowed = ALLOWED_CLASSES.get(name)
    if allowed is None:
        raise UnsafeCheckpointError(
            f"{root / 'model_index.json'}: unknown component {name!r} ({library}.{class_name}). "
            f"s2l-scan loads only {sorted(ALLOWED_CLASSES)} from known libraries, so that no "
            "code shipped with a checkpoint can run.")
    if (library, class_name) not in allowed:
        raise UnsafeCheckpointError(
            f"{root / 'model_index.json'}: component {name!r} is {library}.{class_name}; "
            f"expected one of {sorted(f'{a}.{b}' for a, b in allowed)}"
            f"{' or any scheduler class shipped in diffusers' if name == 'scheduler' else ''}. "
            "Custom or remote classes are refused because loading them would run code from "
            "the checkpoint.")


def is_diffusers_scheduler(name: object) -> bool:
    """Whether ``name`` names a scheduler class shipped in diffusers itself: loading one by
    name runs no code from the checkpoint (whether its noise model can be attacked is
    :func:`check_scheduler`'s question, not this one's)."""
    if not isinstance(name, str) or not name.isidentifier():
        return False
    import diffusers
    from diffusers.configuration_utils import ConfigMixin
    from diffusers.schedulers.scheduling_utils import SchedulerMixin

    try:
        cls = getattr(diffusers, name)
    except (AttributeError, ImportError, RuntimeError):  # unknown, or an optional dependency
        return False
    # a concrete scheduler is both mixins (SchedulerMixin alone is the abstract base)
    return (isinstance(cls, type) and issubclass(cls, SchedulerMixin)
            and issubclass(cls, ConfigMixin) and cls.__module__.startswith("diffusers."))


# The config files diffusers and transformers read for each component; any of them could ask
# for remote code (auto_map) or name a class to instantiate.
_CONFIG_FILES: dict[str, tuple[str, ...]] = {
    "unet": ("config.json",), "vae": ("config.json",), "text_encoder": ("config.json",),
    "text_encoder_2": ("config.json",), "scheduler": ("scheduler_config.json",),
    "tokenizer": ("tokenizer_config.json", "special_tokens_map.json"),
    "tokenizer_2": ("tokenizer_config.json", "special_tokens_map.json"),
}
# (file, key naming a class) → classes allowed there
_DECLARED_CLASSES: dict[tuple[str, str], set[str]] = {
    ("scheduler/scheduler_config.json", "_class_name"): set(_SCHEDULERS),
    ("tokenizer/tokenizer_config.json", "tokenizer_class"): {"CLIPTokenizer",
                                                             "CLIPTokenizerFast"},
    ("tokenizer_2/tokenizer_config.json", "tokenizer_class"): {"CLIPTokenizer",
                                                               "CLIPTokenizerFast"},
}


def _check_component_configs(root: Path, family: Family) -> None:
    """Refuse remote code (``auto_map``) and unknown classes in every config file loaded."""
    for name, files in _CONFIG_FILES.items():
        if name not in family.required:
            continue
        for file in files:
            path = root / name / file
            if file != "config.json" and not path.is_file():
                continue  # optional files; a missing config.json is reported by _read_json
            config = _read_json(path)
            if "auto_map" in config:
                raise UnsafeCheckpointError(f"{path}: declares auto_map (remote code); s2l-scan "
                                            "never runs code shipped with a model.")
            for (where, key), allowed in _DECLARED_CLASSES.items():
                declared = config.get(key)
                if where == f"{name}/{file}" and declared is not None and declared not in allowed \
                        and not (name == "scheduler" and is_diffusers_scheduler(declared)):
                    raise UnsafeCheckpointError(
                        f"{path}: {key} is {declared!r}; expected one of {sorted(allowed)}. "
                        "Custom classes are refused because loading them could run code "
                        "from the checkpoint.")


def _weight_files(folder: Path) -> tuple[list[Path], list[Path]]:
    files = sorted(p for p in folder.iterdir() if p.is_file())
    safetensors = [p for p in files if p.name.endswith(".safetensors")]
    pickles = [p for p in files if p.suffix.lower() in PICKLE_SUFFIXES]
    return safetensors, pickles


def _expected_weights(library: str, variant: str | None) -> str:
    stem = "diffusion_pytorch_model" if library == "diffusers" else "model"
    return f"{add_variant(stem + '.safetensors', variant)} or a shard index"


def _check_safetensors(path: Path) -> None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 - safe_open handles are not iterable
                handle.get_slice(key).get_shape()
    except Exception as error:  # safetensors raises its own untyped errors
        raise ModelLoadError(f"{path}: not a valid safetensors file ({error}). The file may be "
                             "truncated or corrupted; re-export or re-download it.") from None


def _explain_no_index(root: Path) -> None:
    """A folder without model_index.json that is something else people pass: a hub cache repo
    folder (``models--org--name``), or a single model such as a ControlNet; say which."""
    ref = root / "refs" / "main"
    if ref.is_file() and (root / "snapshots").is_dir():
        commit = ref.read_text(encoding="utf-8", errors="replace").strip()
        snapshot = root / "snapshots" / commit
        where = (f"pass its snapshot {snapshot}" if snapshot.is_dir() else
                 f"its refs/main names {commit[:40]!r}, which is not under snapshots/")
        raise ModelLoadError(f"{root}: a hugging-face hub cache repo folder, not a pipeline "
                             f"folder; {where}.")
    config = root / "config.json"
    if config.is_file():
        try:
            name = json.loads(config.read_text(encoding="utf-8")).get("_class_name")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            name = None
        if name:
            hint = (" A ControlNet steers a base pipeline; pass the base pipeline folder it "
                    "was trained on (s2l-scan scans the base text-to-image model)."
                    if "ControlNet" in str(name) else "")
            raise ModelLoadError(f"{root}: a single {name} (config.json), not a pipeline folder "
                                 f"with model_index.json.{hint}")


def _refuse_broken_links(root: Path) -> None:
    """Name a link in a component folder whose target is gone (a snapshot copied without its
    blobs), before diffusers reports it as a missing weight file."""
    for folder in [root, *(p for p in sorted(root.iterdir()) if p.is_dir())]:
        for path in sorted(folder.iterdir()):
            if path.is_symlink() and not path.exists():
                raise ModelLoadError(
                    f"{path}: a broken link (to {os.readlink(path)}); the folder was copied "
                    "without the files its links point to (a hub cache snapshot links into "
                    "../../blobs). Copy it with the links followed (cp -rL).")


def inspect_pipeline_folder(root: Path, *, allow_pickle: bool = False,
                            weights: bool = True) -> FolderReport:
    """Check a diffusers folder before loading it; raise with a clear message if it is unsafe.

    ``weights=False`` checks a config-only folder (for a single-file checkpoint): classes and
    configs are checked, weight files are neither required nor read.
    """
    root = Path(root)
    if not root.is_dir():
        raise ModelLoadError(f"{root}: not a folder. Expected a diffusers pipeline folder with "
                             "model_index.json, or pass a .safetensors file with a config folder.")
    if not (root / "model_index.json").exists():
        _explain_no_index(root)
    index = _read_json(root / "model_index.json")
    _refuse_broken_links(root)
    pipeline_class = index.get("_class_name")
    if pipeline_class not in SUPPORTED_PIPELINES:
        raise ModelLoadError(f"{root / 'model_index.json'}: pipeline class {pipeline_class!r} is "
                             f"not supported; s2l-scan scans {list(SUPPORTED_PIPELINES)} "
                             "(text-to-image with a UNet2DConditionModel: SD-1.x, SD-2.x, "
                             "SDXL base).")
    family = FAMILIES_BY_PIPELINE[pipeline_class]
    for name, entry in index.items():
        # Non-component keys are flags such as requires_safety_checker; [None, None] is "absent".
        if not name.startswith("_") and not isinstance(entry, bool | int | float) and \
                entry not in (None, [None, None]):
            _check_component_entry(root, name, entry)
    missing = [name for name in family.required
               if not isinstance(index.get(name), list) or not (root / name).is_dir()]
    if missing:
        kind = "an SDXL" if family.name == "sdxl" else "a Stable Diffusion"
        raise ModelLoadError(f"{root}: missing component(s) {missing}; {kind} folder "
                             f"({pipeline_class}) needs {list(family.required)}, each listed in "
                             "model_index.json and present as a sub-folder.")
    _check_component_configs(root, family)
    safe: list[Path] = []
    pickled: list[Path] = []
    # exactly the files diffusers will read (s2l_scan/io/weights.py), nothing else in the folder
    libraries = {name: str(index[name][0]) for name in family.weights}
    variant = choose_variant(root, libraries, pickles=allow_pickle) if weights else None
    chosen: dict[str, list[Path]] = {}  # component → the safetensors files it loads
    for name in family.weights:
        if not weights:
            continue
        files = loaded_files(root / name, libraries[name], variant)
        chosen[name] = files
        if files:
            safe += files
            continue
        _, pickles = _weight_files(root / name)
        if pickles and not allow_pickle:
            raise UnsafeCheckpointError(
                f"{pickles[0]}: pickled weights can run arbitrary code when loaded, so s2l-scan "
                f"refuses them. Convert the checkpoint to safetensors, or pass {PICKLE_OPT_IN} "
                "to load it with torch.load(weights_only=True).")
        files = loaded_files(root / name, libraries[name], variant, pickles=True)
        if not files:
            present = sorted(p.name for p in (root / name).iterdir() if p.is_file())
            raise ModelLoadError(
                f"{root / name}: no weight file {libraries[name]} would load (expected "
                f"{_expected_weights(libraries[name], variant)}; found {present}).")
        pickled += files
    for path in safe:
        _check_safetensors(path)
    check_unbacked_sizes(root, family.weights)
    for name, files in chosen.items():  # before any module is built (io/config_bounds.py)
        check_component_sizes(root / name, libraries[name], str(index[name][1]), files)
    return FolderReport(root, str(pipeline_class), variant, tuple(safe), tuple(pickled))


@dataclass
class LoadedModel:
    """A pipeline ready to attack, and what identifies it in a report."""

    pipeline: Any  # diffusers.StableDiffusionPipeline or StableDiffusionXLPipeline
    source: str
    identity: dict[str, str]  # file name → sha256, for every weight file read
    resolution: int
    family: str = "sd"  # "sd" (SD-1.x / SD-2.x) or "sdxl" (s2l_scan.conditioning.FAMILIES)
    # each fused adapter: path, format, weight, sha256, file, layers_changed (io/adapters.py)
    adapters: list[dict[str, Any]] = field(default_factory=list)

    @property
    def model_hash(self) -> str:
        """One hash over all weight hashes, and each fused adapter's hash and weight: the cache
        key of everything derived from this model."""
        blob = json.dumps(self.identity, sort_keys=True).encode()
        if self.adapters:
            fused = [(a["sha256"], a["weight"], a["format"]) for a in self.adapters]
            blob = json.dumps({"files": self.identity, "adapters": fused},
                              sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()

    @property
    def prediction_type(self) -> str:
        """What the UNet's output means: ``epsilon``, ``v_prediction`` or ``sample`` (the
        scheduler's ``prediction_type``; :func:`check_scheduler` has refused anything else)."""
        return str(self.pipeline.scheduler.config.prediction_type)

    @property
    def platform(self) -> dict[str, str]:
        """What, beside the weights, unit-cache keys hold: the device kind (not its index: each
        process of a data-parallel scan has its own GPU), the dtype, and the prediction type
        (read from the scheduler config, not the weights: the same weights relabelled score
        and sample differently), and the scheduler (:func:`scheduler_identity`: its class and
        every config field, betas included: the same weights under another noise schedule
        score and sample differently too)."""
        unet = self.pipeline.unet
        return {"device": unet.device.type, "dtype": str(unet.dtype).removeprefix("torch."),
                "prediction_type": self.prediction_type,
                "scheduler": scheduler_identity(self.pipeline.scheduler)}


def scheduler_identity(scheduler: Any) -> str:
    """``Class:digest`` of a scheduler's class and full config (betas, schedule, timestep
    spacing, ...): part of every unit key, so two models that differ only there share none."""
    config = {k: v for k, v in dict(scheduler.config).items() if not k.startswith("_")}
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return f"{type(scheduler).__name__}:{hashlib.sha256(blob).hexdigest()[:16]}"


def _check_finite(pipeline: Any, source: str, family: Family) -> None:
    import torch

    for name in family.weights:
        module = getattr(pipeline, name)
        for param_name, tensor in module.state_dict().items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise ModelLoadError(f"{source}: {name}.{param_name} holds NaN or Inf values; "
                                     "a scan of a broken checkpoint would be meaningless.")


def check_scheduler(scheduler: Any, config_file: Path | str) -> None:
    """Refuse a scheduler whose noise model the attacks cannot interpret, naming the field.

    The attacks work in ε at training timesteps, indexing ``alphas_cumprod`` directly (README,
    scanning), so only fields that change what the UNet's output or its timestep input mean matter:
    ``prediction_type`` (ε, v and x₀ are converted to ε; anything else is refused),
    a schedule whose ᾱ_t leaves (0, 1) (``rescale_betas_zero_snr`` may set ᾱ_T = 0: that one
    step is left out, see :func:`usable_timesteps`), ``timestep_type`` other than
    ``discrete`` (the UNet would expect continuous noise levels, not training timesteps) and
    a learned variance (the UNet's output then holds more than one prediction).
    Inference-only fields (``timestep_spacing``, ``steps_offset``, ``clip_sample``, Karras
    sigmas, ...) only change diffusers' own sampling, which honours them.
    """
    import torch

    from s2l_scan.functional.diffusion import PREDICTION_TYPES

    config = scheduler.config
    where = f"{config_file}: {type(scheduler).__name__}"
    kind = config.get("prediction_type", "epsilon")
    if kind not in PREDICTION_TYPES:
        raise ModelLoadError(
            f"{where} has prediction_type {kind!r}; s2l-scan interprets {list(PREDICTION_TYPES)}"
            " (converting each to the ε its attacks need). Scanning other outputs as ε would "
            "measure nothing; set the model's real prediction_type in its scheduler config.")
    if config.get("timestep_type", "discrete") != "discrete":
        raise ModelLoadError(
            f"{where} has timestep_type {config.get('timestep_type')!r}; the attacks feed the "
            "UNet discrete training timesteps, so only 'discrete' can be scanned.")
    if str(config.get("variance_type")).startswith("learned"):
        raise ModelLoadError(
            f"{where} has variance_type {config.get('variance_type')!r}: the UNet also predicts "
            "a variance, which the attacks cannot separate from ε; it is not supported.")
    alphas = getattr(scheduler, "alphas_cumprod", None)
    if not isinstance(alphas, torch.Tensor):
        raise ModelLoadError(
            f"{where} defines no discrete noise schedule (alphas_cumprod over training "
            "timesteps): its model is not a DDPM-family ε/v/x₀ predictor (flow matching, "
            "continuous-time or variance-exploding schedulers are), so the attacks' maths does "
            "not apply and s2l-scan does not scan it.")
    if config.get("rescale_betas_zero_snr", False) and alphas.ndim == 1:
        alphas = alphas[:usable_timesteps(scheduler)]  # ᾱ_T = 0 by design; no attack reads T
    if alphas.ndim != 1 or not bool(
            ((alphas > 0) & (alphas < 1)).all()):
        raise ModelLoadError(
            f"{where}: its noise schedule (beta_schedule / trained_betas) does not keep every "
            "ᾱ_t strictly between 0 and 1, which the attacks' DDIM maths and the ε conversion "
            "need.")


def usable_timesteps(scheduler: Any) -> int:
    """How many training timesteps, from 0, the attacks may read: all of them, or all but
    the last when a zero-terminal-SNR schedule (``rescale_betas_zero_snr``, Lin et al. 2024)
    makes it pure noise (ᾱ_T = 0, or diffusers' Euler's 2**-24, where x̂₀ would divide by
    √ᾱ_T)."""
    total = int(scheduler.config.num_train_timesteps)
    return total - 1 if scheduler.config.get("rescale_betas_zero_snr", False) else total


def _offline() -> None:
    # A scan never reaches for a hub: a missing file must be an error, not a download.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import warnings

    import diffusers.utils.logging
    import transformers.utils.logging

    # diffusers ≥ 0.40 renamed torch_dtype to dtype; older releases s2l-scan supports need it.
    warnings.filterwarnings("ignore", message="`torch_dtype` is deprecated")

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()


def _wrap_load_error(source: str, error: Exception) -> ModelLoadError:
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return ModelLoadError(f"{source}: diffusers could not load this checkpoint "
                          f"({type(error).__name__}: {first[:400]}).")


def check_conditioning(pipeline: Any, family: Family, source: str) -> None:
    """Refuse a UNet whose conditioning inputs do not match the family's text encoders, naming
    the config fields: an SD UNet that also wants ``added_cond_kwargs``, an SDXL UNet without
    ``addition_embed_type = "text_time"``, or dimensions that disagree (the checks of
    ``StableDiffusionXLPipeline._get_add_time_ids``, made at load time)."""
    unet = pipeline.unet.config
    latent = int(pipeline.vae.config.latent_channels)
    if int(unet.in_channels) != latent:
        kind = (" (an inpainting UNet: latents + mask + masked image)"
                if int(unet.in_channels) == 2 * latent + 1 else "")
        raise ModelLoadError(
            f"{source}: unet in_channels is {unet.in_channels}, but the VAE's latents have "
            f"{latent} channels{kind}. s2l-scan scans text-to-image UNets, which denoise the "
            "latents alone; scan the text-to-image model this one was made from.")
    for key in ("class_embed_type", "num_class_embeds"):
        if unet.get(key) is not None:
            raise ModelLoadError(
                f"{source}: unet {key} is {unet.get(key)!r}: a class-conditioned UNet "
                "(unCLIP image variations, upscalers) needs class labels or image embeddings "
                "the text-to-image pipeline never passes. s2l-scan does not scan it.")
    embed = unet.get("addition_embed_type")
    if family.name == "sd":
        if embed is not None:
            raise ModelLoadError(
                f"{source}: unet addition_embed_type is {embed!r}, but {family.name!r} "
                "pipelines (StableDiffusionPipeline) pass no added conditioning; an SDXL UNet "
                "belongs in a StableDiffusionXLPipeline folder (with text_encoder_2).")
        return
    if embed != "text_time":
        raise ModelLoadError(
            f"{source}: an SDXL UNet needs addition_embed_type 'text_time' (pooled text "
            f"embeddings and add_time_ids), got {embed!r}; s2l-scan scans the SDXL base "
            "text-to-image layout only.")
    first, second = pipeline.text_encoder.config, pipeline.text_encoder_2.config
    hidden = int(first.hidden_size) + int(second.hidden_size)
    if int(unet.cross_attention_dim) != hidden:
        raise ModelLoadError(
            f"{source}: unet cross_attention_dim is {unet.cross_attention_dim}, but SDXL "
            f"conditions it on text_encoder + text_encoder_2 hidden states of {first.hidden_size}"
            f" + {second.hidden_size} = {hidden}.")
    passed = int(unet.addition_time_embed_dim) * 6 + int(second.projection_dim)
    expected = int(pipeline.unet.add_embedding.linear_1.in_features)
    if passed != expected:
        raise ModelLoadError(
            f"{source}: unet projection_class_embeddings_input_dim is {expected}, but 6 "
            f"add_time_ids × addition_time_embed_dim {unet.addition_time_embed_dim} + "
            f"text_encoder_2 projection_dim {second.projection_dim} = {passed}; the UNet and "
            "text_encoder_2 configs disagree.")


def _check_tokenizer_limits(pipeline: Any, family: Family, source: str) -> None:
    """Each tokenizer pads prompts to its ``model_max_length`` (transformers' default, when the
    config sets none, is 10³⁰): at most its text encoder's position table."""
    for tokenizer, encoder in (("tokenizer", "text_encoder"), ("tokenizer_2", "text_encoder_2")):
        if encoder not in family.weights:
            continue
        limit = getattr(getattr(pipeline, tokenizer), "model_max_length", None)
        table = getattr(getattr(pipeline, encoder).config, "max_position_embeddings", None)
        if isinstance(limit, int | float) and isinstance(table, int) and limit > table:
            raise ModelLoadError(f"{source}: {tokenizer} model_max_length is {limit}, but "
                                 f"{encoder} has {table} positions (max_position_embeddings); "
                                 f"set model_max_length to {table} in "
                                 f"{tokenizer}/tokenizer_config.json.")


def _finish(pipeline: Any, source: str, identity: dict[str, str], device: str,
            config_root: Path, family: Family) -> LoadedModel:
    _check_finite(pipeline, source, family)
    _check_tokenizer_limits(pipeline, family, source)
    check_conditioning(pipeline, family, source)
    check_scheduler(pipeline.scheduler, config_root / "scheduler" / "scheduler_config.json")
    pipeline.set_progress_bar_config(disable=True)
    pipeline = pipeline.to(device)
    for name in family.weights:
        getattr(pipeline, name).eval().requires_grad_(False)
    scale = 2 ** (len(pipeline.vae.config.block_out_channels) - 1)
    return LoadedModel(pipeline, source, identity, int(pipeline.unet.config.sample_size) * scale,
                       family.name)


def model_family(model: Path, config: Path | None = None) -> str | None:
    """The family (``sd`` / ``sdxl``) a model folder's (or a single file's config folder's)
    ``model_index.json`` names, read without loading anything; None when it cannot be read
    or names no supported pipeline (loading will then say why)."""
    try:
        index = json.loads((Path(config or model) / "model_index.json").read_text("utf-8"))
        return FAMILIES_BY_PIPELINE[index["_class_name"]].name
    except (OSError, ValueError, TypeError, KeyError):
        return None


def load_pipeline(
    model: Path,
    *,
    config: Path | None = None,
    lora: Any = None,
    allow_pickle: bool = False,
    device: str = "cpu",
    dtype: Any = None,
) -> LoadedModel:
    """Load a checkpoint to scan.

    ``model`` is a diffusers folder, or a single ``.safetensors`` file when ``config`` names a
    local diffusers config folder for it. ``lora`` is an adapter (folder or bare file, ``PATH`` or
    ``PATH:WEIGHT``, or an :class:`~s2l_scan.io.adapters.AdapterSpec`) or a list of them, fused
    into the weights in order; each must change the model.
    Raises :class:`ModelLoadError` / :class:`UnsafeCheckpointError` with a message naming the
    culprit file; never downloads anything.
    """
    import torch

    _offline()
    model = Path(model)
    dtype = torch.float32 if dtype is None else dtype
    if model.is_file() or config is not None:
        pipeline, identity, family = _load_single_file(model, config, allow_pickle, dtype)
    else:
        pipeline, identity, family = _load_folder(model, allow_pickle, dtype)
    source = str(model)
    adapters = [] if lora is None else list(lora) if isinstance(lora, list | tuple) else [lora]
    applied = _fuse_lora(pipeline, adapters) if adapters else []
    for adapter in applied:
        source += f" + adapter {adapter.path} (×{adapter.weight:g})"
    loaded = _finish(pipeline, source, identity, device,
                     model if config is None else Path(config), family)
    loaded.adapters = [adapter.to_dict() for adapter in applied]
    return loaded


def _pipeline_kwargs(family: Family) -> dict[str, Any]:
    """Components a scan never uses, left out; SDXL's invisible watermark off, so generated
    pixels do not depend on whether the invisible-watermark package is installed."""
    if family.name == "sdxl":
        return {"image_encoder": None, "feature_extractor": None, "add_watermarker": False}
    return {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}


def _load_folder(root: Path, allow_pickle: bool, dtype: Any
                 ) -> tuple[Any, dict[str, str], Family]:
    import diffusers

    report = inspect_pipeline_folder(root, allow_pickle=allow_pickle)
    pickles = report.pickles  # only those of components without safetensors
    # None lets diffusers fall back to pickles (read with weights_only=True) where a component
    # has no safetensors; inspect_pipeline_folder has already refused that without the opt-in.
    use_safetensors = None if pickles else True
    cls = getattr(diffusers, report.pipeline_class)  # one of FAMILIES_BY_PIPELINE's keys
    try:
        pipeline = cls.from_pretrained(
            root, local_files_only=True, use_safetensors=use_safetensors,
            variant=report.variant, torch_dtype=dtype, **_pipeline_kwargs(report.family),
        )
    except Exception as error:  # diffusers/transformers raise many unrelated types
        raise _wrap_load_error(str(root), error) from None
    files = report.safetensors + pickles
    identity = {str(p.relative_to(root)): sha256_file(p) for p in files}
    return pipeline, identity, report.family


def _load_single_file(path: Path, config: Path | None, allow_pickle: bool,
                      dtype: Any) -> tuple[Any, dict[str, str], Family]:
    from diffusers import StableDiffusionPipeline

    if config is None:
        raise ModelLoadError(f"{path}: a single-file checkpoint needs a local diffusers config "
                             "folder (--model-config DIR); s2l-scan never fetches one from a hub.")
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such checkpoint file.")
    if path.suffix.lower() in PICKLE_SUFFIXES and not allow_pickle:
        raise UnsafeCheckpointError(f"{path}: pickled checkpoints can run arbitrary code when "
                                    f"loaded; convert it to safetensors or pass {PICKLE_OPT_IN}.")
    if path.suffix.lower() == ".safetensors":
        _check_safetensors(path)
    family = inspect_pipeline_folder(Path(config), weights=False).family  # weights: ``path``
    if family.name != "sd":
        raise ModelLoadError(f"{path}: single-file {family.name.upper()} checkpoints are not "
                             "supported yet (the config folder names "
                             f"{family.name.upper()}); convert the checkpoint to a diffusers "
                             "folder and scan that folder.")
    try:
        pipeline = StableDiffusionPipeline.from_single_file(
            str(path), config=str(config), local_files_only=True, safety_checker=None,
            feature_extractor=None, requires_safety_checker=False, torch_dtype=dtype,
        )
    except Exception as error:  # diffusers' single-file loader raises many unrelated types
        raise _wrap_load_error(str(path), error) from None
    return pipeline, {path.name: sha256_file(path)}, family


def _fuse_lora(pipeline: Any, adapters: list[Any]) -> list[Any]:
    """Fuse adapters (:mod:`s2l_scan.io.adapters`: folder or bare file; diffusers, peft or
    kohya format), refusing one that changed no weight."""
    from s2l_scan.io.adapters import AdapterSpec, fuse_adapters

    return fuse_adapters(pipeline, [a if isinstance(a, AdapterSpec) else AdapterSpec.parse(a)
                                    for a in adapters])


# What a base model must share with the model it calibrates: the same UNet architecture (so
# the same latents and conditioning go into both), the same noise schedule (so the same x_t
# and t mean the same noise level) and the same tokenizer (so a caption is the same tokens).
_BASE_UNET_KEYS = ("in_channels", "out_channels", "sample_size", "cross_attention_dim",
                   "block_out_channels", "down_block_types", "up_block_types",
                   "layers_per_block", "addition_embed_type",
                   "projection_class_embeddings_input_dim")
_BASE_SCHEDULER_KEYS = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule",
                        "trained_betas", "prediction_type")


def _tokenizer_vocab(root: Path, what: str) -> tuple[dict[str, Any], list[str]] | None:
    """A CLIP tokenizer's vocabulary and BPE merges, from vocab.json + merges.txt or from
    tokenizer.json (newer transformers save only that); None when there is neither."""
    folder = root / "tokenizer"
    if (folder / "vocab.json").is_file():
        vocab = _config_of(root, "tokenizer/vocab.json", what)
        merges_file = folder / "merges.txt"
        lines = merges_file.read_text(encoding="utf-8").splitlines() \
            if merges_file.is_file() else []
        return vocab, [line for line in lines if line and not line.startswith("#version")]
    if (folder / "tokenizer.json").is_file():
        model = _config_of(root, "tokenizer/tokenizer.json", what).get("model", {})
        merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
        return dict(model.get("vocab", {})), merges
    return None


def _config_of(root: Path, part: str, what: str) -> dict[str, Any]:
    from s2l_scan.errors import UsageError

    path = root / part
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UsageError(f"{what}: cannot read {path} ({error}); a base model is a diffusers "
                         "folder with unet/, scheduler/ and tokenizer/") from None
    if not isinstance(value, dict):
        raise UsageError(f"{what}: {path} is not a JSON object")
    return value


def check_base_model(model: Path, base: Path, model_config: Path | None = None) -> None:
    """A usage error naming every mismatch when ``base`` cannot be ``model``'s base: another
    UNet architecture, noise schedule or tokenizer vocabulary. Reads configs and tokenizer
    files only, never weights. ``model_config`` is a single-file model's config folder."""
    from s2l_scan.errors import UsageError

    if not (base / "model_index.json").is_file():
        raise UsageError(f"base model {base}: not a diffusers folder (no model_index.json); "
                         "give the folder of the checkpoint the release was fine-tuned from")
    root = model_config if model_config is not None else model
    if not (root / "model_index.json").is_file():
        return  # the model's own loader reports what is wrong with it
    mismatches: list[str] = []
    for part, keys in (("model_index.json", ("_class_name",)),
                       ("unet/config.json", _BASE_UNET_KEYS),
                       ("scheduler/scheduler_config.json", _BASE_SCHEDULER_KEYS)):
        ours = _config_of(root, part, f"model {model}")
        theirs = _config_of(base, part, f"base model {base}")
        mismatches += [f"{part.split('/')[0]} {key}: model {ours.get(key)!r}, base "
                       f"{theirs.get(key)!r}" for key in keys if ours.get(key) != theirs.get(key)]
    ours_tok = _tokenizer_vocab(root, f"model {model}")
    theirs_tok = _tokenizer_vocab(base, f"base model {base}")
    if (ours_tok is None) != (theirs_tok is None):
        mismatches.append("tokenizer: only one of the two has one")
    elif ours_tok is not None and theirs_tok is not None:
        if ours_tok[0] != theirs_tok[0]:
            mismatches.append(f"tokenizer vocabulary differs ({len(ours_tok[0])} tokens in the "
                              f"model, {len(theirs_tok[0])} in the base)")
        elif ours_tok[1] != theirs_tok[1]:
            mismatches.append("tokenizer BPE merges differ")
    if mismatches:
        raise UsageError(f"base model {base} does not match the scanned model {model}: "
                         f"{'; '.join(mismatches)}. Calibration scores the same latents, noise "
                         "and captions through both models, so the base must be the checkpoint "
                         "the release was fine-tuned from (same architecture, noise schedule "
                         "and tokenizer)")
