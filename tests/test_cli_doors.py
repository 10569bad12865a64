"""Small things both doors owe a user: --version, --debug wherever it is typed, and the
reference preset on scan (as ``s2l-scan reference build --preset`` takes it)."""

from __future__ import annotations

from importlib.metadata import version

import pytest

import s2l_scan.cli as cli
from s2l_scan.cli import main
from s2l_scan.config import make_config


def test_version_is_the_installed_distributions(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"s2l-scan {version('s2l-scan')}"


def _boom(args: object) -> int:
    raise RuntimeError("boom")


@pytest.mark.parametrize(("argv", "debug"), [
    (["report", "r.json", "--html", "x.html"], False),
    (["--debug", "report", "r.json", "--html", "x.html"], True),
    (["report", "r.json", "--debug", "--html", "x.html"], True),
    (["report", "r.json", "--html", "x.html", "--debug"], True),
])
def test_debug_works_before_or_after_the_subcommand(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        argv: list[str], debug: bool) -> None:
    monkeypatch.setattr(cli, "_report", _boom)
    if debug:
        with pytest.raises(RuntimeError, match="boom"):  # the traceback, as asked
            main(argv)
    else:
        assert main(argv) == 2
        assert "Rerun with --debug" in capsys.readouterr().err


def test_reference_build_takes_debug_too() -> None:
    args = cli.build_parser().parse_args(["reference", "build", "--preset", "tiny", "--debug"])
    assert args.debug is True and args.preset == "tiny"


@pytest.mark.parametrize(("argv", "preset"), [
    (["scan", "reference"], "default"),
    (["scan", "reference", "--reference-preset", "tiny"], "tiny"),
    (["null-audit", "reference", "--draws", "2", "--reference-preset", "tiny"], "tiny"),
])
def test_scan_takes_the_reference_preset(argv: list[str], preset: str) -> None:
    args = cli.build_parser().parse_args(argv)
    given = {"reference_preset": args.reference_preset} if args.reference_preset else {}
    assert make_config({}, **given).reference_preset == preset


def test_unknown_reference_preset_is_a_usage_error_listing_the_presets(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scan", "reference", "--reference-preset", "huge"]) == 4
    known = "known: ['default', 'finetune', 'tiny']"
    assert f"unknown reference preset 'huge'; {known}" in capsys.readouterr().err
