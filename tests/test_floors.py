"""The floors of docs/architecture.md, kept by the imports themselves.

Every module of ``s2l_scan`` (with ``baselines/`` and ``probes/``, shipped as
``s2l_scan.baselines`` and ``s2l_scan.probes``) sits on exactly one floor of the table under
"## The floors"; a module imports only from its own floor or below, and no imports form a
cycle. Imports are read with :mod:`ast`, those inside functions included (a deferred import is
still a dependency, and it is where cycles hide); only ``if TYPE_CHECKING:`` blocks are left
out (they never run). Rendering a saved report imports no torch (checked in a fresh process).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# shipped name → source folder (pyproject's package-dir; s2l_scan/baselines is a symlink)
SHIPPED = {"s2l_scan": "s2l_scan", "s2l_scan.baselines": "baselines",
           "s2l_scan.probes": "probes"}


@dataclass(frozen=True)
class Module:
    name: str  # dotted import name
    path: Path  # repository-relative source file
    package: bool  # an __init__.py


def modules(root: Path = ROOT) -> dict[str, Module]:
    """Every first-party module, by import name."""
    found: dict[str, Module] = {}
    for prefix, folder in SHIPPED.items():
        for path in sorted((root / folder).rglob("*.py")):
            rel = path.relative_to(root / folder)
            if any((root / folder / part).is_symlink() for part in rel.parts[:1]):
                continue  # s2l_scan/baselines → ../baselines: read once, under its own name
            parts = [*prefix.split("."), *rel.with_suffix("").parts]
            package = parts[-1] == "__init__"
            name = ".".join(parts[:-1] if package else parts)
            found[name] = Module(name, path.relative_to(root), package)
    return found


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, except under ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        if isinstance(node, ast.If) and _type_checking(node):
            for child in node.orelse:
                yield from _import_nodes(ast.Module(body=[child], type_ignores=[]))
            continue
        yield from _import_nodes(node)


def _owner(name: str, known: dict[str, Module]) -> str | None:
    """The first-party module that ``name`` (a module or a name in one) lives in."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports(module: Module, known: dict[str, Module], root: Path = ROOT) -> dict[str, int]:
    """``{imported first-party module: first line}`` of one module (itself left out)."""
    tree = ast.parse((root / module.path).read_text(), str(module.path))
    here = module.name if module.package else module.name.rpartition(".")[0]
    found: dict[str, int] = {}
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                parts = here.split(".")[:len(here.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            # `from pkg import mod` imports the module pkg.mod; `from mod import name` imports mod
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                       for a in node.names]
        for target in targets:
            owner = _owner(target, known)
            if owner and owner != module.name:
                found.setdefault(owner, node.lineno)
    return found


def graph(root: Path = ROOT) -> tuple[dict[str, Module], dict[str, dict[str, int]]]:
    known = modules(root)
    return known, {name: imports(m, known, root) for name, m in known.items()}


# ---------------------------------------------------------------------------------------------
# the floors table


def floor_table(root: Path = ROOT) -> list[tuple[int, str, list[str]]]:
    """(floor number, floor name, its entries) from docs/architecture.md, top floor first.

    An entry is a repository path in backticks: a file (``s2l_scan/plan.py``) or a folder
    (``s2l_scan/io/``: every module under it not named by a longer entry)."""
    text = (root / "docs" / "architecture.md").read_text()
    section = text.split("## The floors", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        match = re.match(r"\|\s*(\d+)\.\s*([^|]+?)\s*\|([^|]*)\|", line)
        if match:
            entries = re.findall(r"`([^`]+(?:\.py|/))`", match[3])  # not `s2l_scan.probes`
            rows.append((int(match[1]), match[2], entries))
    return rows


def floors(known: dict[str, Module], root: Path = ROOT
           ) -> tuple[dict[str, tuple[int, str]], list[str]]:
    """``{module: (floor number, entry)}`` by the longest entry naming it, and the entries
    that name no module (stale rows) or are listed twice."""
    placed: dict[str, tuple[int, str]] = {}
    stale = []
    for number, _, entries in floor_table(root):
        for entry in entries:
            hits = [m for m in known.values() if _covers(entry, m.path)]
            if not hits:
                stale.append(entry)
            for m in hits:
                if m.name in placed and entry == placed[m.name][1]:
                    stale.append(f"{entry} (listed twice)")
                if m.name not in placed or len(entry) > len(placed[m.name][1]):
                    placed[m.name] = (number, entry)
    return placed, stale


def _covers(entry: str, path: Path) -> bool:
    text = path.as_posix()
    return text.startswith(entry) if entry.endswith("/") else text == entry


def upward_imports(root: Path = ROOT) -> list[str]:
    """One line per import from a lower floor up to a higher one (floor 1 is the top)."""
    known, edges = graph(root)
    placed, _ = floors(known, root)
    found = []
    for name, targets in sorted(edges.items()):
        for target, line in sorted(targets.items()):
            if name in placed and target in placed and placed[target][0] < placed[name][0]:
                found.append(f"{known[name].path}:{line} (floor {placed[name][0]}) imports "
                             f"{target} (floor {placed[target][0]})")
    return found


def cycles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle (a → … → a) per strongly connected component of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan; the graph is ~130 modules, recursion is fine
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in edges.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return [_cycle_in(set(c), edges) for c in components]


def _cycle_in(component: set[str], edges: dict[str, dict[str, int]]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first)."""
    start = min(component)
    parent: dict[str, str] = {}
    queue = [start]
    for node in queue:
        for target in sorted(edges[node]):
            if target == start:
                path = [node]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                return [*reversed(path), start]
            if target in component and target not in parent:
                parent[target] = node
                queue.append(target)
    raise AssertionError("unreachable: a strongly connected component has a cycle")


def import_cycles(root: Path = ROOT) -> list[str]:
    known, edges = graph(root)
    return [" → ".join(f"{n} ({known[n].path}:{edges[n][m]})" if m else n
                       for n, m in zip(c, [*c[1:], None], strict=True)) for c in cycles(edges)]


# ---------------------------------------------------------------------------------------------
# the tests


def test_every_module_sits_on_one_floor() -> None:
    known = modules()
    placed, stale = floors(known)
    unplaced = sorted(str(m.path) for name, m in known.items() if name not in placed)
    assert not unplaced, f"modules on no floor of docs/architecture.md: {unplaced}"
    assert not stale, f"floor entries of docs/architecture.md naming no module or twice: {stale}"


def test_no_module_imports_from_a_floor_above() -> None:
    found = upward_imports()
    assert not found, "imports up the floors of docs/architecture.md:\n" + "\n".join(found)


def test_no_import_cycle() -> None:
    found = import_cycles()
    assert not found, "import cycles (imports inside functions count):\n" + "\n".join(found)


def test_floors_are_numbered_top_down() -> None:
    numbers = [number for number, _, _ in floor_table()]
    assert numbers == list(range(1, len(numbers) + 1)), numbers


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


FAKE_DOC = ("# A\n## The floors\n| floor | modules |\n|---|---|\n| 1. top | `s2l_scan/a.py` |\n"
            "| 2. bottom | `s2l_scan/low/` |\n## Next\n")


def test_the_checker_sees_a_cycle_and_an_upward_import_inside_functions(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "docs/architecture.md": FAKE_DOC, "s2l_scan/__init__.py": "", "baselines/x.py": "",
        "probes/__init__.py": "", "s2l_scan/low/__init__.py": "",
        "s2l_scan/a.py": "import os\n",
        "s2l_scan/low/b.py": "def f():\n    from . import c\n",
        "s2l_scan/low/c.py": "def g():\n    import s2l_scan.low.b\n    from s2l_scan.a import x\n",
    })
    assert import_cycles(root) == [
        "s2l_scan.low.b (s2l_scan/low/b.py:2) → s2l_scan.low.c (s2l_scan/low/c.py:2) → "
        "s2l_scan.low.b"]
    assert upward_imports(root) == [
        "s2l_scan/low/c.py:3 (floor 2) imports s2l_scan.a (floor 1)"]
    known = modules(root)
    assert {"s2l_scan.baselines.x", "s2l_scan.probes", "s2l_scan.low"} <= set(known)
    placed, stale = floors(known, root)
    assert set(known) - set(placed) == {"s2l_scan", "s2l_scan.baselines.x", "s2l_scan.probes"}
    assert not stale


def test_type_checking_imports_are_left_out(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "docs/architecture.md": FAKE_DOC, "s2l_scan/__init__.py": "",
        "s2l_scan/low/__init__.py": "",
        "s2l_scan/low/b.py": ("import typing\nif typing.TYPE_CHECKING:\n"
                              "    from s2l_scan.a import x\nelse:\n"
                              "    from s2l_scan.low import c\n"),
        "s2l_scan/a.py": "", "s2l_scan/low/c.py": "",
    })
    _, edges = graph(root)
    assert edges["s2l_scan.low.b"] == {"s2l_scan.low.c": 5}


RENDER_SAVED = """
import sys
from pathlib import Path
from s2l_scan.report.files import load_report
from s2l_scan.report.console import render_results
from s2l_scan.report.markdown import render_markdown
from s2l_scan.report.html_page import render_html
from s2l_scan.report.sarif import render_sarif
from s2l_scan.report.outputs import RENDERERS
report = load_report(Path(sys.argv[1]))
texts = [render_results(report, color=True, width=120), render_markdown(report),
         render_html(report), str(render_sarif(report))]
texts += [r.render(report, Path.cwd()) for r in RENDERERS.values()]
assert all(texts) and "onfounded" in texts[0], texts[0][:2000]
heavy = sorted(m for m in ("torch", "diffusers", "transformers", "faiss", "s2l_scan.baselines")
               if m in sys.modules)
assert not heavy, heavy
"""


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_rendering_a_saved_report_imports_no_torch(tmp_path: Path) -> None:
    from report_factory import make_report, make_row

    from s2l_scan.report.outputs import write_reports

    confounded = make_row(domain="identity-1", shift=3.0)
    confounded.confounded = True
    report = make_report([make_row(), confounded, make_row(domain="pooled", shift=1.0, n=16)])
    saved = tmp_path / "report.json"
    write_reports(report, {"json": saved})
    done = subprocess.run([sys.executable, "-c", RENDER_SAVED, str(saved)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]


def test_the_checker_sees_unplaced_stale_and_doubled_entries(tmp_path: Path) -> None:
    doc = FAKE_DOC.replace("| 2. bottom | `s2l_scan/low/` |",
                           "| 2. bottom | `s2l_scan/gone.py`, `s2l_scan/a.py` |")
    root = _tree(tmp_path, {"docs/architecture.md": doc, "s2l_scan/__init__.py": "",
                            "s2l_scan/a.py": "", "s2l_scan/low/b.py": ""})
    placed, stale = floors(modules(root), root)
    assert stale == ["s2l_scan/gone.py", "s2l_scan/a.py (listed twice)"]
    assert set(modules(root)) - set(placed) == {"s2l_scan", "s2l_scan.low.b"}
