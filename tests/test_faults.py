"""Faults and hostile inputs that must lose nothing (issue 29): outputs never over inputs,
``data build --force`` only over its own folders, no option abbreviations, ``PATH:WEIGHT``
that cannot pick another adapter, a base model equal to the model, NaN reports in compare."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from PIL import Image

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


# --- 1. outputs never over inputs --------------------------------------------------------


def _scan_inputs(tmp_path: Path) -> tuple[Path, Path, dict[Path, str]]:
    model, data = tmp_path / "model", tmp_path / "data"
    (model / "unet").mkdir(parents=True)
    (data / "identity-0" / "members").mkdir(parents=True)
    files = {model / "model_index.json": '{"_class_name": "StableDiffusionPipeline"}\n',
             model / "unet" / "config.json": "{}\n",
             data / "identity-0" / "prompt.txt": "a photo\n"}
    for path, text in files.items():
        path.write_text(text)
    return model, data, {path: text for path, text in files.items()}


@pytest.mark.parametrize(("option", "target"), [
    ("--report-json", "model/model_index.json"),
    ("--report-html", "data/identity-0/prompt.txt"),
    ("--report-markdown", "model/unet/new.md"),  # a new file inside the model folder
    ("--report-sarif", "link.sarif"),  # a symlink to a model file
    ("--evidence-dir", "data/identity-0/evidence"),
])
def test_no_scan_output_lands_on_or_inside_an_input(
        tmp_path: Path, option: str, target: str, capsys: pytest.CaptureFixture[str]) -> None:
    model, data, files = _scan_inputs(tmp_path)
    (tmp_path / "link.sarif").symlink_to(model / "unet" / "config.json")
    code = main(["scan", str(model), "--data", str(data), option, str(tmp_path / target)])
    assert code == 4, capsys.readouterr().err
    assert "input" in capsys.readouterr().err
    assert all(path.read_text() == text for path, text in files.items())
    assert not (model / "unet" / "new.md").exists()


def test_no_scan_output_lands_inside_an_adapter_or_the_base_model(tmp_path: Path) -> None:
    from s2l_scan.config import make_config
    from s2l_scan.plan import ScanInputs, build_plan

    model, data, _ = _scan_inputs(tmp_path)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    base = tmp_path / "base"
    inputs = ScanInputs(model=str(model), data=str(data), lora=f"{adapter}:0.5")
    with pytest.raises(UsageError, match="inside the input"):
        build_plan(inputs, make_config(report_json=str(adapter / "r.json")))
    assert ScanInputs(model=str(model), data=str(data), base_model=str(base)).paths == [
        model, base, data]


def test_report_command_writes_over_none_of_the_scanned_inputs(tmp_path: Path) -> None:
    from report_factory import make_report

    from s2l_scan.report.files import write_text_atomic

    model, data, files = _scan_inputs(tmp_path)
    report = make_report(model_path=str(model))
    report.data["root"] = str(data)
    saved = tmp_path / "report.json"
    write_text_atomic(saved, __import__("json").dumps(report.to_dict()))
    for option, target in (("--html", model / "model_index.json"),
                           ("--model-card", data / "identity-0" / "prompt.txt")):
        assert main(["report", str(saved), option, str(target)]) == 4
    assert all(path.read_text() == text for path, text in files.items())


def test_a_model_card_given_as_a_symlink_is_updated_through_it(tmp_path: Path) -> None:
    from report_factory import make_report

    from s2l_scan.report.files import write_text_atomic

    saved = tmp_path / "report.json"
    write_text_atomic(saved, __import__("json").dumps(make_report().to_dict()))
    real = tmp_path / "cards" / "README.md"
    real.parent.mkdir()
    real.write_text("# My model\n")
    link = tmp_path / "README.md"
    link.symlink_to(real)
    assert main(["report", str(saved), "--model-card", str(link)]) == 0
    assert link.is_symlink() and "# My model" in real.read_text()
    assert "privacy" in real.read_text().lower()


# --- 5. NaN in a report -------------------------------------------------------------------


@pytest.mark.parametrize("which", ["current", "previous"])
@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_a_report_holding_nan_is_a_usage_error_for_compare_and_render(
        tmp_path: Path, which: str, constant: str, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from report_factory import make_report

    clean = json.dumps(make_report().to_dict(), indent=2)
    auc = f'"auc": {make_report().results[0].auc!r}'
    assert auc in clean
    broken = clean.replace(auc, f'"auc": {constant}', 1)
    paths = {"current": tmp_path / "current.json", "previous": tmp_path / "previous.json"}
    for name, path in paths.items():
        path.write_text(broken if name == which else clean)
    code = main(["report", str(paths["current"]), "--compare", str(paths["previous"]),
                 "--html", str(tmp_path / "r.html")])
    assert code == 4
    assert f"holds {constant}" in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()


# --- 7. deeply nested folders --------------------------------------------------------------


def test_a_path_too_long_to_resolve_is_not_called_a_symlink_loop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from s2l_scan.errors import AuditDataError
    from s2l_scan.io import audit_data

    def too_long(self: Path, strict: bool = False) -> Path:
        raise OSError(errno.ENAMETOOLONG, "File name too long")

    monkeypatch.setattr(Path, "resolve", too_long)
    with pytest.raises(AuditDataError, match="no symlink loop") as raised:
        audit_data._inside(tmp_path / "deep", tmp_path)
    assert "Remove the symlink loop" not in str(raised.value)


# --- 7. config sizes bounded before allocation ----------------------------------------------


@pytest.fixture(scope="module")
def sd1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests import model_factory as factory

    return factory.sd1_folder(tmp_path_factory.mktemp("bounds") / "sd1")


def _edited(model: Path, tmp_path: Path, part: str, **changes: object) -> Path:
    import json
    import shutil

    copy = Path(shutil.copytree(model, tmp_path / "model"))
    values = json.loads((copy / part).read_text())
    values.update(changes)
    (copy / part).write_text(json.dumps(values))
    return copy


@pytest.mark.parametrize(("part", "changes", "named"), [
    ("unet/config.json", {"sample_size": 10**6}, "sample_size is 1000000"),
    ("tokenizer/tokenizer_config.json", {"model_max_length": 10**9},
     "model_max_length is 1000000000"),
    ("unet/config.json", {"block_out_channels": [10**5, 10**5]}, "unet/config.json: its sizes"),
    ("vae/config.json", {"block_out_channels": [10**5, 10**5]}, "vae/config.json: its sizes"),
    ("text_encoder/config.json", {"hidden_size": 10**5}, "text_encoder/config.json: its sizes"),
    ("unet/config.json", {"layers_per_block": 10**7}, "layers_per_block is 10000000"),
])
def test_a_config_claiming_sizes_its_weights_lack_is_refused_naming_the_field(
        sd1: Path, tmp_path: Path, part: str, changes: dict[str, object], named: str) -> None:
    from s2l_scan.errors import ModelLoadError
    from s2l_scan.io.model import inspect_pipeline_folder

    model = _edited(sd1, tmp_path, part, **changes)
    with pytest.raises(ModelLoadError, match=named):
        inspect_pipeline_folder(model)  # before any module is built: reads headers only


def test_the_untouched_model_passes_the_size_checks(sd1: Path) -> None:
    from s2l_scan.io.model import inspect_pipeline_folder

    inspect_pipeline_folder(sd1)


def test_a_peft_rank_no_tensor_has_is_refused_before_peft_allocates(sd1: Path,
                                                                    tmp_path: Path) -> None:
    import json

    from s2l_scan.errors import ModelLoadError
    from s2l_scan.io.model import load_pipeline
    from tests import model_factory as factory

    peft = factory.peft_adapter(sd1, tmp_path / "peft")
    config = peft / "adapter_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "r": 3 * 10**7}))
    with pytest.raises(ModelLoadError, match="r is 30000000"):
        load_pipeline(sd1, lora=peft)


def test_a_prompt_longer_than_any_tokenizer_reads_is_refused(tmp_path: Path) -> None:
    from s2l_scan.errors import AuditDataError
    from s2l_scan.io.audit_data import MAX_PROMPT_BYTES, list_domain_files

    for split in ("members", "nonmembers"):
        (tmp_path / "identity-0" / split).mkdir(parents=True)
    (tmp_path / "identity-0" / "prompt.txt").write_text("a photo " * MAX_PROMPT_BYTES)
    with pytest.raises(AuditDataError, match=r"prompt\.txt: \d+ bytes"):
        list_domain_files(tmp_path)


def test_a_domain_too_large_for_the_gate_is_refused_by_name(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    # 5,000 images in one domain ended in "internal error"; the limit is named before any
    # image is decoded (patched low here, so the test writes a handful of files)
    from s2l_scan.errors import AuditDataError
    from s2l_scan.io import audit_data

    monkeypatch.setattr(audit_data, "MAX_PER_SPLIT", 3)
    domain = tmp_path / "data" / "big"
    for split, count in (("members", 4), ("nonmembers", 2)):
        (domain / split).mkdir(parents=True)
        for i in range(count):
            Image.new("RGB", (8, 8), (i, i, i)).save(domain / split / f"{i}.png")
    (domain / "prompt.txt").write_text("a photo\n")
    with pytest.raises(AuditDataError, match=r"big/members: 4 images, more than the 3.*"
                                             r"--per-domain 3"):
        audit_data.list_domain_files(tmp_path / "data")
