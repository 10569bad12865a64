"""Packaging contracts: cheap plugin import, no generic top-level names, entry points."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

HEAVY = ("torch", "diffusers", "transformers", "rich", "numpy", "faiss", "open_clip")


def _run(code: str, cwd: Path) -> str:
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True,
                            text=True, check=True)
    return result.stdout.strip()


def test_plugin_import_is_cheap(tmp_path: Path) -> None:
    code = ("import sys, s2l_scan.pytest_plugin; "
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    assert _run(code, tmp_path) == "[]"


def test_baselines_and_probes_ship_inside_s2l_scan(tmp_path: Path) -> None:
    # Run outside the repository so its root folders are not on sys.path.
    code = ("import importlib.util as u, s2l_scan.baselines as b, s2l_scan.probes as p; "
            "print(b.__file__ is not None, p.__file__ is not None, "
            "u.find_spec('baselines') is None, u.find_spec('probes') is None)")
    assert _run(code, tmp_path) == "True True True True"


def test_entry_points_are_registered() -> None:
    scripts = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    plugins = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert scripts["s2l-scan"] == "s2l_scan.cli:main"
    assert plugins["s2l"] == "s2l_scan.pytest_plugin"


def test_registry_refuses_a_second_owner_of_a_name_but_allows_reimport() -> None:
    import pytest

    from s2l_scan.errors import UsageError
    from s2l_scan.registry import Registry

    registry: Registry[type] = Registry("widget")
    first = type("Widget", (), {"__module__": "pkg.a"})
    registry.register("w")(first)
    again = type("Widget", (), {"__module__": "pkg.a"})  # the same class, re-imported
    registry.register("w")(again)
    assert registry.get("w") is again
    with pytest.raises(ValueError, match=r"already registered by pkg\.a\.Widget"):
        registry.register("w")(type("Widget", (), {"__module__": "pkg.b"}))
    with pytest.raises(UsageError, match=r"unknown widget 'x'; known: \['w'\]"):
        registry.get("x")


def test_malformed_config_tables_are_usage_errors(tmp_path: Path) -> None:
    import pytest

    from s2l_scan.config import read_config_file
    from s2l_scan.errors import UsageError

    for name, text in (("pyproject.toml", "tool = 3\n"), ("s2l.toml", "[tool]\ns2l = 'x'\n"),
                       ("s2l.toml", "max_auc = \n")):
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(UsageError, match=name):
            read_config_file(path)


def test_pure_maths_raises_value_error_not_scan_errors() -> None:
    # functional/ refuses bad arguments with ValueError; UsageError / ScanError belong to the
    # configuration and data boundary, which validates first (s2l_scan.errors.checked).
    import ast

    import s2l_scan.functional as functional

    for path in sorted(Path(functional.__file__).parent.glob("*.py")):
        imported = {node.module for node in ast.walk(ast.parse(path.read_text()))
                    if isinstance(node, ast.ImportFrom)}
        assert "s2l_scan.errors" not in imported, path.name
