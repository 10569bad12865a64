"""The CLI's help teaches: grouped scan options, examples, one preset list, did-you-mean."""

from __future__ import annotations

import pytest

from s2l_scan.cli import HELP_GROUPS, main
from s2l_scan.options import scan_options
from s2l_scan.reference.presets import PRESETS


def _help(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as stop:
        main([*argv, "--help"])
    assert stop.value.code == 0
    return capsys.readouterr().out


def test_scan_help_groups_every_option_and_opens_with_examples(
        capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(capsys, "scan")
    for title, _ in HELP_GROUPS:
        assert f"\n{title}:\n" in text
    grouped = {key for _, keys in HELP_GROUPS for key in keys}
    assert {option.key for option in scan_options()} <= grouped  # "more" stays empty
    assert "\nexamples:\n" in text and "s2l-scan scan MODEL --data audit" in text


def test_top_level_help_is_for_users_not_developers(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(capsys)
    assert "Thin: parses" not in text and "training-data leakage" in text
    assert "examples:" in text and "exit codes:" in text


def test_scan_and_reference_build_list_the_same_presets(
        capsys: pytest.CaptureFixture[str]) -> None:
    scan, build = _help(capsys, "scan"), _help(capsys, "reference", "build")
    for text in (" ".join(scan.split()), " ".join(build.split())):
        assert all(name in text for name in PRESETS)


@pytest.mark.parametrize(("argv", "hint"), [
    (["scan", "m", "--max-aoc", "0.5"], "--max-aoc: did you mean --max-auc?"),
    (["scan", "m", "--extraction-smaples=4"], "did you mean --extraction-samples?"),
    (["scan", "m", "--porbes", "noise"], "--porbes: did you mean --probes?"),
])
def test_a_mistyped_option_gets_a_did_you_mean(capsys: pytest.CaptureFixture[str],
                                               argv: list[str], hint: str) -> None:
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 4 and hint in capsys.readouterr().err


def test_the_example_config_is_valid_and_spells_out_the_defaults() -> None:
    from pathlib import Path

    from s2l_scan.config import ScanConfig, make_config, read_config_file

    example = Path(__file__).resolve().parents[1] / "examples" / "s2l.toml"
    values = read_config_file(example)
    config = make_config(values)  # unknown keys or bad values would be usage errors
    defaults = ScanConfig()
    for key in ("max_auc", "max_tpr", "max_amplification", "max_extracted", "ci_end",
                "family_alpha", "device"):
        assert values[key] == getattr(defaults, key) == getattr(config, key), key


class _Stop(BaseException):  # main() turns an Exception into exit 2
    pass


def _planned_config(monkeypatch: pytest.MonkeyPatch, tmp_path: object, *argv: str) -> object:
    import s2l_scan.plan

    seen = {}

    def capture(inputs: object, config: object, protected: object = ()) -> None:
        seen["config"] = config
        raise _Stop

    monkeypatch.chdir(tmp_path)  # type: ignore[arg-type]
    monkeypatch.setattr(s2l_scan.plan, "build_plan", capture)
    with pytest.raises(_Stop):
        main(["scan", "reference", *argv])
    return seen["config"]


def test_quick_sets_a_small_scan_under_the_file_and_the_options(
        monkeypatch: pytest.MonkeyPatch, tmp_path: object,
        capsys: pytest.CaptureFixture[str]) -> None:
    from pathlib import Path

    config = _planned_config(monkeypatch, tmp_path, "--quick")
    assert (config.attacks, config.probes, config.extraction_samples) == (  # type: ignore[attr-defined]
        ("loss",), ("noise",), 8)
    assert "not a release gate" in capsys.readouterr().err
    Path(str(tmp_path), "s2l.toml").write_text('attacks = ["pia"]\n')
    config = _planned_config(monkeypatch, tmp_path, "--quick", "--extraction-samples=4")
    assert config.attacks == ("pia",) and config.extraction_samples == 4  # type: ignore[attr-defined]
    plain = _planned_config(monkeypatch, tmp_path)
    assert plain.probes != ("noise",) or plain.extraction_samples != 8  # type: ignore[attr-defined]
