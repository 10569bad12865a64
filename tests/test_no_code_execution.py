"""No code from an untrusted checkpoint ever runs (issue 6): a payload is planted in every file
the loader may touch — weights (pickles, with and without the opt-in), model_index.json, each
component's config, the tokenizer and scheduler configs, a single-file checkpoint, a LoRA
adapter — next to a Python module that would prove it ran. Each scan through the CLI must be
refused (exit 2, the file named) and the proof must never appear."""

from __future__ import annotations

import json
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from s2l_scan.cli import main
from s2l_scan.errors import ExitCode

FAST = ["--attacks", "loss", "--probes", "", "--extraction-samples", "0", "--bootstrap", "20",
        "--cache", "off", "--max-auc", "1", "--max-tpr", "1"]


def _module(marker: Path) -> str:
    """A module that creates ``marker`` when imported, with every class name a config names."""
    classes = "".join(f"class {name}:\n    pass\n" for name in
                      ("Evil", "EvilPipeline", "EvilTokenizer", "EvilScheduler", "EvilNet"))
    return f"from pathlib import Path\nPath({str(marker)!r}).touch()\n{classes}"


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.marker,))


Plant = Callable[[Path, Path], list[str]]  # (model copy, marker) → extra CLI arguments


def _json(relative: str, **changes: object) -> Plant:
    def plant(model: Path, marker: Path) -> list[str]:
        path = model / relative
        body = json.loads(path.read_text()) if path.exists() else {}
        body.update(changes)
        path.write_text(json.dumps(body))
        return []
    return plant


def _pickle(relative: str, name: str, *extra: str) -> Plant:
    def plant(model: Path, marker: Path) -> list[str]:
        (model / relative).unlink()
        ((model / relative).parent / name).write_bytes(pickle.dumps({"w": _Payload(marker)}))
        return list(extra)
    return plant


def _single_file(suffix: str, *extra: str) -> Plant:
    def plant(model: Path, marker: Path) -> list[str]:
        checkpoint = model.parent / f"checkpoint{suffix}"
        checkpoint.write_bytes(pickle.dumps({"state_dict": _Payload(marker)}))
        return ["--model-config", str(model), "--checkpoint", str(checkpoint), *extra]
    return plant


def _lora(*extra: str) -> Plant:
    def plant(model: Path, marker: Path) -> list[str]:
        adapter = model.parent / "adapter"
        adapter.mkdir()
        (adapter / "pytorch_lora_weights.bin").write_bytes(pickle.dumps(_Payload(marker)))
        (adapter / "adapter_config.json").write_text(json.dumps({"auto_map": {"a": "evil.Evil"}}))
        return ["--lora", str(adapter), *extra]
    return plant


UNET = "unet/diffusion_pytorch_model.safetensors"
AUTO_MAP = {"AutoModel": "evil.Evil", "AutoTokenizer": ["evil.EvilTokenizer", None]}

PAYLOADS: list[tuple[str, Plant, str]] = [
    ("unet-pickle", _pickle(UNET, "diffusion_pytorch_model.bin"), "pickled weights"),
    ("unet-pickle-opt-in", _pickle(UNET, "diffusion_pytorch_model.bin", "--allow-pickle"),
     "could not load"),
    ("vae-pickle-opt-in", _pickle("vae/diffusion_pytorch_model.safetensors",
                                  "diffusion_pytorch_model.bin", "--allow-pickle"),
     "could not load"),
    ("text-encoder-pickle-opt-in", _pickle("text_encoder/model.safetensors", "pytorch_model.bin",
                                           "--allow-pickle"), "could not load"),
    ("pipeline-class-module", _json("model_index.json", _class_name=["evil", "EvilPipeline"]),
     "model_index.json: pipeline class"),
    ("custom-pipeline-code", _json("model_index.json", _class_name="EvilPipeline"),
     "model_index.json: pipeline class 'EvilPipeline'"),
    *[(f"{name}-custom-class", _json("model_index.json", **{name: ["evil", "Evil"]}),
       f"component {name!r} is evil.Evil")
      for name in ("unet", "vae", "text_encoder", "tokenizer", "scheduler")],
    ("extra-component", _json("model_index.json", watermarker=["evil", "Evil"]),
     "unknown component 'watermarker'"),
    *[(f"auto-map-{file.replace('/', '-')}", _json(file, auto_map=AUTO_MAP),
       f"{file}: declares auto_map")
      for file in ("unet/config.json", "vae/config.json", "text_encoder/config.json",
                   "scheduler/scheduler_config.json", "tokenizer/tokenizer_config.json",
                   "tokenizer/special_tokens_map.json")],
    ("tokenizer-class", _json("tokenizer/tokenizer_config.json", tokenizer_class="EvilTokenizer"),
     "tokenizer_class is 'EvilTokenizer'"),
    ("scheduler-class", _json("scheduler/scheduler_config.json", _class_name="EvilScheduler"),
     "_class_name is 'EvilScheduler'"),
    ("single-file-ckpt", _single_file(".ckpt"), "pickled checkpoints can run arbitrary code"),
    ("single-file-ckpt-opt-in", _single_file(".ckpt", "--allow-pickle"), "could not load"),
    ("lora-pickle", _lora(), "no *.safetensors LoRA weights (found pickled"),
]


@pytest.mark.parametrize(("plant", "culprit"),
                         [pytest.param(*row[1:], id=row[0]) for row in PAYLOADS])
def test_payload_never_runs(tiny_reference: Path, tmp_path: Path, plant: Plant, culprit: str,
                            capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    model = Path(shutil.copytree(tiny_reference / "model", tmp_path / "model"))
    marker = tmp_path / "payload-ran"
    for folder in (model, *(p for p in model.iterdir() if p.is_dir())):
        (folder / "evil.py").write_text(_module(marker))
    monkeypatch.syspath_prepend(str(model))  # even an importable module must not be imported
    extra = plant(model, marker)
    if "--checkpoint" in extra:  # a single-file checkpoint replaces the model argument
        at = extra.index("--checkpoint")
        target, extra = extra[at + 1], extra[:at] + extra[at + 2:]
    else:
        target = str(model)
    code = main(["scan", target, "--data", str(tiny_reference / "data"), *FAST, *extra])
    err = capsys.readouterr().err
    assert not marker.exists(), "code shipped with the checkpoint ran"
    assert code == 2, err
    assert culprit in err and "Traceback" not in err and "internal error" not in err


def test_python_files_in_a_checkpoint_are_never_imported(
        tiny_reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = Path(shutil.copytree(tiny_reference / "model", tmp_path / "model"))
    marker = tmp_path / "payload-ran"
    for folder in (model, *(p for p in model.iterdir() if p.is_dir())):
        for name in ("evil.py", "pipeline.py", "modeling.py", "__init__.py"):
            (folder / name).write_text(_module(marker))
    assert main(["scan", str(model), "--data", str(tiny_reference / "data"), *FAST]) == \
        ExitCode.INCONCLUSIVE  # the scan ran and judged (6 per class: too few to show safety)
    assert not marker.exists()
    capsys.readouterr()


def test_the_payload_would_run_if_imported(tmp_path: Path) -> None:
    """The proof is live: importing the planted module does create the marker."""
    marker = tmp_path / "ran"
    namespace: dict[str, object] = {}
    exec(compile(_module(marker), "evil.py", "exec"), namespace)
    assert marker.exists()
    pickle.loads(pickle.dumps(_Payload(tmp_path / "unpickled")))
    assert (tmp_path / "unpickled").exists()
