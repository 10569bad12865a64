"""The content-addressed unit store behind resumable scans."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from s2l_scan.errors import UsageError
from s2l_scan.units import UnitStore, digest, unit_key


def _unit(value: float) -> tuple[dict[str, np.ndarray], dict[str, object]]:
    return {"scores": np.full(3, value)}, {"b": 1, "a": [2.5, "x"]}


def test_keys_name_every_setting_and_ignore_their_order() -> None:
    assert unit_key("scores", model="m", batch=4) == unit_key("scores", batch=4, model="m")
    assert unit_key("scores", model="m", batch=4) != unit_key("scores", model="m", batch=8)
    assert unit_key("scores", model="m") != unit_key("probe", model="m")


def test_digest_sees_dtype_shape_and_bytes() -> None:
    values = np.arange(6, dtype=np.float32)
    assert digest(values) == digest(torch.arange(6, dtype=torch.float32))
    assert digest(values) != digest(values.reshape(2, 3))
    assert digest(values) != digest(values.astype(np.float64))
    assert digest(values, ["caption"]) != digest(values, ["other caption"])


def test_a_stored_unit_is_reused_with_its_metadata_in_order(tmp_path: Path) -> None:
    store = UnitStore(tmp_path)
    first = store.get_or_compute("scores", "ab" * 32, lambda: _unit(1.0))
    again = UnitStore(tmp_path).get_or_compute("scores", "ab" * 32, lambda: _unit(2.0))
    assert np.array_equal(again[0]["scores"], first[0]["scores"])
    assert list(again[1]) == ["b", "a"] and again[1] == first[1]
    assert (store.computed, store.reused) == (1, 0)
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["ab" * 32 + ".npz"]


def test_an_unreadable_unit_is_computed_again(tmp_path: Path) -> None:
    store = UnitStore(tmp_path)
    store.save("scores", "cd" * 32, *_unit(1.0))
    store.path("scores", "cd" * 32).write_bytes(b"PK\x03\x04 damaged")
    arrays, _ = store.get_or_compute("scores", "cd" * 32, lambda: _unit(3.0))
    assert arrays["scores"][0] == 3.0 and store.computed == 1


def test_units_never_hold_pickles(tmp_path: Path) -> None:
    store = UnitStore(tmp_path)
    with pytest.raises(ValueError, match="object arrays cannot be stored"):
        store.save("scores", "ef" * 32, {"x": np.array([object()], dtype=object)})
    assert not list(tmp_path.rglob("*.npz"))


def test_off_computes_everything_and_writes_nothing(tmp_path: Path) -> None:
    store = UnitStore(None)
    store.check()
    for _ in range(2):
        store.get_or_compute("scores", "01" * 32, lambda: _unit(1.0))
    assert (store.computed, store.reused) == (2, 0)
    assert store.stats()["unit_cache"] == "off"


def test_an_unusable_folder_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match=r"unit cache folder .*file/units cannot be written"):
        UnitStore(tmp_path / "file" / "units").check()


def _rewrite(path: Path, change: dict[str, np.ndarray]) -> None:
    """Rewrite a stored unit's file with some arrays changed and every other entry (its
    digest included) kept: what a restored or hand-edited cache can hold."""
    with np.load(path, allow_pickle=False) as stored:
        body = {name: np.asarray(stored[name]) for name in stored.files}
    body.update(change)
    with path.open("wb") as out:
        np.savez(out, **body)  # type: ignore[arg-type]


@pytest.mark.parametrize("change", [
    {"scores": np.array([1.0, 1.0, 1.0000001])},  # one value in its last digits
    {"scores": np.full(3, 1.0, dtype=np.float32)},  # its header: another dtype
    {"scores": np.full((3, 1), 1.0)},  # its header: another shape
    {"extra": np.zeros(1)},  # an array slipped in
])
def test_a_unit_altered_after_it_was_written_is_computed_again(
        tmp_path: Path, change: dict[str, np.ndarray]) -> None:
    store = UnitStore(tmp_path)
    store.save("scores", "12" * 32, *_unit(1.0))
    assert store.load("scores", "12" * 32) is not None
    _rewrite(store.path("scores", "12" * 32), change)
    assert store.load("scores", "12" * 32) is None  # the digest stored with it disagrees
    arrays, _ = store.get_or_compute("scores", "12" * 32, lambda: _unit(1.0))
    assert store.computed == 1 and arrays["scores"].dtype == np.float64
    assert store.load("scores", "12" * 32) is not None  # replaced by the recomputed unit


def test_a_unit_without_a_digest_is_computed_again(tmp_path: Path) -> None:
    path = UnitStore(tmp_path).path("scores", "34" * 32)
    path.parent.mkdir(parents=True)
    with path.open("wb") as out:
        np.savez(out, scores=np.full(3, 9.0))
    assert UnitStore(tmp_path).load("scores", "34" * 32) is None
