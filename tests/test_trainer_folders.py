"""Issue 28.3–28.5: a training folder is read the way its trainer reads it (kohya-ss
sd-scripts ``train_util.DreamBoothDataset``: images directly in ``N_concept/``, the first line
of the caption file, the class tokens for an image without one, concept folders linked from
elsewhere followed; OneTrainer's ``-masklabel.png`` masks are not images), and an image format
a trainer reads but the audit cannot hold stops the build by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from s2l_scan.errors import AuditDataError
from s2l_scan.io.sources import read_source
from tests.test_audit_build import pixels, save


def _kohya(root: Path) -> Path:
    concept = root / "10_sks dog"
    save(concept / "a.png", pixels(1))
    (concept / "a.txt").write_text("a photo of sks dog on grass\nsecond line, never read\n")
    save(concept / "b.png", pixels(2))  # no caption file: kohya uses the class tokens
    save(concept / "rejected" / "c.png", pixels(3))  # kohya never enters sub-folders
    (concept / "rejected" / "c.txt").write_text("a rejected shot")
    save(concept / "a-masklabel.png", pixels(4))  # OneTrainer's mask of a.png
    return root


def test_a_kohya_folder_is_read_as_kohya_reads_it(tmp_path: Path) -> None:
    source = read_source(_kohya(tmp_path / "train"), "--members")
    assert source.convention == "kohya"
    assert {str(i.relative): i.caption for i in source.images} == {
        "10_sks dog/a.png": "a photo of sks dog on grass", "10_sks dog/b.png": "sks dog"}


def test_a_concept_folder_linked_from_outside_is_followed(tmp_path: Path) -> None:
    elsewhere = _kohya(tmp_path / "elsewhere") / "10_sks dog"
    train = tmp_path / "train"
    train.mkdir()
    (train / "5_ohwx man").symlink_to(elsewhere, target_is_directory=True)
    source = read_source(train, "--members")
    assert [str(i.relative) for i in source.images] == ["5_ohwx man/a.png", "5_ohwx man/b.png"]
    assert source.images[1].caption == "ohwx man"


def test_onetrainer_masks_are_not_training_images(tmp_path: Path) -> None:
    save(tmp_path / "c" / "x.png", pixels(1))
    save(tmp_path / "c" / "x-masklabel.png", pixels(2))
    (tmp_path / "c" / "x.txt").write_text("a caption")
    source = read_source(tmp_path / "c", "--members")
    assert [i.path.name for i in source.images] == ["x.png"]


@pytest.mark.parametrize("name", ["x.tif", "x.jfif"])
def test_a_format_trainers_read_is_named_not_skipped(tmp_path: Path, name: str) -> None:
    save(tmp_path / "c" / "ok.png", pixels(1))
    save(tmp_path / "c" / name, pixels(2)) if name.endswith(".tif") else \
        (tmp_path / "c" / name).write_bytes((tmp_path / "c" / "ok.png").read_bytes())
    (tmp_path / "c" / "x.txt").write_text("a caption")
    with pytest.raises(AuditDataError, match=rf"{name}: a \.\w+ image .*Trainers read it"):
        read_source(tmp_path / "c", "--members")
