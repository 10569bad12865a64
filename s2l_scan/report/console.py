"""Rich console rendering. The only module that imports rich; honours NO_COLOR and non-TTYs."""

from __future__ import annotations

import os
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from s2l_scan.report.headline import extraction_counts, extraction_reading, fmt, headline, reading


def make_console(stderr: bool = False) -> Console:
    """A console that drops colour under NO_COLOR and when the stream is not a terminal."""
    stream = sys.stderr if stderr else sys.stdout
    plain = "NO_COLOR" in os.environ or not stream.isatty()
    return Console(file=stream, no_color=plain, highlight=not plain, soft_wrap=False)


def render_manifest(manifest: dict[str, Any], folder: str, console: Console) -> None:
    """Summarise a reference-model manifest: what was built, how big, and its member split."""
    preset = manifest["preset"]
    console.print(f"[bold]s2l-scan reference model[/bold] at {folder}")
    console.print(f"preset [cyan]{preset['name']}[/cyan], seed {manifest['seed']}, built in "
                  f"{manifest['build_seconds']:.1f} s on {manifest['threads']} thread(s); "
                  f"training set {manifest['training_set_size']} images")
    params = Table(title="parameters", show_edge=False)
    params.add_column("component")
    params.add_column("parameters", justify="right")
    for name, count in manifest["parameters"].items():
        params.add_row(name, f"{count:,}")
    console.print(params)
    split = Table(title="audit data (member split)", show_edge=False)
    for column in ("domain", "prompt", "members", "non-members", "planted duplicates"):
        split.add_column(column)
    for domain, record in manifest["split"].items():
        planted = ", ".join(record["duplicated_members"]) or "-"
        split.add_row(escape(domain), escape(record["prompt"]), str(len(record["members"])),
                      str(len(record["nonmembers"])),
                      f"{planted} (×{preset['duplication_factor']})")
    console.print(split)
    console.print(f"model: {folder}/model   data: {folder}/data   manifest: {folder}/manifest.json")


def render_results(report: Any, color: bool = False, width: int | None = None) -> str:
    """The summary table that ends a scan, as text (for pytest's terminal reporter).

    ``width`` defaults to the terminal's (``COLUMNS`` when set), at least 120 and 160 when
    unknown, as in a CI log: the check ids are never cut."""
    import shutil
    from io import StringIO

    if width is None:
        width = max(120, shutil.get_terminal_size((160, 24)).columns)
    buffer = StringIO()
    console = Console(file=buffer, width=width, no_color=not color, force_terminal=color,
                      highlight=False)
    table = Table(title=escape(f"s2l-scan: {report.model['source']}"), show_edge=False)
    for column in ("check", "AUC [95% CI]", "raw", "TPR@1%", "TPR@0.1%", "ASR", "blind AUC",
                   "ΔAUC", "n", "verdict"):
        table.add_column(column, justify="left" if column in ("check", "verdict") else "right",
                         no_wrap=column != "verdict")
    for row in report.results:
        verdict = "[green]pass[/green]" if row.passed else "[bold red]FAIL[/bold red]"
        if row.confounded:
            verdict += " [yellow](confounded)[/yellow]"
        if row.unstable:
            verdict += " [yellow](unstable)[/yellow]"
        if row.underpowered:
            verdict += " [yellow](underpowered)[/yellow]"
        low, high = row.auc_ci
        delta = "" if row.delta_auc is None else f"{row.delta_auc:+.3f}"
        table.add_row(escape(row.item_id), f"{row.auc:.3f} [{low:.2f}, {high:.2f}]",
                      f"{row.auc_raw:.3f}", fmt(row.tpr_at_1pct_fpr), fmt(row.tpr_at_01pct_fpr),
                      f"{row.asr:.3f}", f"{row.blind_auc:.3f}", delta,
                      f"{row.n_members}/{row.n_nonmembers}", verdict)
    console.print(table)
    config = report.config
    console.print(f"gate: max_auc {config['max_auc']} (compared: {config['ci_end']}), "
                  f"max_tpr {config['max_tpr']} at 1% FPR where estimable; thresholds "
                  "calibrated on half of each set, measured on the other half")
    console.print(reading(), style="dim")
    for record in report.extraction:
        where = escape(f"{record.probe or 'released'}[{record.domain}]")
        verdict = ("[green]pass[/green]" if record.passed
                   else "[bold red]FAIL[/bold red]")
        console.print(f"extraction {where}: {extraction_counts(record)}; {verdict}",
                      soft_wrap=True)
    if report.extraction:
        console.print(extraction_reading(report), style="dim", soft_wrap=True)
    _print_comparison(report, console)
    status = "[green]PASSED[/green]" if report.passed else "[bold red]FAILED[/bold red]"
    failed = len(report.to_dict()["verdict"]["failed_items"])
    checks = headline(report)["checks"]
    console.print(f"verdict: {status} ({failed} of {checks} checks failed)")
    return buffer.getvalue()


def _print_comparison(report: Any, console: Console) -> None:
    """The comparison's count line, then each regression, dropped and new check and
    configuration change (the numbers of every check are in the reports)."""
    if not report.comparison and not report.config_changes:
        return
    from s2l_scan.report.compare import summary

    lines = summary(report.comparison, report.config_changes, str(report.config.get("compare")),
                    report.config.get("compare_fail"),
                    bool(report.config.get("allow_dropped_checks")))
    for line in lines:
        failing = line.startswith(("  regressed", "  dropped")) and not (
            line.startswith("  dropped") and report.config.get("allow_dropped_checks"))
        console.print(f"[bold red]{escape(line)}[/bold red]" if failing else escape(line),
                      soft_wrap=True)


def render_draw(draw: Any) -> str:
    """One line per finished null-audit draw (rich markup): its verdict and failed checks."""
    if draw.passed:
        return f"draw {draw.draw} (seed {draw.seed}): [green]pass[/green]"
    kinds = ", ".join(f"{kind} ×{len(items)}" for kind, items in draw.failed_by_kind.items())
    return (f"draw {draw.draw} (seed {draw.seed}): [bold red]false fail[/bold red] "
            f"({escape(kinds)}: {escape(', '.join(draw.failed_items))})")


def render_null_audit(audit: Any, color: bool = False, width: int = 120) -> str:
    """The null audit's summary: the false-fail rate per scan and per check kind, as text."""
    from io import StringIO

    buffer = StringIO()
    console = Console(file=buffer, width=width, no_color=not color, force_terminal=color,
                      highlight=False)
    console.print(f"[bold]s2l-scan null audit[/bold] of {escape(audit.model)} on the "
                  f"non-members of {escape(audit.data)}: {len(audit.draws)} draws",
                  soft_wrap=True)
    table = Table(show_edge=False)
    for column in ("false fails of", "failed draws", "rate", "exact 95% CI"):
        table.add_column(column, justify="left" if column == "false fails of" else "right")

    def add(name: str, rate: Any) -> None:
        if rate is None:
            table.add_row(escape(name), "-", "not checked", "-")
            return
        table.add_row(escape(name), f"{rate.failed}/{rate.draws}", f"{rate.rate:.3f}",
                      f"[{rate.ci[0]:.3f}, {rate.ci[1]:.3f}]")

    add("the scan (its verdict)", audit.per_scan)
    for kind, rate in audit.per_kind.items():
        add(f"  {kind} checks", rate)
    console.print(table)
    rate = audit.per_scan
    console.print(f"false-fail rate per scan: {rate.failed} of {rate.draws} null audits failed "
                  f"= {rate.rate:.3f} (exact 95% CI [{rate.ci[0]:.3f}, {rate.ci[1]:.3f}]); "
                  f"{audit.seconds:.0f} s", soft_wrap=True)
    return buffer.getvalue()
