"""Scan options, declared once: both doors offer the same options, generated from ScanConfig
fields and report renderers; the scan seed drives the attacks; negative_prompt reaches the
sampler."""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from report_factory import make_report

import s2l_scan.extraction.index  # noqa: F401 - load faiss once, before any scan
from s2l_scan import pytest_plugin
from s2l_scan.attack import make_attack
from s2l_scan.cli import build_parser, main
from s2l_scan.config import FIELDS, ScanConfig, make_config
from s2l_scan.errors import ExitCode, UsageError
from s2l_scan.options import scan_options
from s2l_scan.plan import ScanInputs, build_plan
from s2l_scan.report.outputs import RENDERERS, Renderer, register_renderer

pytest_plugins = ["pytester"]

# The spellings both doors offered before options were generated (the hand-written tables of
# config.SCAN_OPTIONS, cli._SCAN_OPTIONS and pytest_plugin._PATH_OPTIONS), plus negative_prompt,
# family_alpha, allow_dropped_checks, reference_preset, memorization_starts, max_text_guidance,
# sampler, budget, anisotropy_starts and max_anisotropy.
_SHARED = ("max-auc", "max-tpr", "ci-end", "attacks", "domains", "seed", "bootstrap",
           "bootstrap-seed", "reference-seed", "batch-size", "threads", "device", "dtype",
           "probes", "max-amplification", "max-extracted", "evidence-dir", "extraction-samples",
           "extraction-steps", "sp-samples", "embedder", "extraction-candidates", "known-images",
           "known-index", "index-cache-dir", "sweep", "cache", "cache-dir", "allow-pickle",
           "compare", "compare-fail", "negative-prompt", "family-alpha",
           "allow-dropped-checks", "reference-preset", "memorization-starts",
           "max-text-guidance", "sampler", "budget", "anisotropy-starts", "max-anisotropy",
           "on-inconclusive")
CLI = {*(f"--{name}" for name in _SHARED), "--data", "--model-config", "--lora", "--config",
       "--base-model",
       "--report-json", "--report-html", "--report-markdown", "--report-sarif",
       "-q", "--quiet",  # -q: no progress display (pytest has its own -q)
       "--quick"}  # CLI-only: a first look, settings below the config file
PYTEST = {*(f"--s2l-{name}" for name in _SHARED), "--s2l-model", "--s2l-data",
          "--s2l-model-config", "--s2l-lora", "--s2l-config", "--s2l-report-json",
          "--s2l-base-model",
          "--s2l-report-html", "--s2l-report-markdown", "--s2l-sarif"}


class _Group:
    """Records what pytest_addoption declares (pytest's own parser is not public API)."""

    def __init__(self) -> None:
        self.options: dict[str, dict[str, Any]] = {}

    def getgroup(self, name: str, description: str = "") -> _Group:
        return self

    def addoption(self, *names: str, **attrs: Any) -> None:
        for name in names:
            self.options[name] = attrs


def _pytest_options() -> dict[str, dict[str, Any]]:
    group = _Group()
    pytest_plugin.pytest_addoption(group)  # type: ignore[arg-type]
    return group.options


def _cli_actions() -> dict[str, argparse.Action]:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    scan = commands.choices["scan"]
    return {name: action for action in scan._actions for name in action.option_strings
            if name not in ("-h", "--help", "--debug")}  # --debug: every command


def test_both_doors_offer_the_old_spellings_and_nothing_else() -> None:
    assert set(_cli_actions()) == CLI
    assert set(_pytest_options()) == PYTEST


def test_every_option_is_a_command_line_field_or_a_renderer() -> None:
    expected = {f.name for f in dataclasses.fields(ScanConfig) if f.metadata["cli"]}
    expected |= {renderer.config_key for renderer in RENDERERS.values()}
    assert {option.key for option in scan_options()} == expected
    assert not any(FIELDS[key].default_factory is not dataclasses.MISSING  # dicts: files only
                   for key in expected if key in FIELDS)


def test_each_option_has_one_help_in_both_doors_with_its_default() -> None:
    cli, plugin = _cli_actions(), _pytest_options()
    for option in scan_options():
        assert cli[option.cli].dest == option.key
        assert cli[option.cli].help == plugin[option.pytest]["help"], option.key
        assert cli[option.cli].default is None and plugin[option.pytest]["default"] is None
        if option.key in FIELDS:
            assert "default" in option.help, option.key


@pytest.mark.parametrize(("cli", "pytest_option", "key", "value"), [
    ("--report-sarif", "--s2l-sarif", "report_sarif", "r.sarif"),
    ("--report-markdown", "--s2l-report-markdown", "report_markdown", "summary.md"),
    ("--compare", "--s2l-compare", "compare", "v1.json"),
    ("--compare-fail", "--s2l-compare-fail", "compare_fail", "auc:+0.02"),
    ("--seed", "--s2l-seed", "seed", 3),
    ("--max-tpr", "--s2l-max-tpr", "max_tpr", 0.25),
    ("--attacks", "--s2l-attacks", "attacks", "loss,pia"),
    ("--negative-prompt", "--s2l-negative-prompt", "negative_prompt", "blurry"),
])
def test_old_and_new_spellings_parse(pytester: pytest.Pytester, cli: str, pytest_option: str,
                                     key: str, value: Any) -> None:
    args = build_parser().parse_args(["scan", "m", cli, str(value)])
    assert getattr(args, key) == value
    config = pytester.parseconfig(f"{pytest_option}={value}")
    assert config.getoption(pytest_option) == value


def test_flags_parse_in_both_doors(pytester: pytest.Pytester) -> None:
    assert build_parser().parse_args(["scan", "m", "--allow-pickle"]).allow_pickle is True
    assert build_parser().parse_args(["scan", "m"]).allow_pickle is None  # config files apply
    assert pytester.parseconfig("--s2l-allow-pickle").getoption("--s2l-allow-pickle") is True


@pytest.fixture
def csv_renderer() -> Iterator[Renderer]:
    renderer = register_renderer(Renderer("csv", "report_csv", lambda report, base: "csv\n",
                                          "write a CSV file (test format)"))
    yield renderer
    del RENDERERS["csv"]


def test_a_new_renderer_is_an_option_of_both_doors_and_a_config_key(
        csv_renderer: Renderer, pytester: pytest.Pytester, tmp_path: Path) -> None:
    assert "--report-csv" in _cli_actions() and "--s2l-report-csv" in _pytest_options()
    parsed = pytester.parseconfig("--s2l-report-csv=x.csv")
    assert parsed.getoption("--s2l-report-csv") == "x.csv"
    args = build_parser().parse_args(["scan", "m", "--report-csv", str(tmp_path / "r.csv")])
    config = make_config({}, **{o.key: getattr(args, o.key) for o in scan_options()})
    assert config.to_dict()["report_csv"] == str(tmp_path / "r.csv")
    assert make_config({"report_csv": "f.csv"}).to_dict()["report_csv"] == "f.csv"  # TOML key
    plan = build_plan(ScanInputs("reference"), config)
    assert plan.outputs.write(make_report()) == [("csv", tmp_path / "r.csv")]
    assert (tmp_path / "r.csv").read_text() == "csv\n"
    assert build_parser().parse_args(["report", "r.json", "--csv", "out.csv"]).csv


def test_a_renderer_key_that_shadows_a_field_is_refused() -> None:
    register_renderer(Renderer("seeds", "seed", lambda report, base: ""))
    try:
        with pytest.raises(ValueError, match="--seed is declared twice"):
            scan_options()
    finally:
        del RENDERERS["seeds"]


def test_report_keys_keep_their_place_in_the_echoed_config() -> None:
    echoed = make_config({"report_sarif": "r.sarif"}).to_dict()
    assert echoed["report_sarif"] == "r.sarif" and echoed["report_json"] is None
    assert "reports" not in echoed
    with pytest.raises(UsageError, match="unknown s2l config key 'reports'"):
        make_config({"reports": {"report_json": "r.json"}})


# ---- the scan seed drives the attacks ---------------------------------------------------------

@pytest.mark.parametrize(("options", "seed", "used"), [
    ({}, 3, 3),
    ({"seed": None}, 3, 3),
    ({"seed": 5}, 3, 5),
    ({"seed": 0}, 3, 0),
])
def test_loss_seed_is_the_scan_seed_unless_set(options: dict[str, Any], seed: int,
                                               used: int) -> None:
    import s2l_scan.baselines  # noqa: F401 - registers the attacks

    assert make_attack("loss", options, seed=seed).describe()["seed"] == used


@pytest.mark.parametrize(("name", "options", "message"), [
    ("loss", {"n_noise": 0}, "attack 'loss': n_noise must be"),
    ("loss", {"nosie": 1}, "attack 'loss': bad options {'nosie': 1}"),
    ("secmi", {"seed": 1}, "attack 'secmi': bad options"),  # SecMI is deterministic: no seed
])
def test_bad_attack_options_are_usage_errors_naming_the_attack(
        name: str, options: dict[str, Any], message: str) -> None:
    import s2l_scan.baselines  # noqa: F401 - registers the attacks

    with pytest.raises(UsageError, match=message):
        make_attack(name, options, seed=0)


FAST = """attacks = ["loss"]
bootstrap = 50
extraction_samples = 0
probes = []
"""


def _loss_rows(ref: Path, tmp_path: Path, name: str, toml: str, *extra: str
               ) -> dict[str, dict[str, Any]]:
    config, out = tmp_path / f"{name}.toml", tmp_path / f"{name}.json"
    config.write_text(FAST + toml)
    assert main(["scan", str(ref / "model"), "--data", str(ref / "data"), "--config",
                 str(config), "--max-auc", "1", "--max-tpr", "1", "--report-json", str(out),
                 *extra]) == ExitCode.INCONCLUSIVE  # 6 per class cannot show safety
    return {row["domain"]: row for row in json.loads(out.read_text())["results"]}


def test_seed_changes_loss_noises_unless_the_attack_sets_its_own(
        tiny_reference: Path, tmp_path: Path) -> None:
    zero = _loss_rows(tiny_reference, tmp_path, "zero", "", "--seed", "0")
    three = _loss_rows(tiny_reference, tmp_path, "three", "", "--seed", "3")
    pinned = _loss_rows(tiny_reference, tmp_path, "pinned", "attack_options = {loss = {seed = 0}}",
                        "--seed", "3")
    assert set(zero) == set(three) == set(pinned) == {"identity-0", "identity-1", "pooled"}
    for domain, row in zero.items():
        assert row["settings"]["seed"] == 0 and three[domain]["settings"]["seed"] == 3
        assert pinned[domain]["settings"]["seed"] == 0
        assert three[domain]["member_scores"] != row["member_scores"]
        assert pinned[domain]["member_scores"] == row["member_scores"]
        assert pinned[domain]["nonmember_scores"] == row["nonmember_scores"]


# ---- negative_prompt reaches the sampler ------------------------------------------------------

def test_negative_prompt_reaches_extraction_generation(
        tiny_reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import s2l_scan.generation

    real, seen = s2l_scan.generation.generate_images, []

    def spy(*args: Any, settings: Any, **kwargs: Any) -> np.ndarray:
        seen.append(settings.negative_prompt)
        return real(*args, settings=settings, **kwargs)

    monkeypatch.setattr(s2l_scan.generation, "generate_images", spy)
    config = tmp_path / "s2l.toml"
    config.write_text("attacks = ['loss']\nbootstrap = 50\nprobes = []\nextraction_samples = 1\n"
                      "extraction_steps = 2\n")
    assert main(["scan", str(tiny_reference / "model"), "--data", str(tiny_reference / "data"),
                 "--config", str(config), "--max-auc", "1", "--max-tpr", "1",
                 "--negative-prompt", "blurry"]) == ExitCode.INCONCLUSIVE
    assert seen and set(seen) == {"blurry"}


def test_negative_prompt_reaches_sp_set_generation(monkeypatch: pytest.MonkeyPatch) -> None:
    import s2l_scan.probes.sp_set as sp_set
    from s2l_scan.generation import SamplerSettings
    from s2l_scan.stages.probes import GeneratedSets

    seen = []

    def spy(pipeline: Any, prompt: str, count: int, *, settings: Any, **kwargs: Any
            ) -> np.ndarray:
        seen.append(settings.negative_prompt)
        return np.zeros((count, 4, 4, 3), np.uint8)

    monkeypatch.setattr(sp_set, "generate_images", spy)
    model = SimpleNamespace(pipeline=None, model_hash="h", platform={})
    sets = GeneratedSets(model, make_config(negative_prompt="blurry", sp_samples=2),
                         encode=lambda images: images, store=None)
    sets.latents("a photo of sks person")
    assert seen == ["blurry"]
    keys = {sp_set.sp_set_key("h", "p", 2, 0, SamplerSettings(negative_prompt=n), {}, "S")
            for n in (None, "blurry")}
    assert len(keys) == 2  # a negative prompt is another SP set


def test_negative_prompt_is_part_of_the_probe_unit_key() -> None:
    # a probe trains on SP sets, so a cached probe unit of another negative prompt is stale
    from s2l_scan.stages.probes import _ProbeRun
    from s2l_scan.stages.runtime import Runtime

    enc = SimpleNamespace(members=np.zeros(2), nonmembers=np.ones(2), member_captions=[0, 0],
                          nonmember_captions=[0, 0])
    from diffusers import DDIMScheduler

    model = SimpleNamespace(model_hash="h", platform={},
                            pipeline=SimpleNamespace(scheduler=DDIMScheduler()))
    subject = SimpleNamespace(model=model, encoded={"d": enc},
                              data=SimpleNamespace(domain=lambda name: SimpleNamespace(prompt="p")))
    spec = SimpleNamespace(probe=SimpleNamespace(describe=dict), label="noise")
    keys = {_ProbeRun(subject, [], make_config(negative_prompt=n),  # type: ignore[arg-type]
                      index=None, runtime=Runtime())._key(spec, "d")  # type: ignore[arg-type]
            for n in (None, "blurry")}
    assert len(keys) == 2


@pytest.mark.parametrize("value", ["", "  ", 3, ["blurry"]])
def test_a_bad_negative_prompt_is_a_usage_error(value: Any) -> None:
    with pytest.raises(UsageError, match="negative_prompt must be a non-empty string"):
        make_config({"negative_prompt": value})


_REFERENCE_ONLY = [("--reference-preset", "tiny", "reference_preset"),
                   ("--reference-seed", "3", "reference_seed")]


@pytest.mark.parametrize(("option", "value", "key"), _REFERENCE_ONLY)
def test_a_reference_option_for_another_model_is_a_usage_error_in_the_cli(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str,
        key: str) -> None:
    # exit 4 before any model work: the model folder does not even exist
    model, data = tmp_path / "no-model", tmp_path / "no-data"
    assert main(["scan", str(model), "--data", str(data), option, value]) == 4
    err = capsys.readouterr().err
    assert f"{option} " in err and "not 'reference'" in err and f"config: {key}" in err
    assert not model.exists()


@pytest.mark.parametrize(("option", "value", "key"), _REFERENCE_ONLY)
def test_a_reference_option_for_another_model_is_a_usage_error_in_pytest(
        pytester: pytest.Pytester, tmp_path: Path, option: str, value: str, key: str) -> None:
    result = pytester.runpytest(f"--s2l-model={tmp_path / 'm'}", f"--s2l-data={tmp_path / 'd'}",
                                f"--s2l-{option[2:]}={value}", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{option} *not 'reference'*--s2l-{option[2:]}*"])


@pytest.mark.parametrize(("values", "model", "refused"), [
    ({"reference_preset": "tiny"}, "reference", False),  # the reference build: its option
    ({"reference_seed": 3}, "reference", False),
    ({"reference_preset": "default", "reference_seed": 0}, "m", False),  # defaults: not set
    ({}, "m", False),
    ({"reference_preset": "tiny"}, "m", True),  # a config file's value too
    ({"reference_seed": 1}, "m", True),
])
def test_reference_options_are_refused_only_when_set_for_another_model(
        tmp_path: Path, values: dict[str, Any], model: str, refused: bool) -> None:
    inputs = ScanInputs(model if model == "reference" else str(tmp_path / model),
                        data=None if model == "reference" else str(tmp_path))
    config = make_config(values, extraction_samples=0)
    if refused:
        with pytest.raises(UsageError, match="not 'reference'"):
            build_plan(inputs, config)
    else:
        build_plan(inputs, config)
