"""Shared fixtures: the tiny reference model, built once per test session."""

from __future__ import annotations

import logging
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# pytester's in-process `runpytest` snapshots sys.modules and, when the inner run ends, drops
# every module it imported. faiss is a SWIG extension: its type table lives in a capsule held
# only by the synthetic module `swig_runtime_data5` in sys.modules. Dropping that module runs
# the capsule's destructor, which frees faiss's per-type client data and DECREFs its Python
# proxy classes while the (never unloaded) extension still points at them; the next inner run
# re-imports faiss over the freed data and the garbage collector later walks a corrupted object
# list: a segmentation fault far from the cause, in whichever test happens to trigger a
# collection (order- and timing-dependent). Importing the engine here, once, puts faiss and
# its runtime module in every snapshot, so no inner run ever drops them; it also keeps one copy
# of the registries, which would otherwise see their entries registered again.
import s2l_scan.baselines
import s2l_scan.extraction.index
import s2l_scan.probes
import s2l_scan.probing
import s2l_scan.session
from s2l_scan.reference.build import build_reference
from s2l_scan.reference.cache import cache_root
from s2l_scan.reference.presets import get_preset

ENGINE = (s2l_scan.baselines, s2l_scan.extraction.index, s2l_scan.probes, s2l_scan.probing,
          s2l_scan.session)


@pytest.fixture(autouse=True)
def _library_logs_to_this_tests_stderr() -> None:
    """diffusers and transformers each log through one StreamHandler bound to the ``sys.stderr``
    of the moment they first logged (and its ``flush``). Under pytest that is an earlier test's
    captured stream, closed since: logging then prints a "--- Logging error --- Traceback" to
    stderr, which the bad-input tests rightly read as a traceback. Rebind them to this test's
    stderr."""
    import diffusers.utils.logging
    import transformers.utils.logging

    for module in (diffusers.utils.logging, transformers.utils.logging):
        handler = module._default_handler
        if isinstance(handler, logging.StreamHandler):
            handler.__dict__.pop("flush", None)  # the library's bound flush of the old stream
            handler.setStream(sys.stderr)


# The user's cache folder, read before _private_cache points S2L_CACHE_DIR elsewhere: slow tests
# of the *default* reference reuse a build from there (content-addressed by preset fingerprint
# and version, so never stale) instead of spending ~17 min building it again.
USER_CACHE = cache_root()


@pytest.fixture(scope="session")
def user_cache() -> Path:
    """The user's cache folder (see USER_CACHE): only for reusing reference-model builds."""
    return USER_CACHE


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Scans in this session cache their units (and SP sets) in a private folder, never in the
    user's ~/.cache: a test must not reuse units left there by another version of the code."""
    folder = tmp_path_factory.mktemp("s2l-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("S2L_CACHE_DIR", str(folder))
        yield folder


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
