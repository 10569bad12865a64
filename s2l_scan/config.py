"""Scan configuration: one frozen dataclass, read from ``[tool.s2l]`` / ``s2l.toml`` and options.

Precedence: defaults < config file < command-line options. Unknown keys are usage errors that
name the nearest valid key.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from s2l_scan.errors import UsageError
from s2l_scan.sweep import DEFAULT_SPACE, parse_budget

WEN_GRID_STEPS = 50  # Wen et al. read the first steps of a 50-step DDIM grid

CI_ENDS = ("point", "lower", "upper")
ON_INCONCLUSIVE = ("fail", "warn")
# The named sets ``known_images`` can select (probes/extraction.py builds them); anything else
# must be a folder of images.
KNOWN_IMAGE_SETS = ("members", "nonmembers", "all")


def check_known_images(value: object) -> None:
    """A usage error unless ``value`` names one of :data:`KNOWN_IMAGE_SETS` or a folder."""
    names = ", ".join(KNOWN_IMAGE_SETS)
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"known_images must be one of {names} or a folder of images, got "
                         f"{value!r}")
    if value not in KNOWN_IMAGE_SETS and not Path(value).expanduser().is_dir():
        raise UsageError(f"known_images {value!r} is neither one of {names} nor an existing "
                         f"folder of images; give one of those (a folder named like a set is "
                         f"written ./{value})")


CACHE_KINDS = ("on", "off")
DTYPES = ("float32", "float16", "bfloat16")


def _option(text: str, default: Any, *, cli: bool = True, metavar: str | None = None) -> Any:
    """A ScanConfig field, declared once: its default, its one-line help, and whether the
    command line offers it (``s2l-scan scan --NAME`` and ``pytest --s2l-NAME``; ``cli=False``:
    config files only). The TOML key is the field name; the option's type comes from the
    annotation (:func:`cli_type`)."""
    metadata = {"help": text, "cli": cli, "metavar": metavar}
    if isinstance(default, dict | list):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class ScanConfig:
    """Everything a scan needs besides the model and data paths."""

    attacks: tuple[str, ...] = _option("baseline attacks to run by registered name, "
                                       "comma-separated in options", ("loss", "secmi", "pia"))
    attack_options: dict[str, dict[str, Any]] = _option(  # noqa: RUF009 - a field()
        "per-attack settings, e.g. {secmi = {t_sec = 150}}", {}, cli=False)
    domains: tuple[str, ...] | None = _option("domains to scan, comma-separated in options "
                                              "(default: all)", None)
    max_auc: float = _option("gate: fail when the calibrated AUC (direction learned on a "
                             "calibration half) exceeds this", 0.6)
    max_tpr: float = _option("gate: fail when the calibrated TPR at 1% FPR exceeds this (only "
                             "where 1% FPR is estimable: ≥ 100 non-members per half)", 0.1)
    ci_end: str = _option("which AUC is compared to max_auc: point, lower or upper CI end "
                          "(upper: an inconclusive verdict also fails the run, whatever "
                          "on_inconclusive says)", "point")
    on_inconclusive: str = _option(
        "policy for an INCONCLUSIVE verdict (no leak shown, safety not shown either): fail "
        "(exit 6; pytest: the inconclusive checks fail) or warn (exit 0 with a warning naming "
        "why; pytest: they are skipped)", "fail")
    family_alpha: float = _option(
        "gate: an AUC or amplification check fails only when it is also significant after "
        "Holm's correction over every such check of the scan at this family-wise error rate "
        "(the measured false-fail rate on null audits: docs/null-audit.md); 1 turns the "
        "significance requirement off", 0.05)
    bootstrap: int = _option("bootstrap resamples for CIs (≥ 1000 for reports)", 1000)
    permutations: int = _option("label permutations of each AUC's p-value (its smallest value "
                                "is 1/(permutations + 1))", 9999, cli=False)
    seed: int = _option("seed of every seeded choice: attack noises, calibration splits, blind "
                        "folds, generations, probes' training and bootstrap; overridden only "
                        "by bootstrap_seed (the bootstrap) and a seed in attack_options "
                        "(that attack)", 0)
    bootstrap_seed: int | None = _option("seed of the bootstrap resamples alone (default: seed); "
                                         "varying it shows how stable a verdict is", None)
    batch_size: int = _option("samples per UNet forward", 32)
    threads: int = _option("torch CPU threads (1 is fastest on busy 2-core machines)", 1)
    device: str = _option("torch device: auto (a CUDA GPU when torch sees one, else cpu), cpu, "
                          "cuda or cuda:N", "auto")
    dtype: str = _option("weights and activations of the forwards: float32, float16 or bfloat16 "
                         "(half precision is an opt-in; see docs/performance.md)", "float32")
    allow_pickle: bool = _option("opt in to pickled weights (read with torch.load("
                                 "weights_only=True))", False)
    reference_preset: str = _option("preset of the reference model when the model is "
                                    "'reference', as `s2l-scan reference build --preset` takes "
                                    "it: default, finetune (a release and its base) or tiny",
                                    "default", metavar="NAME")
    reference_seed: int = _option("build seed of the reference model when the model is "
                                  "'reference' (not seed: another build seed is another model)",
                                  0)
    extraction_samples: int = _option("images generated per domain for extraction (0: off)", 32)
    sampler: str = _option("sampler of extraction and SP-set generations: dpmsolver++ (20 "
                           "steps find the reference's planted members as DDIM's 50 do: "
                           "docs/performance.md), ddim, or model (the model's own scheduler)",
                           "dpmsolver++")
    extraction_steps: int = _option("sampler steps per generated image", 20)
    extraction_guidance: float = _option(
        "classifier-free guidance scale for generation (7.5, as the SP sets': then a domain's "
        "SP set is its first extraction images, generated once; docs/performance.md)", 7.5,
        cli=False)
    extraction_extra_guidance: tuple[float, ...] = _option(
        "more classifier-free guidance scales at which the released model's extraction images "
        "are generated too (extraction_samples each; a fine-tuned model may give its training "
        "images back at guidance 2 and not at 7.5), e.g. [2.0]; a budget drops them first",
        (), cli=False)
    negative_prompt: str | None = _option(
        "negative prompt of the sampler, for extraction and SP-set generation (default: none)",
        None)
    extraction_k: int = _option("eidetic k (>= 1): a training image counts as extracted only "
                                "when at most k training images, itself included, lie within "
                                "δ of it", 10, cli=False)
    extraction_delta: float = _option("eidetic δ: RMS distance of [0, 1] pixels", 0.1, cli=False)
    extraction_tiled: bool = _option("use the tiled ℓ2 (max over 4×4 tiles) instead of plain RMS",
                                     False, cli=False)
    extraction_invariances: tuple[str, ...] = _option(
        "views under which a generation still counts as a copy (trainers mirror, squash, crop "
        "and jitter their images): flip, squash, crop, shift, comma-separated; none: as "
        "generated only", ("flip", "squash", "crop", "shift"), cli=False)
    extraction_on_probes: bool = _option("also run extraction on every probe's shaken copy",
                                         True, cli=False)
    embedder: str = _option("extraction index embedding: pixels (exact: finds every match) or "
                            "open_clip:ARCH:PATH (local weights file; approximate k-NN)",
                            "pixels")
    extraction_candidates: int = _option(
        "known images verified per generation with a k-NN embedder (open_clip); the pixels "
        "embedder verifies every one within δ", 64)
    known_images: str = _option("what the extraction index holds: members (+ known/), "
                                "nonmembers (control), all, or a folder of images", "members")
    known_index: str | None = _option(
        "a sharded known-image index folder (`s2l-scan index build`) searched instead of "
        "known_images: for millions of known images (default: none)", None)
    index_cache_dir: str | None = _option(
        "folder of cached known-image indexes (default: <cache>/index)", None)
    max_extracted: int = _option("gate: fail when more distinct training images than this are "
                                 "extracted (eidetic) per check", 0)
    evidence_dir: str | None = _option("folder for a side-by-side PNG (generated | known | "
                                       "difference) of every eidetic match (default: none)", None)
    memorization_starts: int = _option(
        "prompt-level memorization (Wen et al.): seeded starts per prompt of the text-guidance "
        "magnitude, over every domain prompt and caption; 0: off", 0)
    max_text_guidance: float | None = _option(
        "gate: fail a domain when a prompt's text-guidance magnitude exceeds this (model-"
        "specific scale: calibrate it on prompts known not to be memorized; default: reported, "
        "not gated)", None)
    memorization_steps: int = _option("Wen et al.: first steps of the paper's 50-step DDIM "
                                      "grid averaged", 1, cli=False)
    anisotropy_starts: int = _option(
        "prompt-level memorization (Asthana & Belagiannis, ICLR 2026): seeded pure-noise starts "
        "per prompt of the log-probability anisotropy score (ε(c) and ε(∅) at two timesteps, no "
        "sampling), over every domain prompt and caption; 0: off", 0)
    max_anisotropy: float | None = _option(
        "gate: fail a domain when a prompt's anisotropy score exceeds this (model-specific "
        "scale: calibrate it on prompts known not to be memorized; default: reported, not "
        "gated)", None)
    anisotropy_alignment_weight: float = _option(
        "Asthana & Belagiannis: weight of the alignment term beside the norm's 1 (the authors: "
        "2 on SD-1.4, 0.1 on SD-2)", 2.0, cli=False)
    clique_generations: int = _option(
        "prompt-level memorization (Carlini et al.): generations per prompt searched for a "
        "clique of near-copies of one another (within extraction_delta); 0: off", 0, cli=False)
    clique_size: int = _option("gate: fail a domain when a prompt's generations hold a clique "
                               "of this many near-copies", 10, cli=False)
    probes: tuple[str, ...] = _option("S2L probes to run by registered name, "
                                      "comma-separated in options ('': none)", ("noise", "lora"))
    probe_options: dict[str, dict[str, Any]] = _option(  # noqa: RUF009 - a field()
        "per-probe settings; a list value sweeps it, e.g. {noise = {sigma = [2e-4, 8e-4]}}", {},
        cli=False)
    max_amplification: float = _option("gate: fail when a probe raises AUC by more than this",
                                       0.05)
    sweep: str | None = _option("time budget of the worst-case sweep over probe settings, e.g. "
                                "600, 10m, 1h (default: no sweep)", None)
    sweep_space: dict[str, dict[str, list[Any]]] = _option(  # noqa: RUF009 - a field()
        "values the sweep tries per probe and knob, one knob at a time",
        {probe: {k: list(v) for k, v in knobs.items()} for probe, knobs in DEFAULT_SPACE.items()},
        cli=False)
    budget: str | None = _option(
        "time budget of the whole scan, e.g. 30m, 2h: after the baselines a calibration times "
        "the UNet and the sampler, SP-set and extraction image counts are cut to fit; the "
        "report lists each cut and its cost in power (default: no budget)", None)
    sp_samples: int = _option("SP-set images generated per domain for fine-tuning probes", 32)
    sp_steps: int = _option("sampler steps for SP-set images", 20, cli=False)
    sp_guidance: float = _option("guidance scale for SP-set images (paper: 7.5)", 7.5, cli=False)
    ood_prompt: str = _option("prompt of the out-of-domain control set (end_to_end_ood)",
                              "a photograph of a landscape", cli=False)
    prior_prompt: str = _option("class prompt of DreamBooth's prior-preservation set", "a photo",
                                cli=False)
    probe_save_dir: str | None = _option("save what each probe trained here (default: nothing)",
                                         None, cli=False)
    cache: str = _option("unit cache: on (finished units are stored and reused, so an "
                         "interrupted scan resumes) or off", "on")
    cache_dir: str | None = _option("folder of the unit cache (default: $S2L_CACHE_DIR/units, "
                                    "else ~/.cache/s2l-scan/units)", None)
    compare: str | None = _option("previous release's JSON report to compare with (regression "
                                  "gate; default: none)", None, metavar="REPORT.json")
    compare_fail: str | None = _option(
        "fail when a metric rose more than this since compare, e.g. auc:+0.02,extracted:+0 "
        "(metrics: auc, tpr, asr, extracted, text_guidance, clique; default: no limit)", None,
        metavar="METRIC:+AMOUNT,...")
    allow_dropped_checks: bool = _option(
        "accept checks of the compared report that this scan no longer runs (default: a "
        "dropped check fails the compare)", False)
    # Report files, {config key: path}. Each report format declares its key (the TOML key,
    # e.g. report_json) and its options in its Renderer (s2l_scan/report/outputs.py), so a new
    # format needs no field here; to_dict() lists them flat, one key per format.
    reports: dict[str, str] = _option(  # noqa: RUF009 - a field()
        "report files by config key (set through report_json, report_html, ...)", {}, cli=False)

    def __post_init__(self) -> None:
        for name in ("max_auc", "max_tpr"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
                raise UsageError(f"{name} must be a number in [0, 1], got {value!r}")
        if not (isinstance(self.family_alpha, int | float) and 0.0 < self.family_alpha <= 1.0):
            raise UsageError(f"family_alpha must be a number in (0, 1], got "
                             f"{self.family_alpha!r}")
        from s2l_scan.functional.views import FAMILIES

        unknown_views = [name for name in self.extraction_invariances if name not in FAMILIES]
        if unknown_views:
            raise UsageError(f"extraction_invariances: unknown view {unknown_views[0]!r}; "
                             f"choose among {', '.join(FAMILIES)} (or none)")
        if not all(isinstance(g, int | float) and not isinstance(g, bool) and math.isfinite(g)
                   and g >= 0 for g in self.extraction_extra_guidance):
            raise UsageError("extraction_extra_guidance must list finite numbers ≥ 0, got "
                             f"{list(self.extraction_extra_guidance)!r}")
        if self.ci_end not in CI_ENDS:
            raise UsageError(f"ci_end must be one of {CI_ENDS}, got {self.ci_end!r}")
        if self.on_inconclusive not in ON_INCONCLUSIVE:
            raise UsageError(f"on_inconclusive must be one of {ON_INCONCLUSIVE}, got "
                             f"{self.on_inconclusive!r}")
        for name in ("extraction_samples", "extraction_k", "max_extracted",
                     "memorization_starts", "anisotropy_starts", "clique_generations"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise UsageError(f"{name} must be a non-negative integer, got {value!r}")
        if self.extraction_k < 1:
            raise UsageError(f"extraction_k must be >= 1, got {self.extraction_k}: k counts an "
                             f"image's appearances in the training set, itself included, so "
                             f"k = 0 would let nothing count as extracted (the paper uses 10)")
        if not (isinstance(self.extraction_delta, int | float) and 0 < self.extraction_delta <= 1):
            raise UsageError(f"extraction_delta must be in (0, 1], got {self.extraction_delta!r}")
        if not (isinstance(self.extraction_guidance, int | float)
                and math.isfinite(self.extraction_guidance) and self.extraction_guidance >= 0):
            raise UsageError("extraction_guidance must be a finite number ≥ 0, got "
                             f"{self.extraction_guidance!r}")
        for name in ("bootstrap", "permutations", "batch_size", "threads", "extraction_steps",
                     "sp_samples", "sp_steps", "extraction_candidates", "memorization_steps",
                     "clique_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UsageError(f"{name} must be a positive integer, got {value!r}")
        for name, value in (("reference_seed", self.reference_seed),
                            ("bootstrap_seed", 0 if self.bootstrap_seed is None
                             else self.bootstrap_seed)):  # None: the scan's seed
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise UsageError(f"{name} must be a non-negative integer, got {value!r}")
        if self.negative_prompt is not None and (not isinstance(self.negative_prompt, str)
                                                 or not self.negative_prompt.strip()):
            raise UsageError(f"negative_prompt must be a non-empty string (or left out for "
                             f"none), got {self.negative_prompt!r}")
        from s2l_scan.reference.presets import get_preset  # stdlib only: cheap

        get_preset(self.reference_preset)  # a usage error that lists the presets
        if self.max_text_guidance is not None and not (
                isinstance(self.max_text_guidance, int | float)
                and not isinstance(self.max_text_guidance, bool)
                and math.isfinite(self.max_text_guidance) and self.max_text_guidance >= 0):
            raise UsageError(f"max_text_guidance must be a finite number ≥ 0, got "
                             f"{self.max_text_guidance!r}")
        for name, low in (("max_anisotropy", -math.inf), ("anisotropy_alignment_weight", 0.0)):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int | float)
                                          and not isinstance(value, bool)
                                          and math.isfinite(value) and value >= low):
                raise UsageError(f"{name} must be a finite number"
                                 f"{' ≥ 0' if low == 0 else ''}, got {value!r}")
        if self.memorization_steps > WEN_GRID_STEPS:
            raise UsageError(f"memorization_steps {self.memorization_steps} exceeds the "
                             f"{WEN_GRID_STEPS} steps of Wen et al.'s DDIM grid")
        from s2l_scan.samplers import check_sampler

        check_sampler(self.sampler)
        if self.dtype not in DTYPES:
            raise UsageError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if not isinstance(self.device, str) or not self.device.strip():
            raise UsageError(f"device must be a torch device name or 'auto', got {self.device!r}")
        if not self.attacks:
            raise UsageError("attacks is empty; select at least one attack")
        unknown = set(self.attack_options) - set(self.attacks)
        if unknown:
            raise UsageError(f"attack_options for attacks not selected: {sorted(unknown)}")
        unknown = set(self.probe_options) - set(self.probes)
        if unknown:
            raise UsageError(f"probe_options for probes not selected: {sorted(unknown)}")
        if not (isinstance(self.max_amplification, int | float)
                and -1 <= self.max_amplification <= 1):
            raise UsageError(f"max_amplification must be in [-1, 1], got "
                             f"{self.max_amplification!r}")
        self._check_sweep()
        if self.cache not in CACHE_KINDS:
            raise UsageError(f"cache must be one of {CACHE_KINDS}, got {self.cache!r}")
        if self.cache_dir is not None and (not isinstance(self.cache_dir, str)
                                           or not self.cache_dir.strip()):
            raise UsageError(f"cache_dir must be a non-empty string, got {self.cache_dir!r}")
        self._check_reports()
        self._check_index()

    def _check_index(self) -> None:
        # Syntax only: weights load (and fail) when the scan builds the index.
        from s2l_scan.extraction.embedders import check_embedder_spec

        check_embedder_spec(self.embedder)
        check_known_images(self.known_images)
        if self.known_index is not None:
            self._check_known_index()
        if self.index_cache_dir is not None and (not isinstance(self.index_cache_dir, str)
                                                 or not self.index_cache_dir.strip()):
            raise UsageError(f"index_cache_dir must be a non-empty string, got "
                             f"{self.index_cache_dir!r}")

    def _check_known_index(self) -> None:
        # The folder's meta.json is read by session.validate_selection (it needs the engine).
        value = self.known_index
        if not isinstance(value, str) or not value.strip():
            raise UsageError(f"known_index must be a folder written by `s2l-scan index build`, "
                             f"got {value!r}")
        try:
            Path(value).expanduser()
        except RuntimeError as error:  # "~user" with no such user
            raise UsageError(f"known_index {value!r}: {error}") from None
        if self.known_images != "members":
            raise UsageError(f"known_index {value!r} and known_images {self.known_images!r} are "
                             f"both set, but the sharded index replaces known_images; give only "
                             f"one of them")
        if self.embedder.strip().partition(":")[0] != "pixels":
            raise UsageError(f"known_index {value!r} needs embedder 'pixels' (a sharded index "
                             f"holds pooled pixels, searched exactly), got embedder "
                             f"{self.embedder!r}; drop the embedder setting, or use "
                             f"known_images for an {self.embedder.partition(':')[0]} index")

    def _check_sweep(self) -> None:
        if self.sweep is not None:
            parse_budget(self.sweep)
        if self.budget is not None:
            parse_budget(self.budget, "budget")
        if not isinstance(self.sweep_space, dict) or not all(
                isinstance(knobs, dict) and all(isinstance(v, list) and v for v in knobs.values())
                for knobs in self.sweep_space.values()):
            raise UsageError("sweep_space must map probe → {knob = [values, …]} with non-empty "
                             f"lists, got {self.sweep_space!r}")

    def _check_reports(self) -> None:
        for name in ("compare", "compare_fail"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise UsageError(f"{name} must be a non-empty string, got {value!r}")
        if not isinstance(self.reports, dict):
            raise UsageError(f"reports must map report keys to files, got {self.reports!r}")
        keys = report_keys()
        for name, value in self.reports.items():
            if name not in keys:
                raise UsageError(f"unknown report file key {name!r}; known: {', '.join(keys)}")
            if not isinstance(value, str) or not value.strip():
                raise UsageError(f"{name} must be a non-empty string, got {value!r}")
        if self.compare_fail is not None:
            if self.compare is None:
                raise UsageError("compare_fail needs compare: give the previous release's "
                                 "JSON report (--compare REPORT.json, pytest: "
                                 "--s2l-compare=REPORT.json)")
            from s2l_scan.report.compare import parse_allowances

            parse_allowances(self.compare_fail)  # a usage error that names the bad item

    @property
    def resample_seed(self) -> int:
        """The seed of bootstrap resamples: ``bootstrap_seed``, else ``seed``."""
        return self.seed if self.bootstrap_seed is None else self.bootstrap_seed

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, echoed in the report: every field, with ``reports`` flattened to
        one key per report format (``report_json``: path or None, ...)."""
        values = dataclasses.asdict(self)
        reports = values.pop("reports")
        return {**values, **{key: reports.get(key) for key in report_keys()}}


FIELDS = {f.name: f for f in dataclasses.fields(ScanConfig)}


def report_keys() -> tuple[str, ...]:
    """The config keys of the registered report formats (``report_json``, ...), in order."""
    from s2l_scan.report.outputs import RENDERERS  # cheap: no torch, numpy or rich

    return tuple(renderer.config_key for renderer in RENDERERS.values())


def config_keys() -> list[str]:
    """Every key a config file (or an override) may set, sorted: the fields (less
    ``reports``, which is set through the report formats' keys) and the report keys."""
    return sorted({*FIELDS, *report_keys()} - {"reports"})


# Command-line types by annotation: lists are given comma-separated (see _coerce), a bool is a
# flag that turns the option on.
_CLI_TYPES: dict[str, type] = {"int": int, "float": float, "str": str, "tuple[str, ...]": str,
                               "bool": bool}


def cli_fields() -> list[dataclasses.Field[Any]]:
    """The ScanConfig fields the command line offers, in declaration order."""
    return [f for f in dataclasses.fields(ScanConfig) if f.metadata["cli"]]


def cli_type(f: dataclasses.Field[Any]) -> type:
    """The command-line type of a field offered on the command line (``bool``: a flag)."""
    annotation = str(f.type).removesuffix(" | None")
    if annotation not in _CLI_TYPES:
        raise TypeError(f"ScanConfig.{f.name}: no command-line type for {f.type!r}; give it "
                        f"cli=False or add its type to _CLI_TYPES")
    return _CLI_TYPES[annotation]


def shown_default(value: Any) -> str:
    """A default as the help shows it: none, off/on, a comma-separated list, or the value."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple | list):
        return ",".join(map(str, value)) if value else "none"
    return str(value)


def help_text(f: dataclasses.Field[Any]) -> str:
    """A field's one-line help, with its default unless the help already says it."""
    text: str = f.metadata["help"]
    if "default" in text:
        return text
    return f"{text} (default: {shown_default(f.default)})"


def _coerce(name: str, value: Any) -> Any:
    if name == "extraction_extra_guidance" and isinstance(value, list | tuple):
        return tuple(value)
    if name == "extraction_invariances" and value in ("none", ["none"], ("none",)):
        return ()
    if name in ("attacks", "domains", "probes", "extraction_invariances") and value is not None:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise UsageError(f"{name} must be a list of names, got {value!r}")
        return tuple(value)
    if name == "compare_fail" and isinstance(value, dict):  # TOML: {auc = 0.02, tpr = "10%"}
        return ",".join(f"{metric}:+{amount}" for metric, amount in value.items())
    if name in ("attack_options", "probe_options") and not (
            isinstance(value, dict) and all(isinstance(v, dict) for v in value.values())):
        raise UsageError(f"{name} must map names to tables, got {value!r}")
    return value


def make_config(file_values: dict[str, Any] | None = None, **overrides: Any) -> ScanConfig:
    """Build a config from file values and non-None overrides; unknown keys are usage errors."""
    merged: dict[str, Any] = {}
    reports: dict[str, Any] = {}
    keys = config_keys()
    report_names = report_keys()
    for source in (file_values or {}, {k: v for k, v in overrides.items() if v is not None}):
        for key, value in source.items():
            name = key.replace("-", "_")
            if name not in keys:
                near = difflib.get_close_matches(name, keys, n=1)
                hint = f"; did you mean {near[0]!r}?" if near else ""
                raise UsageError(f"unknown s2l config key {key!r}{hint} "
                                 f"Valid keys: {', '.join(keys)}")
            if name in report_names:
                reports[name] = value
            else:
                merged[name] = _coerce(name, value)
    try:
        return ScanConfig(**merged, reports=reports)
    except TypeError as error:  # a wrongly typed value that __post_init__ could not name
        raise UsageError(f"invalid s2l config: {error}") from None


def read_config_file(path: Path | None, search_from: Path | None = None) -> dict[str, Any]:
    """``[tool.s2l]`` of a pyproject.toml, or the top level of an s2l.toml.

    With no ``path``, looks for ``s2l.toml`` then ``pyproject.toml`` in ``search_from``.
    """
    if path is None:
        if search_from is None:
            return {}
        for candidate in (search_from / "s2l.toml", search_from / "pyproject.toml"):
            if candidate.is_file():
                path = candidate
                break
        else:
            return {}
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise UsageError(f"config file {path} is not valid TOML: {error}") from None
    tool = data.get("tool", {})
    if not isinstance(tool, dict):
        raise UsageError(f"{path}: [tool] must be a table, got {type(tool).__name__}")
    section = tool.get("s2l", {} if path.name == "pyproject.toml" else data)
    if not isinstance(section, dict):
        raise UsageError(f"{path}: [tool.s2l] must be a table")
    return section
