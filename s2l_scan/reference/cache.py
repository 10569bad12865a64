"""A cache of built reference models, so ``--s2l-model=reference`` builds once per machine.

Keyed by preset fingerprint + seed + s2l-scan version. Writes are atomic: a build goes to a
private temporary folder beside the cache entry and is renamed into place only when complete,
so an interrupted build never leaves a half-written model that a later scan would trust.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from s2l_scan import __version__
from s2l_scan.reference.build import ProgressFn, _quiet, build_reference
from s2l_scan.reference.presets import ReferencePreset


def cache_root() -> Path:
    """``$S2L_CACHE_DIR``, else ``$XDG_CACHE_HOME/s2l-scan``, else ``~/.cache/s2l-scan``."""
    if os.environ.get("S2L_CACHE_DIR"):
        return Path(os.environ["S2L_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "s2l-scan"


def cache_key(preset: ReferencePreset, seed: int, device: str = "cpu") -> str:
    """The folder name of a cached build (a non-CPU build trains to other weights: own key)."""
    suffix = "" if device == "cpu" else "-" + device.replace(":", "")
    return f"{preset.name}-{preset.fingerprint()}-seed{seed}-v{__version__}{suffix}"


def cached_reference(preset: ReferencePreset, seed: int = 0, *, threads: int = 1,
                     progress: ProgressFn = _quiet, root: Path | None = None,
                     device: str = "cpu") -> Path:
    """Return the folder of a built reference model, building it first if it is not cached."""
    root = cache_root() if root is None else root
    final = root / "reference" / cache_key(preset, seed, device)
    if (final / "manifest.json").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        build_reference(staging / "build", preset, seed, threads=threads, progress=progress,
                        device=device)
        try:
            os.rename(staging / "build", final)
        except OSError:
            # Another process finished the same build first; theirs is identical (deterministic).
            if not (final / "manifest.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final
