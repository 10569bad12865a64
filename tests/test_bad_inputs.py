"""The bad-input matrix (issue 6): every broken model, audit-data folder, config or output path
goes through the real CLI and must end with exit 2, 3 or 4 (never 0, never a traceback), a
message naming the culprit, the user's inputs untouched and no report (or temporary) file left.

One row per case; the loaders' own unit tests (test_model_loading.py, test_audit_data.py) cover
the finer points of each check.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file, save_file

from s2l_scan.cli import main
from s2l_scan.errors import ExitCode

FAST = """attacks = ["loss"]
bootstrap = 50
extraction_samples = 2
extraction_steps = 2
probes = []
cache = "off"
max_auc = 1.0
max_tpr = 1.0
"""
UNET = "model/unet/diffusion_pytorch_model.safetensors"
VAE = "model/vae/diffusion_pytorch_model.safetensors"
TEXT = "model/text_encoder/model.safetensors"
DOMAIN = "data/identity-0"


@dataclass
class Case:
    """A folder holding model/, data/, s2l.toml and out/ (reports go to out/)."""

    root: Path
    marker: Path  # a payload that runs creates this file

    def argv(self, *extra: str) -> list[str]:
        return ["scan", str(self.root / "model"), "--data", str(self.root / "data"),
                "--config", str(self.root / "s2l.toml"),
                "--report-json", str(self.root / "out" / "report.json"), *extra]


class _Payload:
    """Unpickling this creates ``marker``: proof that code from the checkpoint ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (Path.touch, (Path(self.marker),))  # type: ignore[arg-type]


def _pickle_slot(relative: str, name: str, allow: bool = False
                 ) -> Callable[[Case], list[str]]:
    def plant(case: Case) -> list[str]:
        (case.root / relative).unlink()
        target = (case.root / relative).parent / name
        target.write_bytes(pickle.dumps({"weight": _Payload(case.marker)}))
        return ["--allow-pickle"] if allow else []
    return plant


def _edit_json(relative: str, **changes: object) -> Callable[[Case], list[str]]:
    def edit(case: Case) -> list[str]:
        path = case.root / relative
        body = json.loads(path.read_text())
        body.update(changes)
        path.write_text(json.dumps(body))
        return []
    return edit


def _write(relative: str, content: bytes | str) -> Callable[[Case], list[str]]:
    def write(case: Case) -> list[str]:
        path = case.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content)
        else:
            path.write_bytes(content)
        return []
    return write


def _remove(relative: str) -> Callable[[Case], list[str]]:
    def remove(case: Case) -> list[str]:
        path = case.root / relative
        shutil.rmtree(path) if path.is_dir() else path.unlink()
        return []
    return remove


def _truncate(relative: str) -> Callable[[Case], list[str]]:
    def truncate(case: Case) -> list[str]:
        path = case.root / relative
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        return []
    return truncate


def _weights(relative: str, change: Callable[[dict], None]) -> Callable[[Case], list[str]]:
    def edit(case: Case) -> list[str]:
        path = case.root / relative
        tensors = load_file(path)
        change(tensors)
        save_file(tensors, path)
        return []
    return edit


def _first_weight(value: float) -> Callable[[dict], None]:
    def change(tensors: dict) -> None:
        name = sorted(tensors)[0]
        tensors[name] = tensors[name].clone().fill_(value)
    return change


def _misshape(tensors: dict) -> None:
    name = next(n for n in sorted(tensors) if tensors[n].ndim == 2)
    tensors[name] = tensors[name][:, :1].contiguous()


def _png(mode: str, size: tuple[int, int], value: int = 100) -> bytes:
    from io import BytesIO

    out = BytesIO()
    Image.new(mode, size, value).save(out, format="PNG")
    return out.getvalue()


def _first_member(case: Case) -> Path:
    return sorted((case.root / DOMAIN / "members").iterdir())[0]


def _replace_member(content: Callable[[Path], bytes]) -> Callable[[Case], list[str]]:
    def replace(case: Case) -> list[str]:
        path = _first_member(case)
        path.write_bytes(content(path))
        return []
    return replace


def _symlink_out(case: Case) -> list[str]:
    outside = case.root / "elsewhere.png"
    shutil.copy(_first_member(case), outside)
    (case.root / DOMAIN / "members" / "zz-link.png").symlink_to(outside)
    return []


def _empty_split(split: str) -> Callable[[Case], list[str]]:
    def empty(case: Case) -> list[str]:
        for path in (case.root / DOMAIN / split).iterdir():
            path.unlink()
        return []
    return empty


def _empty_data(case: Case) -> list[str]:
    for path in (case.root / "data").iterdir():
        shutil.rmtree(path)
    return []


def _config(text: str) -> Callable[[Case], list[str]]:
    """FAST with ``text`` (a ``key = value`` line) replacing that key."""
    key = text.split("=")[0].strip()
    kept = "".join(line + "\n" for line in FAST.splitlines() if not line.startswith(key + " "))
    return _write("s2l.toml", kept + text)


def _options(*extra: str) -> Callable[[Case], list[str]]:
    return lambda case: list(extra)


def _known_index(resolution: int = 32, *extra: str, meta: dict | None = None
                 ) -> Callable[[Case], list[str]]:
    """A small sharded index at ``resolution`` in the case folder, given as --known-index."""
    def build(case: Case) -> list[str]:
        from s2l_scan.extraction.sharded import build_sharded

        pixels = np.zeros((resolution, resolution, 3), np.uint8)
        folder = build_sharded([("a.png", pixels), ("b.png", pixels + 1)], case.root / "index")
        if meta is not None:
            _edit_json("index/meta.json", **meta)(case)
        return ["--known-index", str(folder), *extra]
    return build


def _report_to(where: Callable[[Case], str]) -> Callable[[Case], list[str]]:
    return lambda case: ["--report-html", where(case)]


def _unwritable(case: Case) -> str:
    if os.geteuid() == 0:  # root writes through any mode bits; /proc refuses new files to all
        return "/proc/s2l-report.html"
    folder = case.root / "out" / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    return str(folder / "report.html")


# (id, setup, exit code, text the message must contain: the culprit)
CASES: list[tuple[str, Callable[[Case], list[str]], int, str]] = [
    # model: code and unsafe formats
    ("pickle-payload-unet", _pickle_slot(UNET, "diffusion_pytorch_model.bin"), 2,
     "unet/diffusion_pytorch_model.bin: pickled weights"),
    ("pickle-payload-vae", _pickle_slot(VAE, "diffusion_pytorch_model.ckpt"), 2,
     "vae/diffusion_pytorch_model.ckpt: pickled weights"),
    ("pickle-payload-text-encoder", _pickle_slot(TEXT, "pytorch_model.bin"), 2,
     "text_encoder/pytorch_model.bin: pickled weights"),
    ("pickle-payload-with-opt-in", _pickle_slot(UNET, "diffusion_pytorch_model.bin", True), 2,
     "model: diffusers could not load"),
    ("custom-component-class", _edit_json("model/model_index.json", unet=["evil", "Net"]), 2,
     "component 'unet' is evil.Net"),
    ("remote-code-auto-map", _edit_json("model/unet/config.json", auto_map={"a": "x.Y"}), 2,
     "unet/config.json: declares auto_map"),
    ("unknown-pipeline-class",
     _edit_json("model/model_index.json", _class_name="StableVideoDiffusionPipeline"), 2,
     "pipeline class 'StableVideoDiffusionPipeline' is not supported"),
    # model: broken weights and layout
    ("truncated-safetensors", _truncate(UNET), 2, "unet/diffusion_pytorch_model.safetensors"),
    ("misshaped-safetensors", _weights(TEXT, _misshape), 2,
     "text_encoder/config.json: its sizes do not match the weights"),
    ("nan-weights", _weights(UNET, _first_weight(float("nan"))), 2, "holds NaN or Inf"),
    ("inf-weights", _weights(VAE, _first_weight(float("inf"))), 2, "holds NaN or Inf"),
    ("missing-component", _remove("model/vae"), 2, "missing component(s) ['vae']"),
    ("missing-model-index", _remove("model/model_index.json"), 2, "model_index.json: missing"),
    ("model-index-not-json", _write("model/model_index.json", "{unet: "), 2,
     "model_index.json: not readable JSON"),
    ("garbage-scheduler-config", _write("model/scheduler/scheduler_config.json", "[1, 2"), 2,
     "scheduler/scheduler_config.json: not readable JSON"),
    # model: a scheduler whose outputs the attacks cannot read as ε
    ("unknown-prediction-type",
     _edit_json("model/scheduler/scheduler_config.json", prediction_type="flow_prediction"), 2,
     "scheduler_config.json: DDIMScheduler has prediction_type 'flow_prediction'"),
    ("continuous-timesteps",
     _edit_json("model/scheduler/scheduler_config.json", timestep_type="continuous"), 2,
     "has timestep_type 'continuous'"),
    # audit data
    ("data-folder-missing", _remove("data"), 2, "audit-data folder does not exist"),
    ("data-folder-empty", _empty_data, 3, "holds no domain folder"),
    ("one-sided-domain", _empty_split("nonmembers"), 2, "identity-0/nonmembers: no .png"),
    ("missing-prompt", _remove(f"{DOMAIN}/prompt.txt"), 2, "identity-0/prompt.txt: missing"),
    ("empty-prompt", _write(f"{DOMAIN}/prompt.txt", " \n"), 2, "prompt.txt: the prompt is empty"),
    ("non-image", _replace_member(lambda p: b"just some text, not pixels\n"), 2,
     "cannot be read as a PNG or JPEG"),
    ("truncated-image", _replace_member(lambda p: p.read_bytes()[:60]), 2,
     "cannot be read as a PNG or JPEG"),
    ("huge-image", _replace_member(lambda p: _png("L", (4200, 4200), 0)), 2,
     "larger than the limit"),
    ("symlink-leaves-data", _symlink_out, 2, "symlink leaves the data folder"),
    ("caption-not-json", _write(f"{DOMAIN}/captions.jsonl", '{"file": "x.png", "cap'), 2,
     "captions.jsonl, line 1: not valid JSON"),
    ("caption-unknown-file",
     _write(f"{DOMAIN}/captions.jsonl", '{"file": "nope.png", "caption": "a"}\n'), 2,
     "captions.jsonl, line 1: unknown file 'nope.png'"),
    ("caption-not-a-string",
     _write(f"{DOMAIN}/captions.jsonl", '{"file": "members/0.png", "caption": 7}\n'), 2,
     "captions.jsonl, line 1"),
    ("unknown-domain-selected", _options("--domains", "identity-9"), 4,
     "unknown domain(s) 'identity-9'"),
    # config
    ("unknown-config-key", _config("max_aucc = 0.5\n"), 4, "unknown s2l config key 'max_aucc'"),
    ("threshold-above-one", _config("max_tpr = 1.5\n"), 4, "max_tpr must be a number in [0, 1]"),
    ("negative-threshold-option", _options("--max-auc", "-0.1"), 4, "max_auc must be a number"),
    ("config-not-toml", _write("s2l.toml", "attacks = [loss"), 4, "is not valid TOML"),
    ("config-wrong-type", _config('bootstrap = "many"\n'), 4, "bootstrap must be a positive"),
    ("config-missing", _remove("s2l.toml"), 4, "s2l.toml does not exist"),
    ("unknown-attack", _options("--attacks", "loss,psychic"), 4, "unknown attack 'psychic'"),
    ("unknown-probe", _options("--probes", "psychic"), 4, "unknown probe 'psychic'"),
    ("unknown-dtype", _options("--dtype", "float64"), 4, "dtype must be one of"),
    ("unknown-device", _options("--device", "tpu:0"), 4, "device 'tpu:0' is not one of"),
    ("device-not-parsable", _options("--device", "cuda:x"), 4, "device 'cuda:x' is not one of"),
    ("absent-gpu", _options("--device", "cuda:64"), 4, "CUDA GPU(s) visible"),
    # the sharded known-image index (s2l-scan index build)
    ("known-index-missing", lambda case: ["--known-index", str(case.root / "no-index")], 4,
     "no-index does not exist or is not a folder"),
    ("known-index-not-an-index", lambda case: ["--known-index", str(case.root / "data")], 4,
     "data is not a sharded known-image index"),
    ("known-index-future-version", _known_index(meta={"format_version": 2}), 4,
     "is a version-2 sharded index"),
    ("known-index-wrong-resolution", _known_index(16), 4,
     "holds 16×16×3 images, but the model and its audit data are 32×32×3"),
    ("known-index-and-known-images", _known_index(32, "--known-images", "all"), 4,
     "and known_images 'all' are both set"),
    ("known-index-with-open-clip",
     _known_index(32, "--embedder", "open_clip:ViT-B-32:/x.safetensors"), 4,
     "needs embedder 'pixels'"),
    # outputs
    ("report-folder-missing", _report_to(lambda c: str(c.root / "nope" / "r.html")), 4,
     "does not exist"),
    ("report-path-is-a-folder", _report_to(lambda c: str(c.root / "out")), 4, "is a folder"),
    ("report-over-an-input", _report_to(lambda c: str(c.root / "s2l.toml")), 4,
     "is also an input"),
    ("report-unwritable", _report_to(_unwritable), 4, "is not writable"),
    ("cache-unwritable", _options("--cache", "on", "--cache-dir", "/proc/s2l-units"), 4,
     "unit cache folder /proc/s2l-units cannot be written"),
    ("evidence-inside-the-data",
     lambda case: ["--evidence-dir", str(case.root / "data" / "identity-0" / "pairs")], 4,
     "would become part of it"),
    ("evidence-unwritable", _options("--evidence-dir", "/proc/s2l-evidence"), 4,
     "evidence_dir /proc/s2l-evidence cannot be written"),
]


@pytest.fixture
def case(tiny_reference: Path, tmp_path: Path) -> Case:
    root = tmp_path / "case"
    shutil.copytree(tiny_reference / "model", root / "model")
    shutil.copytree(tiny_reference / "data", root / "data")
    (root / "s2l.toml").write_text(FAST)
    (root / "out").mkdir()
    return Case(root, tmp_path / "payload-ran")


def _snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every input file's content hash and mtime (reports go to out/, which is not an input)."""
    state = {}
    for path in sorted(root.rglob("*")):
        if path.is_relative_to(root / "out") or path.is_dir():
            continue
        body = os.readlink(path) if path.is_symlink() else hashlib.sha256(
            path.read_bytes()).hexdigest()
        state[str(path.relative_to(root))] = (body, path.lstat().st_mtime_ns)
    return state


def _assert_clean_failure(case: Case, code: int, expected: int, culprit: str,
                          captured: pytest.CaptureFixture[str],
                          before: dict[str, tuple[str, int]]) -> None:
    out, err = captured.readouterr()
    assert code == expected, f"exit {code}, expected {expected}\n{out}\n{err}"
    assert culprit in err, err
    assert "Traceback" not in out + err and "internal error" not in err
    assert _snapshot(case.root) == before, "an input file was changed"
    assert [p.name for p in (case.root / "out").rglob("*") if p.is_file()] == [], \
        "a report or temporary file was left behind"
    assert not case.marker.exists(), "code from the checkpoint ran"


@pytest.mark.parametrize(("setup", "expected", "culprit"),
                         [pytest.param(*row[1:], id=row[0]) for row in CASES])
def test_bad_input_is_a_clean_failure(case: Case, setup: Callable[[Case], list[str]],
                                      expected: int, culprit: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    extra = setup(case)
    before = _snapshot(case.root)
    code = main(case.argv(*extra))
    _assert_clean_failure(case, code, expected, culprit, capsys, before)


class _FullDisk:
    """A file object on a full disk: the first bytes go through, then ENOSPC."""

    def __init__(self, handle: object) -> None:
        self._handle = handle

    def __enter__(self) -> _FullDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:  # seek, tell, flush...: the real file's
        return getattr(self._handle, name)

    def write(self, data: object) -> int:
        self._handle.write(data[:10])  # type: ignore[attr-defined, index]
        self._handle.flush()  # type: ignore[attr-defined]
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize(("cache", "culprit"), [
    ("off", "cannot write report"),
    ("on", "cannot write the unit cache"),
], ids=["report", "unit-cache"])
def test_full_disk_is_a_scan_error_without_partial_files(
        case: Case, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        cache: str, culprit: str) -> None:
    real = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: _FullDisk(real(fd, *a, **k)))
    units = case.root / "out" / "units"
    before = _snapshot(case.root)
    code = main(case.argv("--cache", cache, "--cache-dir", str(units)))
    out, err = capsys.readouterr()
    assert code == 2 and culprit in err and "No space left on device" in err, err
    assert "Traceback" not in out + err
    assert _snapshot(case.root) == before
    assert [p for p in (case.root / "out").rglob("*") if p.is_file()] == []


def test_sixteen_bit_and_symlinks_inside_the_folder_are_scanned(case: Case) -> None:
    """Odd but valid inputs are accepted, as documented: 16-bit PNGs are scaled to 8 bits, and
    symlinks that stay inside the data folder are followed."""
    member = _first_member(case)
    values = np.full((32, 32), 40_000, dtype=np.uint16)
    Image.fromarray(values).save(member)
    assert Image.open(member).mode.startswith("I")
    link = case.root / DOMAIN / "nonmembers" / "zz-link.png"
    link.symlink_to(sorted((case.root / DOMAIN / "nonmembers").iterdir())[0])
    assert main(case.argv()) == ExitCode.INCONCLUSIVE  # scanned; too few images to show safety
    verdict = json.loads((case.root / "out" / "report.json").read_text())["verdict"]
    assert verdict["outcome"] == "inconclusive" and not verdict["failed_items"]


def test_the_matrix_is_big_enough() -> None:
    assert len(CASES) >= 25
