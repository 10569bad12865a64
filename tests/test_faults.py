"""Faults and hostile inputs that must lose nothing (issue 29): outputs never over inputs,
``data build --force`` only over its own folders, no option abbreviations, ``PATH:WEIGHT``
that cannot pick another adapter, a base model equal to the model, NaN reports in compare."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from s2l_scan.cli import build_parser, main
from s2l_scan.errors import UsageError
from s2l_scan.io.adapters import AdapterSpec


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += _parsers(sub)
    return found


def test_no_parser_of_any_command_accepts_an_abbreviation() -> None:
    parsers = _parsers(build_parser())
    assert len(parsers) >= 8  # s2l-scan, reference, build, index, build, data, build, scan, ...
    assert all(not parser.allow_abbrev for parser in parsers)


@pytest.mark.parametrize("argv", [
    ["scan", "m", "--data", "d", "--evid", "x"],
    ["scan", "m", "--dat", "d"],
    ["report", "r.json", "--compare-f", "auc:+0"],
    ["data", "build", "--memb", "a", "--nonmembers", "b", "--out", "c", "--resolution", "8",
     "--prompt", "p"],
])
def test_an_abbreviated_option_is_a_usage_error(argv: list[str],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)
    assert exited.value.code == 4
    err = capsys.readouterr().err
    assert "unrecognized arguments" in err or "required: --members" in err


def test_an_existing_folder_named_like_path_weight_is_that_folder(tmp_path: Path) -> None:
    (tmp_path / "ad" / "v1").mkdir(parents=True)
    (tmp_path / "ad" / "v1:2.0").mkdir()
    spec = AdapterSpec.parse(str(tmp_path / "ad" / "v1:2.0"))
    assert spec == AdapterSpec(tmp_path / "ad" / "v1:2.0", 1.0)
    weighted = AdapterSpec.parse(str(tmp_path / "ad" / "v1:2.0") + ":0.5")
    assert weighted == AdapterSpec(tmp_path / "ad" / "v1:2.0", 0.5)


@pytest.mark.parametrize("exists", [True, False])
def test_a_weight_that_is_no_number_is_a_usage_error_naming_it(tmp_path: Path,
                                                              exists: bool) -> None:
    adapter = tmp_path / "X"
    if exists:
        adapter.mkdir()
    with pytest.raises(UsageError, match="'abc' after the last ':' is not a weight"):
        AdapterSpec.parse(f"{adapter}:abc")


def test_lora_with_a_bad_weight_exits_4(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "X").mkdir()
    code = main(["scan", str(tmp_path / "m"), "--data", str(tmp_path), "--lora",
                 f"{tmp_path / 'X'}:abc"])
    assert code == 4 and "not a weight" in capsys.readouterr().err
