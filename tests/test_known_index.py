"""`s2l-scan index build`: a folder of images streamed into a new sharded known-image index."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from s2l_scan.cli import main
from s2l_scan.errors import UsageError
from s2l_scan.extraction.sharded import open_sharded, read_meta


def _images(folder: Path, count: int = 40) -> dict[str, np.ndarray]:
    """``count`` random 32×32 PNGs and JPEGs in nested folders; {relative id: pixels}."""
    rng = np.random.default_rng(0)
    written = {}
    for i in range(count):
        relative = Path(f"part-{i % 3}") / ("deep" if i % 5 == 0 else "") / f"{i:03d}.png"
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path)
        written[str(relative)] = pixels
    return written


def _build(images: Path, out: Path, *extra: str) -> int:
    try:
        return main(["index", "build", "--images", str(images), "--out", str(out), *extra])
    except SystemExit as exit_:  # argparse's own usage errors
        return int(exit_.code or 0)


def test_build_indexes_every_image_by_its_relative_path(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    written = _images(tmp_path / "images")
    (tmp_path / "images" / ".hidden.png").write_bytes(b"skipped: hidden")
    (tmp_path / "images" / "notes.txt").write_text("skipped: not an image")
    out = tmp_path / "idx"
    assert _build(tmp_path / "images", out, "--resolution", "32", "--shard-size", "16") == 0
    assert capsys.readouterr().out.startswith(f"indexed 40 images into 3 shard(s) at {out} in ")
    index = open_sharded(out)
    assert read_meta(out)["shards"] == [16, 16, 8] and len(index) == 40
    assert sorted(index.ids) == sorted(written)
    assert all(np.array_equal(index.pixels[i], written[index.ids[i]]) for i in range(40))


def test_build_never_overwrites(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _images(tmp_path / "images", 2)
    out = tmp_path / "idx"
    out.mkdir()
    (out / "mine.txt").write_text("precious")
    assert _build(tmp_path / "images", out, "--resolution", "32") == 4
    assert "already exists" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    assert (out / "mine.txt").read_text() == "precious"


def _bad_file(content: Callable[[bytes], bytes]) -> Callable[[Path], Path]:
    def plant(images: Path) -> Path:
        path = images / "part-1" / "004.png"
        path.write_bytes(content(path.read_bytes()))
        return images
    return plant


def _empty(images: Path) -> Path:
    (images / "empty").mkdir()
    return images / "empty"


R32 = ["--resolution", "32"]
# (id, make the --images argument from a good folder, options, exit code, culprit)
BAD: list[tuple[str, Callable[[Path], Path], list[str], int, str]] = [
    ("missing-folder", lambda images: images / "nope", R32, 4, "nope: does not exist"),
    ("not-a-folder", lambda images: images / "part-1" / "001.png", R32, 4,
     "001.png is not a folder of images"),
    ("empty-folder", _empty, R32, 4,
     "empty: holds no .png/.jpg/.jpeg/.webp image"),
    ("non-image", _bad_file(lambda body: b"not pixels"), R32, 2,
     "004.png: cannot be read as a PNG or JPEG"),
    ("truncated-image", _bad_file(lambda body: body[:60]), R32, 2,
     "004.png: cannot be read as a PNG or JPEG"),
    ("resolution-zero", lambda images: images, ["--resolution", "0"], 4,
     "expected a positive integer, got 0"),
    ("resolution-not-a-number", lambda images: images, ["--resolution", "big"], 4,
     "expected a positive integer, got 'big'"),
    ("resolution-not-poolable", lambda images: images, ["--resolution", "12"], 4,
     "resolution 12 is not a multiple of 8"),
    ("resolution-missing", lambda images: images, ["--shard-size", "4"], 4,
     "the following arguments are required: --resolution"),
    ("shard-size-zero", lambda images: images, [*R32, "--shard-size", "0"], 4,
     "expected a positive integer, got 0"),
]


@pytest.mark.parametrize(("images", "options", "expected", "culprit"),
                         [pytest.param(*row[1:], id=row[0]) for row in BAD])
def test_bad_input_fails_cleanly_and_leaves_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], images: Callable[[Path], Path],
        options: list[str], expected: int, culprit: str) -> None:
    _images(tmp_path / "images", 6)
    out = tmp_path / "out" / "idx"
    code = _build(images(tmp_path / "images"), out, *options)
    err = capsys.readouterr().err
    assert code == expected, err
    assert culprit in err and "Traceback" not in err and "internal error" not in err
    assert not out.exists()
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []  # no staging


@pytest.mark.parametrize(("meta", "message"), [
    (None, "meta.json cannot be read"),
    ('{"format": "something else"}', "does not describe a sharded known-image index"),
    ('{"format": "s2l-scan sharded known-image index", "format_version": 9}', "version-9"),
    ('{"format": "s2l-scan sharded known-image index", "format_version": 1}', "is damaged"),
])
def test_a_folder_that_is_not_an_index_is_a_usage_error(tmp_path: Path, meta: str | None,
                                                        message: str) -> None:
    if meta is not None:
        (tmp_path / "meta.json").write_text(meta)
    with pytest.raises(UsageError, match=message):
        read_meta(tmp_path)


def test_a_missing_shard_file_is_a_usage_error(tmp_path: Path) -> None:
    _images(tmp_path / "images", 4)
    assert _build(tmp_path / "images", tmp_path / "idx", "--resolution", "32",
                  "--shard-size", "2") == 0
    (tmp_path / "idx" / "shard-00001" / "pixels.npy").unlink()
    with pytest.raises(UsageError, match=r"shard-00001/pixels\.npy is missing"):
        open_sharded(tmp_path / "idx")


def test_both_doors_offer_the_scan_option() -> None:
    from s2l_scan.cli import build_parser
    from s2l_scan.options import scan_options  # the pytest plugin adds option.pytest for each

    args = build_parser().parse_args(["scan", "m", "--known-index", "idx"])
    assert args.known_index == "idx"
    assert "--s2l-known-index" in {option.pytest for option in scan_options()}
