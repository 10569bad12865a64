"""The s2l-scan command line: exit codes and the reference-model summary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from s2l_scan.cli import main


def test_build_tiny_prints_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ref"
    assert main(["reference", "build", "--out", str(out), "--preset", "tiny",
                 "--set", "unet_steps=3"]) == 0
    printed = capsys.readouterr().out
    assert "identity-1" in printed and "unet" in printed
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["preset"]["unet_steps"] == 3


def test_json_output_is_the_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ref"
    assert main(["reference", "build", "--out", str(out), "--preset", "tiny", "--json",
                 "--set", "unet_steps=2", "--set", "vae_steps=2"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads((out / "manifest.json").read_text())


@pytest.mark.parametrize(("argv", "message"), [
    (["reference", "build", "--preset", "huge"], "unknown reference preset 'huge'"),
    (["reference", "build", "--preset", "tiny", "--set", "members=3"], "unknown knob"),
    (["reference", "build", "--preset", "tiny", "--set", "unet_steps=many"], "expected int"),
    (["reference", "build", "--preset", "tiny", "--set", "unet_steps=0"], "unet_steps must be"),
    (["reference", "build", "--threads", "0"], "positive integer"),
    (["reference"], "required"),
    (["frobnicate"], "invalid choice"),
])
def test_usage_errors_exit_4(argv: list[str], message: str,
                             capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    assert code == 4
    assert message in capsys.readouterr().err


def test_existing_out_is_never_overwritten(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    keep = tmp_path / "mine.txt"
    keep.write_text("precious")
    assert main(["reference", "build", "--out", str(tmp_path), "--preset", "tiny"]) == 4
    assert "already exists" in capsys.readouterr().err
    assert keep.read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]


def test_console_script_runs() -> None:
    result = subprocess.run([sys.executable, "-m", "s2l_scan", "--help"], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0
    assert "reference" in result.stdout


def test_scan_help_lists_the_shared_options() -> None:
    result = subprocess.run([sys.executable, "-m", "s2l_scan", "scan", "--help"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0
    assert "--max-tpr" in result.stdout and "1% FPR" in result.stdout
