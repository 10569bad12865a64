"""The report files a scan can write, as one registry: JSON, HTML, Markdown, SARIF.

Each renderer turns a :class:`ScanReport` into text; :func:`write_reports` writes each requested
file atomically. The CLI (``--report-*``), the pytest plugin (``--s2l-report-*``) and
``s2l-scan report`` all go through here, so the files are the same whichever wrote them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from s2l_scan.report.files import write_text_atomic
from s2l_scan.report.model import ScanReport


@dataclass(frozen=True)
class Renderer:
    """One report format: the config key that names its file, its options, how to render it.

    Registering a renderer is all a new format needs: its file is set by the TOML key
    ``config_key``, by ``s2l-scan scan --<config-key>`` and by ``pytest --s2l-<config-key>``
    (or ``pytest_name``), all generated from here (s2l_scan/options.py).
    """

    kind: str
    config_key: str  # e.g. report_json
    render: Callable[[ScanReport, Path], str]  # (report, folder for relative lookups) → text
    help: str = ""  # one line for --help, e.g. "write the JSON report to this file"
    pytest_name: str | None = None  # pytest spelling when not --s2l-<config-key>

    @property
    def cli_option(self) -> str:
        """``s2l-scan scan`` option, e.g. ``--report-json``."""
        return "--" + self.config_key.replace("_", "-")

    @property
    def pytest_option(self) -> str:
        """pytest option, e.g. ``--s2l-report-json`` (``--s2l-sarif`` for SARIF)."""
        return self.pytest_name or "--s2l-" + self.config_key.replace("_", "-")


RENDERERS: dict[str, Renderer] = {}


def register_renderer(renderer: Renderer) -> Renderer:
    """Add a report format; kinds are unique."""
    if renderer.kind in RENDERERS:
        raise ValueError(f"report format {renderer.kind!r} is already registered; known: "
                         f"{sorted(RENDERERS)}")
    keys = {r.config_key: r.kind for r in RENDERERS.values()}
    if renderer.config_key in keys:
        raise ValueError(f"report format {renderer.kind!r}: config key "
                         f"{renderer.config_key!r} is already {keys[renderer.config_key]!r}'s")
    RENDERERS[renderer.kind] = renderer
    return renderer


def _json(report: ScanReport, base: Path) -> str:
    return json.dumps(report.to_dict(), indent=2, sort_keys=False, allow_nan=False) + "\n"


def _html(report: ScanReport, base: Path) -> str:
    from s2l_scan.report.html_page import render_html

    return render_html(report, search=[base])


def _markdown(report: ScanReport, base: Path) -> str:
    from s2l_scan.report.markdown import render_markdown

    return render_markdown(report)


def _sarif(report: ScanReport, base: Path) -> str:
    from s2l_scan.report.sarif import render_sarif

    return json.dumps(render_sarif(report), indent=2) + "\n"


register_renderer(Renderer("json", "report_json", _json, "write the JSON report to this file"))
register_renderer(Renderer("html", "report_html", _html,
                           "write the self-contained HTML report to this file"))
register_renderer(Renderer("markdown", "report_markdown", _markdown,
                           "write the Markdown summary (≤ 1 MiB; for $GITHUB_STEP_SUMMARY) to "
                           "this file"))
register_renderer(Renderer("sarif", "report_sarif", _sarif,
                           "write the SARIF 2.1.0 findings (for code scanning) to this file",
                           pytest_name="--s2l-sarif"))


def write_reports(report: ScanReport, paths: dict[str, Path], base: Path | None = None
                  ) -> list[tuple[str, Path]]:
    """Render and write each ``{kind: path}``; returns what was written, in registry order."""
    written = []
    for kind, renderer in RENDERERS.items():
        if kind in paths:
            text = renderer.render(report, Path.cwd() if base is None else base)
            write_text_atomic(paths[kind], text)
            written.append((kind, paths[kind]))
    return written


def configured_paths(config: dict[str, object]) -> dict[str, Path]:
    """``{kind: path}`` for each report file a config names (``report_json`` etc.)."""
    return {kind: Path(str(config[r.config_key])) for kind, r in RENDERERS.items()
            if config.get(r.config_key)}
