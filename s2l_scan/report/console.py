"""Rich console rendering. The only module that imports rich; honours NO_COLOR and non-TTYs."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from s2l_scan.detectors import DETECTORS
from s2l_scan.report.copy_rate import extracted_cell
from s2l_scan.report.digest import FLAGS
from s2l_scan.report.headline import (
    extraction_reading,
    fmt,
    gate_text,
    power_line,
    verdict_word,
)


def make_console(stderr: bool = False) -> Console:
    """A console that drops colour under NO_COLOR and when the stream is not a terminal."""
    stream = sys.stderr if stderr else sys.stdout
    plain = "NO_COLOR" in os.environ or not stream.isatty()
    return Console(file=stream, no_color=plain, highlight=not plain, soft_wrap=False)


class RichProgress:
    """A rich display fed by ``progress(stage, done, total)``: one bar per stage, with elapsed
    time and ETA, started again when ``done`` goes back (the next fine-tuning run); the bars
    go when the display closes."""

    def __init__(self, console: Console) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(TextColumn("{task.description}"), BarColumn(),
                             MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"),
                             TimeRemainingColumn(), console=console, transient=True)
        self._tasks: dict[str, Any] = {}
        self._done: dict[str, tuple[int, int]] = {}

    def __enter__(self) -> RichProgress:
        self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.__exit__(None, None, None)

    def __call__(self, stage: str, done: int, total: int) -> None:
        before = self._done.get(stage)
        self._done[stage] = (done, total)
        if stage not in self._tasks:
            self._tasks[stage] = self._bar.add_task(escape(stage), total=total, completed=done)
        elif before is not None and (done < before[0] or before[0] >= before[1]):
            self._bar.reset(self._tasks[stage], total=total, completed=done)
        else:
            self._bar.update(self._tasks[stage], total=total, completed=done)


def progress_display(console: Console, quiet: bool = False
                     ) -> contextlib.AbstractContextManager[Callable[[str, int, int], None]]:
    """The progress callable for a command, as a context: nothing when ``quiet``; rich bars
    when ``console`` is a terminal; else plain timestamped lines on stderr (CI logs)."""
    from s2l_scan.progress import PlainProgress
    from s2l_scan.progress import quiet as nothing

    if quiet:
        return contextlib.nullcontext(nothing)
    if console.is_terminal:
        return RichProgress(console)

    def write(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    return contextlib.nullcontext(PlainProgress(write, label="s2l-scan: "))


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
    """The summary that ends a scan, as text (also pytest's terminal summary).

    Checks are grouped (baselines, probes with Δ, extraction, memorization); a one-line reason
    follows each failure, a legend explains the columns and the flags that occur, and the
    digest of what leaked (:mod:`s2l_scan.report.digest`) comes last, right above the verdict.
    ``width`` defaults to the terminal's (``COLUMNS`` when set; 120 when there is no terminal,
    as in a CI log). A check id is never cut: a narrower line drops the CIs, then puts each
    check on a line of its own with its numbers under it, and an id wider than the line
    folds."""
    from io import StringIO

    from s2l_scan.report.digest import ROOM_TITLES, digest_lines, flag_meanings, what_leaked

    width = terminal_width() if width is None else max(40, width)
    buffer = StringIO()
    console = Console(file=buffer, width=width, no_color=not color, force_terminal=color,
                      highlight=False)
    console.print(f"[bold]s2l-scan: {escape(str(report.model['source']))}[/bold]",
                  soft_wrap=True)
    baselines = [row for row in report.results if row.probe is None]
    probes = [row for row in report.results if row.probe is not None]
    for room, rows in (("baselines", baselines), ("probes", probes)):
        if rows:
            console.print(f"\n[bold]{escape(ROOM_TITLES[room])}[/bold]")
            console.print(_fitted(console, width, functools.partial(
                _rows_table, rows, width, delta=room == "probes")))
            _print_reasons(rows, console)
    if report.extraction:
        console.print(f"\n[bold]{escape(ROOM_TITLES['extraction'])}[/bold]")
        console.print(_fitted(console, width, functools.partial(
            _extraction_table, report.extraction, width)))
        _print_reasons(report.extraction, console)
    if report.memorization:
        console.print(f"\n[bold]{escape(ROOM_TITLES['memorization'])}[/bold]")
        console.print(_fitted(console, width, functools.partial(
            _memorization_table, report.memorization, width)))
        _print_reasons(report.memorization, console)
    digest = what_leaked(report)
    _print_legend(report, digest.flags, flag_meanings(), console)
    _print_comparison(report, console)
    _print_run_notes(report, console)
    console.print("\n[bold]what leaked[/bold]")
    for line in digest_lines(digest)[1:]:
        console.print(f"  {escape(line)}")
    _print_next_steps(report, console)
    status = _VERDICT_STYLES[digest.outcome]
    sentence = digest.verdict.split(": ", 1)[1]
    power = power_line(report)
    if power is not None:
        console.print(escape(power))
    console.print(f"verdict: {status} ({escape(sentence)})")
    if digest.warning is not None:
        console.print(f"[yellow]{escape(digest.warning)}[/yellow]")
    return buffer.getvalue()


def _print_run_notes(report: Any, console: Console) -> None:
    """Budget cuts and reused units (:mod:`s2l_scan.report.run_notes`), when there are any."""
    from s2l_scan.report.run_notes import run_lines

    _print_section("this run", run_lines(report), console)


def _print_next_steps(report: Any, console: Console) -> None:
    """What to do next, per kind of failed check (:mod:`s2l_scan.report.remedies`)."""
    from s2l_scan.report.remedies import next_steps

    _print_section("what to do next", next_steps(report), console)


def _print_section(title: str, lines: list[str], console: Console) -> None:
    """A bold title and its indented lines; nothing without lines."""
    if lines:
        console.print(f"\n[bold]{title}[/bold]")
    for line in lines:
        console.print(f"  {escape(line)}")


def terminal_width(fallback: int = 120) -> int:
    """The terminal's width (``COLUMNS`` first); ``fallback`` without one (a CI log)."""
    import shutil

    return max(40, shutil.get_terminal_size((fallback, 24)).columns)


_WORD_STYLES = {"pass": "[green]pass[/green]", "FAIL": "[bold red]FAIL[/bold red]",
                "INCONCLUSIVE": "[yellow]INCONCLUSIVE[/yellow]", "reported": "[dim]reported[/dim]"}
_VERDICT_STYLES = {"passed": "[green]PASSED[/green]", "failed": "[bold red]FAILED[/bold red]",
                   "inconclusive": "[bold yellow]INCONCLUSIVE[/bold yellow]"}


def _verdict(check: Any, flags: list[str]) -> str:
    text = _WORD_STYLES[verdict_word(check)]
    return " ".join([text, *(f"[yellow]{flag}[/yellow]" for flag in flags)])


def _failed(check: Any) -> bool:
    return bool(check.outcome == "failed")


def _table() -> Table:
    from rich import box

    return Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1),
                 collapse_padding=True)


def _fitted(console: Console, width: int, build: Any) -> Any:
    """``build(compact=False)`` when it fits ``width`` unwrapped; else ``build(compact=True)``
    (no CIs: they stay in the JSON and HTML reports) when its numbers fit whole; else each
    check on a line of its own with its numbers on the next (``build(compact=None)``)."""
    from rich.measure import Measurement

    def measure(table: Table) -> Measurement:
        return Measurement.get(console, console.options.update_width(10_000), table)

    wide: Table = build(compact=False)
    if measure(wide).maximum <= width:
        return wide
    narrow: Table = build(compact=True)
    if measure(narrow).minimum <= width:
        return narrow
    return build(compact=None)


def _id_column(table: Table, ids: list[str], width: int) -> None:
    """The check column: as wide as its longest id when the line allows; folded (never cut)
    when an id is wider than the whole line."""
    longest = max(len(text) for text in ids)
    table.add_column("check", no_wrap=longest <= width - 20, overflow="fold",
                     min_width=min(longest, max(10, width - 20)))


def _number_column(table: Table, header: str) -> None:
    table.add_column(header, justify="right", no_wrap=True)


def _stacked(header: list[str], lines: list[tuple[str, list[str], bool]]) -> Any:
    """Each check on a line of its own, its numbers (named) on the next: for lines too narrow
    for any table."""
    from rich.console import Group
    from rich.text import Text

    out: list[Text] = []
    for check, cells, passed in lines:
        out.append(Text(check, style="" if passed else "red", overflow="fold"))
        named = [f"{name} {cell}" for name, cell in zip(header, cells[:-1], strict=False)]
        out.append(Text.from_markup("    " + "  ".join([*map(escape, named), cells[-1]])))
    return Group(*out)


def _rows_table(rows: list[Any], width: int, delta: bool, compact: bool | None) -> Any:
    if compact is None:
        header = ["AUC", *(["ΔAUC"] if delta else []), "blind", "n"]
        return _stacked(header, [
            (row.item_id, [f"{row.auc:.3f}", *([_delta(row, True)] if delta else []),
                           f"{row.blind_auc:.2f}", f"{row.n_members}/{row.n_nonmembers}",
                           _verdict(row, [f for f in FLAGS if getattr(row, f)])],
             row.passed) for row in rows])
    table = _table()
    _id_column(table, [row.item_id for row in rows], width)
    _number_column(table, "AUC" if compact else "AUC [95% CI]")
    if delta:
        _number_column(table, "ΔAUC" if compact else "ΔAUC [95% CI]")
    tpr = any(row.tpr_at_1pct_fpr is not None for row in rows)
    for column in (["TPR@1%"] if tpr else []) + ["blind", "n"]:
        _number_column(table, column)
    table.add_column("verdict", overflow="fold")
    for row in rows:
        low, high = row.auc_ci
        cells = [escape(row.item_id),
                 f"{row.auc:.3f}" if compact else f"{row.auc:.3f} [{low:.2f}, {high:.2f}]"]
        if delta:
            cells.append(_delta(row, compact))
        if tpr:
            cells.append(fmt(row.tpr_at_1pct_fpr))
        flags = [flag for flag in FLAGS if getattr(row, flag)]
        cells += [f"{row.blind_auc:.2f}", f"{row.n_members}/{row.n_nonmembers}",
                  _verdict(row, flags)]
        table.add_row(*cells, style="red" if _failed(row) else None)
    return table


def _delta(row: Any, compact: bool) -> str:
    if row.delta_auc is None:
        return "-"
    if row.delta_auc_ci is None or compact:
        return f"{row.delta_auc:+.3f}"
    low, high = row.delta_auc_ci
    return f"{row.delta_auc:+.3f} [{low:+.2f}, {high:+.2f}]"


def _extraction_table(records: list[Any], width: int, compact: bool | None) -> Any:
    if compact is None:
        return _stacked(["extracted", "matched", "non-member"], [
            (r.item_id, [extracted_cell(r), f"{r.matched_generations}/{r.n_generated}",
                         str(r.nonmember_matches), _verdict(r, [])], not _failed(r))
            for r in records])
    table = _table()
    _id_column(table, [record.item_id for record in records], width)
    for column in ("extracted", "matched", "non-member", *([] if compact else ["nearest RMS"])):
        _number_column(table, column)
    table.add_column("verdict", overflow="fold")
    for record in records:
        cells = [escape(record.item_id), extracted_cell(record),
                 f"{record.matched_generations}/{record.n_generated}",
                 str(record.nonmember_matches)]
        if not compact:
            cells.append(fmt(record.nearest_distance, 4))
        table.add_row(*cells, _verdict(record, []),
                      style="red" if _failed(record) else None)
    return table


def _memorization_table(records: list[Any], width: int, compact: bool | None) -> Any:
    """Per detector and domain: prompts probed, the largest value (text-guidance magnitude or
    clique size) and, unless compact, the prompt it came from; the threshold ('-': reported,
    not gated) and how many prompts crossed it."""
    def cells(r: Any) -> list[str]:
        return [str(len(r.prompts)), f"{r.largest:.4g}",
                "-" if r.threshold is None else f"{r.threshold:g}",
                "-" if r.threshold is None else str(len(r.flagged))]

    if compact is None:
        return _stacked(["prompts", "largest", "threshold", "flagged"], [
            (r.item_id, [*cells(r), _verdict(r, [])], not _failed(r)) for r in records])
    table = _table()
    _id_column(table, [record.item_id for record in records], width)
    for column in ("prompts", "largest", "threshold", "flagged"):
        _number_column(table, column)
    if not compact:
        table.add_column("largest on", overflow="fold")
    table.add_column("verdict", overflow="fold")
    for record in records:
        row = [escape(record.item_id), *cells(record)]
        if not compact:
            top = max(record.prompts, key=lambda p: float(p["value"]), default=None)
            row.append("-" if top is None else escape(repr(str(top["prompt"]))))
        table.add_row(*row, _verdict(record, []), style="red" if _failed(record) else None)
    return table


def _print_reasons(checks: list[Any], console: Console) -> None:
    """One line per failed check: what crossed which threshold (details in the reports)."""
    from s2l_scan.report.digest import short_reason

    for check in checks:
        word = verdict_word(check)
        if word in ("FAIL", "INCONCLUSIVE"):
            why = "; ".join(short_reason(reason.text) for reason in check.reasons
                            if word != "FAIL" or reason.kind != "undecided") or word
            mark = "[red]✗[/red]" if word == "FAIL" else "[yellow]?[/yellow]"
            console.print(f"  {mark} {escape(check.item_id)}: {escape(why)}")


MEMORIZATION_LEGEND = (
    "memorization: per domain's prompts (its prompt and each distinct caption), the largest "
    + ", ".join(f"{d.measures} ({d.name}, {d.authors})" for d in DETECTORS.values())
    + "; flagged = prompts past the threshold; threshold '-' = reported, not gated")


def _print_legend(report: Any, flags: dict[str, int], meanings: dict[str, str],
                  console: Console) -> None:
    console.print(f"\ngate: {escape(gate_text(report))}")
    legend = ("legend: AUC calibrated (direction and variant learned on one half of the "
              "samples, measured on the other); ΔAUC = probe's copy − released model; "
              "TPR@1% '-' = not estimable at this n (a column only when some row has one); "
              "blind = AUC of a model-free classifier (distribution-shift control); n = "
              "members/non-members; extraction: distinct training images extracted, "
              "generations matched / generated, generations within δ of a non-member. A "
              "narrow terminal drops the CIs: see the HTML or JSON report")
    console.print(escape(legend), style="dim")
    for flag, count in flags.items():
        console.print(f"[yellow]{flag}[/yellow] ({count} row{'' if count == 1 else 's'}): "
                      f"{escape(meanings[flag])}")
    if report.extraction:
        console.print(escape(extraction_reading(report)), style="dim")
    if report.memorization:
        console.print(escape(MEMORIZATION_LEGEND), style="dim")


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


def _draw_seeds(draw: Any) -> str:
    seeds = f"split seed {draw.seed}"
    if getattr(draw, "scan_seed", None) is not None:
        seeds += f", scan seed {draw.scan_seed}, resample seed {draw.resample_seed}"
    return seeds


def render_draw(draw: Any, size: int | None = None) -> str:
    """One line per finished audit draw (rich markup): its seeds, verdict and failed checks."""
    head = f"draw {draw.draw}{'' if size is None else f' at n = {size}'} ({_draw_seeds(draw)})"
    if draw.outcome == "inconclusive":
        return f"{head}: [yellow]inconclusive[/yellow]"
    if draw.passed:
        return f"{head}: [green]pass[/green]"
    kinds = ", ".join(f"{kind} ×{len(items)}" for kind, items in draw.failed_by_kind.items())
    return (f"{head}: [bold red]fail[/bold red] "
            f"({escape(kinds)}: {escape(', '.join(draw.failed_items))})")


def _rate_cells(rate: Any) -> tuple[str, str, str]:
    return (f"{rate.count}/{rate.draws}", f"{rate.rate:.3f}",
            f"[{rate.ci[0]:.3f}, {rate.ci[1]:.3f}]")


def _ci_column(leak: bool = False) -> str:
    from s2l_scan.report.audit_rates import CI_CAVEAT, LEAK_CI_CAVEAT

    return f"95% CI ({LEAK_CI_CAVEAT if leak else CI_CAVEAT})"


def render_null_audit(audit: Any, color: bool = False, width: int = 120) -> str:
    """The null audit's summary: the FAILED / INCONCLUSIVE / PASSED rates per scan, the
    false-fail rate per check kind and each failing check's recurrence, as text."""
    from io import StringIO

    from s2l_scan.report.audit_rates import kind_status

    buffer = StringIO()
    console = Console(file=buffer, width=width, no_color=not color, force_terminal=color,
                      highlight=False)
    console.print(f"[bold]s2l-scan null audit[/bold] of {escape(audit.model)} on the "
                  f"non-members of {escape(audit.data)}: {len(audit.draws)} draws, "
                  f"{audit.distinct_splits} distinct splits", soft_wrap=True)
    table = Table(show_edge=False)
    for column in ("of", "draws", "rate", _ci_column()):
        table.add_column(column, justify="left" if column == "of" else "right")
    for outcome, rate in audit.outcomes.items():
        table.add_row(f"verdict {outcome.upper()}", *_rate_cells(rate))
    for kind, rate in audit.per_kind.items():
        name = f"  {kind} checks failed"
        if rate is None:
            table.add_row(escape(name), "-", kind_status(audit.draws, kind), "-")
        else:
            table.add_row(escape(name), *_rate_cells(rate))
    console.print(table)
    recurrent = {k: v for k, v in audit.per_check.items()
                 if not isinstance(v, str) and v.rate.count}
    ungated = [k for k, v in audit.per_check.items() if isinstance(v, str)]
    for check, rec in recurrent.items():
        console.print(f"  {escape(check)}: failed in {rec.rate.count} of {rec.rate.draws} "
                      f"draws ({rec.distinct_splits} distinct splits)", soft_wrap=True)
    if ungated:
        console.print(f"  not gated at this n (cannot fail): {escape(', '.join(ungated))}",
                      soft_wrap=True)
    rate = audit.per_scan
    console.print(f"false-fail rate per scan: {rate.count} of {rate.draws} null audits FAILED "
                  f"= {rate.rate:.3f} (95% CI [{rate.ci[0]:.3f}, {rate.ci[1]:.3f}], "
                  f"Clopper–Pearson; the draws are dependent: re-splits of one pool); "
                  f"{audit.seconds:.0f} s", soft_wrap=True)
    return buffer.getvalue()


def render_leak_audit(audit: Any, color: bool = False, width: int = 120) -> str:
    """The leak audit's table: per size n, the FAILED / INCONCLUSIVE / PASSED rates."""
    from io import StringIO

    from s2l_scan.report.audit_rates import distinct_splits

    buffer = StringIO()
    console = Console(file=buffer, width=width, no_color=not color, force_terminal=color,
                      highlight=False)
    console.print(f"[bold]s2l-scan leak audit[/bold] of {escape(audit.model)} on the members "
                  f"and non-members of {escape(audit.data)}", soft_wrap=True)
    table = Table(show_edge=False)
    for column in ("n per class", "draws (distinct)", "FAILED", "INCONCLUSIVE",
                   "PASSED (false pass)"):
        table.add_column(column, justify="right")
    for size, draws in audit.draws.items():
        rates = audit.outcomes(size)
        table.add_row(str(size), f"{len(draws)} ({distinct_splits(draws)})", *(
            f"{r.count}/{r.draws} [{r.ci[0]:.2f}, {r.ci[1]:.2f}]" for r in rates.values()))
    console.print(table)
    console.print(escape(f"k/N [low, high]: {_ci_column(leak=True)}, Clopper–Pearson; "
                         f"{audit.seconds:.0f} s"), soft_wrap=True)
    return buffer.getvalue()
