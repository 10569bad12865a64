"""Shared fixtures: the tiny reference model, built once per test session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from s2l_scan.reference.build import build_reference
from s2l_scan.reference.presets import get_preset


@pytest.fixture(scope="session")
def tiny_reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A built tiny reference model (model/, data/, manifest.json). Treat as read-only."""
    out = tmp_path_factory.mktemp("tiny") / "reference"
    build_reference(out, get_preset("tiny"), seed=0)
    return out


@pytest.fixture
def tiny_model_copy(tiny_reference: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny model folder that a test may break."""
    return Path(shutil.copytree(tiny_reference / "model", tmp_path / "model"))
