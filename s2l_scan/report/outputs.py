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
    """One report format: the config key that names its file and how to render it."""

    kind: str
    config_key: str
    render: Callable[[ScanReport, Path], str]  # (report, folder for relative lookups) → text


RENDERERS: dict[str, Renderer] = {}


def register_renderer(renderer: Renderer) -> Renderer:
    """Add a report format; kinds are unique."""
    if renderer.kind in RENDERERS:
        raise ValueError(f"report format {renderer.kind!r} is already registered; known: "
                         f"{sorted(RENDERERS)}")
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


register_renderer(Renderer("json", "report_json", _json))
register_renderer(Renderer("html", "report_html", _html))
register_renderer(Renderer("markdown", "report_markdown", _markdown))
register_renderer(Renderer("sarif", "report_sarif", _sarif))


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
