"""Tests for the audit-data loader (README, audit data): layout rules, image policy, safety."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from s2l_scan.errors import AuditDataError, NothingToScanError, UsageError
from s2l_scan.io.audit_data import (
    AuditData,
    load_audit_data,
    load_image,
    prepare_image,
)

RES = 8


def write_png(path: Path, pixels: np.ndarray | tuple[int, int, int] = (10, 20, 30),
              size: tuple[int, int] = (RES, RES)) -> Path:
    """Write ``pixels`` (an array, or one RGB colour filling ``size`` = (w, h)) as an image."""
    if not isinstance(pixels, np.ndarray):
        pixels = np.full((size[1], size[0], 3), pixels, dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def make_domain(root: Path, name: str, n_members: int = 2, n_nonmembers: int = 2,
                prompt: str | None = "photo of {name}") -> Path:
    """A valid domain folder with distinct solid-colour images."""
    folder = root / name
    folder.mkdir(parents=True)
    if prompt is not None:
        (folder / "prompt.txt").write_text(prompt.format(name=name) + "\n")
    for split, count in (("members", n_members), ("nonmembers", n_nonmembers)):
        (folder / split).mkdir()
        for index in range(count):
            write_png(folder / split / f"{index:04d}.png", (index * 40, 100, 200))
    return folder


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    make_domain(root, "zeta")
    make_domain(root, "alpha", n_members=3)
    return root


def snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(root)): (p.lstat().st_mtime_ns, p.read_bytes() if p.is_file()
                                        else b"") for p in sorted(root.rglob("*"))}


def raises_naming(error: type[Exception], culprit: object, call: Callable[[], object]) -> str:
    """Run ``call``, expect ``error`` whose message names ``culprit``; return the message."""
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    assert str(culprit) in message, message
    return message


# --- layout ------------------------------------------------------------------------------------

def test_loads_sorted_domains_and_images(data: Path) -> None:
    write_png(data / "alpha" / "members" / "b.png")
    write_png(data / "alpha" / "members" / "a.jpg")
    audit = load_audit_data(data, RES)
    assert audit.domain_names == ("alpha", "zeta")
    alpha = audit.domain("alpha")
    assert alpha.prompt == "photo of alpha"
    assert [im.path.name for im in alpha.members] == ["0000.png", "0001.png", "0002.png",
                                                       "a.jpg", "b.png"]
    assert all(im.caption == "photo of alpha" for im in alpha.members + alpha.nonmembers)
    pixels = alpha.members[1].pixels
    assert pixels.shape == (RES, RES, 3) and pixels.dtype == np.uint8
    assert not pixels.flags.writeable
    assert audit.known == ()


def test_root_missing_or_a_file(tmp_path: Path) -> None:
    raises_naming(AuditDataError, tmp_path / "nope", lambda: load_audit_data(tmp_path / "nope",
                                                                              RES))
    (tmp_path / "file").write_text("x")
    raises_naming(AuditDataError, tmp_path / "file", lambda: load_audit_data(tmp_path / "file",
                                                                              RES))


def test_no_domain_is_nothing_to_scan(tmp_path: Path) -> None:
    write_png(tmp_path / "known" / "k.png")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "README.md").write_text("hi")
    with pytest.raises(NothingToScanError) as info:
        load_audit_data(tmp_path, RES)
    assert info.value.exit_code == 3


@pytest.mark.parametrize("content", [None, "", "  \n\n"])
def test_missing_or_empty_prompt(tmp_path: Path, content: str | None) -> None:
    folder = make_domain(tmp_path, "dom", prompt=None)
    if content is not None:
        (folder / "prompt.txt").write_text(content)
    raises_naming(AuditDataError, folder / "prompt.txt", lambda: load_audit_data(tmp_path, RES))


def test_multiline_prompt_is_refused(tmp_path: Path) -> None:
    folder = make_domain(tmp_path, "dom", prompt="one\ntwo")
    raises_naming(AuditDataError, folder / "prompt.txt", lambda: load_audit_data(tmp_path, RES))


def test_prompt_with_byte_order_mark(tmp_path: Path) -> None:
    folder = make_domain(tmp_path, "dom")
    (folder / "prompt.txt").write_bytes("\ufeffa photo\r\n".encode())
    assert load_audit_data(tmp_path, RES).domains[0].prompt == "a photo"


@pytest.mark.parametrize("members, nonmembers", [(0, 2), (2, 0)])
def test_one_sided_domain(tmp_path: Path, members: int, nonmembers: int) -> None:
    make_domain(tmp_path, "lonely", members, nonmembers)
    message = raises_naming(AuditDataError, "'lonely'", lambda: load_audit_data(tmp_path, RES))
    assert "one-sided" in message


@pytest.mark.parametrize("members, nonmembers, split", [(1, 2, "members"), (2, 1, "nonmembers")])
def test_a_split_of_one_image_cannot_be_calibrated(tmp_path: Path, members: int, nonmembers: int,
                                                    split: str) -> None:
    # a usage error (exit 4) naming the domain and the minimum
    make_domain(tmp_path, "single", members, nonmembers)
    message = raises_naming(UsageError, f"single/{split}",
                            lambda: load_audit_data(tmp_path, RES))
    assert "needs at least 2" in message


def test_missing_split_folder(tmp_path: Path) -> None:
    folder = make_domain(tmp_path, "dom")
    for path in (folder / "nonmembers").iterdir():
        path.unlink()
    (folder / "nonmembers").rmdir()
    raises_naming(AuditDataError, folder / "nonmembers", lambda: load_audit_data(tmp_path, RES))


def test_split_with_only_ignored_files_counts_as_empty(tmp_path: Path) -> None:
    folder = make_domain(tmp_path, "dom", n_nonmembers=0)
    (folder / "nonmembers" / "notes.txt").write_text("x")
    (folder / "nonmembers" / ".DS_Store").write_bytes(b"\0\1")
    (folder / "nonmembers" / "sub.png").mkdir()  # a folder, not an image
    raises_naming(AuditDataError, "'dom'", lambda: load_audit_data(tmp_path, RES))


def test_other_extensions_and_hidden_files_are_ignored(data: Path) -> None:
    members = data / "alpha" / "members"
    (members / "notes.txt").write_text("x")
    (members / "image.tiff").write_bytes(b"junk")
    (members / "._0000.png").write_bytes(b"AppleDouble junk")
    (members / ".DS_Store").write_bytes(b"junk")
    write_png(members / "UPPER.PNG")
    names = [im.path.name for im in load_audit_data(data, RES).domain("alpha").members]
    assert names == ["0000.png", "0001.png", "0002.png", "UPPER.PNG"]


def test_a_webp_that_does_not_decode_is_an_error_naming_it(data: Path) -> None:
    junk = data / "alpha" / "members" / "image.webp"  # .webp is an image suffix now
    junk.write_bytes(b"junk")
    raises_naming(AuditDataError, junk, lambda: load_audit_data(data, RES))


def test_reserved_domain_name(tmp_path: Path) -> None:
    make_domain(tmp_path, "pooled")
    raises_naming(AuditDataError, tmp_path / "pooled", lambda: load_audit_data(tmp_path, RES))


# --- selection and arguments -------------------------------------------------------------------

def test_selection_loads_only_selected(data: Path) -> None:
    make_domain(data, "broken", prompt=None)  # not selected, so never read
    audit = load_audit_data(data, RES, domains=["zeta", "alpha", "zeta"])
    assert audit.domain_names == ("alpha", "zeta")


def test_unknown_selection_lists_known_domains(data: Path) -> None:
    message = raises_naming(UsageError, "'nope'",
                            lambda: load_audit_data(data, RES, domains=["alpha", "nope"]))
    assert "alpha, zeta" in message
    raises_naming(UsageError, "alpha, zeta", lambda: load_audit_data(data, RES, domains=[]))
    audit = load_audit_data(data, RES)
    with pytest.raises(UsageError):
        audit.domain("nope")


@pytest.mark.parametrize("resolution", [0, -3, 2.5, True])
def test_bad_resolution(data: Path, resolution: object) -> None:
    with pytest.raises(UsageError):
        load_audit_data(data, resolution)  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        load_audit_data(data, RES, max_image_pixels=0)


# --- bad images --------------------------------------------------------------------------------

def test_non_image_with_image_extension(data: Path) -> None:
    bad = data / "alpha" / "members" / "0001.png"
    bad.write_text("I am not a PNG")
    raises_naming(AuditDataError, bad, lambda: load_audit_data(data, RES))


def test_truncated_png(data: Path) -> None:
    bad = write_png(data / "alpha" / "nonmembers" / "big.png",
                    np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    bad.write_bytes(bad.read_bytes()[:300])
    raises_naming(AuditDataError, bad, lambda: load_audit_data(data, RES))


def test_other_format_behind_png_extension(data: Path) -> None:
    bad = data / "zeta" / "members" / "0000.png"
    Image.new("RGB", (RES, RES)).save(bad, format="GIF")
    raises_naming(AuditDataError, bad, lambda: load_audit_data(data, RES))


def test_webp_images_load_with_the_pixels_they_hold(data: Path) -> None:
    # a lossless WebP member decodes to exactly the pixels written (Pillow's own decoder)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(RES, RES, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(data / "zeta" / "members" / "extra.webp", lossless=True)
    zeta = load_audit_data(data, RES).domain("zeta")
    (loaded,) = [image for image in zeta.members if image.path.suffix == ".webp"]
    np.testing.assert_array_equal(loaded.pixels, pixels)


def test_jpeg_content_behind_png_extension_is_fine(data: Path) -> None:
    Image.new("RGB", (RES, RES), (200, 0, 0)).save(data / "zeta" / "members" / "0000.png",
                                                   format="JPEG")
    assert load_audit_data(data, RES).domain("zeta").members[0].pixels[0, 0, 0] > 180


def test_too_many_pixels_and_pillow_global_restored(data: Path) -> None:
    big = write_png(data / "alpha" / "members" / "big.png", size=(40, 30))
    before = Image.MAX_IMAGE_PIXELS
    message = raises_naming(AuditDataError, big,
                            lambda: load_audit_data(data, RES, max_image_pixels=1000))
    assert "1,000" in message
    assert before == Image.MAX_IMAGE_PIXELS
    assert load_audit_data(data, RES, max_image_pixels=1200).domain("alpha").members
    assert before == Image.MAX_IMAGE_PIXELS


# --- image policy ------------------------------------------------------------------------------

def test_image_at_resolution_is_untouched(tmp_path: Path) -> None:
    pixels = np.random.default_rng(1).integers(0, 256, (RES, RES, 3), dtype=np.uint8)
    path = write_png(tmp_path / "x.png", pixels)
    np.testing.assert_array_equal(load_image(path, RES), pixels)


def test_non_square_is_center_cropped(tmp_path: Path) -> None:
    strips = np.zeros((RES, 3 * RES, 3), dtype=np.uint8)
    strips[:, RES:2 * RES] = (0, 255, 0)
    result = load_image(write_png(tmp_path / "wide.png", strips), RES)
    assert (result == (0, 255, 0)).all()
    tall = load_image(write_png(tmp_path / "tall.png", strips.transpose(1, 0, 2).copy()), RES)
    assert (tall == (0, 255, 0)).all()


def test_mixed_sizes_are_resized(data: Path) -> None:
    write_png(data / "alpha" / "members" / "huge.png", (50, 60, 70), size=(37, 23))
    write_png(data / "alpha" / "members" / "tiny.png", (50, 60, 70), size=(3, 3))
    for image in load_audit_data(data, RES).domain("alpha").members:
        assert image.pixels.shape == (RES, RES, 3)
    huge = load_audit_data(data, RES).domain("alpha").members[3]
    assert huge.path.name == "huge.png" and (np.abs(huge.pixels.astype(int) - (50, 60, 70))
                                             <= 1).all()


def test_grayscale_becomes_rgb(tmp_path: Path) -> None:
    path = tmp_path / "g.png"
    Image.fromarray(np.full((RES, RES), 77, dtype=np.uint8)).save(path)
    assert (load_image(path, RES) == 77).all()


def test_sixteen_bit_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 32768], [65535, 257]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")
    result = load_image(path, 2)
    np.testing.assert_array_equal(result[..., 0], [[0, 128], [255, 1]])
    assert (result == result[..., :1]).all()


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparency_is_composited_on_white(tmp_path: Path, mode: str) -> None:
    rgba = Image.new("RGBA", (RES, RES), (0, 0, 0, 0))
    rgba.paste((200, 0, 0, 255), (0, 0, RES // 2, RES))
    if mode == "P":
        image = rgba.convert("RGB").quantize(colors=4)
        image.info["transparency"] = image.getpixel((RES - 1, 0))
    else:
        image = rgba.convert(mode)
    path = tmp_path / "t.png"
    image.save(path, transparency=image.info.get("transparency"))
    result = load_image(path, RES)
    assert (result[:, -1] == 255).all()
    assert (result[:, 0] != 255).any()


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    pixels = np.zeros((RES, RES, 3), dtype=np.uint8)
    pixels[: RES // 2] = (255, 0, 0)  # red top half
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    path = tmp_path / "o.jpg"
    Image.fromarray(pixels).save(path, exif=exif, quality=100)
    result = load_image(path, RES).astype(int)
    assert result[:, -1, 0].mean() > 200 and result[:, 0, 0].mean() < 50  # red now on the right


@settings(max_examples=25, deadline=None)
@given(width=st.integers(1, 40), height=st.integers(1, 40), resolution=st.integers(1, 24),
       mode=st.sampled_from(["RGB", "L", "RGBA", "LA", "P", "1", "I;16", "I", "CMYK"]))
def test_prepare_image_always_gives_rgb_square(width: int, height: int, resolution: int,
                                               mode: str) -> None:
    result = prepare_image(Image.new(mode, (width, height)), resolution)
    assert result.shape == (resolution, resolution, 3) and result.dtype == np.uint8


# --- symlinks ----------------------------------------------------------------------------------

def test_symlinked_image_leaving_root(data: Path, tmp_path: Path) -> None:
    outside = write_png(tmp_path / "outside.png")
    link = data / "alpha" / "members" / "link.png"
    link.symlink_to(outside)
    message = raises_naming(AuditDataError, link, lambda: load_audit_data(data, RES))
    assert "symlink leaves the data folder" in message


@pytest.mark.parametrize("where", ["domain", "split", "inside-split", "prompt", "known"])
def test_symlinked_folder_or_file_leaving_root(tmp_path: Path, where: str) -> None:
    root = tmp_path / "data"
    make_domain(root, "dom")
    elsewhere = make_domain(tmp_path / "elsewhere", "other")
    link, target = {
        "domain": (root / "linked", elsewhere),
        "split": (root / "dom" / "members", elsewhere / "members"),
        "inside-split": (root / "dom" / "members" / "more", elsewhere / "members"),
        "prompt": (root / "dom" / "prompt.txt", elsewhere / "prompt.txt"),
        "known": (root / "known", elsewhere / "members"),
    }[where]
    if link.is_dir():
        for path in link.iterdir():
            path.unlink()
        link.rmdir()
    elif link.exists():
        link.unlink()
    link.symlink_to(target)
    message = raises_naming(AuditDataError, link, lambda: load_audit_data(root, RES))
    assert "symlink leaves the data folder" in message


def test_symlinks_inside_root_are_followed(data: Path) -> None:
    (data / "known").mkdir()
    (data / "known" / "alpha-members").symlink_to(data / "alpha" / "members")
    (data / "known" / "loop").symlink_to(data / "known")  # a cycle must not hang the walk
    link = data / "zeta" / "members" / "again.png"
    link.symlink_to(data / "alpha" / "members" / "0000.png")
    audit = load_audit_data(data, RES)
    assert "again.png" in [im.path.name for im in audit.domain("zeta").members]
    assert [p.name for p in audit.known] == ["0000.png", "0001.png", "0002.png"]


def test_broken_symlink_image(data: Path) -> None:
    link = data / "alpha" / "members" / "gone.png"
    link.symlink_to(data / "alpha" / "members" / "missing.png")
    raises_naming(AuditDataError, link, lambda: load_audit_data(data, RES))


# --- known/ ------------------------------------------------------------------------------------

def test_known_images_recursive_and_lazy(data: Path) -> None:
    write_png(data / "known" / "b" / "deep" / "x.png", size=(20, 10))
    write_png(data / "known" / "a.jpeg")
    (data / "known" / "notes.txt").write_text("x")
    bad = data / "known" / "c" / "bad.png"
    bad.parent.mkdir()
    bad.write_text("not an image")
    audit = load_audit_data(data, RES)  # known/ is only listed here, not decoded
    assert [p.relative_to(data / "known").as_posix() for p in audit.known] == [
        "a.jpeg", "b/deep/x.png", "c/bad.png"]
    images = audit.known_images()
    assert next(images)[1].shape == (RES, RES, 3)
    assert next(images)[1].shape == (RES, RES, 3)
    with pytest.raises(AuditDataError, match=r"bad\.png"):
        next(images)


def test_index_images_holds_members_then_known(data: Path) -> None:
    write_png(data / "known" / "k.png")
    audit = load_audit_data(data, RES)
    paths = [path for path, _ in audit.index_images()]
    assert len(paths) == 3 + 2 + 1 and paths[-1].name == "k.png"
    assert all(pixels.shape == (4, 4, 3) for _, pixels in audit.index_images(4))


def test_known_as_a_file(data: Path) -> None:
    (data / "known").write_text("x")
    raises_naming(AuditDataError, data / "known", lambda: load_audit_data(data, RES))


# --- captions ----------------------------------------------------------------------------------

def write_captions(folder: Path, *lines: object) -> Path:
    path = folder / "captions.jsonl"
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line)
                              for line in lines) + "\n")
    return path


def test_captions_both_spellings_default_to_prompt(data: Path) -> None:
    write_captions(data / "alpha", {"file": "members/0001.png", "caption": "one"}, "",
                   {"file": "nonmembers/0000.png", "caption": " zero ", "extra": 1},
                   {"file": "0002.png", "caption": "two"})  # bare name: only in members/
    alpha = load_audit_data(data, RES).domain("alpha")
    assert [im.caption for im in alpha.members] == ["photo of alpha", "one", "two"]
    assert [im.caption for im in alpha.nonmembers] == ["zero", "photo of alpha"]


@pytest.mark.parametrize("bad, expect", [
    ("{not json", "not valid JSON"),
    ('["members/0000.png", "x"]', "not a JSON object"),
    ({"file": "members/0000.png"}, "caption"),
    ({"caption": "x"}, "file"),
    ({"file": "members/0000.png", "caption": 3}, "caption"),
    ({"file": "members/0000.png", "caption": "  "}, "caption"),
    ({"file": 7, "caption": "x"}, "file"),
    ({"file": "members/9999.png", "caption": "x"}, "unknown file"),
    ({"file": "0000.png", "caption": "x"}, "both a member and a non-member"),
    ({"file": "members/0001.png", "caption": "again"}, "second caption"),
])
def test_bad_caption_lines_name_file_and_line(data: Path, bad: object, expect: str) -> None:
    path = write_captions(data / "alpha", {"file": "members/0001.png", "caption": "ok"}, bad)
    message = raises_naming(AuditDataError, f"{path}, line 2",
                            lambda: load_audit_data(data, RES))
    assert expect in message


# --- read-only ---------------------------------------------------------------------------------

def test_loader_never_writes(data: Path) -> None:
    write_png(data / "known" / "k.png")
    write_captions(data / "zeta", {"file": "members/0000.png", "caption": "z"})
    before = snapshot(data)
    audit: AuditData = load_audit_data(data, RES)
    list(audit.index_images(4))
    assert snapshot(data) == before
