"""The scan's options, for both doors: ``s2l-scan scan --NAME`` and ``pytest --s2l-NAME``.

Nothing is declared here twice: a scan setting is a :class:`~s2l_scan.config.ScanConfig` field
(help, default, type, ``cli=False`` for config-file-only settings), a report file is a
:class:`~s2l_scan.report.outputs.Renderer` (its config key and option spellings), and the
scan's inputs that are not settings (model, data, ...) are the one table :data:`SCAN_INPUTS`.
The doors turn :func:`scan_options` into argparse / pytest options, whose values default to
None ("not given"), so config files still apply.

Cheap to import (the pytest plugin imports it at load): no torch, numpy or rich.
"""

from __future__ import annotations

from dataclasses import dataclass

from s2l_scan.config import cli_fields, cli_type, help_text


@dataclass(frozen=True)
class Option:
    """One scan option as both doors offer it."""

    key: str  # the ScanConfig key it sets (a field, or a report format's config key)
    cli: str  # s2l-scan scan spelling, e.g. --max-auc
    pytest: str  # pytest spelling, e.g. --s2l-max-auc
    help: str  # one line, the default included; plain text (see argparse_help)
    type: type  # bool: a flag that turns it on
    metavar: str | None = None


@dataclass(frozen=True)
class ScanInput:
    """A scan input that is not a setting: it names what to scan, not how."""

    name: str  # the attribute it fills (ScanInputs field, or "config")
    metavar: str
    help: str
    positional: bool = False  # s2l-scan scan takes it as a positional argument
    repeated: bool = False  # may be given several times (a list, in order)


# model, data, model_config, lora and base_model fill session.ScanInputs; config is the config file.
SCAN_INPUTS: tuple[ScanInput, ...] = (
    ScanInput("model", "PATH", "checkpoint to scan: a diffusers folder, a .safetensors file "
                               "(with a model config), or 'reference'", positional=True),
    ScanInput("data", "DIR", "audit data DIR/<domain>/{prompt.txt,members/,nonmembers/} "
                             "(default for 'reference': its data)"),
    ScanInput("model_config", "DIR", "local diffusers config folder for a single-file "
                                     "checkpoint"),
    ScanInput("lora", "PATH[:WEIGHT]", "adapter fused into the model before scanning: a folder "
                                       "or a .safetensors file (diffusers, peft or kohya LoRA; "
                                       "peft LoHa/LoKr), at WEIGHT (default 1), or a "
                                       "textual-inversion embedding (learned_embeds, "
                                       "emb_params, clip_l/clip_g; its token(s) added); "
                                       "repeatable",
              repeated=True),
    ScanInput("base_model", "PATH", "the public base checkpoint a fine-tune release started "
                                    "from (a diffusers folder; 'reference': the reference "
                                    "build's base): every attack also runs base-calibrated "
                                    "(its score on the model minus on the base, rows NAME+base)"),
    ScanInput("config", "FILE", "s2l.toml or pyproject.toml with [tool.s2l] (default: the one "
                                "in the current folder, pytest: in rootdir)"),
)


def cli_spelling(name: str) -> str:
    """``--model-config`` for ``model_config``."""
    return "--" + name.replace("_", "-")


def plugin_spelling(name: str) -> str:
    """``--s2l-model-config`` for ``model_config``."""
    return "--s2l-" + name.replace("_", "-")


def scan_options() -> list[Option]:
    """Every scan option: the command-line ScanConfig fields, then one per report format.

    Read when a door builds its parser, so a renderer registered before then is offered too.
    Two options with one spelling are an error (a report key that shadows a field, say).
    """
    from s2l_scan.report.outputs import RENDERERS  # cheap: no torch, numpy or rich

    options = [Option(f.name, cli_spelling(f.name), plugin_spelling(f.name), help_text(f),
                      cli_type(f), f.metadata["metavar"]) for f in cli_fields()]
    options += [Option(r.config_key, r.cli_option, r.pytest_option, r.help, str, "FILE")
                for r in RENDERERS.values()]
    for spelling in ("cli", "pytest"):
        seen: dict[str, str] = {}
        for option in options:
            name = getattr(option, spelling)
            if name in seen:
                raise ValueError(f"scan option {name} is declared twice: by {seen[name]!r} "
                                 f"and {option.key!r}")
            seen[name] = option.key
    return options


def argparse_help(text: str) -> str:
    """``text`` for argparse (and pytest, which formats help with it): % doubled."""
    return text.replace("%", "%%")
