"""mypy sees the real types of baselines/ and probes/, never a silent Any.

setuptools' package-dir ships ``baselines/`` and ``probes/`` as ``s2l_scan.baselines`` and
``s2l_scan.probes``; mypy cannot follow that mapping, so the repository mirrors it with two
symlinks (``s2l_scan/baselines -> ../baselines``, ``s2l_scan/probes -> ../probes``). Without them
every ``from s2l_scan.probes... import`` was Any and any misuse type-checked.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# (line of a snippet that misuses first-party code, the error mypy must report for it)
MISUSES = [
    ('auc: int = blind_baseline(members, members).auc',
     'Incompatible types in assignment (expression has type "float", variable has type "int")'),
    ('blind_baseline("not", members)',
     'Argument 1 to "blind_baseline" has incompatible type "str"'),
    ('add_lora("a model", rank=4, alpha=4.0, seed=0)',
     'Argument 1 to "add_lora" has incompatible type "str"; expected "ModelCopy"'),
    ('NoiseProbe().apply(None, None)',
     'Argument 1 to "apply" of "NoiseProbe" has incompatible type "None"; expected "ModelCopy"'),
]

HEADER = """\
import numpy as np
from s2l_scan.baselines.blind import blind_baseline
from s2l_scan.probes.methods.lora import add_lora
from s2l_scan.probes.noise import NoiseProbe

members = np.zeros((2, 8, 8, 3), dtype=np.uint8)
"""


@pytest.mark.parametrize("package", ["baselines", "probes"])
def test_the_source_tree_mirrors_package_dir_for_mypy(package: str) -> None:
    link = ROOT / "s2l_scan" / package
    assert link.is_symlink() and link.resolve() == ROOT / package, (
        f"s2l_scan/{package} must be a symlink to ../{package} (git clone with symlinks "
        f"enabled: git config core.symlinks true); mypy reads s2l_scan.{package} through it")


def test_mypy_reports_misuse_of_baselines_and_probes(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from mypy import api

    snippet = tmp_path / "misuse.py"
    snippet.write_text(HEADER + "".join(f"{line}\n" for line, _ in MISUSES))
    # From the repository root, with its config and cache: `make lint` has warmed the cache.
    monkeypatch.chdir(ROOT)
    out, err, status = api.run(["--config-file", str(ROOT / "pyproject.toml"), str(snippet)])
    first = HEADER.count("\n") + 1
    for number, (line, error) in enumerate(MISUSES, start=first):
        assert f"misuse.py:{number}: error: {error}" in out, f"{line!r} type-checked:\n{out}{err}"
    assert "import" not in out, out  # every first-party module resolved, none is Any
    assert status == 1
