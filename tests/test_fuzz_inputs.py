"""Fuzzing the text inputs a user hands s2l-scan (issue 6): config files and caption files.

Whatever the bytes, reading them either works or raises the documented error (a
:class:`~s2l_scan.errors.UsageError` for configs, an
:class:`~s2l_scan.errors.AuditDataError` for captions) — never another exception.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from s2l_scan.config import ScanConfig, config_keys, make_config, read_config_file
from s2l_scan.errors import AuditDataError, UsageError
from s2l_scan.io.audit_data import load_audit_data
from s2l_scan.plan import ScanInputs, build_plan

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

# ---- config files ------------------------------------------------------------------------------

_KEYS = st.sampled_from(config_keys()) | st.text(min_size=1, max_size=12)
_SCALARS = (st.booleans() | st.integers(-(2**63), 2**63 - 1)
            | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20)
            | st.sampled_from(["loss", "secmi", "pia", "pian", "noise", "lora", "point",
                               "lower", "on", "off", "auc:+0.02", ""]))
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(_KEYS, inner, max_size=3), max_leaves=8)


def _toml(value: Any) -> str:
    """TOML for a JSON-like value (inline tables and arrays)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"


def _plan(config: ScanConfig) -> None:
    """Everything a scan validates before model work."""
    build_plan(ScanInputs("reference"), config)


def _check_config_text(text: str, name: str = "s2l.toml") -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            config = make_config(read_config_file(path))
            build_plan(ScanInputs("reference"), config, protected=[path])
        except UsageError:
            pass


@SETTINGS
@given(st.dictionaries(_KEYS, _VALUES, max_size=6))
def test_structured_config_files_fail_only_with_usage_errors(table: dict[str, Any]) -> None:
    body = "".join(f"{json.dumps(key)} = {_toml(value)}\n" for key, value in table.items())
    _check_config_text(body)
    _check_config_text("[tool.s2l]\n" + body, name="pyproject.toml")


@SETTINGS
@given(st.text(max_size=200))
def test_arbitrary_config_text_fails_only_with_usage_errors(text: str) -> None:
    _check_config_text(text)


@SETTINGS
@given(st.sampled_from(config_keys()), _VALUES)
def test_any_value_for_a_known_key_fails_only_with_usage_errors(key: str, value: Any) -> None:
    with contextlib.suppress(UsageError):
        _plan(make_config({key: value}))


def _options(registry: Any, names: list[str]) -> st.SearchStrategy[dict[str, dict[str, Any]]]:
    """{name: {option: value}} for registered names and their real option names."""
    fields = {name: [f.name for f in dataclasses.fields(registry.get(name))] + ["bogus"]
              for name in names}
    return st.dictionaries(st.sampled_from(names), st.sampled_from(names).flatmap(
        lambda name: st.dictionaries(st.sampled_from(fields[name]), _VALUES, max_size=3)),
        max_size=2)


def _attack_options() -> st.SearchStrategy[tuple[list[str], dict[str, Any]]]:
    import s2l_scan.baselines  # noqa: F401 - registers the attacks
    from s2l_scan.attack import ATTACKS

    names = ATTACKS.names()
    return st.tuples(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True),
                     _options(ATTACKS, names))


def _probe_options() -> st.SearchStrategy[tuple[list[str], dict[str, Any]]]:
    import s2l_scan.probes  # noqa: F401 - registers the probes
    from s2l_scan.probe import PROBES

    names = PROBES.names()
    return st.tuples(st.lists(st.sampled_from(names), max_size=3, unique=True),
                     _options(PROBES, names))


@SETTINGS
@given(_attack_options(), _probe_options())
def test_attack_and_probe_options_fail_only_with_usage_errors(
        attacks: tuple[list[str], dict[str, Any]], probes: tuple[list[str], dict[str, Any]]
        ) -> None:
    values = {"attacks": attacks[0], "attack_options": attacks[1], "probes": probes[0],
              "probe_options": probes[1]}
    with contextlib.suppress(UsageError):
        _plan(make_config(values))


# ---- caption files -----------------------------------------------------------------------------

_NAMES = st.sampled_from(["members/a.png", "nonmembers/b.png", "a.png", "b.png", "c.png",
                          "../a.png", "members/", "", "members\\a.png"]) | st.text(max_size=10)
_RECORDS = st.fixed_dictionaries({}, optional={"file": _NAMES | _SCALARS,
                                               "caption": _SCALARS | st.text(max_size=30)})
_LINES = st.lists(_RECORDS.map(json.dumps) | st.text(max_size=40) | st.just(""), max_size=6)


def _audit_folder(root: Path) -> Path:
    domain = root / "data" / "d"
    # two images per split: the fewest a domain may hold (one per cross-fitting half)
    for split, names in (("members", ("a.png", "a2.png")), ("nonmembers", ("b.png", "b2.png"))):
        (domain / split).mkdir(parents=True)
        for name in names:
            Image.fromarray(np.full((8, 8, 3), 90, dtype=np.uint8)).save(domain / split / name)
    (domain / "prompt.txt").write_text("photo of d\n")
    return domain


@SETTINGS
@given(_LINES)
def test_caption_files_fail_only_with_audit_data_errors(lines: list[str]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        domain = _audit_folder(Path(folder))
        (domain / "captions.jsonl").write_text("\n".join(lines), encoding="utf-8",
                                               errors="surrogatepass")
        try:
            data = load_audit_data(domain.parent, 8)
        except AuditDataError:
            return
        captions = [image.caption for d in data.domains for image in d.members + d.nonmembers]
        assert all(isinstance(c, str) and c.strip() for c in captions)


@SETTINGS
@given(st.binary(max_size=200))
def test_caption_bytes_fail_only_with_audit_data_errors(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        domain = _audit_folder(Path(folder))
        (domain / "captions.jsonl").write_bytes(raw)
        with contextlib.suppress(AuditDataError):
            load_audit_data(domain.parent, 8)


@SETTINGS
@given(_attack_options())
def test_attack_options_that_validate_also_score(attacks: tuple[list[str], dict[str, Any]]
                                                 ) -> None:
    """Options that pass the up-front check never fail later, inside the scan: each attack
    scores a toy batch under a stand-in ε-predictor with a 1,000-step schedule."""
    import torch

    from s2l_scan.attack import ATTACKS
    from s2l_scan.conditioning import Conditioning

    try:
        config = make_config({"attacks": attacks[0], "attack_options": attacks[1]})
        _plan(config)
    except UsageError:
        return
    alphas = torch.linspace(0.9999, 0.01, 1000)
    x0, cond = torch.randn(2, 4, 4, 4), torch.randn(2, 3, 8)
    for name in config.attacks:
        attack = ATTACKS.get(name)(**config.attack_options.get(name, {}))
        # an attack that reads the empty prompt is given one, as the scan gives it
        extra: dict[str, Any] = {"uncond": torch.randn(1, 3, 8)} if attack.needs_uncond else {}
        # and one that perturbs captions its perturbed conditionings (CLiD's c*)
        lists = attack.perturbed_captions(
            ["a red car", "a dog"], lambda texts: Conditioning(torch.randn(len(texts), 3, 8)))
        if lists:
            extra["perturbed"] = [torch.randn(2, 3, 8) for _ in lists]
        scores = attack.score_batch_variants(lambda x, t, c: 0.1 * x + c.mean(), x0, cond,
                                             alphas, torch.arange(2), **extra)
        assert all(v.shape == (2,) for v in scores.values())
